"""The shared cache of public responses: the same bytes as the handler, never stale."""

from __future__ import annotations

import asyncio
import threading

import pytest
from litestar.testing import TestClient

from cms.api import response_cache
from cms.api.response_cache import PublicResponseCache
from cms.editing.write_side import open_write_side
from cms.identity.actors import Actor
from cms.store.repository import Repository

from ..conftest import HAIKU
from ..helpers import Headers, comparable
from .test_starting import call, scope_of

Client = TestClient  # type: ignore[type-arg]
PUBLISHER = Actor(name="Paul Publisher", email="paul@example.com", roles=frozenset({"publisher"}))
PAGE = "/api/comparisons?category=developer%20tools&sort=title&limit=2"


def cache_of(client: Client) -> PublicResponseCache:
    return client.app.state.response_cache


def test_a_repeated_read_is_answered_from_the_cache_with_the_same_bytes(client: Client) -> None:
    cache = cache_of(client)
    for path in (f"/api/comparisons/{HAIKU}", PAGE, "/api/feed.json", "/api/feed.atom"):
        first = client.get(path)
        hits = cache.hits
        again = client.get(path)
        assert cache.hits == hits + 1, path
        assert comparable(again) == comparable(first)
        revalidated = client.get(path, headers={"If-None-Match": first.headers["etag"]})
        assert cache.hits == hits + 2
        assert revalidated.status_code == 304
        assert revalidated.content == b""
        assert revalidated.headers["etag"] == first.headers["etag"]
        assert "content-type" not in revalidated.headers


def test_errors_private_and_authenticated_requests_are_not_served_from_it(
        client: Client, tokens: dict[str, Headers]) -> None:
    cache = cache_of(client)
    for _ in range(2):
        assert client.get("/api/comparisons/no-such-comparison").status_code == 404
        assert client.get("/api/comparisons?limit=0").status_code == 400
        assert client.get("/api/drafts", headers=tokens["editor"]).status_code == 200
    assert cache.hits == 0
    client.get(f"/api/comparisons/{HAIKU}")
    refused = client.get(f"/api/comparisons/{HAIKU}", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401
    assert cache.hits == 0


def test_a_vote_or_a_commit_of_another_process_is_seen_at_once(client: Client) -> None:
    before = client.get(f"/api/comparisons/{HAIKU}").json()
    haiku_tool = before["tools"][0]["id"]
    voted = client.post(f"/api/comparisons/{HAIKU}/votes", json={"tool": haiku_tool, "vote": "ship"})
    assert voted.status_code == 202
    after = client.get(f"/api/comparisons/{HAIKU}").json()
    assert after["tools"][0]["community"]["ship"] == before["tools"][0]["community"]["ship"] + 1

    services = client.app.state.services
    other = open_write_side(services.settings, repo=Repository(services.settings.repo))
    published = other.documents.published(HAIKU)
    assert published is not None
    other.editor.transition(HAIKU, "unpublish", PUBLISHER, published.revision)
    services.index.refresh(now=10**9)  # the recheck interval has passed
    assert client.get(f"/api/comparisons/{HAIKU}").status_code == 404
    assert HAIKU not in client.get(PAGE).text


def test_eviction_keeps_the_cache_within_its_budget(client: Client) -> None:
    cache = cache_of(client)
    client.get(f"/api/comparisons/{HAIKU}")
    cache.max_bytes = cache.size + 1  # room for this one entry only
    client.get(PAGE)
    assert cache.size <= cache.max_bytes
    hits = cache.hits
    client.get(f"/api/comparisons/{HAIKU}")  # pushed out by the page
    assert cache.hits == hits



def test_a_search_is_kept_the_second_time_it_is_asked_not_the_first(client: Client) -> None:
    cache = cache_of(client)
    client.get(PAGE)
    search = "/api/comparisons?q=lang&limit=2"
    first = client.get(search)
    assert first.status_code == 200
    kept = cache.size
    assert kept > 0  # the list page: kept at once
    second = client.get(search)
    assert cache.size > kept  # asked again: kept now
    hits = cache.hits
    third = client.get(search)
    assert cache.hits == hits + 1
    assert comparable(first) == comparable(second) == comparable(third)
    # Seen once, each of many searches costs the cache nothing, and the ones seen are bounded.
    cache_size = cache.size
    for number in range(5):
        assert client.get(f"/api/comparisons?q=lang&limit={number + 3}").status_code == 200
    assert cache.size == cache_size


def test_a_search_is_one_wherever_its_words_come_in_the_request_line(client: Client) -> None:
    cache = cache_of(client)
    search = "/api/comparisons?limit=2&q=lang"
    client.get(search)
    assert cache.size == 0  # seen once: not kept
    client.get(search)
    assert cache.size > 0


def test_a_search_page_is_not_kept_by_its_etag(client: Client) -> None:
    services = client.app.state.services
    client.get(PAGE)
    kept = len(services.bodies)
    for path in ("/api/comparisons?q=lang&limit=2", "/api/comparisons?q=zzqq",
                 "/api/comparisons?q=lang&category=developer%20tools"):
        answer = client.get(path)
        assert answer.status_code == 200
        assert services.bodies.get(answer.headers["etag"]) is None
    assert len(services.bodies) == kept
    page = client.get("/api/comparisons?limit=3")
    assert services.bodies.get(page.headers["etag"]) is not None  # a list page is


def test_the_searches_seen_once_are_bounded(client: Client,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cache = cache_of(client)
    monkeypatch.setattr(response_cache, "MAX_SEEN", 3)
    for number in range(10):
        assert client.get(f"/api/comparisons?q=lang&limit={number + 1}").status_code == 200
    assert 1 <= len(cache._seen) <= 3


def test_a_long_request_line_is_answered_but_not_kept(client: Client) -> None:
    cache = cache_of(client)
    path = f"/api/comparisons/{HAIKU}?padding={'x' * 600}"
    assert client.get(path).status_code == 200
    assert client.get(path).status_code == 200
    assert cache.hits == 0
    assert cache.size == 0


def test_votes_folded_elsewhere_are_not_counted_twice(client: Client) -> None:
    services = client.app.state.services
    tool = client.get(f"/api/comparisons/{HAIKU}").json()["tools"][0]["id"]
    assert client.post(f"/api/comparisons/{HAIKU}/votes",
                       json={"tool": tool, "vote": "ship"}).status_code == 202
    assert client.get(f"/api/comparisons/{HAIKU}").json()["tools"][0]["community"]["ship"] == 1
    # The bookkeeping of a fold whose commit this read does not show yet (another instance's,
    # or this one's between its commit and its notice): the vote is no longer pending.
    through, _ = services.votes.batch()
    services.votes.mark_folded(through, "f" * 40)
    assert client.get(f"/api/comparisons/{HAIKU}").json()["tools"][0]["community"]["ship"] == 0


def test_a_body_over_the_limit_is_served_whole_but_not_kept(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(response_cache, "MAX_BODY_BYTES", 100)
    cache = cache_of(client)
    first = client.get(f"/api/comparisons/{HAIKU}")
    again = client.get(f"/api/comparisons/{HAIKU}")
    assert len(first.content) > 100
    assert again.content == first.content
    assert first.json()["slug"] == HAIKU
    assert (cache.hits, cache.size) == (0, 0)


@pytest.mark.parametrize("path", [f"/api/comparisons/{HAIKU}", "/health"])
def test_the_event_loop_never_waits_for_a_writer_moving_the_index(client: Client,
                                                                   path: str) -> None:
    """A writer thread holds the index's lock while main moves; reads on the event loop go on."""
    services = client.app.state.services
    other = open_write_side(services.settings)
    live = other.documents.published(HAIKU)
    assert live is not None
    other.editor.transition(HAIKU, "unpublish", PUBLISHER, live.revision)  # main moved elsewhere
    services.index._checked_at = float("-inf")  # due to look at main again
    answered: list[int] = []
    with services.index._lock:  # as a writer thread following main holds it
        reader = threading.Thread(target=lambda: answered.append(client.get(path).status_code))
        reader.start()
        reader.join(timeout=30)
        waited = reader.is_alive()
    reader.join()
    assert not waited
    assert answered == [200]  # from the view as it was: the writer is moving it on


def test_a_read_with_two_if_none_match_fields_is_the_route_s_every_time(client: Client) -> None:
    """The cache would read the last field alone, where the route reads its own way. Such a
    request goes to the route, so it gets the same answer whether its page is kept or not."""
    url = f"/api/comparisons/{HAIKU}"
    etag = client.get(url).headers["etag"].encode()
    assert client.get(url).status_code == 200  # kept now
    hits = cache_of(client).hits
    # Two fields as a server hands them over (a test client would join them into one).
    answers = [asyncio.run(call(client.app, scope_of(url, (b"if-none-match", first),
                                                     (b"if-none-match", second))))
               for first, second in ((etag, b'"other"'), (b'"other"', etag))]
    assert cache_of(client).hits == hits
    assert [answer[0]["status"] for answer in answers] == [304, 200]
