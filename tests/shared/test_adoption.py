"""Moving an existing deployment onto PostgreSQL: the outbox and the votes it kept in SQLite files
under CMS_DATA are taken over by the first instance on an empty database, ids and all."""

from __future__ import annotations

import msgspec

from cms.config import Settings
from cms.votes.store import VoteStore
from cms.webhooks.store import OutboxEvent, WebhookStore


def test_the_sqlite_outbox_and_votes_are_taken_over_once(settings: Settings,
                                                         postgres_url: str) -> None:
    outbox = WebhookStore.open(settings)
    endpoint, secret = outbox.create_endpoint(url="https://hooks.example.com/a",
                                              events=["comparison.published"], description="",
                                              kind="standard", coalesce_seconds=0)
    outbox.record([OutboxEvent(id="msg_1", type="comparison.published", slug="s",
                               commit="c" * 40, payload=b"{}")], cursor=("main", "c" * 40))
    pending = outbox.deliveries(endpoint.id)
    outbox.close()
    votes = VoteStore.open(settings)
    for choice in ("ship", "skip", "ship"):
        votes.record("a-vs-b", "a", choice, "k1")
    votes.mark_folded(1, "f" * 40)
    ledger_id = votes.ledger_id
    votes.close()

    shared = msgspec.structs.replace(settings, database_url=postgres_url)
    moved = WebhookStore.open(shared)
    assert moved.secrets_in_use(endpoint.id, 0) == [secret]
    assert moved.deliveries(endpoint.id) == pending
    assert moved.cursor("main") == "c" * 40
    moved.record([OutboxEvent(id="msg_2", type="comparison.published", slug="s",
                              commit="d" * 40, payload=b"{}")])
    assert [d.event_id for d in moved.deliveries(endpoint.id)] == ["msg_2", "msg_1"]
    moved_votes = VoteStore.open(shared)
    assert moved_votes.ledger_id == ledger_id  # the folds in git still name this ledger
    assert moved_votes.ledger().folded == 1
    assert moved_votes.pending(1).of("a-vs-b") == {"a": (1, 1)}
    moved_votes.record("a-vs-b", "a", "ship", "k2")
    assert moved_votes.ledger().seen == 4  # ids go on from the SQLite ones
    for store in (moved, moved_votes):
        store.close()
    # Taken over once: what the files hold now is not copied again.
    again = VoteStore.open(settings)
    again.record("a-vs-b", "a", "skip", "k3")
    again.close()
    last = VoteStore.open(shared)
    assert last.ledger().seen == 4
    last.close()
