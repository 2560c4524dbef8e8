"""The byte-bounded cache: what it keeps, and what it lets go first."""

from __future__ import annotations

import weakref

import pytest

from cms import lru
from cms.lru import EmptiedCache, WeighedCache


def by_length(key: str, value: bytes) -> int:
    return len(value)


def test_the_least_recently_used_go_first_until_the_weight_fits() -> None:
    cache: WeighedCache[str, bytes] = WeighedCache(10, by_length)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    assert cache.get("a") == b"1234"  # now b is the oldest
    cache.put("c", b"1234")
    assert cache.get("b") is None
    assert cache.get("a") == b"1234"
    assert cache.get("c") == b"1234"
    assert cache.weight == 8
    assert len(cache) == 2


def test_replacing_an_entry_replaces_its_weight() -> None:
    cache: WeighedCache[str, bytes] = WeighedCache(10, by_length)
    cache.put("a", b"123456")
    cache.put("a", b"12")
    assert cache.weight == 2
    cache.put("b", b"12345678")
    assert cache.get("a") == b"12"
    assert cache.weight == 10


@pytest.mark.parametrize(("key", "kept"), [("big", {"a": b"1234"}), ("a", {})])
def test_an_entry_heavier_than_the_budget_is_not_kept_and_evicts_nothing_else(
        key: str, kept: dict[str, bytes]) -> None:
    """A new key is dropped; an old key given a heavier value loses its old value too."""
    cache: WeighedCache[str, bytes] = WeighedCache(10, by_length)
    cache.put("a", b"1234")
    cache.put(key, b"x" * 11)
    assert cache.get(key) == kept.get(key)
    assert cache.get("a") == kept.get("a")
    assert cache.weight == sum(len(value) for value in kept.values())


def test_clear_empties_it() -> None:
    cache: WeighedCache[str, bytes] = WeighedCache(10, by_length)
    cache.put("a", b"1234")
    cache.clear()
    assert cache.get("a") is None
    assert cache.weight == 0
    assert len(cache) == 0


def test_entries_that_weigh_nothing_are_bounded_in_number_too() -> None:
    cache: WeighedCache[str, bytes] = WeighedCache(10**6, lambda key, value: 0, max_entries=3)
    for number in range(10):
        cache.put(f"k{number}", b"")
    assert len(cache) == 3
    assert "k9" in cache
    assert "k6" not in cache


def test_an_emptied_cache_is_emptied_at_once_when_an_entry_would_pass_its_budget() -> None:
    cache: EmptiedCache[str, bytes] = EmptiedCache(10, by_length)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    assert (cache.get("a"), cache.get("b"), cache.weight) == (b"1234", b"1234", 8)
    cache.put("c", b"1234")  # 12 > 10: everything before it goes
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, None, b"1234")
    assert (len(cache), cache.weight) == (1, 4)


def test_an_emptied_cache_keeps_nothing_heavier_than_its_budget_and_empties_for_nothing(
) -> None:
    cache: EmptiedCache[str, bytes] = EmptiedCache(10, by_length)
    cache.put("a", b"1234")
    cache.put("huge", b"x" * 11)
    assert (cache.get("huge"), cache.get("a"), cache.weight) == (None, b"1234", 4)


def test_a_look_up_begun_before_an_emptying_reads_what_was_there() -> None:
    cache: EmptiedCache[str, bytes] = EmptiedCache(10, by_length)
    cache.put("a", b"1234")
    looked_up = cache.get  # as a reader on another thread holds it
    cache.clear()
    assert (looked_up("a"), cache.get("a"), cache.weight) == (b"1234", None, 0)


class _Entry:
    """A value that can be watched going (bytes cannot be weakly referred to)."""


def test_an_emptied_cache_lets_its_old_entries_go_a_few_at_each_put() -> None:
    cache: EmptiedCache[int, _Entry] = EmptiedCache(100, lambda key, value: 1)
    watched = []
    for number in range(100):
        entry = _Entry()
        watched.append(weakref.ref(entry))
        cache.put(number, entry)
    del entry
    cache.put(100, _Entry())  # past the budget: emptied
    assert cache.get(0) is None
    assert sum(ref() is not None for ref in watched) == 100  # not freed in this step
    cache.put(101, _Entry())
    assert sum(ref() is not None for ref in watched) == 100 - lru._LET_GO_AT_ONCE
    for number in range(102, 106):
        cache.put(number, _Entry())
    assert sum(ref() is not None for ref in watched) == 0
