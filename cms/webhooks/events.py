"""Webhook events, derived from commits.

Publications and unpublications are read from the first-parent history of main, which is the
publication log: git itself is the journal. After every move of main the new commits become
events before the editor's request returns, and at start-up the history since the last recorded
commit is read again, so a crash between a commit and its event loses nothing.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import msgspec
from msgspec import Struct

from ..editing.documents import Documents
from ..errors import BadRequest
from ..store.repository import Commit
from .store import NewEvent, WebhookStore

PUBLISHED = "comparison.published"
UNPUBLISHED = "comparison.unpublished"
TRANSITIONED = "comparison.transitioned"
EVENT_TYPES = (PUBLISHED, UNPUBLISHED, TRANSITIONED)
MAIN_CURSOR = "main"
_MAIN_ACTIONS = {"publish": PUBLISHED, "unpublish": UNPUBLISHED}
_WALK_LIMIT = 100_000


class Actor(Struct):
    name: str
    email: str


class EventData(Struct, kw_only=True):
    slug: str
    commit: str
    previous_commit: str | None
    url: str
    actor: Actor
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


def commit_event(kind: str, commit: Commit, base_url: str) -> NewEvent | None:
    document = commit.message.first("Cms-Document") or ""
    if not document.startswith("comparisons/"):
        return None
    slug = document.removeprefix("comparisons/")
    payload = Payload(
        type=kind,
        timestamp=commit.committer.at.astimezone(UTC),
        data=EventData(
            slug=slug,
            commit=commit.oid,
            previous_commit=commit.parents[0] if commit.parents else None,
            url=f"{base_url}/api/comparisons/{slug}",
            actor=Actor(name=commit.author.name, email=commit.author.email),
            approvers=commit.message.values("Approved-by"),
            action=commit.message.first("Cms-Action") or "",
            state=commit.message.first("Cms-State"),
        ),
    )
    return NewEvent(id=event_id(kind, commit.oid), type=kind, slug=slug, commit=commit.oid,
                    payload=msgspec.json.encode(payload))


def publications(documents: Documents, since: str | None, until: str) -> list[Commit]:
    """First-parent commits of main after ``since`` up to ``until``, oldest first."""
    found: list[Commit] = []
    current: str | None = until
    while current is not None and current != since and len(found) < _WALK_LIMIT:
        commit = documents.repo.read_commit(current)
        found.append(commit)
        current = commit.parents[0] if commit.parents else None
    if since is not None and current != since:
        raise BadRequest(f"commit {since} is not in the publication log of main", field="since")
    found.reverse()
    return found


def main_events(documents: Documents, commits: list[Commit]) -> list[NewEvent]:
    events: list[NewEvent] = []
    for commit in commits:
        kind = _MAIN_ACTIONS.get(commit.message.first("Cms-Action") or "")
        event = commit_event(kind, commit, documents.settings.base_url) if kind else None
        if event is not None:
            events.append(event)
    return events


def record_main(documents: Documents, store: WebhookStore, old: str | None, new: str) -> int:
    """Record the publication events between two heads of main, and move the cursor to ``new``."""
    since = store.cursor(MAIN_CURSOR) or old
    try:
        commits = publications(documents, since, new)
    except BadRequest:
        # Main was rewritten under the outbox; the new head is all that can be vouched for.
        commits = [documents.repo.read_commit(new)]
    events = main_events(documents, commits)
    return store.record(events, cursor=(MAIN_CURSOR, new))


def catch_up(documents: Documents, store: WebhookStore) -> int:
    """At start-up: events for what main gained while no server was recording."""
    head = documents.main_head()
    cursor = store.cursor(MAIN_CURSOR)
    if head is None or cursor == head:
        return 0
    if cursor is None:
        # A new outbox starts at the present; earlier publications can be replayed on request.
        return store.record([], cursor=(MAIN_CURSOR, head))
    return record_main(documents, store, cursor, head)


def transition_event(documents: Documents, store: WebhookStore, commit_id: str) -> int:
    """Any workflow transition, for endpoints that opted in to ``comparison.transitioned``."""
    commit = documents.repo.read_commit(commit_id)
    if (commit.message.first("Cms-Action") or "") not in documents.workflow.transitions:
        return 0
    event = commit_event(TRANSITIONED, commit, documents.settings.base_url)
    return store.record([event]) if event else 0


def replay(documents: Documents, store: WebhookStore, endpoint_id: str, since: str) -> int:
    """Queue again, for one endpoint, every publication event after commit ``since``."""
    head = documents.main_head()
    if head is None:
        return 0
    events = main_events(documents, publications(documents, since, head))
    return store.record(events, only_endpoint=endpoint_id)
