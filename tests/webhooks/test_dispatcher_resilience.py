"""The dispatcher survives a failing round and endpoints deleted under it (issue item 9)."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from cms.config import Settings
from cms.webhooks.store import Due, WebhookStore

from ..receivers import Receiver, running
from .support import serve
from .test_webhooks import deliveries, drain, publish_new, subscribe


class Collected(logging.Handler):
    """The records of one logger. (The app configures logging when it starts, which takes
    pytest's caplog handler off the root logger.)"""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def orphan_attempts(settings: Settings) -> int:
    with sqlite3.connect(settings.data / "webhooks.sqlite3") as db:
        row = db.execute("SELECT count(*) FROM attempts WHERE delivery_id NOT IN "
                         "(SELECT id FROM deliveries)").fetchone()
    return int(row[0])


def test_a_failed_round_is_logged_in_one_line_and_the_next_round_delivers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    collected = Collected()
    logger = logging.getLogger("cms.webhooks")
    with serve(tmp_path, webhook_worker=True) as (client, tokens, _), \
            running(Receiver()) as receiver:
        store = client.app.state.services.webhooks.store
        created = subscribe(client, tokens["admin"], receiver.url)
        secret = created["secret"]
        real_next_due = store.next_due
        failed: list[int] = []

        def fails_once_with_work_due(now: float, busy: set[str]) -> tuple[list[Due], float | None]:
            # The first round that finds the delivery due fails, so the delivery can only go
            # out in a round after the failed one.
            due, wake = real_next_due(now, busy)
            if due and not failed:
                failed.append(len(receiver.received))
                raise sqlite3.OperationalError(f"disk I/O error while reading {secret}")
            return due, wake

        monkeypatch.setattr(store, "next_due", fails_once_with_work_due)
        logger.addHandler(collected)
        try:
            publish_new(client, tokens, "after-a-failed-round")
            assert receiver.wait_for(1)
        finally:
            logger.removeHandler(collected)
    assert failed == [0]
    errors = [r for r in collected.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    line = errors[0].getMessage()
    assert "OperationalError" in line
    assert "\n" not in line
    assert errors[0].exc_info is None
    assert secret not in line
    assert "disk I/O" not in line  # the message itself is left out: it may quote anything


def test_an_endpoint_deleted_between_the_reads_of_a_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with serve(tmp_path) as (client, tokens, settings), running(Receiver()) as doomed, \
            running(Receiver()) as kept:
        store = client.app.state.services.webhooks.store
        # Another process sharing the outbox deletes the endpoint in the middle of a round's reads.
        other_process = WebhookStore.open(settings)
        doomed_id = subscribe(client, tokens["admin"], doomed.url)["endpoint"]["id"]
        kept_id = subscribe(client, tokens["admin"], kept.url)["endpoint"]["id"]
        publish_new(client, tokens, "deleted-mid-round")
        real_secrets = store.secrets_in_use

        def deleted_first(endpoint_id: str, now: float) -> list[str]:
            if endpoint_id == doomed_id and other_process.endpoints()[0].id == doomed_id:
                other_process.delete_endpoint(endpoint_id)
            return real_secrets(endpoint_id, now)

        monkeypatch.setattr(store, "secrets_in_use", deleted_first)
        drain(client)  # raised IndexError before the fix
        other_process.close()
        assert len(kept.received) == 1
        assert [d["status"] for d in deliveries(client, tokens["admin"], kept_id)] == ["delivered"]
        assert client.get(f"/api/webhooks/{doomed_id}", headers=tokens["admin"]).status_code == 404
    assert orphan_attempts(settings) == 0


def test_an_endpoint_deleted_while_its_delivery_is_in_flight(
    tmp_path: Path,
) -> None:
    held = Receiver(answers=[410])
    held.hold = threading.Event()
    with serve(tmp_path) as (client, tokens, settings), running(held), \
            running(Receiver()) as kept:
        dispatcher = client.app.state.services.webhooks.dispatcher
        held_id = subscribe(client, tokens["admin"], held.url)["endpoint"]["id"]
        subscribe(client, tokens["admin"], kept.url)
        publish_new(client, tokens, "deleted-in-flight")
        failures: list[BaseException] = []

        def deliver() -> None:
            try:
                dispatcher.drain()
            except BaseException as exc:
                failures.append(exc)

        worker = threading.Thread(target=deliver)
        worker.start()
        assert held.wait_for(1)  # the attempt is in flight, its answer held back
        assert client.delete(f"/api/webhooks/{held_id}", headers=tokens["admin"]).status_code == 204
        held.hold.set()
        worker.join(timeout=30)
        assert not worker.is_alive()
        # The late 410 neither fails (the endpoint to disable is gone) nor leaves a log entry
        # for a delivery that no longer exists; the other endpoint is served all the same.
        assert failures == []
        assert len(kept.received) == 1
    assert orphan_attempts(settings) == 0


def test_an_attempt_that_cannot_record_its_result_is_sent_again_after_a_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    collected = Collected()
    logger = logging.getLogger("cms.webhooks")
    with serve(tmp_path, webhook_worker=True) as (client, tokens, _), \
            running(Receiver()) as receiver:
        store = client.app.state.services.webhooks.store
        created = subscribe(client, tokens["admin"], receiver.url)
        secret = created["secret"]
        real_finish = store.finish_attempt
        recorded = threading.Event()

        def fails_once(delivery_id: str, attempt: Any, **kwargs: Any) -> bool:
            if not receiver.received[1:]:
                raise sqlite3.OperationalError(f"database or disk is full ({secret})")
            done = real_finish(delivery_id, attempt, **kwargs)
            recorded.set()
            return done

        monkeypatch.setattr(store, "finish_attempt", fails_once)
        logger.addHandler(collected)
        try:
            publish_new(client, tokens, "recorded-the-second-time")
            assert recorded.wait(timeout=30)
        finally:
            logger.removeHandler(collected)
        log = deliveries(client, tokens["admin"], created["endpoint"]["id"])
    assert len(receiver.received) == 2
    assert log[0]["status"] == "delivered"
    errors = [r for r in collected.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    line = errors[0].getMessage()
    assert "OperationalError" in line
    assert "rests 1 s" in line
    assert errors[0].exc_info is None
    assert secret not in line
