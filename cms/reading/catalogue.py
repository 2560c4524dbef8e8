"""The catalogue: a card for every published comparison, with its sort keys, filter values and
search index, in an SQLite file beside the server.

It is what lists and search read, so a server's memory holds none of it beyond SQLite's page
cache: a hundred thousand comparisons cost disk, not RAM. The file says which tree of main its
rows were taken from, so a restart follows main from there by comparing trees and a warm start
reads nothing else. It is a cache of what git holds: when it is damaged, made by other code or
unreadable, it is made anew from git.

Processes that share a data folder each take a file of their own (``catalogue-<n>.sqlite``,
held by a lock on ``catalogue-<n>.lock``): each follows main at its own pace, and one process's
rows must never be taken for another's view.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import secrets
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from ..content.model import Comparison
from .card import card_of, keys_of, row_number, search_text
from .search_bits import Change, SearchBits, generation_of, stamp_of

log = logging.getLogger("cms")

# Names the schema and how rows are derived from a comparison (its card, keys and search
# text): the search index keeps no text, so forgetting a comparison's words repeats how they
# were derived, and any change to that derivation must make every catalogue anew.
SCHEMA_VERSION = 3
_SLOTS = 64
# The search index's three parts, each a table of its own: see card.SearchText.
SEARCH_PARTS = ("head", "lead", "full")
# The segments of one level of the search index that are merged as soon as they are there.
_SEGMENTS_A_LEVEL = 4
# SQLite's page cache for each connection, in KiB: the memory the catalogue costs a server.
_CACHE_KIB = 4096
_KEPT_READERS = 8
_BEGINNINGS = ", prefix='3 4 5 6'"
# Beside a slot's file, and only its holder's: a copy being shipped, and one being unpacked.
SHIPPING = ".shipping"
SHIPPED = ".shipped"
# Beside a slot's file: its search bitmaps, saved for the next start.
BITS = ".bits"

_SCHEMA = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # `id` orders rows by publication (see card.row_number); search reads it from the top.
    """CREATE TABLE comparisons (
        id INTEGER PRIMARY KEY, slug TEXT NOT NULL UNIQUE, blob TEXT NOT NULL,
        published TEXT NOT NULL, title TEXT NOT NULL, panel_ship REAL NOT NULL,
        card BLOB NOT NULL)""",
    "CREATE INDEX comparisons_by_published ON comparisons (published, slug)",
    "CREATE INDEX comparisons_by_title ON comparisons (title, slug)",
    "CREATE INDEX comparisons_by_panel_ship ON comparisons (panel_ship, slug)",
    """CREATE TABLE tools (
        comparison INTEGER NOT NULL, position INTEGER NOT NULL, id TEXT NOT NULL,
        name TEXT NOT NULL, category TEXT NOT NULL, verdict TEXT NOT NULL,
        PRIMARY KEY (comparison, position)) WITHOUT ROWID""",
    "CREATE INDEX tools_by_category ON tools (category, comparison)",
    "CREATE INDEX tools_by_id ON tools (id, comparison)",
    # Files on main that do not decode: known, so that a restart does not try them again.
    "CREATE TABLE broken (slug TEXT PRIMARY KEY, blob TEXT NOT NULL) WITHOUT ROWID",
    # Contentless: the text is in git already. Positions are not kept (detail=none), since
    # search asks only which comparisons hold every word, which keeps the index a fifth of the
    # size and its updates cheap. The short parts also index the beginnings of their words,
    # so that a word being typed finds a title, a tool or a summary at once; in the long one,
    # that would cost four times the building.
    *(f"CREATE VIRTUAL TABLE search_{part} USING fts5(text, content='', detail=none"
      f"{_BEGINNINGS if part != 'full' else ''})" for part in SEARCH_PARTS),
]


class CatalogueError(Exception):
    """The file cannot be used; it is made anew."""


class _Slot:
    """A catalogue slot held by this process: the lock goes with the descriptor, which is
    closed by ``release`` or when the slot is dropped."""

    def __init__(self, fd: int) -> None:
        self.release = weakref.finalize(self, os.close, fd)


class Catalogue:
    """One process's catalogue file. Writes go through ``writing`` and are serialised by the
    caller; reads take a connection of their own from a pool and may run in any thread."""

    def __init__(self, path: Path, slot: _Slot, fingerprint: str) -> None:
        self.path = path
        self._slot = slot
        self.fingerprint = fingerprint
        self._writer = _connect(path)
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._kept = 0
        self._kept_lock = threading.Lock()
        self._closed = False
        self._copying: sqlite3.Connection | None = None
        # The common words' bitmaps, made once the catalogue is filled (``build_bits``) and
        # following every transaction of the writer from then on.
        self.bits = SearchBits()
        # The stamp of the last transaction committed (see ``search_bits.stamp_of``).
        self.committed = stamp_of(self._writer) if self._has_meta() else "0"

    @classmethod
    def open(cls, folder: Path, fingerprint: str) -> Catalogue:
        """The first free slot's catalogue: kept if it was made by this code for this
        layout, else emptied."""
        folder.mkdir(parents=True, exist_ok=True)
        for slot in range(_SLOTS):
            fd = os.open(folder / f"catalogue-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            path = folder / f"catalogue-{slot}.sqlite"
            return cls._opened(path, _Slot(fd), fingerprint)
        raise CatalogueError(f"every one of {_SLOTS} catalogue slots in {folder} is in use")

    @classmethod
    def _opened(cls, path: Path, slot: _Slot, fingerprint: str) -> Catalogue:
        # Of a process that held the slot and died: a copy being shipped (and the journal
        # SQLite keeps while writing it), one being unpacked.
        for leftover in (SHIPPING, f"{SHIPPING}-journal", SHIPPED, f"{BITS}.new"):
            path.with_name(path.name + leftover).unlink(missing_ok=True)
        kept = cls._existing(path, slot, fingerprint)
        if kept is not None:
            return kept
        _remove(path)
        catalogue = cls(path, slot, fingerprint)
        catalogue._create()
        return catalogue

    @classmethod
    def _existing(cls, path: Path, slot: _Slot, fingerprint: str) -> Catalogue | None:
        """The catalogue at ``path`` if it was made by this code, else None (closed)."""
        if not path.exists():
            return None
        catalogue = None
        try:
            catalogue = cls(path, slot, fingerprint)
            # Damage past the first page shows when it is read, and the file is made anew then.
            if catalogue._meta("fingerprint") == fingerprint:
                if catalogue._meta("identity") is None:  # made by an earlier version
                    with catalogue._transaction() as db:
                        db.execute("INSERT INTO meta VALUES ('identity', ?)",
                                   (secrets.token_hex(16),))
                return catalogue
        except sqlite3.DatabaseError as exc:
            log.warning("the catalogue %s cannot be read (%s); it is made anew", path.name, exc)
        if catalogue is not None:
            catalogue._close_connections()
        return None

    def _create(self) -> None:
        with self._transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)
            for part in SEARCH_PARTS:
                # Every publication leaves two small segments (its old words out, its new ones
                # in), and FTS5 merges a level's segments at once only when there are 16 of
                # them: searches slowed down threefold between merges. Merged at four, a level
                # never holds more than three (a fraction of a millisecond a merge).
                db.execute(f"INSERT INTO search_{part} (search_{part}, rank) "
                           f"VALUES ('crisismerge', {_SEGMENTS_A_LEVEL})")
            db.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (self.fingerprint,))
            # Names this file among every catalogue made, for what is saved beside it.
            db.execute("INSERT INTO meta VALUES ('identity', ?)", (secrets.token_hex(16),))
        self.committed = "0"

    def _has_meta(self) -> bool:
        return self._meta("fingerprint") is not None

    def _meta(self, key: str) -> str | None:
        try:
            row = self._writer.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:  # no such table: a new file
            return None
        return None if row is None else str(row[0])

    # What the file holds

    @property
    def tree(self) -> str | None:
        """The tree of main the rows were taken from; a row may be missing (not indexed yet),
        never stale."""
        return self._meta("tree") or None

    @property
    def complete(self) -> bool:
        """Whether every file of the tree has its row."""
        return self._meta("complete") == "1"

    def slugs(self) -> dict[str, str]:
        """Every indexed file: slug -> blob, broken files included."""
        rows = self._writer.execute("SELECT slug, blob FROM comparisons UNION ALL "
                                    "SELECT slug, blob FROM broken").fetchall()
        return {str(slug): str(blob) for slug, blob in rows}

    def __len__(self) -> int:
        return int(self._writer.execute("SELECT count(*) FROM comparisons").fetchone()[0])

    # Writing

    @contextmanager
    def writing(self) -> Iterator[Writer]:
        """One transaction of changes: all of them land, or none."""
        with self._transaction() as db:
            # Every transaction is numbered, so that a reader knows whether the bitmaps in
            # memory are of the rows it reads.
            generation = generation_of(db) + 1
            stamp = f"{generation} {secrets.token_hex(8)}"
            writer = Writer(db)
            yield writer
            db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (stamp,))
        self.committed = stamp
        if writer.cleared:
            self.bits.drop()
        else:
            self.bits.apply(generation, stamp, writer.changes)

    def build_bits(self) -> None:
        """Make the common words' bitmaps from the rows as they are (seconds at 100,000
        comparisons: in a thread of its own, while SQL answers every search)."""
        db = _connect(self.path)
        try:
            self.bits.build(db)
        finally:
            db.close()

    @property
    def bits_path(self) -> Path:
        return self.path.with_name(self.path.name + BITS)

    def load_bits(self) -> bool:
        """Take the bitmaps a previous process saved, if they are of these rows; whether it
        did."""
        db = _connect(self.path)
        try:
            identity = _identity_of(db)
            return identity is not None and self.bits.load(
                self.bits_path, identity, lambda: stamp_of(db))
        finally:
            db.close()

    def save_bits(self) -> None:
        """Keep the bitmaps beside the file for the next start (a cache: a failure is only
        logged)."""
        if self._closed:
            return
        try:
            db = _connect(self.path)
            try:
                identity = _identity_of(db)
            finally:
                db.close()
            if identity is not None:
                self.bits.save(self.bits_path, identity)
        except Exception as exc:  # a cache: nothing that fails here may keep a close from ending
            log.warning("the search bitmaps could not be saved: %s", exc)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._writer
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                db.execute("ROLLBACK")
            raise

    def search_segments(self) -> int:
        """The most segments any part of the search index is in."""
        return max(int(self._writer.execute(
            f"SELECT count(DISTINCT segid) FROM search_{part}_idx").fetchone()[0])
            for part in SEARCH_PARTS)

    def compact_search(self, pages: int) -> bool:
        """Merge the search index's segments by about ``pages`` pages of each part, in one
        transaction; whether this step merged any (none: they are one already).

        Every batch of rows added leaves segments of its own, and a search reads each word's
        list in every segment: at 100,000 comparisons filled in batches, a query that matches
        nothing cost a millisecond, and a third of that once the segments are one. Merging a
        step at a time keeps each transaction short."""
        merged = False
        with self._transaction() as db:
            for part in SEARCH_PARTS:
                before = db.total_changes
                # Negative: every segment is taken as one level and merged, two or more.
                db.execute(f"INSERT INTO search_{part} (search_{part}, rank) VALUES ('merge', ?)",
                           (-pages,))
                merged = merged or db.total_changes - before >= 2
        return merged

    # Reading

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for this thread alone, inside one read transaction: every statement
        sees the same state of the file."""
        try:
            db = self._readers.get_nowait()
        except queue.Empty:
            db = _connect(self.path)
        else:
            with self._kept_lock:
                self._kept -= 1
        try:
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        with self._kept_lock:
            keep = self._kept < _KEPT_READERS and not self._closed
            if keep:
                self._kept += 1
        if keep:
            self._readers.put(db)
        else:
            db.close()

    def restore_from(self, restore: Callable[[Path], bool]) -> bool:
        """Replace this (empty) catalogue with what ``restore`` writes in its place, when that
        was made by this code; whether it was. Nobody else may be using the file meanwhile."""
        self.bits.drop()
        self._close_connections()
        _remove(self.path)
        try:
            taken = restore(self.path)
        except BaseException:
            self._writer = _connect(self.path)
            self._create()
            raise
        if taken:
            try:
                self._writer = _connect(self.path)
                # Made by this code, and holding this code's tables and nothing else (no
                # trigger or view of whoever pushed it).
                if self._meta("fingerprint") == self.fingerprint and \
                        _schema_of(self._writer) == _expected_schema():
                    self.committed = stamp_of(self._writer)
                    return True
                log.warning("the shipped catalogue is not one this code made; it is filled "
                            "from git")
            except sqlite3.DatabaseError as exc:
                log.warning("the shipped catalogue cannot be read (%s); it is filled from git",
                            exc)
            self._writer.close()
            _remove(self.path)
        self._writer = _connect(self.path)
        self._create()
        return False

    def copy_to(self, path: Path) -> tuple[str | None, bool]:
        """Write a compact copy of the catalogue as it is now to ``path``; the tree it holds
        and whether it is complete."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._copying = db
        try:
            if self._closed:
                raise CatalogueError("the catalogue is closed")
            db.execute("VACUUM INTO ?", (str(path),))  # one read transaction's rows, no log
        finally:
            self._copying = None
            db.close()
        copy = sqlite3.connect(path, isolation_level=None)
        try:
            meta = dict(copy.execute("SELECT key, value FROM meta").fetchall())
        finally:
            copy.close()
        return meta.get("tree") or None, meta.get("complete") == "1"

    def close(self) -> None:
        self._closed = True
        copying = self._copying
        if copying is not None:  # a copy being shipped is given up
            copying.interrupt()
        self._close_connections()
        self.bits.close()
        self._slot.release()

    def discard(self) -> None:
        """Close the catalogue and remove its file, so that the slot opens an empty one."""
        self._closed = True
        self._close_connections()
        self.bits.close()
        _remove(self.path)
        self._slot.release()

    def _close_connections(self) -> None:
        self._writer.close()
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break


class Writer:
    """The changes of one transaction. The only writer of the rows of ``comparisons``, and
    every write of one is an ``add`` or a ``remove`` that ``changes`` names (a row put back
    under the same id is both): the search bitmaps keep the rows read before a transaction
    that it did not name (``search_bits._rows_still``), so a write of a row that bypassed
    ``changes`` would leave them showing it as it was."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.changes: list[Change] = []
        self.cleared = False

    def add(self, slug: str, blob: str, comparison: Comparison) -> None:
        keys = keys_of(comparison)
        card = msgspec.msgpack.encode(card_of(comparison))
        number = row_number(slug, comparison.workflow.published_at)
        while True:  # two slugs whose numbers meet: the later takes the next free one
            try:
                self._db.execute(
                    "INSERT INTO comparisons VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (number, slug, blob, keys.published, keys.title, keys.panel_ship, card))
                break
            except sqlite3.IntegrityError:
                if self._db.execute("SELECT 1 FROM comparisons WHERE slug = ?",
                                    (slug,)).fetchone():
                    raise
                number += 1
        self._db.executemany("INSERT INTO tools VALUES (?, ?, ?, ?, ?, ?)",
                             [(number, position, *tool) for position, tool in
                              enumerate(keys.tools)])
        text = search_text(comparison)
        for part in SEARCH_PARTS:
            self._db.execute(f"INSERT INTO search_{part} (rowid, text) VALUES (?, ?)",
                             (number, getattr(text, part)))
        self.changes.append(Change(number, texts=(text.head, text.lead, text.full)))

    def add_broken(self, slug: str, blob: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO broken VALUES (?, ?)", (slug, blob))

    def remove(self, slug: str, old: Comparison | None) -> None:
        """Take a slug's row out; ``old`` is the comparison it was made from, whose words are
        what the search index must be told to forget (it keeps no text of its own)."""
        self._db.execute("DELETE FROM broken WHERE slug = ?", (slug,))
        row = self._db.execute("SELECT id FROM comparisons WHERE slug = ?", (slug,)).fetchone()
        if row is None:
            return
        if old is None:
            raise CatalogueError(f"the indexed comparison {slug} cannot be read to remove it")
        number = int(row[0])
        text = search_text(old)
        for part in SEARCH_PARTS:
            self._db.execute(
                f"INSERT INTO search_{part} (search_{part}, rowid, text) VALUES ('delete', ?, ?)",
                (number, getattr(text, part)))
        self._db.execute("DELETE FROM tools WHERE comparison = ?", (number,))
        self._db.execute("DELETE FROM comparisons WHERE id = ?", (number,))
        self.changes.append(Change(number, old=(text.head, text.lead, text.full)))

    def indexed(self, slug: str) -> str | None:
        """The blob a slug's row was made from, if it has one (broken files too)."""
        row = self._db.execute("SELECT blob FROM comparisons WHERE slug = ? UNION ALL "
                               "SELECT blob FROM broken WHERE slug = ?", (slug, slug)).fetchone()
        return None if row is None else str(row[0])

    def is_broken(self, slug: str) -> bool:
        return self._db.execute("SELECT 1 FROM broken WHERE slug = ?", (slug,)).fetchone() is not None

    def set_tree(self, tree: str | None, *, complete: bool) -> None:
        self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                             [("tree", tree or ""), ("complete", "1" if complete else "0")])

    def clear(self) -> None:
        for table in ("comparisons", "tools", "broken"):
            self._db.execute(f"DELETE FROM {table}")
        for part in SEARCH_PARTS:
            self._db.execute(f"INSERT INTO search_{part} (search_{part}) VALUES ('delete-all')")
        self.cleared = True


def _identity_of(db: sqlite3.Connection) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
    return None if row is None else str(row[0])


def _remove(path: Path) -> None:
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm", f"{path.name}{BITS}"):
        path.with_name(name).unlink(missing_ok=True)


def _schema_of(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
    return [(str(kind), str(name), str(sql)) for kind, name, sql in db.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")]


_expected: list[list[tuple[str, str, str]]] = []


def _expected_schema() -> list[tuple[str, str, str]]:
    """What a catalogue made by this code holds in SQLite's own schema table."""
    if not _expected:
        db = sqlite3.connect(":memory:")
        try:
            for statement in _SCHEMA:
                db.execute(statement)
            _expected.append(_schema_of(db))
        finally:
            db.close()
    return _expected[0]


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    # Nothing in a file runs code of its own (a copy shipped with the content is a file
    # someone else wrote).
    db.execute("PRAGMA trusted_schema=OFF")
    db.execute("PRAGMA journal_mode=WAL")
    # A cache: a commit need only survive the process, not the machine.
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
    db.execute("PRAGMA busy_timeout=10000")
    return db
