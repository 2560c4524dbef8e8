"""The published comparisons that frontends read: main's files by slug, and the catalogue that
lists and search read.

Which file each slug has is read from main's tree at start (a fifth of a second at 100,000
comparisons) and follows main by comparing trees. A whole comparison is decoded when it is
asked for and kept in the documents' bounded cache; what lists need of every comparison is in
the catalogue (an SQLite file), which catches up with main before any list is read. A
catalogue left by the last run needs only what changed since; a new one is filled in the
background after start, in worker processes when there is much to decode.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sqlite3
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
from msgspec import Struct

from ..content.model import Comparison
from ..content.render import render_cached
from ..editing.events import Committed
from ..errors import CatalogueUnavailable, CmsError
from ..store.documents import Documents
from ..store.repository import changed_files
from . import catalogue as catalogue_file
from .bulk_decode import decode_many, worker_count
from .card import Card
from .catalogue import Catalogue, CatalogueError, Writer
from .listing import SORT_KEYS, Listed, Page, Query, SortKey, page

__all__ = ["SORT_KEYS", "Entry", "Listed", "Page", "PublishedIndex", "Query", "SortKey"]

log = logging.getLogger("cms")

RECHECK_SECONDS = 0.05
# Rows added in one transaction while filling: a crash keeps what was committed before it.
_BATCH = 2000


class Entry(Struct, frozen=True):
    comparison: Comparison
    blob: str

    @property
    def slug(self) -> str:
        return self.comparison.slug

    def html(self) -> str:
        return render_cached(self.blob, self.comparison.body)


class PublishedIndex:
    """Main's published comparisons by slug, and their catalogue.

    ``folder`` holds the catalogue file; without one, the catalogue lives in a temporary folder
    for as long as the index.
    """

    def __init__(self, documents: Documents, folder: Path | None = None) -> None:
        self.documents = documents
        if folder is None:
            folder = Path(tempfile.mkdtemp(prefix="cms-catalogue-"))
            self._removal: Callable[[], object] = weakref.finalize(
                self, shutil.rmtree, folder, ignore_errors=True)
        else:
            self._removal = lambda: None
        self.folder = folder
        self.head: str | None = None
        self.tree: str | None = None
        self._checked_at = float("-inf")
        self._view: dict[str, str] = {}  # slug -> blob on main; replaced whole, never changed
        self._broken: set[str] = set()  # blobs on main that do not decode
        self._catalogue: Catalogue | None = None
        self._complete = False  # the catalogue has a row for every file of its tree
        self._filled = False  # the catalogue is complete for the view
        self._closing = False
        self._lock = threading.Lock()  # moves of the view
        self._write_lock = threading.Lock()  # the catalogue's writer
        self._filler: threading.Thread | None = None
        # Called once, in the thread that completed the fill, when the catalogue first holds
        # every comparison.
        self.filled: list[Callable[[], None]] = []
        # A fill with at least this many files to decode spreads them over worker processes.
        self.parallel_from = 1000
        self.workers = worker_count()

    def load(self) -> None:
        # An index snapshot of an older version is of no further use.
        (self.folder / "index.snapshot").unlink(missing_ok=True)
        self._catalogue = Catalogue.open(self.folder, self._fingerprint())
        self._complete = self._catalogue.complete
        with self._lock:
            self._follow(self.documents.main_head())

    def start(self) -> None:
        """Bring the catalogue up to main in the background, so that the first list finds it
        done."""
        self._filler = threading.Thread(target=self._fill_in_background, name="cms-index-fill",
                                        daemon=True)
        self._filler.start()

    def _fill_in_background(self) -> None:
        try:
            self.fill()
        except (sqlite3.DatabaseError, CmsError, CatalogueError) as exc:
            log.error("the catalogue could not be filled (%s); the first list tries again", exc)

    def fill(self) -> None:
        """Bring the catalogue up to main as it is now."""
        self._catch_up(wait=True)

    def close(self) -> None:
        self._closing = True
        with self._write_lock:
            catalogue, self._catalogue = self._catalogue, None
            if catalogue is not None:
                catalogue.close()
        self._removal()

    def _fingerprint(self) -> str:
        """What the catalogue's rows depend on besides the blobs: their shape, the schema and
        where files live."""
        shape = msgspec.json.encode([msgspec.json.schema(Card), catalogue_file.SCHEMA_VERSION,
                                     self.documents.layout.path("x")])
        return hashlib.sha1(shape, usedforsecurity=False).hexdigest()

    # Following main

    def refresh(self, *, now: float | None = None) -> None:
        """Catch up with main if another process sharing the repository moved it.

        This process's own commits arrive through ``on_committed`` at once; looking at the
        ref for other writers' commits is done at most every ``RECHECK_SECONDS``, since a read
        of the ref file on every request costs more than the rest of a cached read. Only the
        view moves here (this may be the event loop); the catalogue follows before the next
        list is read.
        """
        moment = time.monotonic() if now is None else now
        if moment - self._checked_at < RECHECK_SECONDS:
            return
        self._checked_at = moment
        head = self.documents.main_head()
        if head != self.head and self._lock.acquire(blocking=False):
            # Not waiting for the lock: whoever holds it is moving the view to main already.
            try:
                self._follow(self.documents.main_head())
            finally:
                self._lock.release()

    def on_committed(self, event: Committed) -> None:
        if not event.main_moved:
            return
        # Main as it is now, not the event's commit: another process may have moved it further.
        with self._lock:
            self._follow(self.documents.main_head())
        if self._filled:  # else the fill under way takes the change in
            try:
                self._catch_up(wait=False)
            except (sqlite3.DatabaseError, CmsError, CatalogueError) as exc:
                # The commit stands; the next list brings the catalogue up, or reports why not.
                log.error("the catalogue did not take in main's move: %s", exc)

    def _follow(self, head: str | None) -> None:
        """Move the view to ``head``."""
        if head == self.head:
            return
        repo = self.documents.repo
        tree = repo.read_commit(head).tree if head else None
        changes = changed_files(repo, self.tree, tree, self.documents.layout.folder)
        view = dict(self._view)
        stray = 0
        for path, blob in changes.items():
            slug = self.documents.layout.slug_at(path)
            if slug is None:
                stray += 1  # not where a comparison's file lives: not one
                continue
            old = view.pop(slug, None)
            if old is not None:
                self._broken.discard(old)
            if blob is not None:
                view[slug] = blob
        if stray and self.tree is None:
            log.warning("%d files under %s are not at %s/<shard>/<slug>.md and are not served; "
                        "a repository made by an older version needs re-creating", stray,
                        self.documents.layout.folder, self.documents.layout.folder)
        # Readers take a reference to the whole view, so swapping it is atomic for them.
        self._view = view
        self.head, self.tree = head, tree
        self._filled = False

    # The catalogue

    def _catch_up(self, *, wait: bool) -> None:
        """Bring the catalogue to the view's tree: rows of changed files out, rows of every
        file it lacks in. Without ``wait``, leave it to whoever is at it already."""
        if not self._write_lock.acquire(blocking=wait):
            return
        try:
            newly = False
            while not self._filled and not self._closing:
                with self._lock:
                    view, tree = self._view, self.tree
                self._bring_to(view, tree)
                with self._lock:
                    if self.tree == tree:
                        self._filled = newly = True
        except (CmsError, CatalogueError) as exc:
            log.error("the catalogue cannot follow main (%s); it is made anew", exc)
            self._remake()
            raise
        finally:
            self._write_lock.release()
        if newly and self.filled:
            listeners, self.filled = self.filled, []
            for listener in listeners:
                listener()

    def _remake(self) -> None:
        catalogue = self._require()
        with catalogue.writing() as writer:
            writer.clear()
            writer.set_tree(None, complete=False)
        self._complete = False

    def _bring_to(self, view: dict[str, str], tree: str | None) -> None:
        catalogue = self._require()
        before = catalogue.tree
        if before != tree:
            try:
                changes = changed_files(self.documents.repo, before, tree,
                                        self.documents.layout.folder)
            except CmsError:  # a tree this repository does not have: start from nothing
                self._remake()
                before, changes = None, {}
            with catalogue.writing() as writer:
                gained = []
                for path, blob in changes.items():
                    slug = self.documents.layout.slug_at(path)
                    if slug is None:
                        continue
                    self._forget(writer, slug)
                    if blob is not None:
                        gained.append(slug)
                writer.set_tree(tree, complete=False)
            missing = gained if self._complete else [
                slug for slug in view.keys() - catalogue.slugs().keys()]
        else:
            if self._complete:
                return
            missing = [slug for slug in view.keys() - catalogue.slugs().keys()]
        self._add(catalogue, [(slug, view[slug]) for slug in missing if slug in view])
        with catalogue.writing() as writer:
            writer.set_tree(tree, complete=True)
        self._complete = True

    def _forget(self, writer: Writer, slug: str) -> None:
        indexed = writer.indexed(slug)
        if indexed is None:
            return
        old = None
        if not writer.is_broken(slug):
            old = self.documents.decode_blob(indexed)
        writer.remove(slug, old)

    def _add(self, catalogue: Catalogue, files: list[tuple[str, str]]) -> None:
        """Decode and add files (slug, blob), a batch a transaction."""
        slugs = {blob: slug for slug, blob in files}
        decoded = self._decoding([blob for _slug, blob in files])
        while not self._closing:
            with catalogue.writing() as writer:
                count = 0
                yielded = time.monotonic()
                for blob, comparison in decoded:
                    self._add_one(writer, slugs[blob], blob, comparison)
                    count += 1
                    # Hand the interpreter to request threads every millisecond or so rather
                    # than at its 5 ms switch interval.
                    if time.monotonic() - yielded > 0.001:
                        time.sleep(0)
                        yielded = time.monotonic()
                    if count == _BATCH or self._closing:
                        break
            if count < _BATCH:
                return

    def _add_one(self, writer: Writer, slug: str, blob: str, comparison: Comparison | None) -> None:
        try:
            if comparison is None:
                comparison = self.documents.decode_blob(blob)
        except CmsError as exc:
            if blob not in self._broken:
                log.error("published file %s cannot be read and is not served: %s", blob, exc)
                self._broken.add(blob)
            writer.add_broken(slug, blob)
            return
        writer.add(slug, blob, comparison)

    def _decoding(self, blobs: list[str]) -> Iterator[tuple[str, Comparison | None]]:
        """The blobs, with their comparisons where worker processes decoded them: they are
        worth starting when there are many."""
        if len(blobs) < self.parallel_from or self.workers < 2:
            return ((blob, None) for blob in blobs)
        return decode_many(self.documents.repo.path, blobs, self.workers)

    def _require(self) -> Catalogue:
        if self._catalogue is None:
            raise CatalogueError("the index is closed")
        return self._catalogue

    # Reading

    @property
    def ready(self) -> bool:
        """Whether the catalogue holds main as it is, so that a list will not wait."""
        return self._filled

    def comparison(self, blob: str) -> Comparison:
        """The comparison a blob holds, from the documents' cache or decoded now."""
        return self.documents.decode_blob(blob)

    def get(self, slug: str) -> Entry | None:
        self.refresh()
        blob = self._view.get(slug)
        if blob is None or blob in self._broken:
            return None
        try:
            return Entry(comparison=self.documents.decode_blob(blob), blob=blob)
        except CmsError as exc:
            if blob not in self._broken:
                log.error("published file %s cannot be read and is not served: %s", blob, exc)
                self._broken.add(blob)
            return None

    def __len__(self) -> int:
        return len(self._view)

    def query(self, query: Query) -> Page:
        self.refresh()
        for attempt in (1, 2):
            try:
                self._catch_up(wait=True)
                with self._require().reading() as db:
                    return page(db, query)
            except sqlite3.DatabaseError as exc:
                # A damaged file or a full disk: the catalogue is a cache, so start it again
                # and try once more; a second failure is reported, not retried for ever.
                if attempt == 2 or not self._renew(exc):
                    raise CatalogueUnavailable(
                        "lists and search are unavailable while their catalogue is made "
                        "anew; try again shortly") from exc
        raise AssertionError("unreachable")

    def _renew(self, error: Exception) -> bool:
        """Replace the catalogue file with an empty one; whether that worked."""
        log.error("the catalogue cannot be used (%s); it is made anew", error)
        with self._write_lock:
            old, self._catalogue = self._catalogue, None
            self._complete = self._filled = False
            try:
                if old is not None:
                    old.discard()
                self._catalogue = Catalogue.open(self.folder, self._fingerprint())
            except (OSError, sqlite3.DatabaseError, CatalogueError) as exc:
                log.error("a new catalogue cannot be made either (%s)", exc)
                return False
        return True
