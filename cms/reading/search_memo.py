"""What searches found out about words at one transaction of the catalogue, for the next ones.

The common words' bitmaps answer most searches (see ``search_bits``); what they leave out is
kept here: the rows of a rare word or a beginning, read from the index once, and beginnings
combined from many common words. Anonymous readers choose the words, so everything here is
bounded by what it weighs in memory, not by what the readers send: a bitmap by its own bytes
plus its key and its entry, the least recently used let go first; words known to be in no row
by their number and their length.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections import OrderedDict

from pyroaring import FrozenBitMap

from ..lru import GIL

Key = tuple[int, str, bool]  # part, word, whether it is a beginning

# The bytes of bitmaps kept, with what each entry costs besides its bitmap (the bitmap's
# Python object, the key's tuple and string, the dict's slot), and at most this many entries.
MOST_BYTES = 8 * 2**20
ENTRY_BYTES = 300
MOST_ENTRIES = 16_384
# Words known to be in no row of a part: at most this many, forgotten all at once past it, and
# only short ones (a longer word typed is looked up the long way each time).
ABSENT_KEPT = 16_384
ABSENT_LONGEST = 32


class Memo:
    """Read without a lock from any thread where there is a GIL: a dict's look-up and its move
    to the end are each one step, and an entry let go between them is simply not moved. Kept
    and let go under a lock, since that also counts what is kept."""

    def __init__(self, most_bytes: int = MOST_BYTES, most_entries: int = MOST_ENTRIES) -> None:
        self.most_bytes = most_bytes
        self.most_entries = most_entries
        self.weight = 0
        self._kept: OrderedDict[Key, tuple[FrozenBitMap, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._absent: set[tuple[int, str]] = set()

    def get(self, key: Key) -> FrozenBitMap | None:
        if not GIL:
            with self._lock:
                return self._get(key)
        return self._get(key)

    def _get(self, key: Key) -> FrozenBitMap | None:
        found = self._kept.get(key)
        if found is None:
            return None
        with contextlib.suppress(KeyError):  # let go meanwhile by another thread
            self._kept.move_to_end(key)
        return found[0]

    def put(self, key: Key, rows: FrozenBitMap) -> None:
        weight = sys.getsizeof(rows) + len(key[1]) + ENTRY_BYTES
        if weight > self.most_bytes:
            return
        with self._lock:
            if key in self._kept:
                return
            while self._kept and (self.weight + weight > self.most_bytes
                                  or len(self._kept) >= self.most_entries):
                _, (_, let_go) = self._kept.popitem(last=False)
                self.weight -= let_go
            self._kept[key] = (rows, weight)
            self.weight += weight

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, key: Key) -> bool:
        return key in self._kept

    def is_absent(self, part: int, word: str) -> bool:
        return (part, word) in self._absent

    def mark_absent(self, part: int, word: str) -> None:
        if len(word) > ABSENT_LONGEST:
            return
        with self._lock:
            if len(self._absent) >= ABSENT_KEPT:
                self._absent.clear()
            self._absent.add((part, word))

    @property
    def absent(self) -> int:
        """How many words are known to be in no row of some part."""
        return len(self._absent)
