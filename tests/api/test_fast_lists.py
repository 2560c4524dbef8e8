"""Lists and searches answered before the routing: the same answers as the route, and only for
requests the route would take as they are."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from cms.api.fast_lists import FastLists, query_of
from cms.reading.index import Query

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
    for asked in ASKED:
        before = lists.answered
        # A parameter the route ignores takes the request past this layer, to the route.
        routed = client.get(f"/api/comparisons?{asked}&also=1")
        assert lists.answered == before, asked
        answered = client.get(f"/api/comparisons?{asked}")
        assert lists.answered == before + 1, asked
        assert comparable(answered) == comparable(routed), asked
        assert answered.headers["content-type"] == "application/json"
        again = client.get(f"/api/comparisons?{asked}",
                           headers={"If-None-Match": answered.headers["etag"]})
        assert again.status_code == 304
        assert again.content == b""
        assert "content-type" not in again.headers
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


def test_a_token_or_a_second_if_none_match_goes_to_the_route(
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


def test_the_query_read_from_a_query_string() -> None:
    assert query_of(b"q=lang+graph&limit=7&sort=title") == Query(q="lang graph", limit=7,
                                                                 sort="title")
    assert query_of(b"") == Query()
    assert query_of(b"q=%E2%86%92") == Query(q="\u2192")
    for refused in (b"limit=100&limit=100", b"limit=1e1", b"limit=-1", b"verdict=", b"x=1",
                    b"sort=null", b"limit=1000"):
        assert query_of(refused) is None, refused


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
