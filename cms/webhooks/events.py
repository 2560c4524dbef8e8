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

from ..editing.events import ACTION_TRAILER, AT_TRAILER, RELEASE_TRAILER, Committed, from_commit
from ..editing.workflows import Workflows
from ..errors import CmsError, InvalidContent
from ..identity.actors import Person
from ..reading.views import comparison_url
from ..store.documents import Documents
from .review_events import (
    COMMENT_CREATED,
    REVIEW_CURSOR,
    REVIEW_TYPES,
    SCHEDULED,
    CommentNote,
    ScheduleNote,
    now_seconds,
    review_kinds,
    unrecorded,
)
from .store import OutboxEvent, WebhookStore

PUBLISHED = "comparison.published"
UNPUBLISHED = "comparison.unpublished"
TRANSITIONED = "comparison.transitioned"
RELEASE_PUBLISHED = "release.published"
EVENT_TYPES = (PUBLISHED, UNPUBLISHED, TRANSITIONED, *REVIEW_TYPES, RELEASE_PUBLISHED)
MAIN_CURSOR = "main"
_MAIN_ACTIONS = {"publish": PUBLISHED, "unpublish": UNPUBLISHED}
_WALK_LIMIT = 100_000


class EventData(Struct, kw_only=True, omit_defaults=True):
    slug: str
    commit: str
    previous_commit: str | None
    url: str
    actor: Person
    approvers: list[str]
    action: str
    state: str | None
    # What a review event is about, when it is one.
    reviewers: list[str] | None = None
    comment: CommentNote | None = None
    schedule: ScheduleNote | None = None


class Payload(Struct, kw_only=True):
    type: str
    timestamp: datetime
    data: EventData


def event_id(kind: str, commit: str) -> str:
    """Stable for a given change: the receiver's idempotency key across retries and restarts."""
    return "msg_" + hashlib.sha256(f"{kind}:{commit}".encode()).hexdigest()[:32]


def outbox_event(kind: str, event: Committed, base_url: str,
                 key: str | None = None) -> OutboxEvent | None:
    """``key`` tells apart the events of one commit that publishes several comparisons."""
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
    return OutboxEvent(id=event_id(kind, key or event.commit), type=kind, slug=event.slug,
                       commit=event.commit, payload=msgspec.json.encode(payload))


class ReleaseData(Struct, kw_only=True):
    id: str
    title: str
    slugs: list[str]
    commit: str
    previous_commit: str | None
    url: str
    actor: Person
    approvers: list[str]


class ReleasePayload(Struct, kw_only=True):
    type: str
    timestamp: datetime
    data: ReleaseData


def release_events(event: Committed, release: str, base_url: str) -> list[OutboxEvent]:
    """A release's publication: each comparison's event, then the release's."""
    found = [outbox for slug in event.slugs
             if (outbox := outbox_event(PUBLISHED, msgspec.structs.replace(event, slugs=(slug,)),
                                        base_url, key=f"{event.commit}:{slug}"))]
    payload = ReleasePayload(type=RELEASE_PUBLISHED, timestamp=event.at.astimezone(UTC),
                             data=ReleaseData(
        # The publication's body starts with the release's title (see editing.releases).
        id=release, title=event.note.split("\n", 1)[0].strip(), slugs=list(event.slugs),
        commit=event.commit, previous_commit=event.previous,
        url=f"{base_url}/api/releases/{release}", actor=event.actor,
        approvers=list(event.approvers)))
    found.append(OutboxEvent(id=event_id(RELEASE_PUBLISHED, event.commit), type=RELEASE_PUBLISHED,
                             slug="", commit=event.commit, payload=msgspec.json.encode(payload)))
    return found


def review_event(kind: str, event: Committed, base_url: str,
                 key: str | None = None) -> OutboxEvent | None:
    if not event.slug:
        return None
    values = [(key.lower(), value) for key, value in event.extra]
    if event.action == "assign" and not any(key == "cms-assignee" for key, _ in values):
        return None  # the review asked of nobody: no request
    comment = event.extra_value("Cms-Comment")
    at = event.extra_value(AT_TRAILER)
    action = event.extra_value(ACTION_TRAILER)
    data = EventData(
        slug=event.slug, commit=event.commit, previous_commit=event.previous,
        url=f"{base_url}/api/drafts/{event.slug}", actor=event.actor,
        approvers=list(event.approvers), action=event.action, state=event.state,
        reviewers=[value for key, value in values if key == "cms-assignee"]
        if event.action == "assign" else None,
        comment=CommentNote(id=comment, body=event.note, field=event.extra_value("Cms-Field"),
                            reply_to=event.extra_value("Cms-Reply-To"))
        if kind == COMMENT_CREATED and comment else None,
        schedule=ScheduleNote(action=action, at=at) if kind == SCHEDULED and at and action
        else None,
    )
    payload = Payload(type=kind, timestamp=event.at.astimezone(UTC), data=data)
    return OutboxEvent(id=event_id(kind, key or event.commit), type=kind, slug=event.slug,
                       commit=event.commit, payload=msgspec.json.encode(payload))


def main_events(events: list[Committed], base_url: str) -> list[OutboxEvent]:
    found: list[OutboxEvent] = []
    for event in events:
        kind = _MAIN_ACTIONS.get(event.action)
        release = event.extra_value(RELEASE_TRAILER)
        if kind == PUBLISHED and release is not None:
            found += release_events(event, release, base_url)
            continue
        outbox = outbox_event(kind, event, base_url) if kind else None
        if outbox is not None:
            found.append(outbox)
    return found


class Recorder:
    """Turns what happens on main, and optionally every transition, into outbox events."""

    def __init__(self, documents: Documents, store: WebhookStore, base_url: str,
                 workflows: Workflows) -> None:
        self.documents = documents
        self.store = store
        self.base_url = base_url
        self.workflows = workflows
        self._kinds: tuple[Workflows, frozenset[str], dict[str, str]] | None = None

    def kinds(self) -> tuple[frozenset[str], dict[str, str]]:
        """The transitions and the review event of each action, over the definitions in force
        now: a push of new ones is followed from the next event."""
        current = self.workflows.in_force()
        if self._kinds is None or self._kinds[0] is not current:
            self._kinds = (current, frozenset(current.transitions()), review_kinds(current))
        return self._kinds[1], self._kinds[2]

    def reviews(self, event: Committed) -> list[OutboxEvent]:
        """The review event of a commit, one per comparison it names (a release's schedule
        names several)."""
        kind = self.kinds()[1].get(event.action)
        if kind is None:
            return []
        found = [review_event(kind, msgspec.structs.replace(event, slugs=(slug,)), self.base_url,
                              key=None if len(event.slugs) == 1 else f"{event.commit}:{slug}")
                 for slug in event.slugs]
        return [one for one in found if one is not None]

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
        if event.action in self.kinds()[0]:
            # A release's publication is a transition of each of its comparisons.
            transitions = [outbox_event(TRANSITIONED, msgspec.structs.replace(event, slugs=(slug,)),
                                        self.base_url, key=None if len(event.slugs) == 1
                                        else f"{event.commit}:{slug}") for slug in event.slugs]
            queued += self.store.record([one for one in transitions if one])
        reviews = self.reviews(event)
        queued += self.store.record(reviews) if reviews else 0
        return queued

    def catch_up_reviews(self) -> int:
        """Events for review steps committed since the last look and not recorded."""
        cursor = self.store.cursor(REVIEW_CURSOR)
        looked = now_seconds()
        if cursor is None or not cursor.isdigit():
            # As for main: a new outbox starts at the present.
            return self.store.record([], cursor=(REVIEW_CURSOR, str(looked)))
        found = [review for event in unrecorded(self.documents, int(cursor))
                 for review in self.reviews(event)]
        return self.store.record(found, cursor=(REVIEW_CURSOR, str(looked)))

    def catch_up(self) -> int:
        """Events for what main gained while this process was not recording."""
        head = self.documents.main_head()
        cursor = self.store.cursor(MAIN_CURSOR)
        if head is None or cursor == head:
            return 0
        if cursor is None:
            # A new outbox starts at the present; earlier publications can be replayed on request.
            return self.store.record([], cursor=(MAIN_CURSOR, head))
        if self._behind(head, cursor):
            return 0  # an instance further on has recorded all this clone holds
        try:
            events = self.publications(cursor, head)
        except InvalidContent:
            # Main was rewritten under the outbox; the new head is all that can be vouched for.
            events = [from_commit(self.documents.repo.read_commit(head), on_main=True)]
        return self.store.record(main_events(events, self.base_url), cursor=(MAIN_CURSOR, head))

    def _behind(self, head: str, cursor: str) -> bool:
        """Whether main here is behind the commit the outbox was brought to (by an instance
        whose clone has fetched more): then there is nothing to record, and the cursor stays."""
        repo = self.documents.repo
        if repo.upstream is None:
            return False
        if repo.has_object(cursor):
            return self.documents.is_ancestor(head, cursor)
        # Not fetched here yet, or gone from the upstream too (main rewritten there): only
        # the latter lets this clone, when it holds all the upstream has, record from its head.
        try:
            return repo.upstream.refs() != repo.local_refs()
        except CmsError:
            return True

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
