"""Lists and searches answered before the routing: the same answers as the route, and only for
requests the route would take as they are."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args
from urllib.parse import parse_qsl

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from cms.api import fast_lists
from cms.api.app import create_app
from cms.api.fast_lists import FastLists, query_of
from cms.api.public import _entries, quick_list_answer
from cms.api.services import Services
from cms.config import Settings
from cms.reading.index import Query

from ..conftest import HAIKU
from ..helpers import Headers, comparable

Client = TestClient  # type: ignore[type-arg]
ASKED = ["", "limit=2", "q=claude", "q=lang", "q=lang+", "q=langgraph%20crewai&limit=5",
         "category=developer%20tools&sort=title&limit=2", "tool=qdrant&verdict=ship",
         "sort=-panel_ship&limit=100", "q=%C3%A9t%C3%A9", "q=zzzz"]


def fast(client: Client) -> FastLists:
    return client.app.state.fast_lists


def ready(client: Client) -> None:
    """Once the catalogue is filled: until then this layer leaves lists to the route, which
    waits for it (as this first list does)."""
    assert client.get("/api/comparisons?also=1").status_code == 200
    assert client.get("/health").json()["index_ready"]


def test_a_list_is_answered_as_the_route_answers_it(client: Client) -> None:
    ready(client)
    lists = fast(client)
    cache = client.app.state.response_cache
    bodies = client.app.state.services.bodies
    for asked in ASKED:
        before = lists.answered
        # A parameter the route ignores takes the request past this layer, to the route.
        routed = client.get(f"/api/comparisons?{asked}&also=1")
        assert lists.answered == before, asked
        # Not yet kept by the response cache: a revalidation is answered here, with a 304.
        hits = cache.hits
        again = client.get(f"/api/comparisons?{asked}",
                           headers={"If-None-Match": routed.headers["etag"]})
        assert (cache.hits, lists.answered) == (hits, before + 1), asked
        assert again.status_code == 304
        assert again.content == b""
        assert "content-type" not in again.headers
        assert again.headers["etag"] == routed.headers["etag"]
        # Made here from the catalogue, not from the bytes the route kept.
        bodies.clear()
        answered = client.get(f"/api/comparisons?{asked}")
        assert (cache.hits, lists.answered) == (hits, before + 2), asked
        assert comparable(answered) == comparable(routed), asked
        assert answered.headers["content-type"] == "application/json"
    # The first page's cursor leads to the second, here as through the route.
    first = client.get("/api/comparisons?limit=1").json()
    second = client.get("/api/comparisons", params={"limit": 1, "cursor": first["next_cursor"]})
    assert second.status_code == 200
    assert second.json()["items"][0]["slug"] != first["items"][0]["slug"]


@pytest.mark.parametrize(("asked", "field"), [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=abc", "limit"), ("limit=%2B5", "limit"),
    ("limit=05", "limit"), ("limit=1&limit=2", "limit"), ("q=a&q=b", "q"), ("verdict=maybe", "verdict"),
    ("sort=random", "sort"), ("q=null", None), ("cursor=not-one", "cursor"),
    ("q=" + "a" * 201, "q"), ("q=", None), ("tool=", None)])
def test_what_this_layer_does_not_take_the_route_answers(client: Client, asked: str,
                                                         field: str | None) -> None:
    ready(client)
    lists = fast(client)
    before = lists.answered
    answered = client.get(f"/api/comparisons?{asked}")
    if field is None:
        assert answered.status_code == 200
    else:
        assert answered.status_code == 400, answered.text
        assert field in answered.text
    # A bad cursor is found by the list itself, which this layer leaves to the route.
    assert lists.answered == before


def test_a_token_or_a_header_given_twice_goes_to_the_route(
        client: Client, tokens: dict[str, Headers]) -> None:
    ready(client)
    lists = fast(client)
    before = lists.answered
    assert client.get("/api/comparisons", headers={"Authorization": "Bearer nope"}
                      ).status_code == 401
    assert client.get("/api/comparisons", headers=tokens["editor"]).status_code == 200
    twice = [("If-Match", '"a"'), ("If-Match", '"b"')]
    assert client.get("/api/comparisons?limit=3", headers=twice).status_code == \
        client.get("/api/comparisons?limit=3&also=1", headers=twice).status_code
    assert lists.answered == before
    # The test client joins a header given twice into one line; a server keeps both lines.
    scope = {"type": "http", "method": "GET", "path": "/api/comparisons", "query_string": b"",
             "headers": [(b"if-none-match", b'"a"'), (b"if-none-match", b'"b"')]}
    assert lists.taken(scope) is None  # type: ignore[arg-type]


def test_the_query_read_from_a_query_string() -> None:
    assert query_of(b"q=lang+graph&limit=7&sort=title") == Query(q="lang graph", limit=7,
                                                                 sort="title")
    assert query_of(b"") == Query()
    assert query_of(b"q=%E2%86%92") == Query(q="\u2192")
    for refused in (b"limit=100&limit=100", b"limit=1e1", b"limit=-1", b"verdict=", b"x=1",
                    b"sort=null", b"limit=1000"):
        assert query_of(refused) is None, refused


def test_the_parameters_taken_are_the_query_s_fields_typed_as_it_types_them() -> None:
    # ``query_of`` builds the struct without converting: a name or a choice of its own that
    # the struct does not have would be a fault, not a refusal.
    fields = {field.name: field for field in msgspec.structs.fields(Query)}
    assert set(fast_lists._TEXT) | set(fast_lists._CHOICES) | {"limit"} == set(fields)
    for name, choices in fast_lists._CHOICES.items():
        allowed = set(get_args(get_args(fields[name].type)[0]))  # Literal[...] | None
        assert choices == allowed, name


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="aq=&+ ;2E1\u00e9\x00", max_size=40))
def test_a_query_string_is_split_as_the_framework_splits_it(text: str) -> None:
    # Without a percent sign: the split of its own (with one, parse_qsl itself).
    assert fast_lists._pairs(text) == parse_qsl(text, keep_blank_values=True, separator="&")


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="limtq=&+2015null%\u00e9", max_size=30))
@example("q=null")
@example("limit=101&q=a")
@example("limit=100&q=a+b")
@example("limit=05&q=a")
@example("q=a&limit=5")
@example("q=")
@example("q=+")
@example("q=a=b")
@example("q=%41")
@example("q=" + "a" * 200)
@example("q=" + "a" * 201)
def test_a_search_box_s_query_is_read_as_the_fields_are(text: str) -> None:
    # ``query_of`` reads the shape "limit=N&q=words" at once: what it makes of any text is
    # what the walk over the fields makes of it.
    assert fast_lists.query_of(text.encode("latin-1", "replace")) == \
        fast_lists._fields_query(text.encode("latin-1", "replace").decode("latin-1"))


def test_a_quick_answer_made_while_main_moved_is_left_to_a_thread(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """Main moved (by another thread) while the page was made: its items may hold votes that
    the ETag's pending votes add again, so the event loop does not answer it."""
    ready(client)
    services = client.app.state.services
    index = services.index
    assert index.search_bits_settled() is not None
    # The route's answer reads the word's rows and the rows shown: the event loop's can then.
    assert client.get("/api/comparisons?q=claude&also=1").status_code == 200
    assert quick_list_answer(services, Query(q="claude"), None) is not None
    made = type(index).quick_query

    def moving(self: object, query: Query, *, refresh: bool = True) -> object:
        page = made(index, query, refresh=refresh)
        monkeypatch.setattr(index, "head", "0" * 40)
        return page

    monkeypatch.setattr(index, "quick_query", moving.__get__(index))
    assert quick_list_answer(services, Query(q="claude"), None) is None


def test_a_list_that_fails_here_is_answered_by_the_route(client: Client,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever goes wrong in this layer (here, SQLite refusing a closed connection), the
    request goes on to the route, which answers it: never a bare error from the server."""
    import sqlite3

    ready(client)
    lists = fast(client)

    def failing(self: FastLists, query: Query, if_none_match: str | None) -> object:
        raise sqlite3.ProgrammingError("Cannot operate on a closed database.")

    monkeypatch.setattr(FastLists, "_answer", failing)
    before = lists.answered
    answered = client.get("/api/comparisons?q=claude")
    assert answered.status_code == 200
    assert answered.json()["total"] >= 1
    assert lists.answered == before


def test_what_this_layer_takes_is_what_the_document_says_the_list_takes(client: Client) -> None:
    """The layer keeps its own table of the list's parameters, so that it parses nothing the
    route would not: the document, made from the route, must say the same, or a parameter the
    route tightened would be answered here by the old rules."""
    operation = client.get("/schema/openapi.json").json()["paths"]["/api/comparisons"]["get"]
    documented = {parameter["name"]: {key: value for key, value in parameter["schema"].items()
                                      if key not in ("description", "default")}
                  for parameter in operation["parameters"] if parameter["in"] == "query"}
    taken: dict[str, dict[str, object]] = {name: {"type": "string"} for name in fast_lists._TEXT}
    taken["q"]["maxLength"] = fast_lists._Q_LENGTH
    for name, choices in fast_lists._CHOICES.items():
        documented[name]["enum"] = sorted(documented[name]["enum"])
        taken[name] = {"type": "string", "enum": sorted(choices)}
    taken["limit"] = {"type": "integer", "minimum": 1.0, "maximum": float(fast_lists._LIMIT_MAX)}
    assert documented == taken


def test_a_search_the_bitmaps_answer_is_answered_on_the_event_loop_as_the_route_would(
        settings: Settings, repo_path: Path) -> None:
    app = create_app(settings)
    services = app.state.services
    # Every word gets a bitmap: set before the app starts, since start-up may fill the
    # catalogue and build the bitmaps in the background at once.
    services.index.bits_from = 1
    with TestClient(app=app) as client:
        _answered_on_the_event_loop(client, services)


def _answered_on_the_event_loop(client: Client, services: Services) -> None:
    ready(client)
    assert services.index.search_bits_settled().bits.state() is not None
    assert client.get("/health").json()["search_ready"]
    lists = fast(client)
    for asked in ("q=claude", "q=lang", "q=langgraph%20crewai&limit=1", "q=the+agent&limit=2"):
        routed = client.get(f"/api/comparisons?{asked}&also=1")
        services.bodies.clear()
        services.summaries.clear()
        services.pages.clear()
        before = lists.quick
        answered = client.get(f"/api/comparisons?{asked}")
        assert lists.quick == before + 1, asked
        assert comparable(answered) == comparable(routed), asked
    # A filter is SQL's, in a thread.
    before = lists.quick
    assert client.get("/api/comparisons?q=lang&category=developer%20tools").status_code == 200
    assert lists.quick == before


def test_a_page_of_entries_kept_whole_shows_a_vote_at_once(
        client: Client, tokens: dict[str, dict[str, str]]) -> None:
    ready(client)
    services = client.app.state.services
    lists = fast(client)
    asked = "/api/comparisons?q=claude&limit=50"

    def entry(answer: dict[str, Any]) -> dict[str, Any]:
        return next(item for item in answer["items"] if item["slug"] == HAIKU)

    pages = len(services.pages)
    first = client.get(asked)
    # The page's entries were kept whole: the same page again is the same array.
    assert len(services.pages) == pages + 1
    page = services.index.query(Query(q="claude", limit=50))
    pending = services.vote_folder.live.pending_known(services.index.head)
    assert pending is not None
    kept = _entries(services, page.items, pending)
    assert _entries(services, page.items, pending) is kept
    assert msgspec.json.decode(kept) == first.json()["items"]
    tool = entry(first.json())["tools"][0]
    assert client.post(f"/api/comparisons/{HAIKU}/votes",
                       json={"tool": tool["id"], "vote": "ship"}).status_code == 202
    before = lists.answered
    voted = entry(client.get(asked).json())["tools"][0]
    assert lists.answered == before + 1
    read = client.get(f"/api/comparisons/{HAIKU}").json()["tools"][0]
    assert voted["community_label"] == read["community_label"] != tool["community_label"]
    assert client.post("/api/votes/fold", headers=tokens["admin"]).status_code == 200
    folded = entry(client.get(asked).json())["tools"][0]
    assert folded["community_label"] == read["community_label"]
