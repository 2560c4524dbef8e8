"""Audit across the repository: the log of published verdict changes, and tamper evidence.

The verdict log follows main's first-parent history (the publication log) incrementally: each
publication is compared once with what main held before it, and the entries are kept in a cache
file keyed by the commit they reach, so a request never re-reads the whole history. Verification,
on the other hand, deliberately reads git and nothing else.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from pathlib import Path

import msgspec
from msgspec import Struct

from ..content.diff import compare
from ..editing.events import Committed, from_commit
from ..identity.actors import Person
from ..store.documents import Documents
from ..store.repository import Commit

_CACHE_VERSION = 2


class VerdictChange(Struct, frozen=True, kw_only=True):
    commit: str
    time: datetime
    actor: Person
    approvers: list[str]
    slug: str
    title: str
    tool: str
    tool_name: str
    reviewer: str | None
    kind: str  # "verdict" or "panel_ship"
    before: str | float | None
    after: str | float | None
    before_label: str | None
    after_label: str | None
    # The comparison's first publication: its verdicts appear rather than change.
    first: bool = False


class _Cache(Struct):
    version: int
    head: str
    entries: list[VerdictChange]


class VerdictLog:
    def __init__(self, documents: Documents, cache: Path) -> None:
        self.documents = documents
        self.cache = cache
        self.head: str | None = None
        self.entries: list[VerdictChange] = []
        self._lock = threading.Lock()
        self._dirty = False
        self._load()

    def changes(self, *, since: datetime | None = None, until: datetime | None = None,
                tool: str | None = None, slug: str | None = None) -> list[VerdictChange]:
        self.refresh()
        if self._dirty:
            with self._lock:
                self._save()
                self._dirty = False
        needle = tool.casefold() if tool else None
        return [
            entry for entry in self.entries
            if (since is None or entry.time >= since)
            and (until is None or entry.time <= until)
            and (slug is None or entry.slug == slug)
            and (needle is None or needle == entry.tool or needle in entry.tool_name.casefold())
        ]

    def refresh(self) -> None:
        """Catch up with publications this process did not see happen (another process's)."""
        head = self.documents.main_head()
        if head is None or head == self.head:
            return
        with self._lock:
            if head == self.head:
                return
            commits, connected = _first_parents(self.documents, head, self.head)
            entries = self.entries if connected else []
            added = [entry for commit in commits
                     for entry in self._publication(from_commit(commit, on_main=True))]
            self.entries = entries + added
            self.head = head
            self._save()
            self._dirty = False

    def on_committed(self, event: Committed) -> None:
        if not event.main_moved:
            return
        with self._lock:
            if self.head is None or self.head != event.previous:
                return  # not following main from here: the next read catches up from git
            self.entries = self.entries + self._publication(event)
            self.head = event.commit
            self._dirty = True  # written with the next read, not on the editor's time

    def _publication(self, event: Committed) -> list[VerdictChange]:
        if event.action != "publish" or event.previous is None:
            return []
        # A release publishes several comparisons in one commit.
        return [change for slug in event.slugs for change in self._changes(event, slug)]

    def _changes(self, event: Committed, slug: str) -> list[VerdictChange]:
        assert event.previous is not None
        repo = self.documents.repo
        after = self.documents.in_tree(repo.read_commit(event.commit).tree, slug)
        if after is None:
            return []
        before = self.documents.in_tree(repo.read_commit(event.previous).tree, slug)
        names = {tool.id: tool.name for tool in after.tools}
        return [
            VerdictChange(
                commit=event.commit, time=event.at, actor=event.actor,
                approvers=list(event.approvers), slug=slug, title=after.title,
                tool=change.tool or "", tool_name=names.get(change.tool or "", change.tool or ""),
                reviewer=change.reviewer, kind=change.kind,
                before=_scalar(change.before), after=_scalar(change.after),
                before_label=change.before_label, after_label=change.after_label,
                first=before is None,
            )
            for change in compare(before, after).verdict_changes
        ]

    def _load(self) -> None:
        try:
            cache = msgspec.json.decode(self.cache.read_bytes(), type=_Cache)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return
        if cache.version == _CACHE_VERSION:
            self.head, self.entries = cache.head, cache.entries

    def _save(self) -> None:
        if self.head is None:
            return
        data = msgspec.json.encode(_Cache(version=_CACHE_VERSION, head=self.head,
                                          entries=self.entries))
        try:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            temp = self.cache.with_suffix(".tmp")
            temp.write_bytes(data)
            os.replace(temp, self.cache)
        except OSError:
            pass  # a cache: the next refresh rebuilds what it could not keep


def _first_parents(documents: Documents, head: str, stop: str | None
                   ) -> tuple[list[Commit], bool]:
    """Commits from ``head`` back to ``stop`` (excluded), oldest first; whether ``stop`` was met."""
    found = list(documents.publication_log(head, stop=stop))
    reached = found[-1].parents[0] if found and found[-1].parents else None
    found.reverse()
    return found, stop is not None and (reached == stop or head == stop)


def _scalar(value: str | float | int | None) -> str | float | None:
    return float(value) if isinstance(value, int) else value
