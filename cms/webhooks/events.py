"""Webhook events, made from the commit pipeline's events.

Publications and unpublications follow the first-parent history of main, which is the
publication log: git itself is the journal. This process's own writes arrive as events before
the editor's request returns; commits made elsewhere (another process, or before a crash) are read
back from that history since the last recorded commit, so nothing is lost.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import msgspec
from msgspec import Struct

from ..editing.events import Committed, from_commit
from ..errors import InvalidContent
from ..identity.actors import Person
from ..reading.views import comparison_url
from ..store.documents import Documents
from .store import OutboxEvent, WebhookStore

PUBLISHED = "comparison.published"
UNPUBLISHED = "comparison.unpublished"
TRANSITIONED = "comparison.transitioned"
EVENT_TYPES = (PUBLISHED, UNPUBLISHED, TRANSITIONED)
MAIN_CURSOR = "main"
_MAIN_ACTIONS = {"publish": PUBLISHED, "unpublish": UNPUBLISHED}
_WALK_LIMIT = 100_000


class EventData(Struct, kw_only=True):
    slug: str
    commit: str
    previous_commit: str | None
    url: str
    actor: Person
    approvers: list[str]
    action: str
    state: str | None


class Payload(Struct, kw_only=True):
    type: str
    timestamp: datetime
    data: EventData


def event_id(kind: str, commit: str) -> str:
    """Stable for a given change: the receiver's idempotency key across retries and restarts."""
    return "msg_" + hashlib.sha256(f"{kind}:{commit}".encode()).hexdigest()[:32]


def outbox_event(kind: str, event: Committed, base_url: str) -> OutboxEvent | None:
    if not event.slug:
        return None
    payload = Payload(
        type=kind,
        timestamp=event.at.astimezone(UTC),
        data=EventData(
            slug=event.slug, commit=event.commit, previous_commit=event.previous,
            url=comparison_url(base_url, event.slug), actor=event.actor,
            approvers=list(event.approvers), action=event.action, state=event.state,
        ),
    )
    return OutboxEvent(id=event_id(kind, event.commit), type=kind, slug=event.slug,
                       commit=event.commit, payload=msgspec.json.encode(payload))


def main_events(events: list[Committed], base_url: str) -> list[OutboxEvent]:
    found: list[OutboxEvent] = []
    for event in events:
        kind = _MAIN_ACTIONS.get(event.action)
        outbox = outbox_event(kind, event, base_url) if kind else None
        if outbox is not None:
            found.append(outbox)
    return found


class Recorder:
    """Turns what happens on main, and optionally every transition, into outbox events."""

    def __init__(self, documents: Documents, store: WebhookStore, base_url: str,
                 transitions: frozenset[str]) -> None:
        self.documents = documents
        self.store = store
        self.base_url = base_url
        self.transitions = transitions

    def committed(self, event: Committed) -> int:
        """Record a commit of this process; main's history is read only when the outbox's
        cursor shows that something landed on main before it that was not recorded yet."""
        queued = 0
        if event.main_moved:
            if self.store.cursor(MAIN_CURSOR) in (None, event.previous):
                queued += self.store.record(main_events([event], self.base_url),
                                            cursor=(MAIN_CURSOR, event.commit))
            else:
                queued += self.catch_up()
        if event.action in self.transitions:
            transition = outbox_event(TRANSITIONED, event, self.base_url)
            queued += self.store.record([transition]) if transition else 0
        return queued

    def catch_up(self) -> int:
        """Events for what main gained while this process was not recording."""
        head = self.documents.main_head()
        cursor = self.store.cursor(MAIN_CURSOR)
        if head is None or cursor == head:
            return 0
        if cursor is None:
            # A new outbox starts at the present; earlier publications can be replayed on request.
            return self.store.record([], cursor=(MAIN_CURSOR, head))
        try:
            events = self.publications(cursor, head)
        except InvalidContent:
            # Main was rewritten under the outbox; the new head is all that can be vouched for.
            events = [from_commit(self.documents.repo.read_commit(head), on_main=True)]
        return self.store.record(main_events(events, self.base_url), cursor=(MAIN_CURSOR, head))

    def replay(self, endpoint_id: str, since: str) -> int:
        """Queue again, for one endpoint, every publication event after commit ``since``."""
        head = self.documents.main_head()
        if head is None:
            return 0
        events = main_events(self.publications(since, head), self.base_url)
        return self.store.record(events, only_endpoint=endpoint_id)

    def publications(self, since: str | None, until: str) -> list[Committed]:
        """First-parent commits of main after ``since`` up to ``until``, oldest first."""
        commits = list(self.documents.publication_log(until, stop=since, limit=_WALK_LIMIT))
        reached = commits[-1].parents[0] if commits and commits[-1].parents else None
        if since is not None and since != until and reached != since:
            raise InvalidContent(f"commit {since} is not in the publication log of main",
                             field="since")
        return [from_commit(commit, on_main=True) for commit in reversed(commits)]
