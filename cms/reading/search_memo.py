"""What searches found out about words at one transaction of the catalogue, for the next ones.

The common words' bitmaps answer most searches (see ``search_bits``); what they leave out is
kept here: the rows of a rare word or a beginning, read from the index once, and beginnings
combined from many common words. Anonymous readers choose the words, so everything here is
bounded by what it weighs in memory, not by what the readers send: a bitmap by its own bytes
plus its key and its entry, the least recently used let go first; words known to be in no row
by their number and their length. Each word as searches ask for it (the word, and where it is
a beginning) is kept with its rows in every part, so that a search's words are one look-up
each: weighed by the word and by the bitmaps made for it alone (a union, a rare word's rows),
not by the common words' bitmaps it shares, which the state holds anyway.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Set as AbstractSet

from pyroaring import FrozenBitMap

from ..lru import EmptiedCache, WeighedCache

Key = tuple[int, str, bool]  # part, word, whether it is a beginning
# A word as a search asks for it: the word alone where it is whole in every part, else the
# word and by part whether it is a beginning there.
TermKey = str | tuple[str, tuple[bool, ...]]
# Its rows in each part, and the bytes of those bitmaps kept only for it (not the state's own
# common words' bitmaps, which it shares).
Term = tuple[tuple[FrozenBitMap, ...], int]

# The bytes of bitmaps kept, with what each entry costs besides its bitmap (the bitmap's
# Python object, the key's tuple and string, the dict's slot), and at most this many entries.
MOST_BYTES = 8 * 2**20
ENTRY_BYTES = 300
MOST_ENTRIES = 16_384
# Words known to be in no row of a part: at most this many, forgotten all at once past it, and
# only short ones (a longer word typed is looked up the long way each time).
ABSENT_KEPT = 16_384
ABSENT_LONGEST = 32
# Words as searches ask for them: every search looks up each of its words here first, so an
# entry is the dict's own look-up; the whole table goes at once past this many bytes.
TERMS_BYTES = 4 * 2**20
TERM_BYTES = 400
# Keys whose reads from the catalogue have a lock (see ``Memo.reading``), at most.
_READING_KEPT = 1024


def _weight(key: Key, rows: FrozenBitMap) -> int:
    # A Roaring bitmap's size is that of its serialized form: 8 bytes when empty.
    return sys.getsizeof(rows) + len(key[1]) + ENTRY_BYTES


def _term_weight(key: TermKey, term: Term) -> int:
    return len(key if isinstance(key, str) else key[0]) + TERM_BYTES + term[1]


class Memo(WeighedCache[Key, FrozenBitMap]):
    def __init__(self, most_bytes: int = MOST_BYTES, most_entries: int = MOST_ENTRIES) -> None:
        super().__init__(most_bytes, _weight, max_entries=most_entries)
        self._absent: set[tuple[int, str]] = set()
        self._absent_lock = threading.Lock()
        # Looked up as ``terms.get`` (the dict's own), kept with ``terms.put``.
        self.terms: EmptiedCache[TermKey, Term] = EmptiedCache(TERMS_BYTES, _term_weight)
        self._reading: dict[Key, threading.Lock] = {}
        self._reading_lock = threading.Lock()

    def reading(self, key: Key) -> threading.Lock:
        """Held while a key's rows are read from the catalogue: searches in other threads that
        miss the same key wait for that read and find its rows, rather than each reading them
        again (after a start or a publication, under load, dozens did at once). One lock a
        key, so that a slow read (a beginning most rows share) holds up no other word's;
        forgotten all at once past ``_READING_KEPT`` keys, when a key being read may be read
        twice, which only costs the time."""
        with self._reading_lock:
            lock = self._reading.get(key)
            if lock is None:
                if len(self._reading) >= _READING_KEPT:
                    self._reading = {}
                lock = self._reading[key] = threading.Lock()
            return lock

    @property
    def absent_words(self) -> AbstractSet[tuple[int, str]]:
        """(part, word) for each word known to be in no row of that part: the set itself,
        to look up in, not to keep or iterate (another thread adds to it and empties it past
        ``ABSENT_KEPT``; a look-up is one step under the GIL)."""
        return self._absent

    def mark_absent(self, part: int, word: str) -> None:
        if len(word) > ABSENT_LONGEST:
            return
        with self._absent_lock:
            if len(self._absent) >= ABSENT_KEPT:
                self._absent.clear()
            self._absent.add((part, word))

    @property
    def absent(self) -> int:
        """How many words are known to be in no row of some part."""
        return len(self._absent)
