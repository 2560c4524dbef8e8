"""A least-recently-used cache bounded by what its entries weigh, not by how many there are.

A count bound is no bound when entries vary in size: 2,000 small comparisons and 2,000 of a
megabyte each are both "2,000 entries". Each entry here is weighed once when it is stored (in
bytes, or close to it) and the oldest go until the total is within the budget; an entry that
alone weighs more than the budget is not kept at all.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

# Reads go without the lock only where the GIL makes each step of a dict one step.
GIL: bool = getattr(sys, "_is_gil_enabled", lambda: True)()

K = TypeVar("K")
V = TypeVar("V")


class WeighedCache(Generic[K, V]):
    def __init__(self, max_weight: int, weigh: Callable[[K, V], int], *,
                 max_entries: int | None = None) -> None:
        self.max_weight = max_weight
        # Where entries can weigh next to nothing, a bound on their number as well.
        self.max_entries = max_entries
        self.weight = 0
        self._weigh = weigh
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    def get(self, key: K) -> V | None:
        if not GIL:
            with self._lock:
                return self._get(key)
        return self._get(key)

    def _get(self, key: K) -> V | None:
        # Without the lock where there is a GIL: each of the two steps is one of the dict's
        # own, and an entry another thread lets go between them is simply not moved.
        entry = self._entries.get(key)
        if entry is None:
            return None
        try:  # noqa: SIM105 (``suppress`` would make a context manager on every look-up)
            self._entries.move_to_end(key)
        except KeyError:
            pass
        return entry[0]

    if GIL:  # a look-up is a few dict steps: the call to ``get`` was half of its cost
        get = _get

    def put(self, key: K, value: V) -> None:
        weight = self._weigh(key, value)
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self.weight -= previous[1]
            if weight > self.max_weight:
                return
            self._entries[key] = (value, weight)
            self.weight += weight
            while self.weight > self.max_weight or (
                    self.max_entries is not None and len(self._entries) > self.max_entries):
                self.weight -= self._entries.popitem(last=False)[1][1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.weight = 0


_LET_GO_AT_ONCE = 32  # entries freed by each ``put`` of an emptied cache


class EmptiedCache(Generic[K, V]):
    """A cache emptied all at once when what it holds weighs more than its budget.

    For entries looked up many times a request (a list's twenty entries), where keeping the
    least recently used in order costs more than the rare refill: a look-up is the dict's own.
    The entries emptied out are let go a few at each later ``put``, not all at once: freeing
    ten thousand of them in one step held up every request of the event loop for milliseconds.
    Memory is therefore bounded by twice the budget while they go.
    """

    def __init__(self, max_weight: int, weigh: Callable[[K, V], int]) -> None:
        self.max_weight = max_weight
        self.weight = 0
        self._weigh = weigh
        self._entries: dict[K, V] = {}
        self.get = self._entries.get
        self._going: dict[K, V] = {}  # emptied out, being let go
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: K, value: V) -> None:
        weight = self._weigh(key, value)
        if weight > self.max_weight:
            return
        with self._lock:
            for _ in range(min(_LET_GO_AT_ONCE, len(self._going))):
                self._going.popitem()
            if self.weight + weight > self.max_weight:
                self._clear_locked()
            # A key put again is counted again: what it holds weighs at most what it counts.
            self.weight += weight
            self._entries[key] = value

    def clear(self) -> None:
        with self._lock:
            self._clear_locked()

    def _clear_locked(self) -> None:
        # A new dict, not the old one emptied: a reader on another thread holding the old
        # ``get`` finds what it held. What was still going goes now: at most one budget's worth
        # of entries, once per budget filled.
        self._going = self._entries
        self._entries = {}
        self.get = self._entries.get
        self.weight = 0
