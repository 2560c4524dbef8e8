"""Search over the catalogue: every word, the last one as a beginning, ranked by where the words
are (title and tools, then summary, then the rest), newest first within each, with the list's
filters and cursors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from cms.config import Settings
from cms.content import codec
from cms.content.model import Comparison
from cms.editing.write_side import open_write_side
from cms.errors import BadRequest
from cms.reading import listing
from cms.reading.index import PublishedIndex, Query
from cms.reading.listing import Words, match_words
from cms.store.documents import Documents

from ..conftest import HAIKU
from .test_index import commit_on_main

BASE = datetime(2026, 3, 1, tzinfo=UTC)


def variant(base: Comparison, slug: str, *, days: int, title: str = "Plain title",
            summary: str = "A plain summary.", body: str = "", category: str | None = None
            ) -> Comparison:
    tools = list(base.tools)
    if category is not None:
        tools[0] = msgspec.structs.replace(tools[0], category=category)
    workflow = msgspec.structs.replace(base.workflow, published_at=BASE + timedelta(days=days))
    return msgspec.structs.replace(base, slug=slug, title=title, summary=summary, body=body,
                                   tools=tools, workflow=workflow)


@pytest.fixture
def index(settings: Settings, repo_path: Path) -> PublishedIndex:
    documents = open_write_side(settings).documents
    base = documents.decode_blob(
        documents.repo.blob_at(documents.repo.read_commit(documents.main_head() or "").tree,
                               documents.layout.path(HAIKU)) or "")
    made = [
        variant(base, "in-the-title", days=1, title="Zephyr against the rest"),
        variant(base, "in-the-summary", days=3, summary="Where zephyr wins.",
                category="Weather"),
        variant(base, "in-the-body", days=5, body="Only the body says zephyr."),
        variant(base, "a-longer-word", days=7, body="Zephyrs, plural."),
        variant(base, "older-in-the-body", days=2, body="Zephyr, but earlier."),
    ]
    commit_on_main(documents, {documents.layout.path(c.slug): codec.encode(c).encode()
                               for c in made})
    index = PublishedIndex(documents, settings.data)
    index.load()
    return index


def slugs(index: PublishedIndex, **query: object) -> list[str]:
    return [item.slug for item in index.query(Query(limit=100, **query)).items]  # type: ignore[arg-type]


def test_title_and_tools_rank_above_summary_above_the_rest_newest_first(
        index: PublishedIndex) -> None:
    assert slugs(index, q="zephyr") == [
        "in-the-title", "in-the-summary", "in-the-body", "older-in-the-body"]
    assert index.query(Query(q="zephyr")).total == 4
    assert slugs(index, q="ZEPHYRS") == ["a-longer-word"]


def test_the_last_word_is_also_a_beginning_in_titles_tools_and_summaries(
        index: PublishedIndex) -> None:
    assert slugs(index, q="zeph") == ["in-the-title", "in-the-summary"]
    assert slugs(index, q="weath") == ["in-the-summary"]  # its tool's category
    assert slugs(index, q="zeph ") == []  # a space after it: a whole word
    assert slugs(index, q="ze") == []  # too short to be a beginning
    # In the rest of the text, words are whole: "zephyrs" in a body is no "zephyr".
    assert "a-longer-word" not in slugs(index, q="zephyr")


def test_a_bad_cursor_is_refused_when_nothing_matches_too(index: PublishedIndex) -> None:
    for sort in (None, "title"):
        with pytest.raises(BadRequest):
            index.query(Query(q="nowhere-at-all", sort=sort, cursor="bm90IGEgY3Vyc29y"))  # type: ignore[arg-type]


def test_every_word_must_be_there_in_any_part(index: PublishedIndex) -> None:
    assert slugs(index, q="zephyrs plural") == ["a-longer-word"]
    assert slugs(index, q="zephyr plural") == []  # only the last word may be a beginning
    assert slugs(index, q="zephyr earlier") == ["older-in-the-body"]
    assert slugs(index, q="zephyr nowhere-at-all") == []
    # The tools' names are in the title part: a comparison of a tool comes before one that
    # mentions it in passing.
    assert slugs(index, q="zephyr claude")[0] == "in-the-title"


def test_search_pages_with_cursors_in_rank_order(index: PublishedIndex) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = index.query(Query(q="zephyr", limit=2, cursor=cursor))
        assert page.total == 4
        seen += [item.slug for item in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == slugs(index, q="zephyr")
    with pytest.raises(BadRequest):
        index.query(Query(q="zephyr", sort="title", cursor=index.query(
            Query(q="zephyr", limit=1)).next_cursor))


def test_search_with_filters_and_an_explicit_order(index: PublishedIndex) -> None:
    assert slugs(index, q="zephyr", category="weather") == ["in-the-summary"]
    assert slugs(index, q="zephyr", sort="title") == sorted(
        slugs(index, q="zephyr"), key=lambda slug: index.get(slug).comparison.title.casefold()  # type: ignore[union-attr]
        + slug)
    assert slugs(index, q="zephyr", sort="-published") == [
        "in-the-body", "in-the-summary", "older-in-the-body", "in-the-title"]


def test_a_publication_is_searchable_and_an_unpublished_one_is_not(
        settings: Settings, index: PublishedIndex) -> None:
    documents: Documents = index.documents
    index.fill()
    base = index.get("in-the-body")
    assert base is not None
    changed = msgspec.structs.replace(base.comparison, body="Now it speaks of sirocco.")
    commit_on_main(documents, {documents.layout.path("in-the-body"): codec.encode(changed).encode(),
                               documents.layout.path("in-the-title"): None})
    index.refresh(now=10**9)
    assert slugs(index, q="zephyr") == ["in-the-summary", "older-in-the-body"]
    assert slugs(index, q="sirocco") == ["in-the-body"]


def test_what_is_typed_is_never_taken_as_query_syntax(index: PublishedIndex) -> None:
    for typed in ['"', "zephyr OR claude", "NEAR(zephyr claude)", "zephyr*", "-zephyr", "^zephyr",
                  "title:zephyr", "{title}: zephyr", "zephyr AND", "()", "\x00", "é́"]:
        index.query(Query(q=typed))  # no error from the search index
    assert slugs(index, q="zephyr OR nowhere") == []  # OR is a word to find, not an operator
    assert match_words("a b") == Words(exact='"a" AND "b"', begun='"a" AND "b"')
    assert match_words("graph") == Words(exact='"graph"', begun='"graph"*')
    assert match_words("graph ") == Words(exact='"graph"', begun='"graph"')
    assert match_words("→ ...") is None


def test_matches_are_counted_up_to_a_bound(index: PublishedIndex,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert index.query(Query(q="zephyr")).total_exact
    monkeypatch.setattr(listing, "COUNTED", 2)
    page = index.query(Query(q="zephyr", limit=100))
    assert (page.total, page.total_exact) == (2, False)
    assert len(page.items) == 4  # the bound is on counting, never on what is listed
    assert index.query(Query(q="zephyr", category="weather")).total_exact
    unsearched = index.query(Query(limit=1))
    assert unsearched.total > 2
    assert unsearched.total_exact


def test_the_word_typed_last_is_the_beginning_whatever_came_before() -> None:
    assert match_words("qdr cloud qdr") == Words(exact='"cloud" AND "qdr"',
                                                 begun='"cloud" AND "qdr"*')
    many = " ".join(f"w{number}" for number in range(20)) + " last"
    words = match_words(many)
    assert words is not None
    assert words.begun.endswith('"last"*')
    assert words.exact.count('"') == 2 * listing.MAX_WORDS


def segments(index: PublishedIndex) -> dict[str, int]:
    """How many segments each part of the search index is in."""
    with index._require().reading() as db:
        return {part: db.execute(
            f"SELECT count(DISTINCT segid) FROM search_{part}_idx"  # noqa: S608 - our tables
        ).fetchone()[0] for part in ("head", "lead", "full")}


def test_the_search_index_is_merged_into_one_segment_once_enough_was_added(
        index: PublishedIndex) -> None:
    """Each catch-up leaves segments of its own, which every search reads; once enough rows
    came in they are merged, a step at a time in the background, and search finds the same."""
    documents: Documents = index.documents
    index.compact_from = None
    index.fill()
    base = index.get("in-the-body")
    assert base is not None
    for number in range(3):
        changed = msgspec.structs.replace(base.comparison, slug=f"later-{number}", body=(
            f"Zephyr again, the {number} time."), workflow=msgspec.structs.replace(
                base.comparison.workflow, published_at=BASE + timedelta(days=10 + number)))
        commit_on_main(documents, {documents.layout.path(changed.slug):
                                   codec.encode(changed).encode()})
        index.refresh(now=10.0**9 + number)
        index.fill()
    assert min(segments(index).values()) > 1
    before = {typed: slugs(index, q=typed) for typed in ("zephyr", "zeph", "again zephyr",
                                                         "zephyrs", "time")}
    index.compact_from = 1
    removed = msgspec.structs.replace(base.comparison, body="Sirocco now.")
    commit_on_main(documents, {documents.layout.path("in-the-body"):
                               codec.encode(removed).encode()})
    index.refresh(now=10.0**9 + 5)
    index.fill()
    assert index._compacting is not None
    index._compacting.join(timeout=60)
    assert not index._compacting.is_alive()
    assert segments(index) == {"head": 1, "lead": 1, "full": 1}
    before["zephyr"].remove("in-the-body")
    assert {typed: slugs(index, q=typed) for typed in before} == before
    assert slugs(index, q="sirocco") == ["in-the-body"]


def test_a_search_index_left_in_many_segments_is_merged_at_the_next_start(
        settings: Settings, index: PublishedIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    """A merge cut short (a stop, a full disk) is not waited on until as many rows come in
    again: the next start finds the index in more segments than it keeps, and merges it."""
    from cms.reading import index as index_module

    documents: Documents = index.documents
    index.compact_from = None
    index.fill()
    base = index.get("in-the-body")
    assert base is not None
    for wind in ("sirocco", "khamsin", "chinook"):
        changed = msgspec.structs.replace(base.comparison, body=f"Now the {wind} blows.")
        commit_on_main(documents, {documents.layout.path("in-the-body"):
                                   codec.encode(changed).encode()})
        index.refresh(now=10.0**9 + len(wind))
        index.fill()
    assert max(segments(index).values()) > 2
    assert index._compacting is None
    index.close()
    monkeypatch.setattr(index_module, "_SEGMENTS_KEPT", 2)
    again = PublishedIndex(documents, settings.data)
    again.compact_from = 3
    again.load()
    again.fill()
    assert again._compacting is not None
    again._compacting.join(timeout=60)
    assert not again._compacting.is_alive()
    assert segments(again) == {"head": 1, "lead": 1, "full": 1}
    assert slugs(again, q="chinook") == ["in-the-body"]
    assert slugs(again, q="khamsin") == []


def test_publications_one_at_a_time_leave_few_search_segments(index: PublishedIndex) -> None:
    """Each publication leaves two small segments; merged four to a level as they come, the
    index stays in a handful rather than piling up to sixteen before FTS5 merges them."""
    documents: Documents = index.documents
    index.compact_from = None
    index.fill()
    base = index.get("in-the-body")
    assert base is not None
    seen = []
    for number in range(12):
        changed = msgspec.structs.replace(base.comparison, body=f"Zephyr, draft {number}.")
        commit_on_main(documents, {documents.layout.path("in-the-body"):
                                   codec.encode(changed).encode()})
        index.refresh(now=10.0**9 + number)
        index.fill()
        seen.append(max(segments(index).values()))
    assert max(seen) <= 6, seen
    assert slugs(index, q="draft 11") == ["in-the-body"]
