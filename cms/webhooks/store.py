"""Webhook endpoints, events and deliveries, kept durably in the shared-state database.

What the outbox needs from it, both engines give (cms/shared/database.py): an event and its
deliveries are written in one transaction that is durable before the editor's request returns,
and survive a crash of the server at any later point; writes are serialised across every
instance, so a delivery's ``seq`` orders its endpoint's queue in the order events were recorded.
Secrets live here, never in git.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from msgspec import Struct

from ..config import Settings
from ..errors import NotFound
from ..shared.database import Database, Row, Session
from .signing import new_secret

DeliveryStatus = Literal["pending", "delivered", "failed", "coalesced"]
ROTATION_GRACE_SECONDS = 24 * 3600
# How many waiting deliveries one coalesced call may stand for: bounds what a round reads.
_COALESCE_BATCH = 1000
# An endpoint's pending deliveries with their events; the queue's order is that of ``seq``.
_PENDING = ("SELECT d.*, e.type, e.slug, e.commit_sha, e.payload FROM deliveries d "
            "JOIN events e ON e.id = d.event_id WHERE d.endpoint_id = ? AND d.status = 'pending'")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    events TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'standard',
    coalesce_seconds {real} NOT NULL DEFAULT 0,
    enabled INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_until {real},
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq {id},
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    slug TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    payload {blob} NOT NULL,
    created_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    seq {id},
    id TEXT NOT NULL UNIQUE,
    endpoint_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at {real} NOT NULL,
    created_at {real} NOT NULL,
    finished_at {real},
    coalesced_into TEXT,
    redelivery_of TEXT,
    claimed_until {real}
);
CREATE INDEX IF NOT EXISTS deliveries_queue ON deliveries (endpoint_id, status, seq);
CREATE TABLE IF NOT EXISTS attempts (
    id {id},
    delivery_id TEXT NOT NULL,
    at {real} NOT NULL,
    status_code INTEGER,
    duration_ms {real} NOT NULL,
    error TEXT,
    response_excerpt TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS attempts_by_delivery ON attempts (delivery_id);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Endpoint(Struct, kw_only=True):
    id: str
    url: str
    description: str
    events: list[str]
    kind: str
    coalesce_seconds: float
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class OutboxEvent(Struct, frozen=True, kw_only=True):
    id: str
    type: str
    slug: str
    commit: str
    payload: bytes


class Attempt(Struct, kw_only=True):
    at: datetime
    status_code: int | None
    duration_ms: float
    error: str | None
    response_excerpt: str


class Delivery(Struct, kw_only=True):
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    slug: str
    commit: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    finished_at: datetime | None
    coalesced_into: str | None
    redelivery_of: str | None
    attempt_log: list[Attempt] = []


class Due(Struct, kw_only=True):
    """The next delivery of one endpoint, with what it takes to send it."""

    delivery_id: str
    endpoint: Endpoint
    secrets: list[str]
    event: OutboxEvent
    attempts: int
    coalescible: list[str]


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class _ClaimedElsewhere(Exception):
    pass


class WebhookStore:
    def __init__(self, database: Database, *, earlier: Path | None = None) -> None:
        """``earlier``: the SQLite file of an earlier version, whose endpoints and outbox a new
        database takes over."""
        self._db = database
        database.schema(_SCHEMA)
        if "claimed_until" not in database.columns("deliveries"):  # an outbox made before claims
            database.execute("ALTER TABLE deliveries ADD COLUMN claimed_until REAL")
        if earlier is not None:
            database.adopt(earlier, ("endpoints", "events", "deliveries", "attempts", "cursors"))

    @classmethod
    def open(cls, settings: Settings) -> WebhookStore:
        return cls(Database.for_store(settings, "webhooks"),
                   earlier=settings.data / "webhooks.sqlite3")

    def close(self) -> None:
        self._db.close()

    def _rows(self, sql: str, *args: Any) -> list[Row]:
        return self._db.rows(sql, *args)

    # Endpoints

    def create_endpoint(self, *, url: str, events: list[str], description: str, kind: str,
                        coalesce_seconds: float) -> tuple[Endpoint, str]:
        endpoint_id = "ep_" + secrets.token_hex(8)
        secret = new_secret()
        now = time.time()
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO endpoints (id, url, description, events, kind, coalesce_seconds, "
                "secret, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                endpoint_id, url, description, json.dumps(events), kind, coalesce_seconds,
                secret, now, now,
            )
        return self.endpoint(endpoint_id), secret

    def endpoints(self) -> list[Endpoint]:
        return [self._endpoint(row) for row in self._rows("SELECT * FROM endpoints ORDER BY created_at")]

    def endpoint(self, endpoint_id: str) -> Endpoint:
        rows = self._rows("SELECT * FROM endpoints WHERE id = ?", endpoint_id)
        if not rows:
            raise NotFound(f"no webhook endpoint with id `{endpoint_id}`", field="id")
        return self._endpoint(rows[0])

    def update_endpoint(self, endpoint_id: str, **changes: Any) -> Endpoint:
        self.endpoint(endpoint_id)
        columns = {"url", "description", "events", "kind", "coalesce_seconds", "enabled",
                   "disabled_reason"}
        values = {key: value for key, value in changes.items() if key in columns}
        if "events" in values:
            values["events"] = json.dumps(values["events"])
        if values.get("enabled"):
            values["disabled_reason"] = None
        if values:
            assignments = ", ".join(f"{column} = ?" for column in values)
            with self._db.transaction() as db:
                db.execute(f"UPDATE endpoints SET {assignments}, updated_at = ? WHERE id = ?",  # noqa: S608 - fixed column names
                           *values.values(), time.time(), endpoint_id)
        return self.endpoint(endpoint_id)

    def disable(self, endpoint_id: str, reason: str) -> None:
        """Stop sending to an endpoint; nothing to do if it was deleted meanwhile."""
        with self._db.transaction() as db:
            db.execute("UPDATE endpoints SET enabled = 0, disabled_reason = ?, updated_at = ? "
                       "WHERE id = ?", reason, time.time(), endpoint_id)

    def delete_endpoint(self, endpoint_id: str) -> None:
        self.endpoint(endpoint_id)
        with self._db.transaction() as db:
            db.execute("DELETE FROM endpoints WHERE id = ?", endpoint_id)
            db.execute("DELETE FROM attempts WHERE delivery_id IN "
                       "(SELECT id FROM deliveries WHERE endpoint_id = ?)", endpoint_id)
            db.execute("DELETE FROM deliveries WHERE endpoint_id = ?", endpoint_id)

    def rotate_secret(self, endpoint_id: str) -> str:
        """A new secret; the old one still signs (beside it) for a day, while receivers switch."""
        rows = self._rows("SELECT secret FROM endpoints WHERE id = ?", endpoint_id)
        if not rows:
            raise NotFound(f"no webhook endpoint with id `{endpoint_id}`", field="id")
        secret = new_secret()
        now = time.time()
        with self._db.transaction() as db:
            db.execute(
                "UPDATE endpoints SET secret = ?, previous_secret = ?, previous_secret_until = ?, "
                "updated_at = ? WHERE id = ?",
                secret, rows[0]["secret"], now + ROTATION_GRACE_SECONDS, now, endpoint_id,
            )
        return secret

    def secrets_in_use(self, endpoint_id: str, now: float) -> list[str]:
        rows = self._rows("SELECT secret, previous_secret, previous_secret_until FROM endpoints "
                          "WHERE id = ?", endpoint_id)
        if not rows:
            raise NotFound(f"no webhook endpoint with id `{endpoint_id}`", field="id")
        row = rows[0]
        found = [row["secret"]]
        if row["previous_secret"] and (row["previous_secret_until"] or 0) > now:
            found.append(row["previous_secret"])
        return found

    @staticmethod
    def _endpoint(row: Row) -> Endpoint:
        return Endpoint(
            id=row["id"], url=row["url"], description=row["description"],
            events=json.loads(row["events"]), kind=row["kind"],
            coalesce_seconds=row["coalesce_seconds"], enabled=bool(row["enabled"]),
            disabled_reason=row["disabled_reason"],
            created_at=datetime.fromtimestamp(row["created_at"], UTC),
            updated_at=datetime.fromtimestamp(row["updated_at"], UTC),
        )

    # Events and the outbox

    def cursor(self, name: str) -> str | None:
        rows = self._rows("SELECT value FROM cursors WHERE name = ?", name)
        return str(rows[0]["value"]) if rows else None

    def record(self, events: list[OutboxEvent], *, cursor: tuple[str, str] | None = None,
               only_endpoint: str | None = None) -> int:
        """Store events and queue a delivery for each subscribed endpoint, in one transaction.

        An event already stored (same id) is not queued again, unless ``only_endpoint`` asks to
        replay it to that endpoint. ``cursor`` records how far the source has been read.
        """
        queued = 0
        now = time.time()
        with self._db.transaction() as db:
            # A replay goes to its endpoint even while it is disabled.
            endpoints = [self._endpoint(row) for row in db.rows("SELECT * FROM endpoints")
                         if row["enabled"] or only_endpoint is not None]
            for event in events:
                inserted = db.execute(
                    "INSERT INTO events (id, type, slug, commit_sha, payload, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    event.id, event.type, event.slug, event.commit, event.payload, now)
                for endpoint in endpoints:
                    if only_endpoint is not None:
                        if endpoint.id != only_endpoint:
                            continue
                    elif not inserted:
                        continue
                    if event.type not in endpoint.events:
                        continue
                    self._queue(db, endpoint, event.id, now)
                    queued += 1
            if cursor is not None:
                db.execute("INSERT INTO cursors (name, value) VALUES (?, ?) ON CONFLICT (name) "
                           "DO UPDATE SET value = excluded.value", *cursor)
        return queued

    @staticmethod
    def _queue(db: Session, endpoint: Endpoint, event_id: str, now: float,
               redelivery_of: str | None = None) -> str:
        delivery_id = "dlv_" + secrets.token_hex(10)
        # A coalescing endpoint waits out its window, so that a burst becomes one call.
        first_attempt = now + endpoint.coalesce_seconds
        db.execute(
            "INSERT INTO deliveries (id, endpoint_id, event_id, status, next_attempt_at, "
            "created_at, redelivery_of) VALUES (?, ?, ?, 'pending', ?, ?, ?)",
            delivery_id, endpoint.id, event_id, first_attempt, now, redelivery_of,
        )
        return delivery_id

    def redeliver(self, endpoint_id: str, delivery_id: str) -> Delivery:
        endpoint = self.endpoint(endpoint_id)
        rows = self._rows("SELECT event_id FROM deliveries WHERE id = ? AND endpoint_id = ?",
                          delivery_id, endpoint_id)
        if not rows:
            raise NotFound(f"no delivery `{delivery_id}` for endpoint `{endpoint_id}`",
                           field="delivery_id")
        with self._db.transaction() as db:
            new_id = self._queue(db, endpoint, rows[0]["event_id"], time.time(), delivery_id)
        return self.delivery(new_id)

    # Deliveries

    def claim_due(self, now: float, busy: set[str], lease: float, limit: int | None = None
                  ) -> tuple[list[Due], float | None]:
        """The due heads of the queues, each claimed for ``lease`` seconds: several processes
        share the outbox, and a delivery one of them is sending is not due for the others. A
        claimer that dies leaves the delivery due again when its lease ends."""
        due, wake = self.next_due(now, busy)
        claimed: list[Due] = []
        for item in due:
            if limit is not None and len(claimed) >= limit:
                break  # no worker free for it: a claim would run out while it waits
            ids = [item.delivery_id, *item.coalescible]
            marks = ", ".join("?" for _ in ids)
            try:
                with self._db.transaction() as db:
                    taken = db.execute(
                        f"UPDATE deliveries SET claimed_until = ? WHERE id IN ({marks}) "  # noqa: S608
                        "AND status = 'pending' AND next_attempt_at <= ? "
                        "AND (claimed_until IS NULL OR claimed_until <= ?)",
                        now + lease, *ids, now, now)
                    if taken != len(ids):
                        raise _ClaimedElsewhere
            except _ClaimedElsewhere:
                continue  # another process got there first; its claim stands
            claimed.append(item)
        return claimed, wake

    def release(self, delivery_ids: list[str], *, at: float) -> None:
        """Give up a claim: the deliveries are due again at ``at``."""
        marks = ", ".join("?" for _ in delivery_ids)
        with self._db.transaction() as db:
            db.execute(f"UPDATE deliveries SET next_attempt_at = ?, claimed_until = NULL "  # noqa: S608
                       f"WHERE id IN ({marks}) AND status = 'pending'", at, *delivery_ids)

    def release_claims(self) -> int:
        """Give up every claim: for a server that starts alone, whatever is claimed was claimed
        by a process that is gone."""
        with self._db.transaction() as db:
            return db.execute("UPDATE deliveries SET claimed_until = NULL "
                              "WHERE claimed_until IS NOT NULL")

    def next_due(self, now: float, busy: set[str]) -> tuple[list[Due], float | None]:
        """The head of each enabled endpoint's queue if it is due; and when the next one is.

        Read in one snapshot, so that an endpoint deleted meanwhile is either wholly there or
        wholly gone. Each endpoint costs a bounded read, however long its queue: the head, and
        for a coalescing endpoint at most a batch of the deliveries waiting behind it.
        """
        due: list[Due] = []
        wake: float | None = None
        with self._db.snapshot():
            for endpoint in self.endpoints():
                if not endpoint.enabled or endpoint.id in busy:
                    continue
                heads = self._rows(_PENDING + " ORDER BY d.seq LIMIT 1", endpoint.id)
                if not heads:
                    continue
                chosen = heads[0]
                at = max(chosen["next_attempt_at"], chosen["claimed_until"] or 0.0)
                if at > now:  # not due yet, or being sent by another process
                    wake = at if wake is None else min(wake, at)
                    continue
                coalescible: list[str] = []
                if endpoint.coalesce_seconds > 0 and chosen["attempts"] == 0:
                    # A burst longer than a batch goes out as several calls, still in order,
                    # the last carrying the latest event. Only events of one type stand for
                    # each other: a comment never swallows a publication.
                    rows = self._rows(
                        "SELECT d.id, e.type FROM deliveries d JOIN events e ON e.id = "
                        "d.event_id WHERE d.endpoint_id = ? AND d.status = 'pending' AND "
                        "d.attempts = 0 ORDER BY d.seq LIMIT ?", endpoint.id, _COALESCE_BATCH)
                    fresh = []
                    for row in rows:
                        if row["type"] != rows[0]["type"]:
                            break
                        fresh.append(row["id"])
                    coalescible = fresh[:-1]
                    chosen = self._rows(_PENDING + " AND d.id = ?", endpoint.id, fresh[-1])[0]
                due.append(Due(
                    delivery_id=chosen["id"], endpoint=endpoint,
                    secrets=self.secrets_in_use(endpoint.id, now),
                    event=OutboxEvent(id=chosen["event_id"], type=chosen["type"],
                                      slug=chosen["slug"], commit=chosen["commit_sha"],
                                      payload=bytes(chosen["payload"])),
                    attempts=chosen["attempts"], coalescible=coalescible,
                ))
        return due, wake

    def finish_attempt(self, delivery_id: str, attempt: Attempt, *,
                       status: DeliveryStatus, next_attempt_at: float | None,
                       coalesced: list[str]) -> bool:
        """Record an attempt; False if the delivery is gone (its endpoint was deleted while the
        attempt was in flight) or was finished meanwhile (by another process whose claim had
        run out): then nothing is written, and a delivered delivery is never made pending."""
        now = time.time()
        with self._db.transaction() as db:
            if db.value("SELECT status FROM deliveries WHERE id = ?", delivery_id) != "pending":
                return False  # deleted with its endpoint, or finished by another process
            db.execute(
                "INSERT INTO attempts (delivery_id, at, status_code, duration_ms, error, "
                "response_excerpt) VALUES (?, ?, ?, ?, ?, ?)",
                delivery_id, attempt.at.timestamp(), attempt.status_code, attempt.duration_ms,
                attempt.error, attempt.response_excerpt,
            )
            finished = now if status != "pending" else None
            db.execute(
                "UPDATE deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?, "
                "finished_at = ?, claimed_until = NULL WHERE id = ?",
                status, next_attempt_at if next_attempt_at is not None else now, finished,
                delivery_id,
            )
            for other in coalesced:
                db.execute("UPDATE deliveries SET status = 'coalesced', coalesced_into = ?, "
                           "finished_at = ? WHERE id = ? AND status = 'pending'",
                           delivery_id, now, other)
        return True

    def deliveries(self, endpoint_id: str, limit: int = 100) -> list[Delivery]:
        self.endpoint(endpoint_id)
        rows = self._rows(
            "SELECT d.*, e.type, e.slug, e.commit_sha FROM deliveries d JOIN events e "
            "ON e.id = d.event_id WHERE d.endpoint_id = ? ORDER BY d.seq DESC LIMIT ?",
            endpoint_id, limit)
        return [self._delivery(row) for row in rows]

    def delivery(self, delivery_id: str) -> Delivery:
        rows = self._rows(
            "SELECT d.*, e.type, e.slug, e.commit_sha FROM deliveries d JOIN events e "
            "ON e.id = d.event_id WHERE d.id = ?", delivery_id)
        if not rows:
            raise NotFound(f"no delivery `{delivery_id}`", field="delivery_id")
        return self._delivery(rows[0])

    def _delivery(self, row: Row) -> Delivery:
        attempts = [
            Attempt(at=datetime.fromtimestamp(a["at"], UTC), status_code=a["status_code"],
                    duration_ms=a["duration_ms"], error=a["error"],
                    response_excerpt=a["response_excerpt"])
            for a in self._rows("SELECT * FROM attempts WHERE delivery_id = ? ORDER BY id",
                                row["id"])
        ]
        pending = row["status"] == "pending"
        return Delivery(
            id=row["id"], endpoint_id=row["endpoint_id"], event_id=row["event_id"],
            event_type=row["type"], slug=row["slug"], commit=row["commit_sha"],
            status=row["status"], attempts=row["attempts"],
            next_attempt_at=_time(row["next_attempt_at"]) if pending else None,
            created_at=datetime.fromtimestamp(row["created_at"], UTC),
            finished_at=_time(row["finished_at"]), coalesced_into=row["coalesced_into"],
            redelivery_of=row["redelivery_of"], attempt_log=attempts,
        )
