"""Webhooks wired to the commit pipeline: what the app starts, stops and hands to routes."""

from __future__ import annotations

import threading

from ..config import Settings
from ..editing.events import Committed
from ..editing.workflows import Workflows
from ..store.documents import Documents
from .delivery import Dispatcher
from .events import Recorder
from .store import WebhookStore


class Webhooks:
    def __init__(self, store: WebhookStore, dispatcher: Dispatcher, recorder: Recorder,
                 run_worker: bool) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.recorder = recorder
        self.run_worker = run_worker
        # Serialises this process's recording. Another process may set the cursor on main back
        # to a commit this one has passed; that costs a second reading of those commits, never
        # a second event, since an event's id is made from its commit and is recorded once.
        self._recording = threading.Lock()

    def on_committed(self, event: Committed) -> None:
        with self._recording:
            queued = self.recorder.committed(event)
        if queued:
            self.dispatcher.wake()

    def catch_up(self) -> None:
        with self._recording:
            queued = self.recorder.catch_up()
        if queued:
            self.dispatcher.wake()

    def replay(self, endpoint_id: str, since: str) -> int:
        with self._recording:
            queued = self.recorder.replay(endpoint_id, since)
        if queued:
            self.dispatcher.wake()
        return queued

    def start(self) -> None:
        self.catch_up()
        with self._recording:
            self.recorder.catch_up_reviews()
        if self.run_worker:
            self.dispatcher.start()

    def stop(self) -> None:
        self.dispatcher.stop()
        self.store.close()


def build_webhooks(settings: Settings, documents: Documents,
                   workflows: Workflows) -> Webhooks:
    store = WebhookStore.open(settings)
    dispatcher = Dispatcher(store, backoff=settings.webhook_backoff,
                            timeout=settings.webhook_timeout,
                            allow_private=settings.webhook_allow_private)
    recorder = Recorder(documents, store, settings.base_url, workflows)
    webhooks = Webhooks(store=store, dispatcher=dispatcher, recorder=recorder,
                        run_worker=settings.webhook_worker)
    # Main can move without this process (another instance, or a crash before the event was
    # recorded): the dispatcher reads the publication log again before each round.
    dispatcher.before_round = webhooks.catch_up
    return webhooks
