"""The common words' bitmaps answer a search exactly as SQL does: the same rows, order, counts
and cursors, while publications come and go, across a restart, and not when they cannot."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import sys
import threading
import tracemalloc
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pyroaring import FrozenBitMap

from cms.config import Settings
from cms.content import codec
from cms.reading import index as published_index
from cms.reading import listing, search_bits, search_memo
from cms.reading.catalogue import Catalogue
from cms.reading.index import PublishedIndex, Query
from cms.reading.search_bits import generation_of
from cms.store.documents import Documents

from .test_index import commit_on_main, store
from .test_search import index, variant

__all__ = ["index"]  # the fixture, for pytest


def settled(index: PublishedIndex) -> Catalogue:
    catalogue = index.search_bits_settled()
    assert catalogue is not None
    return catalogue


@pytest.fixture
def bits(index: PublishedIndex) -> Iterator[PublishedIndex]:
    """The search fixture's catalogue with a bitmap for every word."""
    index.bits_from = 1
    index.fill()
    assert settled(index).bits.state() is not None
    yield index
    index.close()


def vocabulary(index: PublishedIndex) -> list[str]:
    words: set[str] = set()
    for item in index.query(Query(limit=100)).items:
        entry = index.get(item.slug)
        assert entry is not None
        words |= set(re.findall(r"[a-z0-9]+", codec.encode(entry.comparison).lower()))
    return sorted(words)


def queries(words: list[str]) -> Iterator[Query]:
    """Single words, beginnings, pairs, threes and a word followed by a space, in a few page
    sizes."""
    for number, word in enumerate(words):
        other = words[(number * 7 + 3) % len(words)]
        third = words[(number * 11 + 5) % len(words)]
        for q in (word, word[:3], word[:4], f"{other} {word}", f"{word} {other[:5]}",
                  f"{word} ", f"{word.upper()} {other}", f"{word} {other} {third[:4]}"):
            yield Query(q=q, limit=1 + number % 3)


def agree(index: PublishedIndex, query: Query) -> bool:
    """Both answers to a query, and every page after it, are the same; whether the bitmaps
    answered the first."""
    catalogue = index.search_bits_settled()
    assert catalogue is not None
    answered = None
    while True:
        with catalogue.reading() as db:
            fast = listing.page(db, query, catalogue.bits, only_bits=True)
            slow = listing.page(db, query)
        assert slow is not None
        if fast is not None:
            assert fast == slow, query
        if answered is None:
            answered = fast is not None
        if slow.next_cursor is None:
            return answered
        query = msgspec.structs.replace(query, cursor=slow.next_cursor)


def test_every_search_of_the_bitmaps_is_what_sql_answers(bits: PublishedIndex) -> None:
    words = vocabulary(bits)
    assert len(words) > 100
    asked = list(queries(words))
    answered = [agree(bits, query) for query in asked]
    # Every word has a bitmap here: only words outside plain ASCII go to SQL.
    assert all(answered)
    assert any(bits.query(query).total > 1 for query in asked)


def test_a_text_beyond_ascii_is_searched_for_by_its_words(bits: PublishedIndex) -> None:
    words = vocabulary(bits)
    first, second = words[10], words[20]
    # Plain words between other characters: the bitmaps answer, as SQL does.
    assert agree(bits, Query(q=f"{first.upper()} \u2013 {second}"))
    # A letter that lower-cased is two characters, the second no letter: had the text been
    # lower-cased whole, it would have cut the word in two.
    dotted = Query(q=f"\u0130{first} {second}")
    assert not agree(bits, dotted)  # not a plain word: SQL's to answer
    assert bits.quick_query(dotted) is None


@pytest.mark.parametrize("q", ["zephyr ZEPHYR", "Zephyr zephyr", "zephyr x ZEPHYR",
                               "zephyr zephyr", "a A b c d e f g h i j k l"])
def test_a_word_typed_twice_in_two_cases_is_two_words_as_sql_has_them(
        bits: PublishedIndex, q: str) -> None:
    """Repeats are dropped as typed, then the words lower-cased: "Zephyr zephyr" asks for
    "zephyr" whole and as a beginning, so a title's "Zephyrs" alone does not match it."""
    base = bits.get("in-the-body")
    assert base is not None
    new = variant(base.comparison, "zephyrs-title", days=1000, title="Zephyrs in the title")
    documents = bits.documents
    commit_on_main(documents, {documents.layout.path(new.slug): codec.encode(new).encode()})
    bits.refresh(now=10**9)
    bits.fill()
    assert agree(bits, Query(q=q))


def test_with_rare_words_every_search_is_what_sql_answers(index: PublishedIndex) -> None:
    """Words only a few comparisons hold have no bitmap: their rows are read from the index,
    and every search still gives SQL's rows, order, counts and cursors."""
    index.bits_from = 3
    index.fill()
    catalogue = settled(index)
    state = catalogue.bits.state()
    assert state is not None
    words = vocabulary(index)
    rare = [word for word in words if word not in state.words[2]]
    assert len(rare) > 10  # many of the words are rare here
    answered = [agree(index, query) for query in queries(words)]
    assert all(answered)
    # Once a thread has read a rare word's rows, the event loop answers it, as SQL does.
    for word in rare[:20]:
        query = Query(q=f"{word} ")
        assert index.query(query) == index.quick_query(query), word
    index.close()


def test_the_bitmaps_follow_publications_changes_and_removals(bits: PublishedIndex) -> None:
    documents: Documents = bits.documents
    base = bits.get("in-the-body")
    assert base is not None
    newest = variant(base.comparison, "newest-zephyr", days=1000, title="Zephyr once more",
                     body="A tramontane and a zephyr.")
    commit_on_main(documents, {documents.layout.path(newest.slug):
                               codec.encode(newest).encode()})
    builds = settled(bits).bits.builds
    bits.refresh(now=10**9)
    assert [item.slug for item in bits.query(Query(q="tramontane")).items] == ["newest-zephyr"]
    changed = msgspec.structs.replace(base.comparison, body="Now it speaks of sirocco.")
    commit_on_main(documents, {documents.layout.path("in-the-body"):
                               codec.encode(changed).encode(),
                               documents.layout.path("in-the-title"): None})
    bits.refresh(now=2 * 10**9)
    bits.fill()
    catalogue = settled(bits)
    assert catalogue.bits.builds == builds  # followed, not made anew
    state = catalogue.bits.state()
    assert state is not None
    with catalogue.reading() as db:
        assert state.generation == generation_of(db)
    for q in ("zephyr", "zeph", "against", "zephyr plain"):
        assert agree(bits, Query(q=q))
    # Words no comparison held when the bitmaps were made are rare to them until the next
    # build, however many comparisons take them up: their rows are read from the index.
    for q in ("sirocco", "tramontane zephyr", "speaks"):
        assert agree(bits, Query(q=q))
        state = catalogue.bits.state()
        assert state is not None
        assert (2, q.split()[0], False) in state.memo
    assert [item.slug for item in bits.query(Query(q="sirocco")).items] == ["in-the-body"]
    assert "in-the-title" not in [item.slug for item in bits.query(Query(q="zephyr")).items]
    for query in queries(vocabulary(bits)):
        agree(bits, query)


def test_older_publications_are_put_in_their_place(bits: PublishedIndex) -> None:
    documents: Documents = bits.documents
    base = bits.get("in-the-body")
    assert base is not None
    builds = settled(bits).bits.builds
    # One commit: a row older than every other, one in between, and the newest, in an order
    # that is not theirs; the rows above each older one move up a place in every bitmap.
    made = [variant(base.comparison, "oldest-zephyr", days=-30, body="An ancient zephyr."),
            variant(base.comparison, "newest-zephyr", days=1000, body="A recent zephyr."),
            variant(base.comparison, "middle-zephyr", days=4, body="A middling zephyr.")]
    commit_on_main(documents, {documents.layout.path(c.slug): codec.encode(c).encode()
                               for c in made})
    bits.refresh(now=10**9)
    bits.fill()
    catalogue = settled(bits)
    assert catalogue.bits.builds == builds  # followed, not made anew
    assert [item.slug for item in bits.query(Query(q="zephyr ancient")).items] == [
        "oldest-zephyr"]
    assert [item.slug for item in bits.query(Query(q="zephyr middling")).items] == [
        "middle-zephyr"]
    # Every answer the same; the words the three brought are new, and SQL's until a build.
    answered = [agree(bits, query) for query in queries(vocabulary(bits))]
    assert sum(answered) > 0.9 * len(answered)


def test_many_older_publications_at_once_make_the_bitmaps_anew(bits: PublishedIndex) -> None:
    documents: Documents = bits.documents
    base = bits.get("in-the-body")
    assert base is not None
    builds = settled(bits).bits.builds
    made = [variant(base.comparison, f"old-zephyr-{n}", days=-30 - n, body="An old zephyr.")
            for n in range(search_bits._OLDER_FOLLOWED + 1)]
    commit_on_main(documents, {documents.layout.path(c.slug): codec.encode(c).encode()
                               for c in made})
    bits.refresh(now=10**9)
    bits.fill()
    catalogue = settled(bits)
    assert catalogue.bits.builds == builds + 1
    assert agree(bits, Query(q="zephyr old", limit=3))


def test_the_bitmaps_are_kept_for_the_next_start_while_they_are_of_its_rows(
        settings: Settings, bits: PublishedIndex) -> None:
    expected = bits.query(Query(q="zephyr", limit=2))
    bits.close()
    again = PublishedIndex(store(settings), settings.data)
    again.bits_from = 1
    again.load()
    again.fill()
    catalogue = settled(again)
    assert catalogue.bits.builds == 0  # taken from the file
    assert catalogue.bits.state() is not None
    assert again.query(Query(q="zephyr", limit=2)) == expected
    assert agree(again, Query(q="zephyr", limit=2))
    # Rows the saved bitmaps do not know of: made anew rather than taken.
    base = again.get("in-the-body")
    assert base is not None
    newer = variant(base.comparison, "newer-zephyr", days=1000, body="A newer zephyr.")
    again.close()
    documents = store(settings)
    commit_on_main(documents, {documents.layout.path(newer.slug): codec.encode(newer).encode()})
    third = PublishedIndex(documents, settings.data)
    third.bits_from = 1
    third.load()
    third.fill()
    assert settled(third).bits.builds == 1
    assert agree(third, Query(q="newer zephyr"))
    assert third.query(Query(q="zephyr newer")).items[0].slug == "newer-zephyr"
    third.close()


def test_a_rare_word_is_read_from_sql_once_and_then_answered_on_the_event_loop(
        index: PublishedIndex) -> None:
    """A rare word, or a beginning a rare word shares, has no bitmap: a search in a thread
    reads its rows from the search index at the bitmaps' transaction and keeps them, and the
    event loop answers the same search from then on; the same rows as SQL's, page by page."""
    index.bits_from = 2  # "earlier" is in one comparison only
    index.fill()
    catalogue = settled(index)
    # "zephyr" is in one title ("zeph" shares it there), "earlier" in one body.
    rare = [Query(q="zeph"), Query(q="zephyr earlier"), Query(q="zeph", limit=1),
            Query(q="earlier zep"), Query(q="zephyr earl")]
    for query in rare[:2]:
        assert index.quick_query(query) is None, query  # not read yet
    for query in rare:
        assert agree(index, query), query  # the bitmaps answer, with the rows read from SQL
        assert index.query(query) == index.quick_query(query), query
    assert [item.slug for item in index.query(Query(q="zephyr earlier")).items] == [
        "older-in-the-body"]
    assert [item.slug for item in index.quick_query(Query(q="zeph")).items] == [  # type: ignore[union-attr]
        "in-the-title", "in-the-summary"]
    assert index.quick_query(Query(q="zephyr", category="weather")) is None  # filters: SQL
    # Rows read at one transaction are not taken for the next one's.
    state = catalogue.bits.state()
    assert state is not None
    assert (0, "zeph", True) in state.memo
    documents = index.documents
    base = index.get("in-the-body")
    assert base is not None
    newest = variant(base.comparison, "newest-zephyr", days=1000, title="Zephyr once more")
    commit_on_main(documents, {documents.layout.path(newest.slug): codec.encode(newest).encode()})
    index.refresh(now=10**9)
    index.fill()
    after = settled(index).bits.state()
    assert after is not None
    assert after.stamp != state.stamp
    assert index.quick_query(Query(q="zeph")) is None
    assert [item.slug for item in index.query(Query(q="zeph")).items] == [
        "newest-zephyr", "in-the-title", "in-the-summary"]
    assert agree(index, Query(q="zeph"))
    index.close()


def test_a_catalogue_without_bitmaps_says_search_is_ready_only_once_they_are_made(
        settings: Settings, repo_path: Path) -> None:
    index = PublishedIndex(store(settings), settings.data)
    index.bits_from = 1
    index.load()
    assert not index.search_ready
    index.fill()
    settled(index)
    assert index.search_ready
    index.close()


def saved_bits(settings: Settings, bits: PublishedIndex) -> Path:
    expected = bits.query(Query(q="zephyr", limit=2))
    bits.close()
    path = settings.data / "catalogue-0.sqlite.bits"
    assert path.is_file()
    assert expected.items
    return path


def reopened(settings: Settings) -> tuple[PublishedIndex, Catalogue]:
    index = PublishedIndex(store(settings), settings.data)
    index.bits_from = 1
    index.load()
    index.fill()
    return index, settled(index)


def test_bitmaps_saved_at_a_transaction_number_that_came_again_are_not_taken(
        settings: Settings, bits: PublishedIndex) -> None:
    saved_bits(settings, bits)
    # After a crash that lost the catalogue's last commits, other commits can bring it to the
    # same number: the transaction's random part tells them apart.
    catalogue_file = settings.data / "catalogue-0.sqlite"
    db = sqlite3.connect(catalogue_file)
    number = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]
    db.execute("UPDATE meta SET value = ? WHERE key = 'generation'",
               (number.split()[0] + " another",))
    db.commit()
    db.close()
    again, catalogue = reopened(settings)
    assert catalogue.bits.builds == 1
    assert agree(again, Query(q="zephyr", limit=2))
    again.close()


@pytest.mark.parametrize("damage", ["flipped", "cut short", "odd length", "past the rows",
                                    "not a bitmap", "no bytes", "ids out of order",
                                    "rare words out of order", "another format"])
def test_damaged_bitmaps_are_made_anew_not_taken(settings: Settings, bits: PublishedIndex,
                                                  damage: str) -> None:
    path = saved_bits(settings, bits)
    raw = bytearray(path.read_bytes())
    if damage == "flipped":
        raw[len(raw) // 2] ^= 0x10
    elif damage == "cut short":
        del raw[len(raw) // 3:]
    else:  # whole, with a digest that fits, but not something this code wrote
        payload = msgspec.msgpack.decode(bytes(raw[32:]))
        word = next(iter(payload[6][2]))
        if damage == "odd length":
            payload[4] += b"\x01"  # the row ids, no longer whole numbers of eight bytes
        elif damage == "past the rows":  # a bitmap of a position no row has
            payload[6][2][word] = FrozenBitMap([len(payload[4]) // 8]).serialize()
        elif damage == "not a bitmap":
            payload[6][2][word] = b"\x01" * 9
        elif damage == "no bytes":  # the binding raises IndexError for this one
            payload[5] = b""
        elif damage == "ids out of order":  # every position still below the count
            payload[4] = payload[4][8:] + payload[4][:8]
        elif damage == "rare words out of order":
            payload[7][2] = array("q", [5, 3]).tobytes()
        else:  # as an earlier release saved them: no format, bitmaps as whole numbers
            del payload[0]
        body = msgspec.msgpack.encode(payload)
        raw = bytearray(hashlib.blake2b(body, digest_size=32).digest() + body)
    path.write_bytes(bytes(raw))
    again, catalogue = reopened(settings)
    assert catalogue.bits.builds == 1
    assert catalogue.bits.state() is not None
    assert agree(again, Query(q="zephyr", limit=2))
    again.close()


def test_a_build_that_could_not_follow_is_made_again_and_search_waits_for_it(
        index: PublishedIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    index.bits_from = 1
    made: list[int] = []

    def build_once_lost(self: Catalogue) -> None:
        original(self)
        made.append(1)
        if len(made) == 1:  # as when a row older than the newest came in meanwhile
            self.bits.drop()

    original = Catalogue.build_bits
    monkeypatch.setattr(Catalogue, "build_bits", build_once_lost)
    index.fill()
    catalogue = settled(index)
    assert len(made) == 2
    assert catalogue.bits.state() is not None
    assert index.search_ready
    catalogue.bits.drop()
    assert not index.search_ready  # SQL answers: slower, and /health says so
    index.close()


def test_a_quick_answer_shows_a_publication_at_once(bits: PublishedIndex) -> None:
    first = bits.query(Query(q="zephyr"))  # reads its rows, and keeps them
    assert bits.quick_query(Query(q="zephyr")) == first
    documents: Documents = bits.documents
    base = bits.get("in-the-body")
    assert base is not None
    newest = variant(base.comparison, "newest-zephyr", days=1000, title="Zephyr, newest")
    commit_on_main(documents, {documents.layout.path(newest.slug): codec.encode(newest).encode()})
    bits.refresh(now=10**9)
    assert bits.quick_query(Query(q="zephyr")) is None  # behind main: not from memory
    again = bits.query(Query(q="zephyr"))
    assert again.items[0].slug == "newest-zephyr"
    assert bits.quick_query(Query(q="zephyr")) == again


def test_transactions_during_a_load_are_applied_after_it_and_a_drop_wins(
        settings: Settings, bits: PublishedIndex) -> None:
    path = saved_bits(settings, bits)
    catalogue_file = settings.data / "catalogue-0.sqlite"
    db = sqlite3.connect(catalogue_file)
    identity, stamp = (db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]
                       for key in ("identity", "generation"))
    db.close()
    number = int(stamp.split()[0])
    loading = search_bits.SearchBits(dense_from=1)

    def stamp_then_a_commit() -> str:
        loading.apply(number + 1, f"{number + 1} later", [])  # committed while loading
        return str(stamp)

    assert loading.load(path, str(identity), stamp_then_a_commit)
    state = loading.state()
    assert state is not None
    assert (state.generation, state.stamp) == (number + 1, f"{number + 1} later")
    dropped = search_bits.SearchBits(dense_from=1)

    def stamp_then_a_drop() -> str:
        dropped.drop()  # the catalogue was emptied meanwhile
        return str(stamp)

    assert not dropped.load(path, str(identity), stamp_then_a_drop)
    assert dropped.state() is None


def test_a_save_that_fails_leaves_nothing_behind(settings: Settings, bits: PublishedIndex,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    catalogue = settled(bits)
    before = catalogue.bits_path.read_bytes()  # saved after the build

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(search_bits.os, "fsync", full)
    catalogue.save_bits()
    assert "could not be saved" in caplog.text
    assert not list(settings.data.glob("*.bits.new"))
    assert catalogue.bits_path.read_bytes() == before


def test_a_load_whose_meanwhile_cannot_be_followed_says_so_and_they_are_made(
        settings: Settings, bits: PublishedIndex) -> None:
    path = saved_bits(settings, bits)
    db = sqlite3.connect(settings.data / "catalogue-0.sqlite")
    identity, stamp = (db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]
                       for key in ("identity", "generation"))
    db.close()
    number = int(stamp.split()[0])
    loading = search_bits.SearchBits(dense_from=1)
    older = [search_bits.Change(row, texts=("a", "b", "c"))
             for row in range(1, search_bits._OLDER_FOLLOWED + 2)]

    def stamp_then_many_older_rows() -> str:
        loading.apply(number + 1, f"{number + 1} later", older)
        return str(stamp)

    assert not loading.load(path, str(identity), stamp_then_many_older_rows)
    assert loading.state() is None


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(0, 3 * 2**16), max_size=300), st.integers(-1, 3 * 2**16 + 2),
       st.integers(0, 30))
def test_the_newest_rows_below_a_position_are_the_highest_held(
        held: set[int], below: int, most: int) -> None:
    expected = sorted((row for row in held if row < below), reverse=True)[:most]
    assert search_bits.newest(FrozenBitMap(held), below, most) == expected


def test_a_search_of_words_no_row_holds_looks_them_up_once(
        bits: PublishedIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    catalogue = settled(bits)
    looked_up: list[str] = []
    known_rare = search_bits._known_rare

    def counted(vocabulary: object, part: int, word: str) -> bool:
        looked_up.append(word)
        return known_rare(vocabulary, part, word)  # type: ignore[arg-type]

    monkeypatch.setattr(search_bits, "_known_rare", counted)
    query = Query(q="zzqx zephyr ")
    first = bits.quick_query(query)
    assert first is not None
    assert not first.items
    assert looked_up.count("zzqx") == 3  # once a part
    assert bits.quick_query(query) == first
    assert looked_up.count("zzqx") == 3  # remembered as in no row
    assert agree(bits, query)
    # A long word is not among the words in no row (anyone can type as many as they like),
    # but the search's word is kept, weighed by its length (see the next test).
    long_word = "q" * 40
    assert bits.quick_query(Query(q=f"{long_word} zephyr ")) is not None
    assert bits.quick_query(Query(q=f"{long_word} zephyr ")) is not None
    assert looked_up.count(long_word) == 3
    state = catalogue.bits.state()
    assert state is not None
    assert (2, long_word) not in state.memo.absent_words


def test_words_searched_for_are_kept_within_their_bytes(bits: PublishedIndex) -> None:
    state = settled(bits).bits.state()
    assert state is not None
    terms = state.memo.terms
    terms.max_weight = 3 * (search_memo.TERM_BYTES + 200)
    for number in range(20):
        assert bits.quick_query(Query(q=f"{'w' * 150}{number} zephyr ")) is not None
        assert terms.weight <= terms.max_weight
        assert 1 <= len(terms) <= 3
    assert agree(bits, Query(q=f"{'w' * 150}19 zephyr "))


def test_a_word_s_entry_weighs_the_bitmaps_made_for_it_alone(bits: PublishedIndex) -> None:
    state = settled(bits).bits.state()
    assert state is not None
    common = state.vocabulary.common[1]
    # A beginning that several common words of the summary part share: their union is made for
    # it, and counted; a word with a bitmap of its own is not.
    start = next(word[:3] for word in common if len(word) >= 5 and
                 sum(other.startswith(word[:3]) for other in common) >= 3)
    assert agree(bits, Query(q=f"zephyr {start}"))  # the bitmaps answer it
    term = state.memo.terms.get((start, (True, True, False)))
    assert term is not None
    rows, made = term
    union = rows[1]
    assert all(union is not words for words in state.words[1].values())
    shared = [part for part, found in enumerate(rows)
              if not found or any(found is words for words in state.words[part].values())]
    assert made == sum(sys.getsizeof(rows[part]) for part in range(3) if part not in shared) > 0
    whole = state.memo.terms.get("zephyr")
    assert whole is not None
    assert whole[1] == 0


def test_words_no_row_holds_are_remembered_within_a_bound(
        bits: PublishedIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    state = settled(bits).bits.state()
    assert state is not None
    monkeypatch.setattr(search_memo, "ABSENT_KEPT", 4)
    for number in range(10):
        assert bits.quick_query(Query(q=f"zzqx{number} ")) is not None
        assert 1 <= state.memo.absent <= 4
    assert (2, "zzqx9") in state.memo.absent_words
    assert agree(bits, Query(q="zephyr"))


def test_beginnings_that_no_word_has_are_not_kept(bits: PublishedIndex) -> None:
    state = settled(bits).bits.state()
    assert state is not None
    kept = len(state.memo)
    for number in range(20):
        found = bits.quick_query(Query(q=f"qqz{number}"))  # a beginning: the last word typed
        assert found is not None
        assert not found.items
    assert len(state.memo) == kept


def test_the_memo_keeps_to_its_budget_letting_the_least_used_go_first() -> None:
    rows = FrozenBitMap(range(1000))
    each = sys.getsizeof(rows) + len("word0") + search_memo.ENTRY_BYTES
    memo = search_memo.Memo(most_bytes=3 * each)
    for number in range(3):
        memo.put((0, f"word{number}", False), rows)
    assert memo.get((0, "word0", False)) == rows  # used: the least used is word1 now
    memo.put((0, "word3", False), rows)
    assert memo.weight == 3 * each
    assert (0, "word0", False) in memo
    assert (0, "word1", False) not in memo
    memo.put((1, "huge", True), FrozenBitMap(range(0, 10**6, 3)))  # alone over the budget
    assert (1, "huge", True) not in memo
    assert memo.weight <= memo.max_weight
    # Empty bitmaps weigh next to nothing as bitmaps, but each entry costs its overhead.
    small = search_memo.Memo(most_bytes=10**6, most_entries=5)
    for number in range(50):
        small.put((0, f"w{number}", True), FrozenBitMap())
    assert len(small) == 5
    assert small.weight >= 5 * search_memo.ENTRY_BYTES


def test_a_removed_row_is_left_out_even_where_its_old_words_were_not_its_indexed_ones(
        bits: PublishedIndex) -> None:
    catalogue = settled(bits)
    state = catalogue.bits.state()
    assert state is not None
    words = ["zephyr"]
    terms = catalogue.bits.terms(state, words, (False, False, False))
    assert terms is not None
    before = search_bits.combined(state, terms, 2)
    assert before
    position = before.max()
    # Its old text says nothing of the word: only the rows alive leave it out.
    catalogue.bits.apply(state.generation + 1, "a later one",
                         [search_bits.Change(state.ids[position], old=("", "", ""))])
    after_state = catalogue.bits.state()
    assert after_state is not None
    terms = catalogue.bits.terms(after_state, words, (False, False, False))
    assert terms is not None
    after = search_bits.combined(after_state, terms, 2)
    assert position not in after
    assert len(after) == len(before) - 1


def test_a_row_of_the_index_the_catalogue_does_not_hold_leaves_the_search_to_sql() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE VIRTUAL TABLE search_full USING fts5(text, detail=none)")
    db.executemany("INSERT INTO search_full (rowid, text) VALUES (?, ?)",
                   [(10, "zephyr"), (20, "zephyr"), (25, "zephyr")])
    vocabulary = search_bits._vocabulary(([], [], []), tuple(search_bits.array("q") for _ in
                                                            range(3)),
                                         tuple(search_bits.array("q") for _ in range(3)))
    state = search_bits.State(1, "1", search_bits.array("q", [10, 20]), FrozenBitMap([0, 1]),
                              ({}, {}, {}), vocabulary, search_memo.Memo(), {})
    db.execute("BEGIN")
    assert search_bits._read(state, 2, "zephyr", False, db) is None  # row 25: not in ids
    db.execute("DELETE FROM search_full WHERE rowid = 25")
    assert search_bits._read(state, 2, "zephyr", False, db) == FrozenBitMap([0, 1])
    db.execute("COMMIT")


def test_the_memo_budget_bounds_the_memory_it_takes() -> None:
    memo = search_memo.Memo(most_bytes=2**20)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for number in range(100_000):  # what random beginnings typed would leave
            memo.put((0, f"{number:0190d}", True), FrozenBitMap())
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert used < 2 * memo.max_weight, (len(memo), used)


def test_a_beginning_only_one_word_has_is_that_word_s_own_bitmap(bits: PublishedIndex) -> None:
    state = settled(bits).bits.state()
    assert state is not None
    common = state.vocabulary.common[0]
    # A beginning of four letters that exactly one common word of the head part begins with.
    alone = next(word for word in common if len(word) >= 5 and
                 sum(other.startswith(word[:4]) for other in common) == 1)
    kept = len(state.memo)
    found, owned = search_bits._beginning(state, 0, alone[:4])
    assert found is state.words[0][alone]
    assert owned
    assert len(state.memo) == kept  # nothing made, nothing to keep
    assert agree(bits, Query(q=alone[:4]))
    # The word as searched for weighs its entry alone, not the bitmap it shares.
    assert bits.quick_query(Query(q=alone[:4])) is not None
    term = state.memo.terms.get((alone[:4], (True, True, False)))
    assert term is not None
    assert term[0][0] is found
    assert term[1] == 0


def test_words_that_share_no_row_make_no_bitmap_of_what_they_share(bits: PublishedIndex) -> None:
    state = settled(bits).bits.state()
    assert state is not None
    first, second = FrozenBitMap([1, 3]), FrozenBitMap([2, 4])
    assert search_bits._and(state, [first, second]) is search_bits._EMPTY
    assert search_bits._and(state, [first, FrozenBitMap([3, 4])]) == FrozenBitMap([3])


def _newest_by_hand(rows: FrozenBitMap, below: int, most: int) -> list[int]:
    return sorted((row for row in rows if row < below), reverse=True)[:most]


@settings(max_examples=300, deadline=None)
@given(spread=st.lists(st.integers(0, 3 * 2**16), max_size=300),
       bunched=st.tuples(st.integers(0, 3 * 2**16), st.integers(0, 20_000)),
       below=st.integers(0, 3 * 2**16 + 20_000), most=st.integers(0, 120))
def test_newest_is_the_highest_below_however_the_rows_lie(
        spread: list[int], bunched: tuple[int, int], below: int, most: int) -> None:
    # Rows spread, bunched at the top (the newest comparisons all holding a new word), or a
    # few far below many, over several containers and in dense ones (past 4,096 rows of one):
    # the look near the top and the look-up by index must agree.
    first, length = bunched
    rows = FrozenBitMap([*spread, *range(first, first + length)])
    assert search_bits.newest(rows, below, most) == _newest_by_hand(rows, below, most)
    assert search_bits.newest(rows, rows.max() + 1 if rows else 0, most) == \
        _newest_by_hand(rows, 10**9, most)


@settings(max_examples=300, deadline=None)
@given(first=st.lists(st.integers(0, 3 * 2**16), max_size=400),
       second=st.lists(st.integers(0, 3 * 2**16), max_size=400),
       bunched=st.tuples(st.integers(0, 3 * 2**16), st.integers(0, 20_000)),
       gone=st.lists(st.integers(0, 3 * 2**16 + 20_000), max_size=50), most=st.integers(1, 120))
def test_the_newest_two_bitmaps_share_are_read_from_their_end_or_left_to_the_walk(
        first: list[int], second: list[int], bunched: tuple[int, int], gone: list[int],
        most: int) -> None:
    # Both hold the bunch (the newest comparisons, or old ones far below the rest) and rows of
    # their own: the look at the end answers exactly, or not at all.
    start, length = bunched
    one = FrozenBitMap([*first, *range(start, start + length)])
    other = FrozenBitMap([*second, *range(start, start + length)])
    held = one.intersection_cardinality(other)
    alive = FrozenBitMap(range(3 * 2**16 + 20_000)) - FrozenBitMap(gone)
    for kept in (None, alive):
        found = search_bits.newest_of_two(one, other, held, most, kept)
        shared = one & other if kept is None else one & other & kept
        expected = _newest_by_hand(shared, 10**9, most)
        assert found is None or found == expected
        if kept is None and held >= most:
            end = min(one.max(), other.max()) + 1
            if expected[-1] >= end - 3 * most * end // (2 * held):
                # No more spread out than the span the look takes: it holds them.
                assert found == expected


def test_rows_spread_evenly_are_read_from_the_end() -> None:
    one, other = FrozenBitMap(range(0, 100_000, 3)), FrozenBitMap(range(0, 100_000, 7))
    held = one.intersection_cardinality(other)
    assert search_bits.newest_of_two(one, other, held, 21) == \
        _newest_by_hand(one & other, 100_000, 21)


def _state(positions: int, gone: FrozenBitMap) -> search_bits.State:
    """Bitmaps' state enough for a page's rows: ids, and which positions hold a row."""
    return search_bits.State(1, "1", array("q", range(positions)),
                             FrozenBitMap(range(positions)) - gone, ({}, {}, {}),
                             None, None, {})  # type: ignore[arg-type]


_POSITIONS = 3_000
_rows = st.one_of(
    st.just(FrozenBitMap()),
    st.builds(lambda spread, first, length: FrozenBitMap(
        [*spread, *range(first, min(first + length, _POSITIONS))]),
        st.lists(st.integers(0, _POSITIONS - 1), max_size=300),
        st.integers(0, _POSITIONS - 1), st.integers(0, 2_000)))


_FORTY = FrozenBitMap(range(40))


@settings(max_examples=400, deadline=None)
@given(terms=st.lists(st.tuples(_rows, _rows, _rows), min_size=2, max_size=2),
       gone=st.lists(st.integers(0, _POSITIONS - 1), max_size=20),
       counted=st.sampled_from([1, 3, 8, 50, 200]), wanted=st.integers(2, 101))
# Each part under the bound, both together over it, what they match together under it: the
# count is exact, and the walk's.
@example(terms=[(FrozenBitMap(), _FORTY, _FORTY)] * 2, gone=[], counted=50, wanted=21)
# Over the bound with the rows that went, under it without them: exact, and the walk's.
@example(terms=[(FrozenBitMap(), _FORTY, _FORTY)] * 2, gone=list(range(5)), counted=38,
         wanted=21)
def test_a_page_read_from_the_end_is_the_page_the_walk_makes(
        terms: list[tuple[FrozenBitMap, ...]], gone: list[int], counted: int,
        wanted: int) -> None:
    # Rows in any part or none, spread or bunched, a title's not always a summary's, and
    # some positions gone that bitmaps may still hold: either the page from the end is the
    # walk's, rows, parts, count and all, or the walk makes it.
    state = _state(_POSITIONS, FrozenBitMap(gone))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(listing, "COUNTED", counted)
        quick = listing._two_words(state, terms, wanted)
        if quick is not None:
            assert quick == listing._walked(state, terms, 0, None, wanted, since_cursor=False)


@pytest.mark.parametrize("part", [0, 1, 2])
def test_each_part_s_page_is_read_from_the_end(part: int) -> None:
    # The first part the two words meet in holds the page: the title's (0), the summary's
    # (1) or the text's (2); the parts before it hold neither word together.
    many, few = FrozenBitMap(range(0, 3_000, 2)), FrozenBitMap(range(1, 3_000, 2))
    first = tuple(many if number >= part else few for number in range(3))
    second = (many, many, many)
    state = _state(3_000, FrozenBitMap())
    quick = listing._two_words(state, [first, second], 21)
    assert quick is not None
    assert quick[1] == [(part, 21)]
    assert quick == listing._walked(state, [first, second], 0, None, 21, since_cursor=False)


def _two_word_pages_agree(index: PublishedIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every two-word search of the samples' words agrees with SQL, page after page, past a
    bound of one match counted, and some first pages come from the end of the bitmaps."""
    monkeypatch.setattr(listing, "COUNTED", 1)
    read_from_the_end: list[list[int] | None] = []

    def newest_of_two(*args: object) -> list[int] | None:
        found = search_bits.newest_of_two(*args)  # type: ignore[arg-type]
        read_from_the_end.append(found)
        return found

    monkeypatch.setattr(listing, "newest_of_two", newest_of_two)
    asked = [query for query in queries(vocabulary(index))
             if query.q is not None and len(query.q.split()) == 2]
    assert all(agree(index, query) for query in asked)
    assert any(found is not None for found in read_from_the_end)


def test_two_words_that_match_more_than_are_counted_are_what_sql_answers(
        bits: PublishedIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    # Past the bound both count to (see ``test_matches_are_counted_up_to_a_bound``), a page of
    # two words comes from the end of their bitmaps, where it can.
    _two_word_pages_agree(bits, monkeypatch)


def test_two_words_are_read_from_the_end_after_a_comparison_went(
        bits: PublishedIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    # A comparison unpublished (or republished, which gives it a new row) leaves a position
    # that no row holds until the next build: the look at the end still answers, as SQL does.
    documents: Documents = bits.documents
    commit_on_main(documents, {documents.layout.path("in-the-title"): None})
    bits.refresh(now=10**9)
    bits.fill()
    state = settled(bits).bits.state()
    assert state is not None
    assert len(state.alive) < len(state.ids)
    _two_word_pages_agree(bits, monkeypatch)


def test_the_newest_rows_are_read_with_the_bitmaps(
        index: PublishedIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    # A first page shows the newest of what it finds: they are there for the first searches,
    # and search is not said to be ready before.
    monkeypatch.setattr(published_index, "NEWEST_KEPT", 2)
    reading, release = threading.Event(), threading.Event()
    keep_newest = published_index.keep_newest

    def held(db: sqlite3.Connection, state: search_bits.State, most: int) -> None:
        reading.set()
        assert release.wait(timeout=60)
        keep_newest(db, state, most)

    monkeypatch.setattr(published_index, "keep_newest", held)
    index.bits_from = 1
    try:
        index.fill()
        assert reading.wait(timeout=60)
        assert index._catalogue is not None
        assert index._catalogue.bits.state() is not None
        assert not index.search_ready
        release.set()
        state = settled(index).bits.state()
        assert state is not None
        assert index.search_ready
        assert sorted(state.rows) == list(state.ids[-2:])
    finally:
        release.set()
        index.close()


def test_rows_read_before_a_publication_are_kept_after_it_but_not_a_changed_one(
        bits: PublishedIndex) -> None:
    before = settled(bits).bits.state()
    assert before is not None
    kept = cast(dict[int, listing.Listed], before.rows)
    assert kept
    changed_row = next(row for row, listed in kept.items() if listed.slug == "in-the-body")
    base = bits.get("in-the-body")
    assert base is not None
    # The same publication time: the same row, put back with other words.
    changed = msgspec.structs.replace(base.comparison, body="Now it speaks of sirocco.")
    newest = variant(base.comparison, "newest-zephyr", days=1000, title="Zephyr, newest")
    documents: Documents = bits.documents
    commit_on_main(documents, {documents.layout.path("in-the-body"):
                               codec.encode(changed).encode(),
                               documents.layout.path(newest.slug): codec.encode(newest).encode()})
    bits.refresh(now=10**9)
    bits.fill()
    after = settled(bits).bits.state()
    assert after is not None
    assert after is not before
    assert changed_row in after.ids
    assert set(after.rows) == set(kept) - {changed_row}
    found = bits.query(Query(q="sirocco"))
    published = documents.published("in-the-body")
    assert published is not None
    assert [(item.slug, item.blob) for item in found.items] == \
        [("in-the-body", published.revision)]
    assert bits.quick_query(Query(q="sirocco")) == found


class _Entered:
    """A lock that says when a thread comes to take it."""

    def __init__(self, lock: threading.Lock, entered: threading.Event) -> None:
        self.lock, self.entered = lock, entered

    def __enter__(self) -> None:
        self.entered.set()
        self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def test_searches_that_miss_the_same_rare_word_read_it_once(
        bits: PublishedIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    state = settled(bits).bits.state()
    assert state is not None
    key = (2, "unheardof", False)
    lock, entered = threading.Lock(), threading.Event()
    monkeypatch.setattr(state.memo, "reading", lambda key: _Entered(lock, entered))

    class Unread:
        in_transaction = True

        def execute(self, *args: object) -> object:
            raise AssertionError("read again")

    found: list[object] = []

    def search() -> None:
        try:
            found.append(search_bits._read(state, *key, Unread()))  # type: ignore[arg-type]
        except AssertionError as exc:
            found.append(exc)

    with lock:
        worker = threading.Thread(target=search)
        worker.start()
        # Another search reads it meanwhile: the worker waits for that one.
        assert entered.wait(timeout=60)
        rows = FrozenBitMap([0])
        state.memo.put(key, rows)
    worker.join(timeout=60)
    assert found == [rows]


def test_a_slow_read_of_a_rare_word_holds_up_no_other_word_s(
        index: PublishedIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    index.bits_from = 3
    index.fill()
    state = settled(index).bits.state()
    assert state is not None
    slow, other = [word for word in vocabulary(index) if word.isascii() and word.isalnum()
                   and search_bits._known_rare(state.vocabulary, 2, word)][:2]
    entered, release = threading.Event(), threading.Event()
    read_now = search_bits._read_now

    def held_read(state: search_bits.State, key: search_memo.Key,
                  db: sqlite3.Connection) -> FrozenBitMap | None:
        if key[1] == slow:  # a slow read (a beginning most rows share, say)
            entered.set()
            assert release.wait(timeout=60)
        return read_now(state, key, db)

    monkeypatch.setattr(search_bits, "_read_now", held_read)
    first = threading.Thread(target=index.query, args=(Query(q=f"{slow} "),))
    first.start()
    try:
        assert entered.wait(timeout=60)
        # Nobody else reads this word: it is read while the other read is still held.
        assert index.query(Query(q=f"{other} ")).total > 0
    finally:
        release.set()
        first.join(timeout=60)
    index.close()


def test_rows_kept_past_their_bound_let_go_of_all_but_the_newest(
        bits: PublishedIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    state = settled(bits).bits.state()
    assert state is not None
    kept = cast(dict[int, listing.Listed], state.rows)
    assert sorted(kept) == list(state.ids)  # a small catalogue: every row, the newest read
    oldest = next(item for item in bits.query(Query(q="zephyr", limit=100)).items
                  if item.slug == "in-the-title")
    oldest_row = next(row for row, listed in kept.items() if listed.slug == oldest.slug)
    del kept[oldest_row]
    monkeypatch.setattr(listing, "ROWS_KEPT", len(kept))
    monkeypatch.setattr(listing, "NEWEST_KEPT", 2)
    # A page that shows a row not kept reads it, past the bound: the older rows go, the
    # newest two stay, and the row read is kept.
    assert agree(bits, Query(q="zephyr", limit=100))
    assert set(kept) == {*state.ids[-2:], oldest_row}
