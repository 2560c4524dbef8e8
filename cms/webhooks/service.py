"""Webhooks wired to the document store: what the app starts, stops and hands to routes."""

from __future__ import annotations

import threading

from ..config import Settings
from ..editing.documents import Documents
from .delivery import Dispatcher
from .events import catch_up, record_main, transition_event
from .store import WebhookStore


class Webhooks:
    def __init__(self, store: WebhookStore, dispatcher: Dispatcher, documents: Documents,
                 run_worker: bool) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.documents = documents
        self.run_worker = run_worker
        # Serialises reading the publication log, so the cursor only ever moves forward.
        self._recording = threading.Lock()

    def on_main_moved(self, old: str | None, new: str) -> None:
        with self._recording:
            queued = record_main(self.documents, self.store, old, new)
        if queued:
            self.dispatcher.wake()

    def on_commit(self, commit: str) -> None:
        if transition_event(self.documents, self.store, commit):
            self.dispatcher.wake()

    def catch_up(self) -> None:
        with self._recording:
            queued = catch_up(self.documents, self.store)
        if queued:
            self.dispatcher.wake()

    def start(self) -> None:
        self.catch_up()
        if self.run_worker:
            self.dispatcher.start()

    def stop(self) -> None:
        self.dispatcher.stop()
        self.store.close()


def build_webhooks(settings: Settings, documents: Documents) -> Webhooks:
    store = WebhookStore(settings.data / "webhooks.sqlite3")
    dispatcher = Dispatcher(store, backoff=settings.webhook_backoff,
                            timeout=settings.webhook_timeout,
                            allow_private=settings.webhook_allow_private)
    webhooks = Webhooks(store=store, dispatcher=dispatcher, documents=documents,
                        run_worker=settings.webhook_worker)
    # Main can move without this process (another instance, or a crash before the event was
    # recorded): the dispatcher reads the publication log again before each round.
    dispatcher.before_round = webhooks.catch_up
    documents.main_moved.append(webhooks.on_main_moved)
    documents.committed.append(webhooks.on_commit)
    return webhooks
