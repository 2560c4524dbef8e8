"""The response cache looked in before the framework is entered, as `cms serve` runs the app:
the same answers as the app's own layer gives, and a repeated read that never enters it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from litestar.testing import TestClient

from cms.api.app import served
from cms.api.response_cache import PublicResponseCache

from ..conftest import HAIKU
from ..helpers import Headers
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
    """The app as ``served`` makes it, with what enters the framework counted."""
    cache: PublicResponseCache = client.app.state.response_cache
    entered = Entered(client.app)
    assert served(client.app) is not None  # the cache's layer taken out of the app
    return cache, entered, cache.wrapping(entered)


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
    answers(front, scope_of(READ), scope_of("/api/comparisons", query=b"sort=title&limit=2"))
    assert kept == [READ.encode() + b"?", b"/api/comparisons?sort=title&limit=2"]
    assert entered.requests == 2


def test_a_search_is_kept_the_second_time_through_the_front_too(client: Client) -> None:
    cache, entered, front = in_front(client)
    search = scope_of("/api/comparisons", query=b"q=haiku&limit=2")
    answers(front, search)
    assert len(cache._stored) == 0  # seen once: not kept
    answers(front, dict(search), dict(search))
    assert len(cache._stored) == 1
    assert entered.requests == 2  # the third was answered in front
    assert cache.hits == 1


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
