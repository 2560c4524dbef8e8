"""What a write tells the rest of the system: one typed event per commit.

The trailers of every CMS commit are written (``trailers``) and read back (``from_commit``) here.
The commit pipeline emits the event after the refs moved; listeners (the published index, the webhook
outbox, the audit cache, repository maintenance, the vote ledger) are wired once where the app is
built. The same event can be read back from a commit of another process, so that listeners catch
up on what they did not see happen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from msgspec import Struct

from ..identity.actors import Person
from ..store.layout import Layout
from ..store.repository import Commit

log = logging.getLogger("cms")

# Actions and trailers of schedules and releases, which auditors and listeners read too.
SCHEDULE = "schedule"
CANCEL = "cancel_schedule"
AT_TRAILER = "Cms-Scheduled-At"
ACTION_TRAILER = "Cms-Scheduled-Action"
RUN_TRAILER = "Cms-Schedule"  # on the publication a schedule made: the schedule's commit
RELEASE_TRAILER = "Cms-Release"
DEFINITIONS = "workflows"  # the action of a change of the workflow definitions in force


class Committed(Struct, frozen=True, kw_only=True, tag="content.committed", tag_field="event"):
    action: str  # the Cms-Action trailer: create, edit, submit, approve, publish, votes…
    slugs: tuple[str, ...]
    state: str | None
    commit: str
    previous: str | None  # the commit's first parent: main before, when main moved
    main_moved: bool  # main now points at ``commit``
    actor: Person
    approvers: tuple[str, ...]
    at: datetime
    # A fold of votes names the vote database it read (each CMS_DATA has its own) and the last
    # vote of it that it holds, so that folding stays idempotent.
    votes_through: int | None = None
    votes_ledger: str | None = None
    # The commit's body (a comment's text, say) and the trailers of the change's own (a
    # comment's id, a schedule's time), for listeners that tell people what happened.
    note: str = ""
    extra: tuple[tuple[str, str], ...] = ()

    def extra_value(self, key: str) -> str | None:
        return next((value for name, value in self.extra if name == key), None)

    @property
    def slug(self) -> str:
        return self.slugs[0] if self.slugs else ""


Listener = Callable[[Committed], None]


class Listeners:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(self, event: Committed) -> None:
        for listener in self._listeners:
            # The commit has landed whatever a listener does; a listener that fails (a full
            # disk under the webhook outbox, say) catches up from git on its next call, so it
            # must not turn a completed write into an error for the editor.
            try:
                listener(event)
            except Exception:
                log.exception("a listener failed after a commit; it will catch up from git")


STANDARD_TRAILERS = frozenset({"cms-action", "cms-state", "cms-document", "approved-by",
                       "cms-votes-through", "cms-votes-ledger"})


def trailers(*, action: str, state: str, slugs: tuple[str, ...], approvers: tuple[str, ...],
             votes_through: int | None, votes_ledger: str | None) -> list[tuple[str, str]]:
    """The trailers of a CMS commit: what ``from_commit`` reads back."""
    found = [("Cms-Action", action), ("Cms-State", state)]
    found += [("Cms-Document", Layout.document(slug)) for slug in slugs]
    found += [("Approved-by", person) for person in approvers]
    if votes_through is not None:
        found.append(("Cms-Votes-Through", str(votes_through)))
    if votes_ledger is not None:
        found.append(("Cms-Votes-Ledger", votes_ledger))
    return found


def from_commit(commit: Commit, *, on_main: bool) -> Committed:
    """The event a commit stands for, read back from its trailers."""
    message = commit.message
    through = message.first("Cms-Votes-Through")
    return Committed(
        action=message.first("Cms-Action") or "",
        slugs=tuple(slug for value in message.values("Cms-Document")
                    if (slug := Layout.slug_of_document(value)) is not None),
        state=message.first("Cms-State"), commit=commit.oid,
        previous=commit.parents[0] if commit.parents else None, main_moved=on_main,
        actor=Person(name=commit.author.name, email=commit.author.email),
        approvers=tuple(message.values("Approved-by")), at=commit.committer.at.astimezone(UTC),
        votes_through=int(through) if through and through.isdigit() else None,
        votes_ledger=message.first("Cms-Votes-Ledger"), note=message.comment,
        extra=tuple((key, value) for key, value in message.trailers
                    if key.lower() not in STANDARD_TRAILERS),
    )


def now() -> datetime:
    """Commit times have whole seconds; so do events, read live or back from git."""
    return datetime.now(UTC).replace(microsecond=0)


def format_at(at: datetime) -> str:
    at = at.astimezone(UTC)
    return f"{at.year:04d}-{at:%m-%dT%H:%M:%S}Z"


def parse_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
