"""The history of one comparison, read from git: who did what to it, when, and who approved."""

from __future__ import annotations

from datetime import datetime

from msgspec import Struct

from ..identity.actors import Person
from ..store.documents import Documents
from ..store.layout import DISCARDED_PREFIX
from ..store.messages import parse_message

_FIELD = "\x1f"
_RECORD = "\x1e"
_FORMAT = _FIELD.join(["%H", "%P", "%an", "%ae", "%aI", "%cn", "%B"]) + _RECORD


class HistoryEntry(Struct, frozen=True):
    sha: str
    time: datetime
    actor: Person
    action: str
    state: str | None
    approvers: list[str]
    comment: str
    subject: str
    parents: list[str]
    committer: str


class HistoryFilter(Struct, frozen=True, kw_only=True):
    actions: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    def accepts(self, entry: HistoryEntry) -> bool:
        if self.actions and entry.action not in self.actions:
            return False
        if self.since is not None and entry.time < self.since:
            return False
        return self.until is None or entry.time <= self.until


def history(documents: Documents, slug: str,
            only: HistoryFilter | None = None) -> list[HistoryEntry]:
    """Every commit on main or on the comparison's branches that changed its file, newest first."""
    refs = [documents.layout.main_ref, documents.layout.branch(slug)]
    refs += list(documents.repo.refs.under(f"{DISCARDED_PREFIX}{slug}/"))
    # The commits, not the ref names: a branch merged or discarded meanwhile is then no error.
    heads = list(dict.fromkeys(head for ref in refs if (head := documents.repo.refs.read(ref))))
    if not heads:
        return []
    output = documents.repo.git(
        "log", f"--format={_FORMAT}", "--date-order", *heads, "--", documents.layout.path(slug)
    )
    entries = [_entry(record) for record in output.split(_RECORD) if record.strip()]
    return [entry for entry in entries if only is None or only.accepts(entry)]


def publications(documents: Documents, slug: str) -> list[HistoryEntry]:
    """The commits that put a version of the comparison on main, newest first."""
    return history(documents, slug, HistoryFilter(actions=frozenset({"publish", "seed"})))


def _entry(record: str) -> HistoryEntry:
    sha, parents, name, email, when, committer, body = record.strip("\n").split(_FIELD, 6)
    message = parse_message(body)
    return HistoryEntry(
        sha=sha,
        time=datetime.fromisoformat(when),
        actor=Person(name=name, email=email),
        action=message.first("Cms-Action") or "import",
        state=message.first("Cms-State"),
        approvers=message.values("Approved-by"),
        comment=message.comment,
        subject=message.subject,
        parents=parents.split(),
        committer=committer,
    )
