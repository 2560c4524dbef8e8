"""The history of one comparison, read from git: who did what to it, when, and who approved."""

from __future__ import annotations

from datetime import datetime

from msgspec import Struct

from .documents import DISCARDED_PREFIX, Documents
from .gitstore.messages import parse_message

_FIELD = "\x1f"
_RECORD = "\x1e"
_FORMAT = _FIELD.join(["%H", "%P", "%an", "%ae", "%aI", "%cn", "%B"]) + _RECORD


class Person(Struct, frozen=True):
    name: str
    email: str


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


def history(documents: Documents, slug: str) -> list[HistoryEntry]:
    """Every commit on main or on the comparison's branches that changed its file, newest first."""
    refs = [documents.main_ref, documents.branch(slug)]
    refs += list(documents.repo.refs.under(f"{DISCARDED_PREFIX}{slug}/"))
    existing = [ref for ref in refs if documents.repo.refs.read(ref) is not None]
    if not existing:
        return []
    output = documents.repo.git(
        "log", f"--format={_FORMAT}", "--date-order", *existing, "--", documents.path(slug)
    )
    return [_entry(record) for record in output.split(_RECORD) if record.strip()]


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
