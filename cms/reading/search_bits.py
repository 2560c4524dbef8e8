"""The search index's common words as bitmaps in memory, for searches that SQL answers slowly.

A word that most comparisons hold has a list of tens of thousands of rows in the search index,
and a search of two such words read both lists whole when they had nothing in common: half a
millisecond for a search that finds nothing, at 100,000 comparisons. Here every word held by at
least ``dense_from`` comparisons has a bitmap over the catalogue's rows in id order (newest
last), so that a search is a few operations on bitmaps. They are Roaring bitmaps (pyroaring):
combined in C, a few microseconds for two words at 100,000 rows, where the same in Python ints
cut into blocks cost tens; and a sparse one weighs what its rows do. Words held by fewer
comparisons are known only by a hash: the rows of one of them (or of a beginning one of them
shares) are read from the index by the first search in a thread that needs them, and kept for
the next ones.

The bitmaps are made from the search index itself (so a word is whatever its tokenizer makes of
the text) in a thread of their own once the catalogue is filled, and follow each transaction
of the catalogue's writer from then on. A state is made whole and then put in place, and says
which transaction of the catalogue it reflects: a search that reads the catalogue at another
one goes to SQL.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import logging
import os
import re
import sqlite3
import sys
import threading
import time
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from itertools import repeat
from pathlib import Path
from typing import NamedTuple

import msgspec
from pyroaring import BitMap, FrozenBitMap

from .search_memo import Key, Memo, Term, TermKey

log = logging.getLogger("cms")

_PARTS = ("head", "lead", "full")
# A typed beginning is looked up among the rare words' beginnings up to this many characters;
# a longer one is taken as possibly rare, which only sends it to SQL.
_BEGINNING_KEPT = 12
_BEGINNING_FROM = 3
_ASCII_WORD = re.compile(r"[a-z0-9]+")
# Rows older than the newest that one transaction may bring in place (each moves the positions
# above it up by one in every bitmap, about 5 µs a bitmap: some 10 ms for the 1,800 bitmaps of
# 100,000 comparisons); more are made anew.
_OLDER_FOLLOWED = 16
_DIGEST = 32
ROWS_KEPT = 4096
_EMPTY = FrozenBitMap()
_PART_COUNT = len(_PARTS)
_WHOLE = (False,) * _PART_COUNT

Rows = FrozenBitMap  # positions in ``State.ids``


class BuildCancelled(Exception):
    """A build stopped part-way, since the catalogue is closing."""


class Change(NamedTuple):
    """A row of the catalogue added (``texts``, its search text by part) or removed (``old``,
    the text it was indexed with)."""

    row: int
    texts: tuple[str, str, str] | None = None
    old: tuple[str, str, str] | None = None


class _Vocabulary(NamedTuple):
    """What a build found of the words themselves; fixed until the next build."""

    common: tuple[list[str], ...]  # by part: the words with a bitmap, sorted
    # By part: hashes of the words too rare for a bitmap, and of their beginnings, sorted.
    rare: tuple[array[int], ...]
    rare_beginnings: tuple[array[int], ...]
    # Rare words that came in since, in sets (a check and an addition are each one step, so a
    # reader on another thread never sees half of one).
    new_rare: tuple[set[int], ...]
    new_rare_beginnings: tuple[set[int], ...]


class State(NamedTuple):
    generation: int  # the catalogue transaction these bitmaps reflect
    stamp: str  # and that transaction's stamp (see ``stamp_of``)
    # The row id at each position, ascending (so a row's position is found by bisection);
    # never changed once in a state.
    ids: array[int]
    alive: Rows  # positions that hold a row now
    words: tuple[dict[str, Rows], ...]  # by part: word -> its rows
    vocabulary: _Vocabulary
    # By (part, word, whether it is a beginning): a beginning's words combined, and the rows of
    # a rare word or beginning, read once from the catalogue at this transaction; and each
    # word as searches ask for it, with its rows in every part (``Memo.terms``).
    memo: Memo
    # Rows read for searches at this transaction, by id, for the next searches: what a list
    # shows of them (``listing.Listed``), which this module does not need to know.
    rows: dict[int, object]


class SearchBits:
    def __init__(self, dense_from: int = 256) -> None:
        self.dense_from = dense_from
        self._state: State | None = None
        self._lock = threading.Lock()  # the writer's side: applying, building, loading
        self._building = False
        self._epoch = 0  # moves on ``drop``: a build begun before it is not installed
        self._pending: list[tuple[int, str, list[Change]]] = []
        self._tokenizer: sqlite3.Connection | None = None
        self._cancelled = False
        self.builds = 0

    # State

    @property
    def building(self) -> bool:
        return self._building

    def cancel(self) -> None:
        """Stop a build under way, and any to come (the catalogue is closing)."""
        self._cancelled = True

    def drop(self) -> None:
        """Forget everything: the catalogue was emptied or replaced."""
        with self._lock:
            self._state = None
            self._pending.clear()
            self._epoch += 1

    # Reading

    def state(self) -> State | None:
        return self._state

    def terms(self, state: State, words: list[str], begun: tuple[bool, ...],
              db: sqlite3.Connection | None = None) -> list[tuple[Rows, ...]] | None:
        """Each word's rows by part (the last as a beginning in the parts whose ``begun`` says
        so), to combine with ``combined``. A rare word, or a beginning a rare word shares, has
        its rows read from ``db`` (which the caller knows reads the catalogue at the state's
        transaction) and kept for the next searches. None: such a word without ``db`` and not
        read before, or not a plain word; SQL answers."""
        if not words:
            return None
        last = len(words) - 1
        get = state.memo.terms.get
        terms: list[tuple[Rows, ...]] = []
        for number, word in enumerate(words):
            # A whole word by itself (most are), else with where it is a beginning.
            key: TermKey = word if number != last or begun == _WHOLE else (word, begun)
            term = get(key)
            if term is None:
                term = _term(state, key, db)
                if term is None:
                    return None
            terms.append(term[0])
        return terms

    # Building and following the catalogue

    def build(self, db: sqlite3.Connection) -> None:
        """Make the bitmaps from the catalogue as ``db`` reads it, in a read transaction of its
        own; the writer's transactions meanwhile are applied after."""
        epoch = self._begin()
        if epoch is None:
            return
        try:
            db.execute("BEGIN")
            try:
                made = self._made(db)
            finally:
                db.execute("COMMIT")
        except BaseException:
            self._end(None, epoch)
            raise
        self._end(made, epoch)
        self.builds += 1

    def load(self, path: Path, catalogue: str, stamp: Callable[[], str]) -> bool:
        """Take the bitmaps saved at ``path`` if they are whole and of this catalogue at its
        transaction now (``stamp`` reads it), made with the same ``dense_from``; whether they
        were. Transactions committed meanwhile are applied after, as for a build."""
        epoch = self._begin()
        if epoch is None:
            return False
        loaded: State | None = None
        try:
            # Read once this is marked as under way: a later transaction waits in ``_pending``.
            now = stamp()
            loaded = _loaded(path, catalogue, now, self.dense_from)
        finally:
            installed = self._end(loaded, epoch)
        return installed

    def _begin(self) -> int | None:
        with self._lock:
            if self._building or self._state is not None:
                return None
            self._building = True
            self._pending.clear()
            return self._epoch

    def _end(self, made: State | None, epoch: int) -> bool:
        """Install what a build or a load made, after the transactions that came meanwhile;
        whether it was (not after a ``drop``)."""
        with self._lock:
            self._building = False
            pending, self._pending = self._pending, []
            if made is None or epoch != self._epoch:
                return False
            state: State | None = made
            try:
                for generation, stamp, changes in pending:
                    if state is not None and generation > state.generation:
                        state = self._applied(state, generation, stamp, changes)
            except (sqlite3.Error, MemoryError) as exc:
                log.warning("the search bitmaps cannot follow the catalogue: %s", exc)
                state = None
            self._state = state
            # None when what came meanwhile could not be followed: the caller makes them anew.
            return state is not None

    def _made(self, db: sqlite3.Connection) -> State:
        stamp = stamp_of(db)
        ids = array("q", (int(row) for (row,) in db.execute(
            "SELECT id FROM comparisons ORDER BY id")))
        where = _Positions(ids)
        alive = FrozenBitMap(range(len(ids)))
        words: list[dict[str, Rows]] = []
        rare: list[array[int]] = []
        beginnings: list[array[int]] = []
        for part in _PARTS:
            db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.vocabulary_{part} "
                       f"USING fts5vocab(main, search_{part}, row)")
            dense: dict[str, Rows] = {}
            rare_hashes: set[int] = set()
            rare_starts: set[int] = set()
            for word, held in db.execute(f"SELECT term, doc FROM temp.vocabulary_{part}"):
                if held >= self.dense_from:
                    if self._cancelled:
                        raise BuildCancelled
                    dense[word] = FrozenBitMap(_positions(db, part, word, where))
                    time.sleep(0)  # requests first: this is seconds of work
                else:
                    rare_hashes.add(_hash(word))
                    rare_starts.update(map(_hash, _beginnings(word)))
            words.append(dense)
            rare.append(array("q", sorted(rare_hashes)))
            beginnings.append(array("q", sorted(rare_starts)))
        vocabulary = _vocabulary(tuple(sorted(part) for part in words), tuple(rare),
                                 tuple(beginnings))
        return State(generation_from(stamp), stamp, ids, alive, tuple(words), vocabulary,
                     Memo(), {})

    def apply(self, generation: int, stamp: str, changes: list[Change]) -> None:
        """Follow a committed transaction of the catalogue's writer."""
        with self._lock:
            if self._building:
                self._pending.append((generation, stamp, changes))
                return
            state = self._state
            if state is None:
                return
            try:
                self._state = self._applied(state, generation, stamp, changes)
            except (sqlite3.Error, MemoryError) as exc:
                # The catalogue's transaction is in: only the bitmaps are behind, and SQL
                # answers until they are made again.
                log.warning("the search bitmaps cannot follow the catalogue: %s", exc)
                self._state = None

    def _applied(self, state: State, generation: int, stamp: str,
                 changes: list[Change]) -> State | None:
        """The state after a transaction; None when it cannot follow (a transaction missed,
        or many rows older than the newest), so that SQL answers until a new build."""
        if state.generation != generation - 1:
            return None
        removed = [change for change in changes if change.old is not None]
        added = sorted((change for change in changes if change.texts is not None),
                       key=lambda change: change.row)
        older = [change for change in added
                 if state.ids and change.row < state.ids[-1]
                 and _position(state.ids, change.row) is None]
        if len(older) > _OLDER_FOLLOWED:
            return None
        if not removed and not added:
            return state._replace(generation=generation, stamp=stamp)
        alive, ids = state.alive, state.ids
        words = [dict(part) for part in state.words]
        new_rows = [change.row for change in added if _position(ids, change.row) is None]
        if new_rows:
            ids = array("q", ids)
            for row in new_rows:  # ascending: each finds the ones before it in place
                at = bisect.bisect_left(ids, row)
                if at < len(ids):  # older than the newest: the rows above move up
                    moved = FrozenBitMap(range(at, len(ids)))
                    alive = _inserted(alive, moved)
                    for part in words:
                        for word, rows in part.items():
                            part[word] = _inserted(rows, moved)
                ids.insert(at, row)
        # Each bitmap a row changes is copied once, changed in place, and frozen at the end:
        # the state before is being read meanwhile.
        changing = _Changing(alive, words)
        for change, held in zip(removed, self._terms([c.old for c in removed if c.old]),
                                strict=True):
            position = _position(ids, change.row)
            if position is not None:
                changing.mark(held, position, on=False)
        vocabulary = state.vocabulary
        for change, held in zip(added, self._terms([c.texts for c in added if c.texts]),
                                strict=True):
            position = _position(ids, change.row)
            assert position is not None, "every added row was put in ``ids`` above"
            for number, rare in enumerate(changing.mark(held, position, on=True)):
                for word in rare:
                    if not _known_rare(vocabulary, number, word):
                        vocabulary.new_rare[number].add(_hash(word))
                        vocabulary.new_rare_beginnings[number].update(
                            map(_hash, _beginnings(word)))
        alive = changing.frozen()
        return State(generation, stamp, ids, alive, tuple(words), vocabulary, Memo(),
                     _rows_still(state.rows, [change.row for change in changes]))

    def _terms(self, texts: list[tuple[str, str, str]]) -> list[tuple[set[str], ...]]:
        """The words the search index makes of each text, by its own tokenizer."""
        if not texts:
            return []
        db = self._tokenizer
        if db is None:
            db = self._tokenizer = sqlite3.connect(":memory:", isolation_level=None,
                                                   check_same_thread=False)
            db.execute("CREATE VIRTUAL TABLE words USING fts5(text, detail=none)")
            db.execute("CREATE VIRTUAL TABLE words_found USING fts5vocab(words, instance)")
        found: list[tuple[set[str], ...]] = [tuple(set() for _ in _PARTS) for _ in texts]
        rows = [(number * len(_PARTS) + part, text[part])
                for number, text in enumerate(texts) for part in range(len(_PARTS))]
        db.execute("BEGIN")
        try:
            db.executemany("INSERT INTO words (rowid, text) VALUES (?, ?)", rows)
            for row, word in db.execute("SELECT doc, term FROM words_found"):
                found[row // len(_PARTS)][row % len(_PARTS)].add(str(word))
            db.execute("DELETE FROM words")
        finally:
            db.execute("COMMIT")
        return found

    def save(self, path: Path, catalogue: str) -> bool:
        """Write the bitmaps beside the catalogue, so that the next start need not make them
        again; whether there were any to write."""
        state = self._state  # never changed once made: read outside the writer's lock
        if state is None:
            return False
        vocabulary = state.vocabulary
        saved = _Saved(
            format=_FORMAT, catalogue=catalogue, stamp=state.stamp, dense_from=self.dense_from,
            ids=state.ids.tobytes(), alive=state.alive.serialize(),
            words=[{word: rows.serialize() for word, rows in part.items()}
                   for part in state.words],
            rare=[_merged(old, new) for old, new in zip(
                vocabulary.rare, vocabulary.new_rare, strict=True)],
            rare_beginnings=[_merged(old, new) for old, new in zip(
                vocabulary.rare_beginnings, vocabulary.new_rare_beginnings, strict=True)])
        payload = msgspec.msgpack.encode(saved)
        temporary = path.with_name(path.name + ".new")
        try:
            with temporary.open("wb") as file:
                file.write(hashlib.blake2b(payload, digest_size=_DIGEST).digest())
                file.write(payload)
                file.flush()
                os.fsync(file.fileno())
            temporary.replace(path)
        except BaseException:
            temporary.unlink(missing_ok=True)  # a full disk: no part of it left behind
            raise
        return True

    def close(self) -> None:
        with self._lock:
            self._state = None
            self._epoch += 1
            if self._tokenizer is not None:
                self._tokenizer.close()
                self._tokenizer = None


_FORMAT = "roaring-1"  # how the bitmaps are saved: a file of another format is made anew


class _Saved(msgspec.Struct, array_like=True):
    format: str
    catalogue: str  # the catalogue file's own id (its meta table's identity)
    stamp: str
    dense_from: int
    ids: bytes
    alive: bytes
    words: list[dict[str, bytes]]
    rare: list[bytes]
    rare_beginnings: list[bytes]


def _loaded(path: Path, catalogue: str, stamp: str, dense_from: int) -> State | None:
    try:
        # Views, not copies: the file is tens of MB, read at start-up beside everything else.
        with memoryview(path.read_bytes()) as raw:
            digest, payload = raw[:_DIGEST], raw[_DIGEST:]
            if hashlib.blake2b(payload, digest_size=_DIGEST).digest() != digest:
                return None  # damaged, or cut short
            saved = msgspec.msgpack.decode(payload, type=_Saved)
        if (saved.format, saved.catalogue, saved.stamp, saved.dense_from) != \
                (_FORMAT, catalogue, stamp, dense_from) \
                or len(saved.words) != len(_PARTS) or len(saved.rare) != len(_PARTS) \
                or len(saved.rare_beginnings) != len(_PARTS):
            return None
        ids = _int64s_from(saved.ids)
        count = len(ids)
        rare = tuple(map(_int64s_from, saved.rare))
        beginnings = tuple(map(_int64s_from, saved.rare_beginnings))
        # Looked up by bisection: what is not in order would answer with other rows, or say a
        # rare word is in none.
        if not all(map(_ascending, (ids, *rare, *beginnings))):
            return None
        words = tuple(_rows_by_word(part, count) for part in saved.words)
        vocabulary = _vocabulary(tuple(sorted(part) for part in words), rare, beginnings)
        alive = _rows_from(saved.alive, count)
    except (OSError, ValueError, msgspec.DecodeError):
        return None
    return State(generation_from(stamp), stamp, ids, alive, words, vocabulary, Memo(), {})


def _ascending(values: array[int]) -> bool:
    return all(map(int.__lt__, values, itertools.islice(values, 1, None)))


def _rows_by_word(saved: dict[str, bytes], count: int) -> dict[str, Rows]:
    """The bitmaps of a part, each saved one let go once it is made."""
    made: dict[str, Rows] = {}
    while saved:
        word, raw = saved.popitem()
        made[word] = _rows_from(raw, count)
    return made


def _rows_from(raw: bytes, count: int) -> Rows:
    try:
        rows = FrozenBitMap.deserialize(raw)
    except Exception as exc:  # the binding raises IndexError for some, ValueError for others
        raise ValueError(f"not a bitmap: {exc}") from exc
    if rows and rows.max() >= count:
        raise ValueError("a bitmap holds a position past the last row")
    return rows


def _vocabulary(common: tuple[list[str], ...], rare: tuple[array[int], ...],
                beginnings: tuple[array[int], ...]) -> _Vocabulary:
    return _Vocabulary(common, rare, beginnings, tuple(set() for _ in _PARTS),
                       tuple(set() for _ in _PARTS))


class _Changing:
    """The bitmaps of a state being made from the one before: each one a row changes is copied
    the first time, then changed in place."""

    def __init__(self, alive: Rows, words: list[dict[str, Rows]]) -> None:
        self.words = words
        self._alive = BitMap(alive)
        self._copies: list[dict[str, BitMap]] = [{} for _ in words]

    def mark(self, held: tuple[set[str], ...], position: int, *, on: bool) -> list[list[str]]:
        """Set or clear a row's bit in the bitmap of every word it holds, by part; the words
        without a bitmap, by part."""
        _set(self._alive, position, on)
        without: list[list[str]] = []
        for part, copies, part_words in zip(self.words, self._copies, held, strict=True):
            without.append([])
            for word in part_words:
                copy = copies.get(word)
                if copy is None:
                    having = part.get(word)
                    if having is None:
                        without[-1].append(word)
                        continue
                    copy = copies[word] = BitMap(having)
                _set(copy, position, on)
        return without

    def frozen(self) -> Rows:
        """Put the changed bitmaps in ``words``, frozen; the rows alive now."""
        for part, copies in zip(self.words, self._copies, strict=True):
            for word, copy in copies.items():
                part[word] = FrozenBitMap(copy)
        return FrozenBitMap(self._alive)


def _rows_still(rows: dict[int, object], changed: list[int]) -> dict[int, object]:
    """The rows read for searches before a transaction that it left as they were: every write
    of a row is an addition or a removal that the transaction's changes name (see
    ``catalogue.Writer``), so the others read the same after it. Without them, every search's
    first page after each publication went to a thread to read its rows again, a burst of
    waits on the worker threads under load."""
    try:
        # A copy first: a search in a thread may be adding to the dict meanwhile; the copy is
        # made in C, but a finaliser run by the collector during it could let that thread in.
        still = dict(rows)
    except RuntimeError:  # the dict changed size during the copy: read them again
        return {}
    for row in changed:
        still.pop(row, None)
    return still


def _read(state: State, part: int, word: str, beginning: bool,
          db: sqlite3.Connection | None) -> Rows | None:
    """The rows of a part that hold a rare word (or a word that begins so), as read before at
    this transaction, else from ``db``; None without it."""
    key = (part, word, beginning)
    found = state.memo.get(key)
    if found is not None:
        return found
    if db is None:
        return None
    with state.memo.reading(key):
        found = state.memo.get(key)  # read meanwhile by a search that held the lock
        return found if found is not None else _read_now(state, key, db)


def _read_now(state: State, key: Key, db: sqlite3.Connection) -> Rows | None:
    part, word, beginning = key
    # Rows kept across requests must be of the state's transaction: only a read transaction
    # (whose first read was the stamp) guarantees that the rows read here are.
    assert db.in_transaction, "rows are read inside the caller's read transaction"
    name = _PARTS[part]
    listed = db.execute(f"SELECT group_concat(rowid) FROM search_{name} "
                        f"WHERE search_{name} MATCH ?",
                        (_quoted(word) + ("*" if beginning else ""),)).fetchone()[0]
    rows = [int(row) for row in listed.split(",")] if listed else []
    positions = list(map(bisect.bisect_left, repeat(state.ids), rows))
    # Every row the catalogue holds at this transaction is in ``ids``; a row of the index that
    # is not (a damaged file) leaves the search to SQL rather than to a wrong position.
    if any(position >= len(state.ids) or state.ids[position] != row
           for position, row in zip(positions, rows, strict=True)):
        return None
    found = FrozenBitMap(positions)
    state.memo.put(key, found)
    return found


def combined(state: State, terms: list[tuple[Rows, ...]], part: int) -> Rows:
    """The rows of a part that hold every word of ``terms`` (see ``SearchBits.terms``)."""
    if len(terms) == 2:  # most searches are of one or two words: no list to sort
        first, second = terms[0][part], terms[1][part]
        # A word in no row of the part (most are in no title): nothing to combine. Whether
        # they meet is counted rather than asked: the count of two dense bitmaps is made with
        # vector instructions, a third of the time of the question, and of making what they
        # share (which would hold nothing, for most searches of words typed at random).
        if not first or not second or not first.intersection_cardinality(second):
            return _EMPTY
        rows = first & second
    elif len(terms) == 1:
        rows = terms[0][part]
    else:
        lists = [term[part] for term in terms]
        return _and(state, lists) if all(lists) else _EMPTY
    return rows if len(state.alive) == len(state.ids) else rows & state.alive


def newest_of_two(first: Rows, second: Rows, held: int, most: int,
                  alive: Rows | None = None) -> list[int] | None:
    """The ``most`` highest positions that both bitmaps hold (``held`` of them in all, as
    ``intersection_cardinality`` counts them, and ``alive`` holds too when given), the highest
    first, without making every position they share: from a span just below the lower of the
    two highest positions, wide enough to hold one and a half times ``most`` of them were they
    spread evenly up to it. None when it holds fewer (they are bunched lower down): the caller
    walks the rows instead."""
    if not first or not second:
        return None
    end = min(first.max(), second.max()) + 1
    start = max(end - 3 * most * end // (2 * max(held, 1)), 0)
    # The span is cut from one bitmap first: what it shares with the other is then a walk of
    # a few hundred positions, where what the two share in all is a pass over both whole that
    # CRoaring writes out as an array of thousands of positions (3.5 µs at 100,000
    # comparisons, a third of finding such a page).
    window = (first & FrozenBitMap(range(start, end))) & second
    if alive is not None:
        window &= alive
    found = window.to_array()[-most:].tolist()
    if len(found) < most:
        return None
    found.reverse()
    return found


def _and(state: State, lists: list[Rows]) -> Rows:
    """The rows every one of ``lists`` holds (three or more of them: see ``combined``)."""
    # The smallest first: each step then costs what the fewer rows do.
    lists.sort(key=len)
    rows = lists[0]
    for found in lists[1:]:
        # Whether they meet is counted without making what they share (see ``combined``).
        if not rows.intersection_cardinality(found):
            return _EMPTY
        rows = rows & found
    # A row that went is cleared from every bitmap of a word it held; this only keeps a
    # search right should the tokenizer's words for its old text differ from the index's.
    if len(state.alive) != len(state.ids):
        rows = rows & state.alive
    return rows


def _word(state: State, part: int, word: str) -> Rows | None:
    """A word without a bitmap of its own in a part, not yet known to be absent from it: its
    rows if it is rare and they were read, None if it is rare and they were not, else none
    (and it is noted as absent)."""
    found = state.memo.get((part, word, False))
    if found is not None:
        return found
    if _known_rare(state.vocabulary, part, word):
        return None
    state.memo.mark_absent(part, word)
    return _EMPTY


def _known_rare(vocabulary: _Vocabulary, part: int, word: str) -> bool:
    hashed = _hash(word)
    return _has(vocabulary.rare[part], hashed) or hashed in vocabulary.new_rare[part]


def _beginning(state: State, part: int, start: str) -> tuple[Rows | None, bool]:
    """Every row of a part with a word that begins with ``start``, None if a rare one may; and
    whether the bitmap is one the state holds anyway (not one made for this beginning)."""
    key = (part, start, True)
    found = state.memo.get(key)
    if found is not None:
        return found, False
    vocabulary = state.vocabulary
    hashed = _hash(start[:_BEGINNING_KEPT])
    if _has(vocabulary.rare_beginnings[part], hashed) or \
            hashed in vocabulary.new_rare_beginnings[part]:
        return None, False  # ``_read``'s: from the catalogue, kept under the same key
    common = vocabulary.common[part]
    first = bisect.bisect_left(common, start)
    last = first
    while last < len(common) and common[last].startswith(start):
        last += 1
    if first == last:  # no word begins so: nothing to keep (anyone can type such a one)
        return _EMPTY, True
    if last == first + 1:  # one word does: its own bitmap, not a copy of it
        return state.words[part][common[first]], True
    found = FrozenBitMap.union(_EMPTY, *(state.words[part][word] for word in common[first:last]))
    state.memo.put(key, found)
    return found, False


def _term(state: State, key: TermKey, db: sqlite3.Connection | None) -> Term | None:
    """A word's rows in each part (as a beginning in the parts the key says), kept for the next
    searches at this transaction; None when it is not a plain word, or when a part's rows must
    be read from the catalogue and there is no ``db``."""
    word, begun = (key, _WHOLE) if isinstance(key, str) else key
    if not _ASCII_WORD.fullmatch(word):
        return None
    absent = state.memo.absent_words
    found: list[Rows] = []
    made = 0  # bytes of the bitmaps that are not the state's own (see ``Memo.terms``)
    for part, (common, beginning) in enumerate(zip(state.words, begun, strict=True)):
        rows: Rows | None
        if beginning:
            rows, owned = _beginning(state, part, word)
        else:
            # The common words first (most words typed are), then the most frequent of the
            # rest: a word known to be in no row of the part (most are in no title).
            rows, owned = common.get(word), True
            if rows is None:
                rows = _EMPTY if (part, word) in absent else _word(state, part, word)
                owned = rows is _EMPTY
        if rows is None:
            rows, owned = _read(state, part, word, beginning, db), False
            if rows is None:
                return None
        found.append(rows)
        if not owned:
            made += sys.getsizeof(rows)
    term = (tuple(found), made)
    state.memo.terms.put(key, term)
    return term


def _beginnings(word: str) -> Iterator[str]:
    for end in range(_BEGINNING_FROM, min(len(word), _BEGINNING_KEPT) + 1):
        yield word[:end]


def _merged(values: array[int], added: set[int]) -> bytes:
    if not added:
        return values.tobytes()
    return array("q", sorted(set(values) | added)).tobytes()


def stamp_of(db: sqlite3.Connection) -> str:
    """The catalogue's last transaction: its number, and a random part that no other
    transaction shares (after a crash that lost commits, the same number may come again)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    return str(row[0]) if row is not None else "0"


def generation_of(db: sqlite3.Connection) -> int:
    return generation_from(stamp_of(db))


def generation_from(stamp: str) -> int:
    return int(stamp.split(" ", 1)[0])


def newest(rows: Rows, below: int, most: int) -> list[int]:
    """Up to ``most`` of the positions below ``below`` that ``rows`` holds, the highest first."""
    if below <= 0 or most <= 0 or not rows:
        return []
    top = rows.max()
    if top < below:
        held = len(rows)
        # A look just below the highest first: the span that would hold one and a half times
        # ``most`` rows were they spread evenly, cut out in C. It reads the end of the bitmap
        # alone, where a look-up by index counts bits from the start of its container
        # (microseconds in a bitmap of most rows), which is left for rows bunched otherwise.
        # However they lie, the span holds at most the rows there are or its width, the
        # lesser of which is at most sqrt(1.5 * most * positions): at 100,000 positions,
        # 1,800 for a page of 20 and 3,900 for one of 100.
        start = max(top - 3 * most * (top + 1) // (2 * held), 0)
        window = (rows & FrozenBitMap(range(start, top + 1))).to_array()
        if len(window) >= most or start == 0:
            found = window[-most:].tolist()
            found.reverse()
            return found
    else:
        held = rows.rank(below - 1)  # how many are at or below ``below - 1``
    taken = min(most, held)
    if not taken:
        return []
    # One look-up by index, then a walk up.
    found = list(itertools.islice(rows.iter_equal_or_larger(rows[held - taken]), taken))
    found.reverse()
    return found


class _Positions:
    """Row ids to positions, for a build: looked up in C loops, since a bisection a row would
    cost seconds more at 100,000 rows. A table from the lowest id when the ids are close
    together (as they are unless many rows went), which weighs a tenth of a dict."""

    def __init__(self, ids: array[int]) -> None:
        self._first = ids[0] if ids else 0
        span = ids[-1] - self._first + 1 if ids else 0
        self._table: array[int] | None = None
        self._where: dict[int, int] = {}
        if span <= 4 * len(ids):
            # A gap holds a position past the last. The rows looked up come from the same
            # read transaction as ``ids``, so none is missing or below the first.
            self._table = array("q", [len(ids)]) * span
            for position, row in enumerate(ids):
                self._table[row - self._first] = position
        else:
            self._where = {row: position for position, row in enumerate(ids)}

    def of(self, rows: Iterable[int]) -> Iterable[int]:
        if self._table is None:
            return map(self._where.__getitem__, rows)
        return map(self._table.__getitem__, map((-self._first).__add__, rows))


def _positions(db: sqlite3.Connection, part: str, word: str,
               where: _Positions) -> Iterable[int]:
    listed = db.execute(f"SELECT group_concat(rowid) FROM search_{part} "
                        f"WHERE search_{part} MATCH ?", (_quoted(word),)).fetchone()[0]
    return where.of(map(int, listed.split(","))) if listed else ()


def _quoted(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def _int64s_from(raw: bytes) -> array[int]:
    values = array("q")
    values.frombytes(raw)
    return values


def _inserted(rows: Rows, moved: Rows) -> Rows:
    """The bitmap with the bits of the positions ``moved`` (every one from some position up)
    each one up, leaving that position clear."""
    above = rows & moved
    if not above:
        return rows
    return (rows - above) | above.shift(1)


def _set(rows: BitMap, position: int, on: bool) -> None:
    if on:
        rows.add(position)
    else:
        rows.discard(position)


def _hash(word: str) -> int:
    """A hash that is the same in every process, since the hashes are saved. Two words that
    share one only send a search of one of them to SQL; what it costs is paid by every
    search, so it is two checksums in C rather than a cryptographic hash."""
    raw = word.encode()
    return (zlib.adler32(raw) & 0x7FFFFFFF) << 32 | zlib.crc32(raw)


def _position(ids: array[int], row: int) -> int | None:
    at = bisect.bisect_left(ids, row)
    return at if at < len(ids) and ids[at] == row else None


def _has(values: array[int], value: int) -> bool:
    at = bisect.bisect_left(values, value)
    return at < len(values) and values[at] == value
