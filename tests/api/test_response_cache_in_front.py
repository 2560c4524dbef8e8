"""The response cache looked in before the framework is entered, as `cms serve` runs the app:
the same answers as the app's own layer gives, and a repeated read that never enters it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from litestar.testing import TestClient

from cms.api.app import served
from cms.api.fast_lists import FastLists
from cms.api.response_cache import PublicResponseCache

from ..conftest import HAIKU
from ..helpers import Headers
from .test_fast_lists import ready
from .test_starting import Messages, call, scope_of

Client = TestClient  # type: ignore[type-arg]
READ = f"/api/comparisons/{HAIKU}"


class Entered:
    """The application, counting the requests that entered it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.requests += scope["type"] == "http"
        await self.app(scope, receive, send)


def in_front(client: Client) -> tuple[PublicResponseCache, Entered, Any]:
    """The app as ``served`` makes it (the response cache, then lists and searches), with what
    enters the framework counted."""
    cache: PublicResponseCache = client.app.state.response_cache
    lists: FastLists = client.app.state.fast_lists
    entered = Entered(client.app)
    assert served(client.app) is not None  # the layers taken out of the app
    return cache, entered, cache.wrapping(lists.wrapping(entered))


def answers(app: Any, *scopes: dict[str, Any]) -> list[Messages]:
    async def run() -> list[Messages]:
        return [await call(app, scope) for scope in scopes]

    return asyncio.run(run())


def test_a_repeated_read_is_answered_in_front_with_the_app_s_bytes(client: Client) -> None:
    cache, entered, front = in_front(client)
    first, again = answers(front, scope_of(READ), scope_of(READ))
    assert entered.requests == 1
    assert cache.hits == 1  # counted once, not again by the layer inside
    assert first[0]["status"] == again[0]["status"] == 200
    assert first[0]["headers"] == again[0]["headers"]
    assert first[1]["body"] == again[1]["body"] == client.get(READ).content
    tag = dict(first[0]["headers"])[b"etag"]
    (revalidated,) = answers(front, scope_of(READ, (b"if-none-match", tag)))
    assert revalidated[0]["status"] == 304
    assert entered.requests == 1


def test_a_miss_is_kept_once(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, entered, front = in_front(client)
    kept: list[bytes] = []
    keep = cache._keep

    def counting(key: bytes, *args: Any) -> None:
        kept.append(key)
        keep(key, *args)

    monkeypatch.setattr(cache, "_keep", counting)
    lists: FastLists = client.app.state.fast_lists
    answers(front, scope_of(READ), scope_of("/api/comparisons", query=b"sort=title&limit=2"))
    assert kept == [READ.encode() + b"?", b"/api/comparisons?sort=title&limit=2"]
    # The list by the lists' layer once the catalogue is filled, else by the framework.
    assert entered.requests + lists.answered == 2


def test_a_search_is_kept_the_second_time_through_the_front_too(
        client: Client, tokens: dict[str, Headers]) -> None:
    ready(client)  # lists and searches are the framework's until the catalogue is filled
    cache, entered, front = in_front(client)
    lists: FastLists = client.app.state.fast_lists
    search = scope_of("/api/comparisons", query=b"q=haiku&limit=2")
    key = b"/api/comparisons?q=haiku&limit=2"
    answered, hits = lists.answered, cache.hits
    (first,) = answers(front, search)
    assert key not in cache._stored  # seen once: not kept
    assert lists.answered == answered + 1  # by the lists' layer, not the framework
    second, third = answers(front, dict(search), dict(search))
    assert key in cache._stored
    assert lists.answered == answered + 2  # the third was answered by the cache
    assert cache.hits == hits + 1
    assert entered.requests == 0
    # What the route itself answers (a token takes a request past both layers).
    routed = client.get("/api/comparisons?q=haiku&limit=2", headers=tokens["editor"])
    for answer in (first, second, third):
        assert answer[0]["status"] == 200
        assert answer[1]["body"] == routed.content
        assert dict(answer[0]["headers"])[b"etag"] == routed.headers["etag"].encode()


def test_a_token_or_another_method_always_enters_the_app(
        client: Client, tokens: dict[str, Headers]) -> None:
    cache, entered, front = in_front(client)
    answers(front, scope_of(READ))
    (bad,) = answers(front, scope_of(READ, (b"authorization", b"Bearer nope")))
    assert bad[0]["status"] == 401
    token = tokens["editor"]["Authorization"].encode()
    (good,) = answers(front, scope_of(READ, (b"authorization", token)))
    assert good[0]["status"] == 200
    (head,) = answers(front, scope_of(READ, method="HEAD"))
    assert head[0]["status"] == 200
    assert entered.requests == 4
    assert cache.hits == 0


def test_the_app_as_served_holds_no_cache_layer_of_its_own(client: Client) -> None:
    """Else a miss in front would be looked up, and kept, twice."""
    cache: PublicResponseCache = client.app.state.response_cache
    front = served(client.app)
    answers(front, scope_of(READ), scope_of(READ))
    assert cache.hits == 1
    client.get(READ)
    client.get(READ)
    assert cache.hits == 1


def test_a_read_with_if_match_fields_is_the_route_s_every_time(client: Client) -> None:
    """The route refuses two If-Match fields on a read; the cache in front does not answer
    them either, kept or not."""
    cache, _entered, front = in_front(client)
    two = ((b"if-match", b'"a"'), (b"if-match", b'"b"'))
    for path, query in ((READ, b""), ("/api/comparisons", b"limit=3")):
        (before,) = answers(front, scope_of(path, *two, query=query))
        answers(front, scope_of(path, query=query), scope_of(path, query=query))  # kept now
        hits = cache.hits
        (after,) = answers(front, scope_of(path, *two, query=query))
        assert cache.hits == hits
        assert before[0]["status"] == after[0]["status"] == 400, path
