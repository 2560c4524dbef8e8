"""The in-memory index of published comparisons that frontends read from.

It is built once from the main branch's tree and then follows main incrementally: when main moves,
only the files that differ between the old and the new tree are decoded again.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Literal

import msgspec
from msgspec import Struct

from .documents import Documents
from .errors import BadRequest, CmsError
from .gitstore.repository import changed_files
from .model import Comparison, Tool, panel_ship, panel_verdict
from .render import render_cached

log = logging.getLogger("cms")

SortKey = Literal["published", "-published", "title", "-title", "panel_ship", "-panel_ship"]
RECHECK_SECONDS = 0.05
SORT_KEYS: tuple[str, ...] = SortKey.__args__  # type: ignore[attr-defined]


class Entry(Struct, frozen=True):
    comparison: Comparison
    blob: str

    @property
    def slug(self) -> str:
        return self.comparison.slug

    def html(self) -> str:
        return render_cached(self.blob, self.comparison.body)


class Query(Struct, frozen=True, kw_only=True):
    q: str | None = None
    tool: str | None = None
    category: str | None = None
    verdict: Literal["ship", "skip", "split"] | None = None
    sort: SortKey = "-published"
    cursor: str | None = None
    limit: int = 20


class Page(Struct, frozen=True):
    items: list[Entry]
    next_cursor: str | None
    total: int


class _Snapshot(Struct):
    version: int
    head: str
    tree: str
    entries: list[Entry]


_SNAPSHOT_VERSION = 1


class PublishedIndex:
    def __init__(self, documents: Documents, snapshot: Path | None = None) -> None:
        self.documents = documents
        # Decoding every file is most of a cold start; a snapshot keyed by the tree it was made
        # from lets a restart decode only what changed since.
        self.snapshot = snapshot
        self.head: str | None = None
        self.tree: str | None = None
        self._checked_at = float("-inf")
        # The entries and the sort orders made from them, swapped together as one value.
        self._view: tuple[dict[str, Entry], dict[str, list[Entry]]] = ({}, {})
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            self._restore()
            head = self.documents.main_head()
            changed = head != self.head
            self._follow(head)
            if changed:
                self.save()

    def save(self) -> None:
        """Write the snapshot; a cache, so failing to write it costs only the next start."""
        if self.snapshot is None or self.head is None or self.tree is None:
            return
        temp = self.snapshot.with_suffix(".tmp")
        try:
            data = msgspec.msgpack.encode(_Snapshot(version=_SNAPSHOT_VERSION, head=self.head,
                                                    tree=self.tree,
                                                    entries=list(self._entries.values())))
            self.snapshot.parent.mkdir(parents=True, exist_ok=True)
            temp.write_bytes(data)
            os.replace(temp, self.snapshot)
        except Exception:
            log.exception("could not write the index snapshot; the next start decodes more")
            temp.unlink(missing_ok=True)

    def _restore(self) -> None:
        if self.snapshot is None:
            return
        try:
            snapshot = msgspec.msgpack.decode(self.snapshot.read_bytes(), type=_Snapshot)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return
        if snapshot.version != _SNAPSHOT_VERSION:
            return
        try:
            self.documents.repo.read_tree(snapshot.tree)
        except CmsError:
            return  # a snapshot of another repository
        self._view = ({entry.slug: entry for entry in snapshot.entries}, {})
        self.head, self.tree = snapshot.head, snapshot.tree

    def refresh(self, *, now: float | None = None) -> None:
        """Catch up with main if another process sharing the repository moved it.

        This process's own commits arrive through ``on_main_moved`` at once; looking at the
        ref for other writers' commits is done at most every ``RECHECK_SECONDS``, since a read
        of the ref file on every request costs more than the rest of a cached read.
        """
        moment = time.monotonic() if now is None else now
        if moment - self._checked_at < RECHECK_SECONDS:
            return
        self._checked_at = moment
        head = self.documents.main_head()
        if head != self.head:
            with self._lock:
                self._follow(self.documents.main_head())

    def on_main_moved(self, old: str | None, new: str) -> None:
        with self._lock:
            self._follow(new)

    def _follow(self, head: str | None) -> None:
        if head == self.head:
            return
        repo = self.documents.repo
        tree = repo.read_commit(head).tree if head else None
        changes = changed_files(repo, self.tree, tree, self.documents.folder())
        entries = dict(self._entries)
        for path, blob in changes.items():
            slug = path.rsplit("/", 1)[-1].removesuffix(".md")
            if blob is None:
                entries.pop(slug, None)
            elif path == self.documents.path(slug):
                entries[slug] = Entry(comparison=self.documents.decode_blob(blob), blob=blob)
        # Readers take a reference to the whole dict, so swapping it is atomic for them.
        self._view = (entries, {})
        self.head, self.tree = head, tree

    # Reading

    @property
    def _entries(self) -> dict[str, Entry]:
        return self._view[0]

    def get(self, slug: str) -> Entry | None:
        self.refresh()
        return self._entries.get(slug)

    def __len__(self) -> int:
        return len(self._entries)

    def query(self, query: Query) -> Page:
        self.refresh()
        ordered = self._ordered(query.sort)
        matches = [entry for entry in ordered if _matches(entry.comparison, query)]
        start = 0
        if query.cursor:
            after = _decode_cursor(query.cursor, query.sort)
            keyed = _sort_key(query.sort)
            descending = query.sort.startswith("-")
            for position, entry in enumerate(matches):
                key = (keyed(entry), entry.slug)
                if (key < after) if descending else (key > after):
                    start = position
                    break
            else:
                start = len(matches)
        items = matches[start : start + query.limit]
        more = start + query.limit < len(matches)
        cursor = _encode_cursor(items[-1], query.sort) if more and items else None
        return Page(items=items, next_cursor=cursor, total=len(matches))

    def _ordered(self, sort: str) -> list[Entry]:
        # Take the entries and their sort cache together: if main moves while this sorts, the
        # result is stored with the entries it was made from, never with newer ones.
        entries, orders = self._view
        cached = orders.get(sort)
        if cached is None:
            keyed = _sort_key(sort)
            cached = sorted(
                entries.values(),
                key=lambda entry: (keyed(entry), entry.slug),
                reverse=sort.startswith("-"),
            )
            orders[sort] = cached
        return cached


def _matches(comparison: Comparison, query: Query) -> bool:
    tools: Iterable[Tool] = comparison.tools
    if query.tool:
        needle = query.tool.casefold()
        tools = [t for t in comparison.tools if t.id == needle or needle in t.name.casefold()]
        if not tools:
            return False
    if query.category:
        wanted = query.category.casefold()
        if not any(tool.category.casefold() == wanted for tool in comparison.tools):
            return False
    if query.verdict and not any(panel_verdict(tool) == query.verdict for tool in tools):
        return False
    return not query.q or _mentions_all(comparison, query.q.casefold().split())


def _mentions_all(comparison: Comparison, terms: list[str]) -> bool:
    """Every term appears in the title, the summary, a tool, a quote or the body."""
    texts = [comparison.title, comparison.summary, comparison.body]
    for tool in comparison.tools:
        texts += [tool.name, tool.tagline, tool.description, tool.category]
        texts += [review.quote for review in tool.reviews]
    haystack = "\n".join(texts).casefold()
    return all(term in haystack for term in terms)


def _sort_key(sort: str) -> Callable[[Entry], str | float]:
    field = sort.lstrip("-")
    if field == "title":
        return lambda entry: entry.comparison.title.casefold()
    if field == "panel_ship":
        return lambda entry: float(max(panel_ship(tool) for tool in entry.comparison.tools))
    return lambda entry: _published_key(entry.comparison.workflow.published_at)


def _published_key(when: datetime | None) -> str:
    return when.isoformat() if when else ""


def _encode_cursor(entry: Entry, sort: str) -> str:
    raw = msgspec.json.encode([sort, _sort_key(sort)(entry), entry.slug])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> tuple[str | float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, key, slug = msgspec.json.decode(raw, type=tuple[str, str | float, str])
    except (ValueError, msgspec.DecodeError) as exc:
        raise BadRequest("the cursor is not one this API gave out", field="cursor") from exc
    if cursor_sort != sort:
        raise BadRequest("the cursor belongs to a different sort order", field="cursor")
    numeric = sort.lstrip("-") == "panel_ship"
    if isinstance(key, float | int) != numeric:
        raise BadRequest("the cursor is not one this API gave out", field="cursor")
    return key, slug


def share(value: Fraction) -> float:
    return round(float(value), 4)
