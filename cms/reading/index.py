"""The published comparisons that frontends read: main's files, and the catalogue that lists and
search read.

Nothing of every comparison is held in memory. A comparison's file is found in main's tree when
it is asked for (the trees are cached), decoded, and kept in the documents' bounded cache; what
lists need of every comparison is in the catalogue (an SQLite file), which catches up with main
before any list is read. A start reads main's commit and nothing else: a catalogue left by the
last run needs only what changed since, and a new one is filled in the background: from the
copy shipped with the content when there is one (see shipped.py; its rows are checked against
main by blob), else by decoding every file, in worker processes when there are many.
"""

from __future__ import annotations

import binascii
import functools
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
from ..store.objects import MODE_TREE
from ..store.repository import changed_files
from . import card as card_module
from . import catalogue as catalogue_file
from . import shipped
from .bulk_decode import decode_many, worker_count
from .card import Card
from .catalogue import Catalogue, CatalogueError, Writer
from .listing import (
    NEWEST_KEPT,
    SORT_KEYS,
    Listed,
    Page,
    Query,
    SortKey,
    keep_newest,
    kept_page,
    page,
)
from .search_bits import BuildCancelled, stamp_of

__all__ = ["SORT_KEYS", "Entry", "Listed", "Page", "PublishedIndex", "Query", "SortKey"]

log = logging.getLogger("cms")

RECHECK_SECONDS = 0.05
# Rows added in one transaction while filling: a crash keeps what was committed before it.
_BATCH = 2000
# Rows added since the search index's segments were last merged that make it worth merging
# them again, and the pages merged in one step (each step holds the writer's lock).
_COMPACT_FROM = 1000
_COMPACT_PAGES = 128
# A search index in more segments than this when first found filled is merged: the small
# segments publications leave are merged four to a level as they come (see the catalogue's
# crisismerge), so a few levels of at most three each stay below it.
_SEGMENTS_KEPT = 8
# The largest shipped copy taken: a catalogue takes about 2.5 KB a comparison.
_COPY_BYTES_FIXED = 64 * 2**20
_COPY_BYTES_EACH = 16 * 2**10


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
        self._broken: set[str] = set()  # blobs on main that do not decode
        self._misnamed: set[tuple[str, str]] = set()  # files whose slug is not their path's
        self._counts: dict[bytes, int] = {}  # files in each folder of comparisons, by its id
        self._catalogue: Catalogue | None = None
        self._complete = False  # the catalogue has a row for every file of its tree
        self._filled = False  # the catalogue is complete for main as followed
        self._ready = False  # it was complete once, and lists have not waited since
        self._closing = False
        self._lock = threading.Lock()  # moves of main
        self._write_lock = threading.Lock()  # the catalogue's writer
        self._filler: threading.Thread | None = None
        # Called once, in the thread that completed the fill, when the catalogue first holds
        # every comparison.
        self.filled: list[Callable[[], None]] = []
        # A fill with at least this many files to decode spreads them over worker processes.
        self.parallel_from = 1000
        self.workers = worker_count()
        # Ship a copy of the catalogue with the content once this many rows (and a fiftieth
        # of all) were added since it was opened or last shipped; None: never.
        self.ship_from: int | None = None
        self._added = 0
        # Merge the search index's segments once this many rows (and a twentieth of all) were
        # added since the last merge; None: never.
        self.compact_from: int | None = _COMPACT_FROM
        self._to_compact = 0
        self._segments_looked = False  # the index's segments were counted once filled
        self._compacting: threading.Thread | None = None
        self._shipped_tried = False  # a copy shipped with the content was looked for
        self._fingerprinted: str | None = None
        self._shipping: threading.Thread | None = None
        self.shipped: str | None = None  # the commit of the copy this process shipped last
        # Words held by at least this many comparisons get a bitmap in memory; None: none do.
        self.bits_from: int | None = 256
        self._bits_thread: threading.Thread | None = None
        # A build or a load under way, with the newest rows read after it: searches are not
        # said to be ready until it is done.
        self._bits_settling = False
        self._bits_lock = threading.Lock()

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
        # A second time after a failure: the catalogue was made anew meanwhile (from a
        # damaged copy, say), and is then filled from git.
        for attempt in (1, 2):
            try:
                self.fill()
                return
            except (sqlite3.DatabaseError, CmsError, CatalogueError) as exc:
                if attempt == 2 or self._closing:
                    log.error("the catalogue could not be filled (%s); the first list tries "
                              "again", exc)
                    return

    def fill(self) -> None:
        """Bring the catalogue up to main as it is now."""
        self._catch_up(wait=True)

    def close(self) -> None:
        with self._bits_lock:  # no build starts after this one is seen
            self._closing = True
            building = self._bits_thread
        if building is not None and self._catalogue is not None:
            self._catalogue.bits.cancel()
            building.join()
        with self._write_lock:
            catalogue, self._catalogue = self._catalogue, None
            if catalogue is not None:
                catalogue.save_bits()  # what the next start would otherwise make again
                catalogue.close()
        # A copy being shipped was interrupted; what is left of its work (git writing objects
        # nothing refers to yet) is not waited for.
        self._removal()

    def _fingerprint(self) -> str:
        """What the catalogue's rows depend on besides the blobs: their shape, the schema,
        where files live, and the code that derives rows (a copy shipped by other code must
        not be taken for this code's, and SCHEMA_VERSION is bumped by hand)."""
        if self._fingerprinted is None:
            sources = [Path(module.__file__ or "") for module in (card_module, catalogue_file)]
            derivation = b"".join(path.read_bytes() for path in sources if path.is_file())
            shape = msgspec.json.encode([msgspec.json.schema(Card), catalogue_file.SCHEMA_VERSION,
                                         self.documents.layout.path("x")])
            self._fingerprinted = hashlib.sha1(shape + derivation,
                                               usedforsecurity=False).hexdigest()
        return self._fingerprinted

    # Following main

    def refresh(self, *, now: float | None = None) -> None:
        """Catch up with main if another process sharing the repository moved it.

        This process's own commits arrive through ``on_committed`` at once; looking at the
        ref for other writers' commits is done at most every ``RECHECK_SECONDS``, since a read
        of the ref file on every request costs more than the rest of a cached read. Only the
        head moves here (this may be the event loop); the catalogue follows before the next
        list is read.
        """
        moment = time.monotonic() if now is None else now
        if moment - self._checked_at < RECHECK_SECONDS:
            return
        self._checked_at = moment
        head = self.documents.main_head()
        if head != self.head and self._lock.acquire(blocking=False):
            # Not waiting for the lock: whoever holds it is following main already.
            try:
                self._follow(self.documents.main_head())
            finally:
                self._lock.release()

    def on_committed(self, event: Committed) -> None:
        if not event.main_moved:
            return
        # Main as it is now, not the event's commit: another process may have moved it further.
        with self._lock:
            filled = self._filled
            self._follow(self.documents.main_head())
        if filled:  # else the fill under way takes the change in
            try:
                self._catch_up(wait=False)
            except (sqlite3.DatabaseError, CmsError, CatalogueError) as exc:
                # The commit stands; the next list brings the catalogue up, or reports why not.
                log.error("the catalogue did not take in main's move: %s", exc)

    def _follow(self, head: str | None) -> None:
        """Move to ``head``: reads look in its tree from now on, lists once the catalogue has
        caught up with it."""
        if head == self.head:
            return
        tree = self.documents.repo.read_commit(head).tree if head else None
        # Not filled before the new head shows: a list that reads the new head must not find
        # the catalogue said to be up to date (it reads no lock; see ``_catch_up``).
        self._filled = False
        self.head, self.tree = head, tree

    # The catalogue

    def _catch_up(self, *, wait: bool, timeout: float | None = None) -> None:
        """Bring the catalogue to the tree followed: rows of changed files out, rows of every
        file it lacks in. Without ``wait``, leave it to whoever is at it already; with a
        ``timeout``, wait that long for them and then report it unavailable."""
        if self._filled and not self._closing:
            # Up to main as followed: nothing to take the writer's lock for (every list asks).
            return
        if not self._write_lock.acquire(blocking=wait,
                                        timeout=-1 if timeout is None or not wait else timeout):
            if wait:
                raise CatalogueUnavailable(
                    "lists and search are unavailable while the catalogue is filled after "
                    "start-up; try again shortly (GET /health says index_ready)")
            return
        try:
            newly = False
            while not self._filled and not self._closing:
                with self._lock:
                    tree = self.tree
                self._bring_to(tree)
                with self._lock:
                    if self.tree == tree and self._complete:
                        self._filled = newly = self._ready = True
            to_ship = self._catalogue if self._ship_due() else None
            to_compact = self._catalogue if self._compact_due() else None
        except (CmsError, CatalogueError) as exc:
            log.error("the catalogue cannot follow main (%s); it is made anew", exc)
            try:
                self._remake()
            except (CatalogueError, sqlite3.DatabaseError) as again:
                log.error("the catalogue cannot be emptied either: %s", again)
            if isinstance(exc, CatalogueError):
                raise
            # What failed is the catalogue's to deal with (a list says 503), whatever it was.
            raise CatalogueError(f"the catalogue is made anew: {exc}") from exc
        except sqlite3.DatabaseError as exc:  # the file itself: a new one, from git
            self._replace(exc)
            raise
        finally:
            self._write_lock.release()
        if newly and self.filled:
            listeners, self.filled = self.filled, []
            for listener in listeners:
                listener()
        self._bits_due(self._catalogue)
        if to_compact is not None:
            # A copy to ship is taken once the segments are merged: new replicas search it.
            self._compacting = threading.Thread(
                target=self._compact_in_background, args=(to_compact, to_ship),
                name="cms-catalogue-compact", daemon=True)
            self._compacting.start()
        elif to_ship is not None:
            self._start_shipping(to_ship)

    def _start_shipping(self, catalogue: Catalogue) -> None:
        self._shipping = threading.Thread(target=self._ship_in_background,
                                          args=(catalogue,), name="cms-catalogue-ship",
                                          daemon=True)
        self._shipping.start()

    def _compact_due(self) -> bool:
        """Whether the search index took in enough rows since its segments were last merged,
        or, the first time this process finds it filled, is in more segments than it takes
        (a merge that a stop or a full disk cut short); with the writer's lock held."""
        due = self.compact_from
        catalogue = self._catalogue
        if due is None or catalogue is None or not self._filled or self._closing:
            return False
        if self._compacting is not None and self._compacting.is_alive():
            return False
        looked, self._segments_looked = self._segments_looked, True
        if self._to_compact >= due and self._to_compact * 20 >= len(catalogue):
            self._to_compact = 0
            return True
        return not looked and len(catalogue) >= due and \
            catalogue.search_segments() > _SEGMENTS_KEPT

    def _compact_in_background(self, catalogue: Catalogue, to_ship: Catalogue | None) -> None:
        """Merge the search index's segments a step at a time, letting catch-ups and lists
        take the writer's lock in between; then ship, if that was due."""
        try:
            while not self._closing:
                with self._write_lock:
                    if self._catalogue is not catalogue or self._closing:
                        return
                    if not catalogue.compact_search(_COMPACT_PAGES):
                        break
                if not self._filled:
                    # A commit of this process found the lock taken by a step and left the
                    # catch-up to whoever held it: this thread.
                    self._catch_up(wait=False)
        except (sqlite3.DatabaseError, CmsError, CatalogueError) as exc:
            if not self._closing:  # a cache: searches are slower, not wrong
                log.warning("the search index's segments could not be merged: %s", exc)
        if to_ship is not None and not self._closing:
            self._start_shipping(to_ship)

    def _remake(self) -> None:
        catalogue = self._require()
        with catalogue.writing() as writer:
            writer.clear()
            writer.set_tree(None, complete=False)
        self._complete = self._ready = False

    def _bring_to(self, tree: str | None) -> None:
        catalogue = self._require()
        if catalogue.tree is None and not self._shipped_tried:
            # An empty catalogue starts from the copy shipped with the content, if there is
            # one, once: not again after a copy that failed was made anew.
            self._shipped_tried = True
            blob = self._shipped_copy()
            # The empty file is replaced only when there is a copy to put in its place.
            if blob is not None and catalogue.restore_from(
                    functools.partial(shipped.unpack, self.documents.repo, blob)):
                # Not taken on trust: every row is checked against main by its blob, as after
                # a fill stopped part-way.
                self._complete = False
                copied = catalogue.tree
                if copied is not None and self.documents.repo.subtree(
                        copied, self.documents.layout.folder) is None and len(catalogue):
                    # Rows said to be of a tree that has no comparisons: not to be trusted.
                    log.warning("the shipped catalogue's tree holds no comparisons; it is "
                                "filled from git")
                    self._remake()
        before = catalogue.tree
        if before == tree and self._complete:
            return
        try:
            changes = changed_files(self.documents.repo, before, tree,
                                    self.documents.layout.folder) if before != tree else {}
        except CmsError:  # a tree this repository does not have: start from nothing
            self._remake()
            before, changes = None, {}
        # Complete again only once every row is in: a failure or a stop part-way leaves it
        # incomplete, and the next catch-up looks for every missing row.
        was_complete, self._complete = self._complete, False
        gained: list[tuple[str, str]] = []
        if before is not None and changes:  # without a tree, the catalogue is empty
            with catalogue.writing() as writer:
                for path, blob in changes.items():
                    slug = self.documents.layout.slug_at(path)
                    if slug is None:
                        continue
                    self._forget(writer, slug)
                    if blob is not None:
                        gained.append((slug, blob))
                writer.set_tree(tree, complete=False)
        if was_complete and before is not None:
            missing = gained
        else:
            # Rows a stopped fill left may be of files main has changed or dropped since:
            # each row is checked against the tree by its blob, not only by its slug.
            indexed = catalogue.slugs()
            files = self._files(tree)
            with catalogue.writing() as writer:
                for slug, blob in indexed.items():
                    if files.get(slug) != blob:
                        self._forget(writer, slug)
                writer.set_tree(tree, complete=False)
            missing = [(slug, blob) for slug, blob in files.items()
                       if indexed.get(slug) != blob]
        if not self._add(catalogue, missing):
            return  # closing: the catalogue stays incomplete, and says so
        with catalogue.writing() as writer:
            writer.set_tree(tree, complete=True)
        self._complete = True

    def _files(self, tree: str | None) -> dict[str, str]:
        """Every comparison's file in a tree: slug -> blob."""
        if tree is None:
            return {}
        layout = self.documents.layout
        files: dict[str, str] = {}
        stray = 0
        for path, blob in self.documents.repo.files(tree, layout.folder).items():
            slug = layout.slug_at(path)
            if slug is None:
                stray += 1  # not where a comparison's file lives: not one
            else:
                files[slug] = blob
        if stray:
            log.warning("%d files under %s are not at %s/<shard>/<slug>.md and are not served; "
                        "a repository made by an older version needs re-creating", stray,
                        layout.folder, layout.folder)
        return files

    def _forget(self, writer: Writer, slug: str) -> None:
        indexed = writer.indexed(slug)
        if indexed is None:
            return
        old = None
        if not writer.is_broken(slug):
            old = self.documents.decode_blob(indexed)
        writer.remove(slug, old)

    def _add(self, catalogue: Catalogue, files: list[tuple[str, str]]) -> bool:
        """Decode and add files (slug, blob), a batch a transaction; whether all were added
        (not when the index is closing)."""
        slugs: dict[str, list[str]] = {}
        for slug, blob in files:  # two files may hold the same bytes (written by hand)
            slugs.setdefault(blob, []).append(slug)
        decoded = self._decoding(list(slugs))
        while not self._closing:
            with catalogue.writing() as writer:
                count = 0
                yielded = time.monotonic()
                for blob, comparison in decoded:
                    for slug in slugs[blob]:
                        self._add_one(writer, slug, blob, comparison)
                    count += 1
                    # Hand the interpreter to request threads every millisecond or so rather
                    # than at its 5 ms switch interval.
                    if time.monotonic() - yielded > 0.001:
                        time.sleep(0)
                        yielded = time.monotonic()
                    if count == _BATCH or self._closing:
                        break
            self._added += count
            self._to_compact += count
            if count < _BATCH and not self._closing:
                return True
        return False

    def _add_one(self, writer: Writer, slug: str, blob: str, comparison: Comparison | None) -> None:
        if comparison is None:
            comparison = self._decode(slug, blob)
        elif comparison.slug != slug:
            comparison = self._decode(slug, blob)  # reports it
        if comparison is None:
            writer.add_broken(slug, blob)
        else:
            writer.add(slug, blob, comparison)

    def _decode(self, slug: str, blob: str) -> Comparison | None:
        """The comparison in a published file, or None for one that is not to be served: it
        does not decode (written by hand, say), or names another slug than its path does (a
        copy of another's file would answer as that one). Each is reported once."""
        if blob in self._broken:
            return None
        try:
            comparison = self.documents.decode_blob(blob)
        except CmsError as exc:
            log.error("published file %s cannot be read and is not served: %s", blob, exc)
            self._broken.add(blob)
            return None
        if comparison.slug == slug:
            return comparison
        if (slug, blob) not in self._misnamed:
            log.error("published file %s is not served under `%s`: it says its slug is `%s`",
                      blob, slug, comparison.slug)
            self._misnamed.add((slug, blob))
        return None

    def _decoding(self, blobs: list[str]) -> Iterator[tuple[str, Comparison | None]]:
        """The blobs, with their comparisons where worker processes decoded them: they are
        worth starting when there are many."""
        if len(blobs) < self.parallel_from or self.workers < 2:
            return ((blob, None) for blob in blobs)
        return decode_many(self.documents.repo.path, blobs, self.workers)

    def _require(self) -> Catalogue:
        """The catalogue, opened again if making it anew failed before."""
        if self._catalogue is None:
            if self._closing:
                raise CatalogueError("the index is closed")
            try:
                self._catalogue = Catalogue.open(self.folder, self._fingerprint())
            except (OSError, sqlite3.DatabaseError) as exc:
                raise CatalogueError(f"no catalogue can be opened: {exc}") from exc
            self._complete = self._filled = self._ready = False
        return self._catalogue

    # The copy shipped with the content

    def _shipped_copy(self) -> str | None:
        """The blob of the copy shipped with the content for this code, when there is one of
        a size a catalogue of main could have."""
        repo = self.documents.repo
        shipped.fetch(repo, self._fingerprint())
        found = shipped.shipped_blob(repo, self._fingerprint())
        if found is None:
            return None
        blob, size = found
        # Whoever can push a ref could push a small blob that inflates to fill the disk.
        comparisons = len(self)
        if size > _COPY_BYTES_FIXED + _COPY_BYTES_EACH * comparisons:
            log.warning("the shipped catalogue %s is %d bytes, more than a catalogue of %d "
                        "comparisons takes; it is not used", blob[:12], size, comparisons)
            return None
        log.info("the catalogue starts from the copy shipped with the content (%s)", blob[:12])
        return blob

    def _ship_due(self) -> bool:
        """Whether enough was added since the copy was taken or shipped that a new replica
        would rather have a newer one (with the writer's lock held)."""
        due = self.ship_from
        if due is None or self._added < due or self._closing or self.documents.repo.read_only:
            return False
        if self._shipping is not None and self._shipping.is_alive():
            return False
        catalogue = self._catalogue
        if catalogue is None or not self._filled or self._added * 50 < len(catalogue):
            return False
        self._added = 0
        return True

    def _ship_in_background(self, catalogue: Catalogue) -> None:
        try:
            self.ship(catalogue)
        except (sqlite3.Error, OSError, CmsError, CatalogueError) as exc:
            if not self._closing:
                log.warning("the catalogue could not be shipped with the content: %s", exc)

    def ship(self, catalogue: Catalogue | None = None) -> str | None:
        """Ship a copy of the catalogue with the content now; its commit, or None when the
        catalogue is not complete."""
        commit = shipped.ship(self.documents.repo, catalogue or self._require(),
                              self._fingerprint())
        if commit is not None:
            self.shipped = commit
            log.info("the catalogue was shipped with the content (%s)", commit[:12])
        return commit

    # Reading

    @property
    def ready(self) -> bool:
        """Whether lists answer without waiting for a fill: the catalogue was filled once (a
        move of main since is taken in by the next list, in the time its changes take)."""
        return self._ready

    @property
    def search_ready(self) -> bool:
        """Whether searches of common words are answered from bitmaps (or need none: words
        held by ``bits_from`` comparisons or more are the ones that have them)."""
        catalogue = self._catalogue
        if catalogue is None or not self._ready:
            return False
        return self.bits_from is None or (catalogue.bits.state() is not None and
                                          not self._bits_settling)

    def comparison(self, blob: str) -> Comparison:
        """The comparison a blob holds, from the documents' cache or decoded now."""
        return self.documents.decode_blob(blob)

    def get(self, slug: str) -> Entry | None:
        self.refresh()
        tree = self.tree
        if tree is None:
            return None
        blob = self.documents.repo.blob_at(tree, self.documents.layout.path(slug))
        if blob is None:
            return None
        comparison = self._decode(slug, blob)
        return None if comparison is None else Entry(comparison=comparison, blob=blob)

    def __len__(self) -> int:
        """How many files main has in the comparisons' folders, unreadable ones too. Each
        folder is counted once for as long as it is unchanged (this runs on the event loop)."""
        tree = self.tree
        repo = self.documents.repo
        folder = repo.subtree(tree, self.documents.layout.folder) if tree else None
        if folder is None:
            return 0
        counts: dict[bytes, int] = {}
        for mode, binsha in repo.read_tree(folder).values():
            if mode != MODE_TREE:
                continue
            count = self._counts.get(binsha)
            if count is None:
                shard = repo.read_tree(binascii.hexlify(binsha).decode())
                count = sum(1 for entry_mode, _ in shard.values() if entry_mode != MODE_TREE)
            counts[binsha] = count
        self._counts = counts
        return sum(counts.values())

    def query(self, query: Query, *, wait: float | None = None) -> Page:
        """A page of the list; waits for the catalogue to catch up with main, ``wait`` seconds
        at most (None: for as long as that takes)."""
        self.refresh()
        for attempt in (1, 2):
            failed = self._catalogue
            try:
                self._catch_up(wait=True, timeout=wait)
                catalogue = self._require()
                with catalogue.reading() as db:
                    found = page(db, query, catalogue.bits)
                    assert found is not None
                    return found
            except (sqlite3.DatabaseError, CatalogueError) as exc:
                # A damaged file or a full disk: the catalogue is a cache, so start it again
                # and try once more; a second failure is reported, not retried for ever.
                if attempt == 2 or not self._renew(exc, failed):
                    raise CatalogueUnavailable(
                        "lists and search are unavailable while their catalogue is made "
                        "anew; try again shortly") from exc
        raise AssertionError("unreachable")

    def quick_query(self, query: Query, *, refresh: bool = True) -> Page | None:
        """A page of the list when the common words' bitmaps and the rows kept with them
        answer it, without reading the catalogue or waiting for anything (this is the event
        loop); None otherwise, and the query is for ``query``, which keeps the rows it reads
        for the next time. ``refresh``: look at main first (see ``refresh``)."""
        if refresh:
            self.refresh()
        catalogue = self._catalogue
        if not self._filled or catalogue is None:
            return None
        # Filled: every transaction of the catalogue for main as followed is in, and the
        # bitmaps followed each one (or there are none), so rows kept for them are current.
        return kept_page(catalogue.bits, query, catalogue.committed)

    def _build_bits(self, catalogue: Catalogue) -> None:
        try:
            self._make_bits(catalogue)
        finally:
            self._bits_settling = False

    def _make_bits(self, catalogue: Catalogue) -> None:
        compacting = self._compacting
        if compacting is not None:
            compacting.join()  # the merged index is the quicker to read
        try:
            if catalogue.load_bits():
                self._keep_newest_rows(catalogue)
                return
            # A row older than the newest that came in during a build leaves none: again.
            for _attempt in range(3):
                catalogue.build_bits()
                if catalogue.bits.state() is not None or self._closing:
                    break
            self._keep_newest_rows(catalogue)
            # Searches are ready before the save: what it writes is for the next start.
            self._bits_settling = False
            catalogue.save_bits()
        except BuildCancelled:
            pass
        except (OSError, sqlite3.DatabaseError, CatalogueError) as exc:
            if not self._closing:  # SQL answers every search meanwhile
                log.warning("the search bitmaps could not be made: %s", exc)

    def _keep_newest_rows(self, catalogue: Catalogue) -> None:
        """The newest rows read for the bitmaps' first searches: a first page shows the
        newest of what it finds, and each row a search shows that was not read before sends
        it to a worker thread, so that right after a start, under load, many waited there
        for the same rows (a tenth of a second and more, where the event loop answers in
        tens of microseconds)."""
        try:
            # A transaction between taking the state and reading makes another: again.
            for _attempt in range(3):
                state = catalogue.bits.state()
                if state is None or self._closing:
                    return
                with catalogue.reading() as db:
                    # Rows kept with the bitmaps are of their transaction (see ``kept_page``).
                    if stamp_of(db) == state.stamp:
                        keep_newest(db, state, NEWEST_KEPT)
                        return
        except (OSError, sqlite3.DatabaseError) as exc:  # each search reads its own instead
            log.warning("the newest comparisons could not be read for search: %s", exc)

    def _bits_due(self, catalogue: Catalogue | None) -> None:
        """Make the bitmaps in the background when there are none and the catalogue is filled
        (after start-up, or after a change they could not follow)."""
        if catalogue is None or self.bits_from is None or not self._filled or self._closing:
            return
        with self._bits_lock:  # the filling thread and a waiter may both find them due
            if self._closing or catalogue.bits.state() is not None or catalogue.bits.building:
                return
            if self._bits_thread is not None and self._bits_thread.is_alive():
                return
            catalogue.bits.dense_from = self.bits_from
            self._bits_thread = threading.Thread(target=self._build_bits, args=(catalogue,),
                                                 name="cms-search-bits", daemon=True)
            self._bits_settling = True  # before the thread can end and clear it
            try:
                self._bits_thread.start()
            except BaseException:
                self._bits_settling = False
                raise

    def search_bits_settled(self) -> Catalogue | None:
        """Wait until the search bitmaps are built, if they are due; the catalogue."""
        # The filling thread marks the catalogue filled, releases its lock and only then starts
        # the build: a wait that begins in that window would find no thread to join.
        self._bits_due(self._catalogue)
        with self._bits_lock:
            thread = self._bits_thread
        if thread is not None:
            thread.join()
        return self._catalogue

    def _renew(self, error: Exception, failed: Catalogue | None) -> bool:
        """Replace the catalogue that failed with an empty one; whether there is one to use.
        Requests that failed on the same file together make it anew once, not once each."""
        with self._write_lock:
            if self._catalogue is not failed and self._catalogue is not None:
                return True  # another request made it anew already
            return self._replace(error)

    def _replace(self, error: Exception) -> bool:
        """With the writer's lock held: the catalogue file cannot be used, so a new empty one
        takes its place; whether there is one to use."""
        log.error("the catalogue cannot be used (%s); it is made anew", error)
        old, self._catalogue = self._catalogue, None
        self._complete = self._filled = self._ready = False
        try:
            if old is not None:
                old.discard()
            self._catalogue = Catalogue.open(self.folder, self._fingerprint())
        except (OSError, sqlite3.DatabaseError, CatalogueError) as exc:
            log.error("a new catalogue cannot be made either (%s)", exc)
            return False
        return True
