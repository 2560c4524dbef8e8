"""The search index's common words as bitmaps in memory, for searches that SQL answers slowly.

A word that most comparisons hold has a list of tens of thousands of rows in the search index,
and a search of two such words read both lists whole when they had nothing in common: half a
millisecond for a search that finds nothing, at 100,000 comparisons. Here every word held by at
least ``dense_from`` comparisons has a bitmap over the catalogue's rows in id order (newest
last), cut into blocks, so that a search combines a few blocks from the newest down and stops
when its page is full and its count is known. Words held by fewer comparisons are known only by
a hash: a search with one of them goes to SQL, which answers a rare word quickly.

The bitmaps are made from the search index itself (so a word is whatever its tokenizer makes of
the text) in a thread of their own once the catalogue is filled, and follow each transaction
of the catalogue's writer from then on. A state is made whole and then put in place, and says
which transaction of the catalogue it reflects: a search that reads the catalogue at another
one goes to SQL.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import re
import sqlite3
import threading
import time
from array import array
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import repeat
from pathlib import Path
from typing import NamedTuple

import msgspec

log = logging.getLogger("cms")

BLOCK = 4096  # rows a block of a bitmap covers
_PARTS = ("head", "lead", "full")
# A typed beginning is looked up among the rare words' beginnings up to this many characters;
# a longer one is taken as possibly rare, which only sends it to SQL.
_BEGINNING_KEPT = 12
_BEGINNING_FROM = 3
_ASCII_WORD = re.compile(r"[a-z0-9]+")
_MEMO_ENTRIES = 4096
_DIGEST = 32
ROWS_KEPT = 4096
_ONE = ord("1")

Blocks = tuple[int, ...]


class BuildCancelled(Exception):
    """A build stopped part-way, since the catalogue is closing."""


class Change(NamedTuple):
    """A row of the catalogue added (with its search text by part) or removed (``texts`` None)."""

    row: int
    texts: tuple[str, str, str] | None


class _State(NamedTuple):
    generation: int  # the catalogue transaction these bitmaps reflect
    stamp: str  # and that transaction's stamp (see ``stamp_of``)
    ids: list[int]  # the row id at each position, ascending; never changed once in a state
    alive: Blocks  # positions that hold a row now
    words: tuple[dict[str, Blocks], ...]  # by part: word -> its rows
    memo: dict[tuple[int, str], Blocks | None]  # beginnings, by part, once combined
    # Rows read for searches at this transaction, by id, for the next searches: what a list
    # shows of them (``listing.Listed``), which this module does not need to know.
    rows: dict[int, object]


class Lookup(NamedTuple):
    """What a search needs of one part, or None from ``matches`` when SQL must answer it."""

    lists: list[Blocks]


class SearchBits:
    def __init__(self, dense_from: int = 256) -> None:
        self.dense_from = dense_from
        self._state: _State | None = None
        self._lock = threading.Lock()  # the writer's side: applying, building
        self._building = False
        self._pending: list[tuple[int, str, list[Change]]] = []
        self._where: dict[int, int] = {}  # row id -> position (the writer's alone)
        self._scrub: set[int] = set()  # positions whose row went: their bits are stale
        # Hashes of the words (and of their beginnings) too rare for a bitmap, sorted; they
        # only grow, so a reader that sees a newer one is sent to SQL once too often at worst.
        self._rare: tuple[array[int], ...] = tuple(array("q") for _ in _PARTS)
        self._rare_beginnings: tuple[array[int], ...] = tuple(array("q") for _ in _PARTS)
        self._tokenizer: sqlite3.Connection | None = None
        self._cancelled = False
        self.builds = 0

    # State

    @property
    def generation(self) -> int | None:
        state = self._state
        return None if state is None else state.generation

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

    # Reading

    def state(self) -> _State | None:
        return self._state

    def matches(self, state: _State, part: int, words: list[str], begun: bool) -> Lookup | None:
        """The bitmaps whose blocks, and-ed, give the rows of a part that hold every word (the
        last as a beginning when ``begun``); an empty list of lists means none does. None: a
        word is rare (or not a plain word), and SQL answers."""
        lists: list[Blocks] = [state.alive]
        for number, word in enumerate(words):
            if not _ASCII_WORD.fullmatch(word):
                return None
            if begun and number == len(words) - 1:
                found = self._beginning(state, part, word)
            else:
                found = self._word(state, part, word)
            if found is None:
                return None
            if not found:
                return Lookup([])
            lists.append(found)
        return Lookup(lists)

    def _word(self, state: _State, part: int, word: str) -> Blocks | None:
        blocks = state.words[part].get(word)
        if blocks is not None:
            return blocks
        return None if _has(self._rare[part], _hash(word)) else ()

    def _beginning(self, state: _State, part: int, start: str) -> Blocks | None:
        key = (part, start)
        if key in state.memo:
            return state.memo[key]
        if _has(self._rare_beginnings[part], _hash(start[:_BEGINNING_KEPT])):
            found: Blocks | None = None
        else:
            found = _union(blocks for word, blocks in state.words[part].items()
                           if word.startswith(start))
        if len(state.memo) >= _MEMO_ENTRIES:
            state.memo.clear()
        state.memo[key] = found
        return found

    # Building and following the catalogue

    def build(self, db: sqlite3.Connection) -> None:
        """Make the bitmaps from the catalogue as ``db`` reads it, in a read transaction of its
        own; the writer's transactions meanwhile are applied after."""
        with self._lock:
            if self._building:
                return
            self._building = True
            self._pending.clear()
        try:
            db.execute("BEGIN")
            try:
                made = self._made(db)
            finally:
                db.execute("COMMIT")
        except BaseException:
            with self._lock:
                self._building = False
                self._pending.clear()
            raise
        with self._lock:
            built, where, scrub, rare, beginnings = made
            self._where, self._scrub = where, scrub
            self._rare, self._rare_beginnings = rare, beginnings
            state: _State | None = built
            for generation, stamp, changes in self._pending:
                if state is not None and generation > state.generation:
                    state = self._applied(state, generation, stamp, changes)
            self._state = state
            self._pending.clear()
            self._building = False
            self.builds += 1

    def _made(self, db: sqlite3.Connection) -> tuple[
            _State, dict[int, int], set[int], tuple[array[int], ...],
            tuple[array[int], ...]]:
        stamp = stamp_of(db)
        generation = generation_of(db)
        ids = [int(row) for (row,) in db.execute("SELECT id FROM comparisons ORDER BY id")]
        where = {row: position for position, row in enumerate(ids)}
        count = len(ids)
        alive = _blocks_of(range(count), count)
        words: list[dict[str, Blocks]] = []
        rare: list[array[int]] = []
        beginnings: list[array[int]] = []
        for part in _PARTS:
            db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.vocabulary_{part} "
                       f"USING fts5vocab(main, search_{part}, row)")
            dense: dict[str, Blocks] = {}
            rare_hashes: set[int] = set()
            for word, held in db.execute(f"SELECT term, doc FROM temp.vocabulary_{part}"):
                if held >= self.dense_from:
                    if self._cancelled:
                        raise BuildCancelled
                    dense[word] = _blocks_of(_positions(db, part, word, where), count)
                    time.sleep(0)  # requests first: this is seconds of work
                else:
                    rare_hashes.add(_hash(word))
            words.append(dense)
            rare.append(array("q", sorted(rare_hashes)))
            beginnings.append(array("q", sorted(_beginnings_of_hashes(
                db, part, self.dense_from))))
        state = _State(generation, stamp, ids, alive, tuple(words), {}, {})
        return state, where, set(), tuple(rare), tuple(beginnings)

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

    def _applied(self, state: _State, generation: int, stamp: str,
                 changes: list[Change]) -> _State | None:
        """The state after a transaction; None when it cannot follow (a row older than the
        newest came in: positions are in id order), so that SQL answers until a new build."""
        if state.generation != generation - 1:
            return None
        ids = state.ids
        alive = list(state.alive)
        words = [dict(part) for part in state.words]
        added = [change for change in changes if change.texts is not None]
        for change in changes:
            if change.texts is None:
                position = self._where.get(change.row)
                if position is not None:
                    _set(alive, position, False)
                    self._scrub.add(position)
        if added:
            ids = list(ids)
            terms = self._terms([change.texts for change in added if change.texts])
            for change, held in zip(added, terms, strict=True):
                position = self._where.get(change.row)
                if position is None:
                    if ids and change.row < ids[-1]:
                        return None
                    position = len(ids)
                    ids.append(change.row)
                    self._where[change.row] = position
                elif position in self._scrub:
                    for part in words:
                        for word, blocks in part.items():
                            if _get(blocks, position):
                                part[word] = _with(blocks, position, False)
                    self._scrub.discard(position)
                _set(alive, position, True)
                for number, part_words in enumerate(held):
                    part = words[number]
                    for word in part_words:
                        having = part.get(word)
                        if having is not None:
                            part[word] = _with(having, position, True)
                        else:
                            self._note_rare(number, word)
        return _State(generation, stamp, ids, tuple(alive), tuple(words), {}, {})

    def _note_rare(self, part: int, word: str) -> None:
        _insert(self._rare[part], _hash(word))
        for end in range(_BEGINNING_FROM, min(len(word), _BEGINNING_KEPT) + 1):
            _insert(self._rare_beginnings[part], _hash(word[:end]))

    def _terms(self, texts: list[tuple[str, str, str]]) -> list[tuple[set[str], ...]]:
        """The words the search index makes of each text, by its own tokenizer."""
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
        with self._lock:
            state = self._state
            if state is None:
                return False
            saved = _Saved(
                catalogue=catalogue, stamp=state.stamp, dense_from=self.dense_from,
                ids=array("q", state.ids).tobytes(), alive=_bytes_of(state.alive),
                words=[{word: _bytes_of(blocks) for word, blocks in part.items()}
                       for part in state.words],
                rare=[values.tobytes() for values in self._rare],
                rare_beginnings=[values.tobytes() for values in self._rare_beginnings],
                scrub=sorted(self._scrub))
        temporary = path.with_name(path.name + ".new")
        payload = msgspec.msgpack.encode(saved)
        with temporary.open("wb") as file:
            file.write(hashlib.blake2b(payload, digest_size=_DIGEST).digest())
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
        return True

    def load(self, path: Path, catalogue: str, stamp: str) -> bool:
        """Take the bitmaps saved at ``path`` if they are whole and of this catalogue at the
        transaction ``stamp`` names, made with the same ``dense_from``; whether they were."""
        try:
            raw = path.read_bytes()
            digest, payload = raw[:_DIGEST], raw[_DIGEST:]
            if hashlib.blake2b(payload, digest_size=_DIGEST).digest() != digest:
                return False  # damaged, or cut short
            saved = msgspec.msgpack.decode(payload, type=_Saved)
            if (saved.catalogue, saved.stamp, saved.dense_from) != \
                    (catalogue, stamp, self.dense_from) or len(saved.words) != len(_PARTS):
                return False
            ids = _hashes_from(saved.ids)
            count = len(ids)
            state = _State(generation_from(stamp), stamp, ids.tolist(),
                           _blocks_from(saved.alive, count),
                           tuple({word: _blocks_from(raw, count) for word, raw in part.items()}
                                 for part in saved.words), {}, {})
            rare = tuple(_hashes_from(raw) for raw in saved.rare)
            beginnings = tuple(_hashes_from(raw) for raw in saved.rare_beginnings)
        except (OSError, ValueError, msgspec.DecodeError):
            return False
        with self._lock:
            if self._building or self._state is not None:
                return False
            self._where = {row: position for position, row in enumerate(state.ids)}
            self._scrub = set(saved.scrub)
            self._rare, self._rare_beginnings = rare, beginnings
            self._state = state
        return True

    def close(self) -> None:
        with self._lock:
            self._state = None
            if self._tokenizer is not None:
                self._tokenizer.close()
                self._tokenizer = None


class _Saved(msgspec.Struct, array_like=True):
    catalogue: str  # the catalogue file's own id (its meta table's identity)
    stamp: str
    dense_from: int
    ids: bytes
    alive: bytes
    words: list[dict[str, bytes]]
    rare: list[bytes]
    rare_beginnings: list[bytes]
    scrub: list[int]


def stamp_of(db: sqlite3.Connection) -> str:
    """The catalogue's last transaction: its number, and a random part that no other
    transaction shares (after a crash that lost commits, the same number may come again)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    return str(row[0]) if row is not None else "0"


def generation_of(db: sqlite3.Connection) -> int:
    return generation_from(stamp_of(db))


def generation_from(stamp: str) -> int:
    return int(stamp.split(" ", 1)[0])


def walk(lists: list[Blocks], without: list[list[Blocks]], below: int) -> Iterator[int]:
    """The positions below ``below`` held by every list (and-ed) and by none of the ``without``
    combinations, from the highest down."""
    for block in range((below - 1) // BLOCK, -1, -1) if below > 0 else ():
        bits = _block_and(lists, block)
        for other in without:
            if bits:
                bits &= ~_block_and(other, block)
        if block == below // BLOCK:
            bits &= (1 << (below % BLOCK)) - 1
        while bits:
            top = bits.bit_length() - 1
            yield block * BLOCK + top
            bits ^= 1 << top


def count(alternatives: list[list[Blocks]], blocks: int, most: int) -> int:
    """How many positions any of the alternatives (each and-ed) holds, from the top down; the
    count stops once it is past ``most``."""
    found = 0
    for block in range(blocks - 1, -1, -1):
        bits = 0
        for lists in alternatives:
            bits |= _block_and(lists, block)
        found += bits.bit_count()
        if found > most:
            break
    return found


def _block_and(lists: list[Blocks], block: int) -> int:
    if not lists:
        return 0
    bits = -1
    for blocks in lists:
        if block >= len(blocks):
            return 0
        bits &= blocks[block]
        if not bits:
            return 0
    return bits


def _positions(db: sqlite3.Connection, part: str, word: str,
               where: dict[int, int]) -> Iterable[int]:
    listed = db.execute(f"SELECT group_concat(rowid) FROM search_{part} "
                        f"WHERE search_{part} MATCH ?", (_quoted(word),)).fetchone()[0]
    return map(where.__getitem__, map(int, listed.split(","))) if listed else ()


def _quoted(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def _beginnings_of_hashes(db: sqlite3.Connection, part: str, dense_from: int) -> set[int]:
    found: set[int] = set()
    for (word,) in db.execute(f"SELECT term FROM temp.vocabulary_{part} WHERE doc < ?",
                              (dense_from,)):
        for end in range(_BEGINNING_FROM, min(len(word), _BEGINNING_KEPT) + 1):
            found.add(_hash(word[:end]))
    return found


def _blocks_of(positions: Iterable[int], count: int) -> Blocks:
    # A character a position, set by C loops (map, deque) and read as one binary number: a
    # bit at a time in Python would cost as much again as reading the index.
    digits = bytearray(b"0") * count
    deque(map(digits.__setitem__, positions, repeat(_ONE)), maxlen=0)
    digits.reverse()
    whole = int(digits, 2) if count else 0
    mask = (1 << BLOCK) - 1
    return tuple((whole >> (block * BLOCK)) & mask for block in range(_block_count(count)))


def _bytes_of(blocks: Blocks) -> bytes:
    whole = 0
    for block, bits in enumerate(blocks):
        whole |= bits << (block * BLOCK)
    return whole.to_bytes((whole.bit_length() + 7) // 8, "little")


def _blocks_from(raw: bytes, count: int) -> Blocks:
    whole = int.from_bytes(raw, "little")
    mask = (1 << BLOCK) - 1
    return tuple((whole >> (block * BLOCK)) & mask for block in range(_block_count(count)))


def _hashes_from(raw: bytes) -> array[int]:
    values = array("q")
    values.frombytes(raw)
    return values


def _block_count(count: int) -> int:
    return (count + BLOCK - 1) // BLOCK


def _union(lists: Iterable[Blocks]) -> Blocks:
    merged: list[int] = []
    for blocks in lists:
        if len(blocks) > len(merged):
            merged.extend([0] * (len(blocks) - len(merged)))
        for block, bits in enumerate(blocks):
            merged[block] |= bits
    return tuple(merged)


def _get(blocks: Blocks, position: int) -> bool:
    block = position // BLOCK
    return block < len(blocks) and bool(blocks[block] >> (position % BLOCK) & 1)


def _with(blocks: Blocks, position: int, on: bool) -> Blocks:
    changed = list(blocks)
    _set(changed, position, on)
    return tuple(changed)


def _set(blocks: list[int], position: int, on: bool) -> None:
    block = position // BLOCK
    if block >= len(blocks):
        blocks.extend([0] * (block + 1 - len(blocks)))
    if on:
        blocks[block] |= 1 << (position % BLOCK)
    else:
        blocks[block] &= ~(1 << (position % BLOCK))


def _hash(word: str) -> int:
    """A hash that is the same in every process, since the hashes are saved."""
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little",
                          signed=True)


def _has(values: array[int], value: int) -> bool:
    at = bisect.bisect_left(values, value)
    return at < len(values) and values[at] == value


def _insert(values: array[int], value: int) -> None:
    at = bisect.bisect_left(values, value)
    if at == len(values) or values[at] != value:
        values.insert(at, value)
