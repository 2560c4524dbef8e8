"""The outbox shared by the servers of one CMS_DATA: a delivery goes out from one of them."""

from __future__ import annotations

import time
from pathlib import Path

from cms.webhooks.store import OutboxEvent, WebhookStore


def test_a_delivery_claimed_by_one_process_is_not_due_for_another(tmp_path: Path) -> None:
    one, two = WebhookStore(tmp_path / "webhooks.sqlite3"), WebhookStore(tmp_path / "webhooks.sqlite3")
    one.create_endpoint(url="https://hooks.example.com/x", events=["comparison.published"],
                        description="", kind="standard", coalesce_seconds=0)
    one.record([OutboxEvent(id="msg_1", type="comparison.published", slug="s", commit="c" * 40,
                            payload=b"{}")])
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


def test_a_server_starting_alone_sends_at_once_what_a_dead_one_had_claimed(tmp_path: Path) -> None:
    store = WebhookStore(tmp_path / "webhooks.sqlite3")
    store.create_endpoint(url="https://hooks.example.com/x", events=["comparison.published"],
                          description="", kind="standard", coalesce_seconds=0)
    store.record([OutboxEvent(id="msg_1", type="comparison.published", slug="s", commit="c" * 40,
                              payload=b"{}")])
    now = time.time() + 1
    claimed, _ = store.claim_due(now, set(), lease=40)
    assert len(claimed) == 1
    assert store.claim_due(now, set(), lease=40)[0] == []  # its claimer died: not due yet
    assert store.release_claims() == 1
    assert [item.event.id for item in store.claim_due(now, set(), lease=40)[0]] == ["msg_1"]
