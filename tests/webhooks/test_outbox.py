"""The outbox shared by several server instances (one CMS_DATA on SQLite, or one PostgreSQL
database): a delivery goes out from one of them, once, in order per endpoint."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from cms.config import Settings
from cms.webhooks.delivery import Dispatcher
from cms.webhooks.store import Attempt, OutboxEvent, WebhookStore

from ..receivers import Receiver, running


def outbox(settings: Settings, endpoints: int = 1) -> WebhookStore:
    """An outbox with ``endpoints`` endpoints and one publication event queued for each."""
    store = WebhookStore.open(settings)
    for number in range(endpoints):
        store.create_endpoint(url=f"https://hooks.example.com/{number}",
                              events=["comparison.published"], description="", kind="standard",
                              coalesce_seconds=0)
    store.record([OutboxEvent(id="msg_1", type="comparison.published", slug="s", commit="c" * 40,
                              payload=b"{}")])
    return store


def test_a_delivery_claimed_by_one_process_is_not_due_for_another(shared_settings: Settings,
                                                                  ) -> None:
    one = outbox(shared_settings)
    two = WebhookStore.open(shared_settings)
    now = time.time() + 1
    first, _ = one.claim_due(now, set(), lease=40)
    second, _ = two.claim_due(now, set(), lease=40)
    assert [item.event.id for item in first] == ["msg_1"]
    assert second == []
    # Its claimer died: once the lease is over, the other process sends it.
    later, _ = two.claim_due(now + 41, set(), lease=40)
    assert [item.event.id for item in later] == ["msg_1"]
    # A claim given up is due again at once.
    two.release([later[0].delivery_id], at=now + 41)
    again, _ = one.claim_due(now + 41, set(), lease=40)
    assert [item.event.id for item in again] == ["msg_1"]


def test_a_server_starting_alone_sends_at_once_what_a_dead_one_had_claimed(
        shared_settings: Settings) -> None:
    store = outbox(shared_settings)
    now = time.time() + 1
    claimed, _ = store.claim_due(now, set(), lease=40)
    assert len(claimed) == 1
    assert store.claim_due(now, set(), lease=40)[0] == []  # its claimer died: not due yet
    assert store.release_claims() == 1
    assert [item.event.id for item in store.claim_due(now, set(), lease=40)[0]] == ["msg_1"]


def test_a_late_attempt_never_makes_a_delivered_delivery_pending(shared_settings: Settings,
                                                                 ) -> None:
    """Two processes sent it (the first's claim ran out): the second result is not recorded."""
    one = outbox(shared_settings)
    two = WebhookStore.open(shared_settings)
    now = time.time() + 1
    first = one.claim_due(now, set(), lease=40)[0][0]
    second = two.claim_due(now + 41, set(), lease=40)[0][0]
    ok = Attempt(at=datetime.now(UTC), status_code=200, duration_ms=1.0, error=None,
                 response_excerpt="")
    failed = Attempt(at=datetime.now(UTC), status_code=500, duration_ms=1.0, error=None,
                     response_excerpt="")
    assert two.finish_attempt(second.delivery_id, ok, status="delivered", next_attempt_at=None,
                              coalesced=[]) is True
    assert one.finish_attempt(first.delivery_id, failed, status="pending",
                              next_attempt_at=now + 5, coalesced=[]) is False
    assert one.delivery(first.delivery_id).status == "delivered"


def test_no_more_are_claimed_than_there_are_free_workers(shared_settings: Settings) -> None:
    store = outbox(shared_settings, endpoints=3)
    now = time.time() + 1
    assert len(store.claim_due(now, set(), lease=40, limit=2)[0]) == 2
    assert len(store.claim_due(now, set(), lease=40)[0]) == 1  # the third waited unclaimed


def test_two_instances_deliver_each_event_once_per_endpoint_in_order(
        shared_settings: Settings) -> None:
    """Two instances, each with its store and its dispatcher on the one database, both sending
    while both record: every receiver gets every event once, in the order they were recorded."""
    stores = [WebhookStore.open(shared_settings), WebhookStore.open(shared_settings)]
    dispatchers = [Dispatcher(store, backoff=[5.0], timeout=10, allow_private=True)
                   for store in stores]
    with running(Receiver()) as first, running(Receiver()) as second:
        for receiver in (first, second):
            stores[0].create_endpoint(url=receiver.url, events=["comparison.published"],
                                      description="", kind="standard", coalesce_seconds=0)
        for dispatcher in dispatchers:
            dispatcher.start()
        try:
            sent = [f"msg_{number:02d}" for number in range(30)]
            for number, event_id in enumerate(sent):
                stores[number % 2].record([OutboxEvent(
                    id=event_id, type="comparison.published", slug="s", commit="c" * 40,
                    payload=b"{}")])
                for dispatcher in dispatchers:
                    dispatcher.wake()
            assert first.wait_finished(len(sent))
            assert second.wait_finished(len(sent))
        finally:
            for dispatcher in dispatchers:
                dispatcher.stop()  # waits for attempts in flight: nothing more can arrive
    assert first.ids() == sent
    assert second.ids() == sent
    for store in stores:
        for endpoint in store.endpoints():
            assert {d.status for d in store.deliveries(endpoint.id)} == {"delivered"}
        store.close()
