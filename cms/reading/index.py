"""The in-memory index of published comparisons that frontends read from.

It is built once from the main branch's tree and then follows main incrementally: when main moves,
only the files that differ between the old and the new tree are decoded again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal

import msgspec
from msgspec import Struct

from .. import urlsafe
from ..content.model import Comparison, Tool, panel_ship, panel_verdict
from ..content.render import render_cached
from ..editing.events import Committed
from ..errors import BadRequest, CmsError
from ..store.documents import Documents
from ..store.repository import changed_files
from . import snapshot as snapshot_file
from .bulk_decode import decode_many, worker_count
from .snapshot import Snapshot

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


class PublishedIndex:
    """Main's published comparisons by slug.

    Start-up reads only main's tree, so the first request is served at once; comparisons are
    decoded when first asked for, and all of them by ``fill`` (in the background after
    ``start``, or by the first query that needs every one). A blob id names its content for
    ever, so a decoded comparison is kept by blob id, and the snapshot file keeps them across
    restarts without ever going stale.
    """

    def __init__(self, documents: Documents, snapshot: Path | None = None) -> None:
        self.documents = documents
        self.snapshot = snapshot
        self.head: str | None = None
        self.tree: str | None = None
        self._checked_at = float("-inf")
        # Slug -> blob in main's tree, and the sort orders made from it: swapped together, so a
        # reader holding one view never mixes two trees.
        self._view: tuple[dict[str, str], dict[str, list[Entry]]] = ({}, {})
        self._entries: dict[str, Entry] = {}  # blob -> decoded; entries are added under the GIL
        self._filled = False  # every blob of the current view is in _entries
        self._unsaved = False  # some entry was decoded from git, not read from the snapshot
        self._broken: set[str] = set()  # blobs on main that do not decode
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()  # moves of main
        self._fill_lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._filler: threading.Thread | None = None
        # Called once, in the thread that completed the fill, when every comparison is decoded.
        self.filled: list[Callable[[], None]] = []
        # A fill with at least this many files to parse spreads them over worker processes.
        self.parallel_from = 1000
        self.workers = worker_count()

    def load(self) -> None:
        with self._lock:
            if self.snapshot is not None:
                self._snapshot = Snapshot.open(self.snapshot, self._fingerprint())
            head = self.documents.main_head()
            table = self._snapshot.table if self._snapshot is not None else None
            if table is not None and table.tree is not None and head is not None:
                try:
                    self.documents.repo.read_tree(table.tree)
                except CmsError:
                    pass  # a snapshot of another repository: its records are still good
                else:
                    self._view, self.tree = (dict(table.slugs), {}), table.tree
            added = self._follow(head)
        self._decode(added)

    def start(self) -> None:
        """Decode everything in the background, so that the first query finds it done."""
        self._filler = threading.Thread(target=self.fill, name="cms-index-fill", daemon=True)
        self._filler.start()

    def fill(self) -> None:
        """Decode every comparison of main not decoded yet; save the snapshot if any was new."""
        with self._fill_lock:
            if self._filled:
                return
            while True:
                blobs = self._view[0]
                missing = [blob for blob in blobs.values() if not self._settled(blob)]
                if not missing:
                    with self._lock:
                        if all(self._settled(blob) for blob in self._view[0].values()):
                            self._filled = True
                            break
                    continue
                yielded = time.monotonic()
                for blob, comparison in self._decoding(missing):
                    self._load_or_skip(blob, comparison)
                    # Hand the interpreter to request threads every millisecond or so rather
                    # than at its 5 ms switch interval: a request needs it back after each of
                    # its I/O steps and would otherwise wait that long at every one.
                    if time.monotonic() - yielded > 0.001:
                        time.sleep(0)
                        yielded = time.monotonic()
            for listener in self.filled:
                listener()
        self.save()

    def save(self) -> None:
        """Write the snapshot if anything was decoded from git since it was read or written; a
        cache, so failing to write it costs only the next start. A save already under way (the
        background fill's) is waited for, so that shutting down never cuts one short."""
        with self._save_lock:
            self._save()

    def _save(self) -> None:
        if self.snapshot is None or not self._unsaved:
            return
        self._unsaved = False
        with self._lock:
            blobs, tree = self._view[0], self.tree
            # A reader holding an older view can decode a blob just after main dropped it.
            live = set(blobs.values())
            for blob in [blob for blob in list(self._entries) if blob not in live]:
                self._entries.pop(blob, None)
        decoded = [(slug, blob, self._entries.get(blob)) for slug, blob in blobs.items()]
        kept = [(slug, blob, entry.comparison) for slug, blob, entry in decoded if entry is not None]
        # The tree is only worth keeping with every one of its comparisons.
        whole = tree if len(kept) == len(blobs) else None
        try:
            snapshot_file.write(self.snapshot, self._fingerprint(), kept, whole)
        except Exception:
            log.exception("could not write the index snapshot; the next start decodes more")
            self._unsaved = True

    def close(self) -> None:
        snapshot, self._snapshot = self._snapshot, None
        if snapshot is not None:
            snapshot.close()

    def _fingerprint(self) -> str:
        return snapshot_file.fingerprint(self.documents.layout.path("x"))

    def _decoding(self, blobs: list[str]) -> Iterator[tuple[str, Comparison | None]]:
        """The blobs, each with its comparison where worker processes decoded it: those in the
        snapshot are read here, and the rest go to workers when there are enough of them to
        repay starting the processes."""
        snapshot = self._snapshot
        elsewhere = [blob for blob in blobs if snapshot is None or blob not in snapshot]
        if len(elsewhere) < self.parallel_from or self.workers < 2:
            yield from ((blob, None) for blob in blobs)
            return
        yield from ((blob, None) for blob in blobs if snapshot is not None and blob in snapshot)
        yield from decode_many(self.documents.repo.path, elsewhere, self.workers)

    def _settled(self, blob: str) -> bool:
        return blob in self._entries or blob in self._broken

    def _load_or_skip(self, blob: str, decoded: Comparison | None = None) -> Entry | None:
        """The entry, or None for a file on main that does not decode (written by hand, say):
        it is reported once and left out rather than stopping every other comparison."""
        try:
            return self._load(blob, decoded)
        except CmsError as exc:
            if blob not in self._broken:
                log.error("published file %s cannot be read and is not served: %s", blob, exc)
                self._broken.add(blob)
            return None

    def _load(self, blob: str, decoded: Comparison | None = None) -> Entry:
        """The entry for a blob: decoded before, read from the snapshot, or decoded now."""
        entry = self._entries.get(blob)
        if entry is not None:
            return entry
        from_git = decoded is not None
        comparison = decoded if decoded is not None else self._from_snapshot(blob)
        if comparison is None:
            comparison = self.documents.decode_blob(blob)
            from_git = True
        if from_git:
            self._unsaved = True  # so the snapshot has it next time
        entry = Entry(comparison=comparison, blob=blob)
        self._entries[blob] = entry
        return entry

    def _from_snapshot(self, blob: str) -> Comparison | None:
        snapshot = self._snapshot
        return None if snapshot is None else snapshot.read(blob)

    def refresh(self, *, now: float | None = None) -> None:
        """Catch up with main if another process sharing the repository moved it.

        This process's own commits arrive through ``on_committed`` at once; looking at the
        ref for other writers' commits is done at most every ``RECHECK_SECONDS``, since a read
        of the ref file on every request costs more than the rest of a cached read.
        """
        moment = time.monotonic() if now is None else now
        if moment - self._checked_at < RECHECK_SECONDS:
            return
        self._checked_at = moment
        head = self.documents.main_head()
        if head != self.head and self._lock.acquire(blocking=False):
            # Not waiting for the lock: this runs on the event loop too, and whoever holds it
            # is moving the view to main already.
            try:
                # What main gained is decoded when first read, not here: this may be the event
                # loop, and another process's fold may have changed hundreds of comparisons.
                self._follow(self.documents.main_head())
            finally:
                self._lock.release()

    def on_committed(self, event: Committed) -> None:
        if not event.main_moved:
            return
        # Main as it is now, not the event's commit: another process may have moved it further.
        with self._lock:
            added = self._follow(self.documents.main_head())
        self._decode(added)

    def _decode(self, blobs: list[str]) -> None:
        """Decode what main gained, outside the lock that readers on the event loop try."""
        for blob in blobs:
            self._load_or_skip(blob)

    def _follow(self, head: str | None) -> list[str]:
        """Move the view to ``head``; the blobs it gained that are to be decoded now."""
        if head == self.head:
            return []
        added: list[str] = []
        repo = self.documents.repo
        tree = repo.read_commit(head).tree if head else None
        changes = changed_files(repo, self.tree, tree, self.documents.layout.folder)
        blobs = dict(self._view[0])
        stray = 0
        for path, blob in changes.items():
            slug = self.documents.layout.slug_at(path)
            if slug is None:
                stray += 1  # not where a comparison's file lives: not one
                continue
            old = blobs.pop(slug, None)
            if old is not None:
                self._entries.pop(old, None)
            if blob is not None:
                blobs[slug] = blob
                if self._filled:  # keep every entry decoded once they all are
                    added.append(blob)
        if stray and self.tree is None:
            log.warning("%d files under %s are not at %s/<shard>/<slug>.md and are not served; "
                        "a repository made by an older version needs re-creating", stray,
                        self.documents.layout.folder, self.documents.layout.folder)
        # Readers take a reference to the whole view, so swapping it is atomic for them.
        self._view = (blobs, {})
        self.head, self.tree = head, tree
        return added

    # Reading

    @property
    def ready(self) -> bool:
        """Whether every comparison is decoded, so that a query will not wait."""
        return self._filled

    def comparison(self, blob: str) -> Comparison:
        """The comparison a blob holds; decoded once, whether it is on main or not."""
        entry = self._entries.get(blob)
        return entry.comparison if entry is not None else self.documents.decode_blob(blob)

    def get(self, slug: str) -> Entry | None:
        self.refresh()
        blob = self._view[0].get(slug)
        return None if blob is None else self._load_or_skip(blob)

    def __len__(self) -> int:
        return len(self._view[0])

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
        if not self._filled:
            self.fill()
        # Take the blobs and their sort cache together: if main moves while this sorts, the
        # result is stored with the view it was made from, never with a newer one.
        blobs, orders = self._view
        cached = orders.get(sort)
        if cached is None:
            keyed = _sort_key(sort)
            loaded = (self._load_or_skip(blob) for blob in blobs.values())
            cached = sorted(
                (entry for entry in loaded if entry is not None),
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
    return urlsafe.encode(raw)


def _decode_cursor(cursor: str, sort: str) -> tuple[str | float, str]:
    try:
        raw = urlsafe.decode(cursor)
        cursor_sort, key, slug = msgspec.json.decode(raw, type=tuple[str, str | float, str])
    except (ValueError, msgspec.DecodeError) as exc:
        raise BadRequest("the cursor is not one this API gave out", field="cursor") from exc
    if cursor_sort != sort:
        raise BadRequest("the cursor belongs to a different sort order", field="cursor")
    numeric = sort.lstrip("-") == "panel_ship"
    if isinstance(key, float | int) != numeric:
        raise BadRequest("the cursor is not one this API gave out", field="cursor")
    return key, slug
