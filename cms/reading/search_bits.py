"""The search index's common words as bitmaps in memory, for searches that SQL answers slowly.

A word that most comparisons hold has a list of tens of thousands of rows in the search index,
and a search of two such words read both lists whole when they had nothing in common: half a
millisecond for a search that finds nothing, at 100,000 comparisons. Here every word held by at
least ``dense_from`` comparisons has a bitmap over the catalogue's rows in id order (newest
last), cut into blocks, so that a search combines a few blocks from the newest down and stops
when its page is full and its count is known. Words held by fewer comparisons are known only by
a hash: the rows of one of them (or of a beginning one of them shares) are read from the index
by the first search in a thread that needs them, and kept for the next ones.

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
from collections.abc import Callable, Iterable, Iterator
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
# Beginnings combined, kept by the bytes of their bitmaps (about this many), and at most
# this many of them.
_MEMO_BYTES = 8 * 2**20
_MEMO_ENTRIES = 4096
_BLOCK_BYTES = BLOCK // 8 + 40  # a block's int, as Python keeps it
# Rows older than the newest that one transaction may bring in place (each moves every bitmap's
# rows above it up by one: milliseconds at 100,000 rows); more are made anew.
_OLDER_FOLLOWED = 16
_DIGEST = 32
ROWS_KEPT = 4096
_ONE = ord("1")

Blocks = tuple[int, ...]


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
    alive: Blocks  # positions that hold a row now
    words: tuple[dict[str, Blocks], ...]  # by part: word -> its rows
    vocabulary: _Vocabulary
    # By (part, word, whether it is a beginning): a beginning's words combined, and the rows of
    # a rare word or beginning, read once from the catalogue at this transaction.
    memo: dict[tuple[int, str, bool], Blocks | None]
    # Rows read for searches at this transaction, by id, for the next searches: what a list
    # shows of them (``listing.Listed``), which this module does not need to know.
    rows: dict[int, object]


_MISSING: Blocks = (-1,)  # not a value a memo holds


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

    def matches(self, state: State, part: int, words: list[str], begun: bool,
                db: sqlite3.Connection | None = None) -> list[Blocks] | None:
        """The bitmaps whose blocks, and-ed, give the rows of a part that hold every word (the
        last as a beginning when ``begun``); an empty list means none does. A rare word, or a
        beginning a rare word shares, has its rows read from ``db`` (which the caller knows
        reads the catalogue at the state's transaction) and kept for the next searches. None:
        such a word without ``db`` and not read before, or not a plain word; SQL answers."""
        lists: list[Blocks] = [state.alive]
        for number, word in enumerate(words):
            if not _ASCII_WORD.fullmatch(word):
                return None
            beginning = begun and number == len(words) - 1
            found = _beginning(state, part, word) if beginning else _word(state, part, word)
            if found is None:
                found = _read(state, part, word, beginning, db)
            if found is None:
                return None
            if not found:
                return []
            lists.append(found)
        return lists

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
            rare_starts: set[int] = set()
            for word, held in db.execute(f"SELECT term, doc FROM temp.vocabulary_{part}"):
                if held >= self.dense_from:
                    if self._cancelled:
                        raise BuildCancelled
                    dense[word] = _blocks_of(_positions(db, part, word, where), count)
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
                     {}, {})

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
        alive = list(state.alive)
        words = [dict(part) for part in state.words]
        ids = state.ids
        for change, held in zip(removed, self._terms([c.old for c in removed if c.old]),
                                strict=True):
            position = _position(ids, change.row)
            if position is None:
                continue
            _set(alive, position, False)
            _mark(words, held, position, on=False)
        if added:
            ids = array("q", ids)
            vocabulary = state.vocabulary
            for change, held in zip(added, self._terms([c.texts for c in added if c.texts]),
                                    strict=True):
                position = _position(ids, change.row)
                if position is None:
                    position = bisect.bisect_left(ids, change.row)
                    if position < len(ids):  # older than the newest: the rows above move up
                        alive = list(_inserted(tuple(alive), position))
                        for part in words:
                            for word, blocks in part.items():
                                part[word] = _inserted(blocks, position)
                    ids.insert(position, change.row)
                _set(alive, position, True)
                for number, rare in enumerate(_mark(words, held, position, on=True)):
                    for word in rare:
                        if not _known_rare(vocabulary, number, word):
                            vocabulary.new_rare[number].add(_hash(word))
                            vocabulary.new_rare_beginnings[number].update(
                                map(_hash, _beginnings(word)))
        return State(generation, stamp, ids, tuple(alive), tuple(words), state.vocabulary,
                      {}, {})

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
            catalogue=catalogue, stamp=state.stamp, dense_from=self.dense_from,
            ids=state.ids.tobytes(), alive=_bytes_of(state.alive),
            words=[{word: _bytes_of(blocks) for word, blocks in part.items()}
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


class _Saved(msgspec.Struct, array_like=True):
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
        if (saved.catalogue, saved.stamp, saved.dense_from) != (catalogue, stamp, dense_from) \
                or len(saved.words) != len(_PARTS) or len(saved.rare) != len(_PARTS) \
                or len(saved.rare_beginnings) != len(_PARTS):
            return None
        ids = _int64s_from(saved.ids)
        count = len(ids)
        words = tuple(_blocks_by_word(part, count) for part in saved.words)
        vocabulary = _vocabulary(tuple(sorted(part) for part in words),
                                 tuple(map(_int64s_from, saved.rare)),
                                 tuple(map(_int64s_from, saved.rare_beginnings)))
    except (OSError, ValueError, msgspec.DecodeError):
        return None
    return State(generation_from(stamp), stamp, ids, _blocks_from(saved.alive, count), words,
                 vocabulary, {}, {})


def _blocks_by_word(saved: dict[str, bytes], count: int) -> dict[str, Blocks]:
    """The bitmaps of a part, each saved one let go once it is made (they weigh as much)."""
    made: dict[str, Blocks] = {}
    while saved:
        word, raw = saved.popitem()
        made[word] = _blocks_from(raw, count)
    return made


def _vocabulary(common: tuple[list[str], ...], rare: tuple[array[int], ...],
                beginnings: tuple[array[int], ...]) -> _Vocabulary:
    return _Vocabulary(common, rare, beginnings, tuple(set() for _ in _PARTS),
                       tuple(set() for _ in _PARTS))


def _mark(words: list[dict[str, Blocks]], held: tuple[set[str], ...], position: int, *,
          on: bool) -> list[list[str]]:
    """Set or clear a row's bit in the bitmap of every word it holds, by part; the words
    without a bitmap, by part."""
    without: list[list[str]] = []
    for part, part_words in zip(words, held, strict=True):
        without.append([])
        for word in part_words:
            having = part.get(word)
            if having is None:
                without[-1].append(word)
            else:
                part[word] = _with(having, position, on)
    return without


def _read(state: State, part: int, word: str, beginning: bool,
          db: sqlite3.Connection | None) -> Blocks | None:
    """The rows of a part that hold a rare word (or a word that begins so), as read before at
    this transaction, else from ``db``; None without it."""
    key = (part, word, beginning)
    found = state.memo.get(key, _MISSING)
    if found is not _MISSING:
        return found
    if db is None:
        return None
    # Rows kept across requests must be of the state's transaction: only a read transaction
    # (whose first read was the stamp) guarantees that the rows read here are.
    assert db.in_transaction, "rows are read inside the caller's read transaction"
    name = _PARTS[part]
    listed = db.execute(f"SELECT group_concat(rowid) FROM search_{name} "
                        f"WHERE search_{name} MATCH ?",
                        (_quoted(word) + ("*" if beginning else ""),)).fetchone()[0]
    rows = map(int, listed.split(",")) if listed else ()
    # Every row the catalogue holds at this transaction is in ``ids``.
    found = _blocks_of(map(bisect.bisect_left, repeat(state.ids), rows), len(state.ids))
    _remember(state, key, found)
    return found


def _remember(state: State, key: tuple[int, str, bool], found: Blocks | None) -> None:
    if len(state.memo) >= min(_MEMO_ENTRIES,
                              _MEMO_BYTES // (_BLOCK_BYTES * max(1, len(state.alive)))):
        state.memo.clear()
    state.memo[key] = found


def _word(state: State, part: int, word: str) -> Blocks | None:
    blocks = state.words[part].get(word)
    if blocks is not None:
        return blocks
    return None if _known_rare(state.vocabulary, part, word) else ()


def _known_rare(vocabulary: _Vocabulary, part: int, word: str) -> bool:
    hashed = _hash(word)
    return _has(vocabulary.rare[part], hashed) or hashed in vocabulary.new_rare[part]


def _beginning(state: State, part: int, start: str) -> Blocks | None:
    """Every row of a part with a word that begins with ``start``; None if a rare one may."""
    key = (part, start, True)
    found = state.memo.get(key, _MISSING)
    if found is not _MISSING:
        return found
    vocabulary = state.vocabulary
    hashed = _hash(start[:_BEGINNING_KEPT])
    if _has(vocabulary.rare_beginnings[part], hashed) or \
            hashed in vocabulary.new_rare_beginnings[part]:
        return None  # ``_read``'s: from the catalogue, kept under the same key
    common = vocabulary.common[part]
    first = bisect.bisect_left(common, start)
    last = first
    while last < len(common) and common[last].startswith(start):
        last += 1
    found = _union(state.words[part][word] for word in common[first:last])
    _remember(state, key, found)
    return found


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


def _int64s_from(raw: bytes) -> array[int]:
    values = array("q")
    values.frombytes(raw)
    return values


def _block_count(count: int) -> int:
    return (count + BLOCK - 1) // BLOCK


def _inserted(blocks: Blocks, position: int) -> Blocks:
    """The bitmap with a clear bit put in at ``position`` and every bit from there one up."""
    first = position // BLOCK
    if first >= len(blocks):
        return blocks
    whole = 0
    for number, bits in enumerate(blocks[first:]):
        whole |= bits << (number * BLOCK)
    offset = position - first * BLOCK
    whole = ((whole >> offset) << (offset + 1)) | (whole & ((1 << offset) - 1))
    mask = (1 << BLOCK) - 1
    tail: list[int] = []
    while whole or len(tail) < len(blocks) - first:
        tail.append(whole & mask)
        whole >>= BLOCK
    return blocks[:first] + tuple(tail)


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


def _position(ids: array[int], row: int) -> int | None:
    at = bisect.bisect_left(ids, row)
    return at if at < len(ids) and ids[at] == row else None


def _has(values: array[int], value: int) -> bool:
    at = bisect.bisect_left(values, value)
    return at < len(values) and values[at] == value
