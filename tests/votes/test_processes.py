"""Votes with several server processes on one repository and one CMS_DATA: every one shows main's
tallies plus exactly the votes main does not hold yet, and a read never waits for an insert."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import TestClient

from cms.api.app import create_app
from cms.config import Settings
from cms.content.model import percent_label
from cms.reading import index as index_module
from cms.votes import store as votes_store
from cms.votes.limits import TooManyVotes
from cms.votes.store import VoteStore

from ..conftest import HAIKU, make_tokens
from .test_votes import GEMINI_TOOL, HAIKU_TOOL, tallies_in_git

Client = TestClient  # type: ignore[type-arg]
Tally = tuple[int, int]


@pytest.fixture(autouse=True)
def look_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process's votes are looked for every RECHECK_SECONDS; here, on every read, so
    that what is asserted is exactness, not timing."""
    monkeypatch.setattr(votes_store, "RECHECK_SECONDS", 0.0)


@pytest.fixture
def pair(shared_settings: Settings, repo_path: Path) -> Iterator[tuple[Client, Client]]:
    """Two apps, as two server processes would be: same repository, same CMS_DATA (and on
    PostgreSQL, the same database)."""
    unlimited = msgspec.structs.replace(shared_settings, vote_rate=0)
    with TestClient(app=create_app(unlimited)) as one, TestClient(app=create_app(unlimited)) as two:
        yield one, two


def shown(client: Client) -> dict[str, Tally]:
    """The tallies as one comparison's page shows them and as a list page labels them, twice
    each (the second time from the response cache): all must agree."""
    pages, labels = [], []
    for _ in range(2):
        page = client.get(f"/api/comparisons/{HAIKU}").json()
        pages.append({t["id"]: (t["community"]["ship"], t["community"]["skip"])
                      for t in page["tools"]})
        listed = client.get("/api/comparisons", params={"tool": HAIKU_TOOL}).json()["items"]
        item = next(i for i in listed if i["slug"] == HAIKU)
        labels.append({t["id"]: t["community_label"] for t in item["tools"]})
    assert pages[0] == pages[1]
    assert labels[0] == labels[1] == {tool: label(*counts) for tool, counts in pages[0].items()}
    return pages[0]


def label(ship: int, skip: int) -> str:
    return percent_label(Fraction(ship, ship + skip) if ship + skip else None)


def vote(client: Client, tool: str, choice: str) -> None:
    answer = client.post(f"/api/comparisons/{HAIKU}/votes", json={"tool": tool, "vote": choice})
    assert answer.status_code == 202, answer.text


def plus(base: dict[str, Tally], cast: dict[str, Tally]) -> dict[str, Tally]:
    return {tool: (ship + cast[tool][0], skip + cast[tool][1]) for tool, (ship, skip) in base.items()}


def test_two_servers_show_exactly_every_vote_whoever_recorded_or_folded_it(
        pair: tuple[Client, Client], shared_settings: Settings, repo_path: Path) -> None:
    one, two = pair
    admin = make_tokens(shared_settings)["admin"]
    base = shown(one)
    assert shown(two) == base
    cast = {HAIKU_TOOL: (0, 0), GEMINI_TOOL: (0, 0)}

    def cast_through(client: Client, tool: str, choice: str) -> None:
        vote(client, tool, choice)
        ship, skip = cast[tool]
        cast[tool] = (ship + 1, skip) if choice == "ship" else (ship, skip + 1)

    for round_ in range(3):
        for number in range(7):
            cast_through(one if number % 2 else two, HAIKU_TOOL if number % 3 else GEMINI_TOOL,
                         "ship" if number % 4 else "skip")
            assert shown(one) == shown(two) == plus(base, cast)
        folder = (one, two)[round_ % 2]  # each folds the other's votes in turn
        assert folder.post("/api/votes/fold", headers=admin).json()["commit"] is not None
        assert shown(one) == shown(two) == plus(base, cast)
    cast_through(one, HAIKU_TOOL, "ship")  # pending on top of the folds
    assert shown(two) == shown(one) == plus(base, cast)
    assert tallies_in_git(repo_path) == plus(base, {**cast, HAIKU_TOOL: (
        cast[HAIKU_TOOL][0] - 1, cast[HAIKU_TOOL][1])})
    hits = [c.app.state.response_cache.hits
            for c in (one, two)]
    assert min(hits) > 0  # the response cache answered some of those reads


def test_votes_one_server_took_and_the_other_folded_are_counted_once(
        pair: tuple[Client, Client], shared_settings: Settings) -> None:
    one, two = pair
    base = shown(one)
    for _ in range(5):
        vote(one, HAIKU_TOOL, "ship")
    assert two.post("/api/votes/fold",
                    headers=make_tokens(shared_settings)["admin"]).status_code == 200
    expected = plus(base, {HAIKU_TOOL: (5, 0), GEMINI_TOOL: (0, 0)})
    assert shown(one) == expected  # not 10: the fold is in main now, and nothing is pending
    assert shown(two) == expected


def test_a_fold_by_another_server_is_exact_before_and_after_this_one_sees_it(
        pair: tuple[Client, Client], shared_settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = pair
    admin = make_tokens(shared_settings)["admin"]
    base = shown(one)
    for _ in range(4):
        vote(one, HAIKU_TOOL, "ship")
    vote(two, HAIKU_TOOL, "skip")
    expected = plus(base, {HAIKU_TOOL: (4, 1), GEMINI_TOOL: (0, 0)})
    assert shown(one) == expected
    # ``one`` keeps reading main as it was (as between two looks at the ref), while ``two``
    # folds every vote into a new commit on main and marks them folded in the shared ledger.
    monkeypatch.setattr(index_module, "RECHECK_SECONDS", 3600.0)
    one.app.state.services.index._checked_at = time.monotonic()
    assert two.post("/api/votes/fold", headers=admin).json()["commit"] is not None
    assert one.app.state.services.index.head != two.app.state.services.index.head
    assert shown(one) == shown(two) == expected
    vote(one, GEMINI_TOOL, "ship")
    expected = plus(expected, {HAIKU_TOOL: (0, 0), GEMINI_TOOL: (1, 0)})
    assert shown(one) == shown(two) == expected
    monkeypatch.setattr(index_module, "RECHECK_SECONDS", 0.0)
    assert shown(one) == shown(two) == expected
    assert one.app.state.services.index.head == two.app.state.services.index.head


def test_two_stores_on_one_database_count_each_others_votes(shared_settings: Settings) -> None:
    first, second = VoteStore.open(shared_settings), VoteStore.open(shared_settings)
    try:
        first.record("a-vs-b", "a", "ship", "k1")
        second.record("a-vs-b", "b", "skip", "k2")
        for store in (first, second):
            assert store.pending(0).of("a-vs-b") == {"a": (1, 0), "b": (0, 1)}
        version = first.version
        through, tallies = second.batch()
        assert tallies == {"a-vs-b": {"a": (1, 0), "b": (0, 1)}}
        second.mark_folded(through, "c" * 40)
        assert first.version != version  # a mark by another connection moves it too
        # Counted from a commit that holds the first vote only, and one that holds both.
        assert first.pending(1).of("a-vs-b") == {"b": (0, 1)}
        assert first.pending(through).of("a-vs-b") == {}
        assert first.pending(0).of("a-vs-b") == {"a": (1, 0), "b": (0, 1)}
    finally:
        first.close()
        second.close()


def test_the_vote_limit_holds_across_processes(shared_settings: Settings) -> None:
    """Votes by one client alternate between two processes: the limit counts them all, per
    comparison, and a refused vote is not stored."""
    first, second = VoteStore.open(shared_settings), VoteStore.open(shared_settings)
    try:
        for number in range(4):
            (first, second)[number % 2].record("a-vs-b", "a", "ship", "k1", per_minute=4)
        for store in (first, second):
            with pytest.raises(TooManyVotes) as refused:
                store.record("a-vs-b", "a", "ship", "k1", per_minute=4)
            assert 1 <= refused.value.details["retry_after"] <= 61
        second.record("a-vs-b", "a", "ship", "k2", per_minute=4)  # another client
        first.record("c-vs-d", "c", "ship", "k1", per_minute=4)  # another comparison
        assert first.pending(0).of("a-vs-b") == {"a": (5, 0)}
        assert second.ledger().seen == 6
    finally:
        first.close()
        second.close()


def test_two_servers_share_one_vote_limit(settings: Settings, repo_path: Path) -> None:
    limited = msgspec.structs.replace(settings, vote_rate=3)
    with TestClient(app=create_app(limited)) as one, TestClient(app=create_app(limited)) as two:
        answers = [(one, two)[n % 2].post(f"/api/comparisons/{HAIKU}/votes",
                                          json={"tool": HAIKU_TOOL, "vote": "ship"})
                   for n in range(6)]
    assert [a.status_code for a in answers] == [202, 202, 202, 429, 429, 429]
    assert answers[3].json()["code"] == "too_many_votes"
    assert int(answers[3].headers["retry-after"]) >= 1


def test_a_read_never_waits_for_a_vote_being_written(client: Client, settings: Settings) -> None:
    """An insert stuck on the disk (here: on another writer's lock) holds up no read: the reads
    all answer while the vote is still stuck."""
    client.get(f"/api/comparisons/{HAIKU}")
    store = client.app.state.services.votes
    inserting = threading.Event()
    record = store.record

    def announced(*args: Any, **kwargs: Any) -> None:
        inserting.set()
        record(*args, **kwargs)

    store.record = announced
    answers: list[httpx.Response] = []
    with contextlib.closing(sqlite3.connect(settings.data / "votes.sqlite3",
                                            isolation_level=None)) as blocker:
        blocker.execute("BEGIN IMMEDIATE")  # the write lock, until the commit below
        try:
            voter = threading.Thread(target=lambda: answers.append(client.post(
                f"/api/comparisons/{HAIKU}/votes", json={"tool": HAIKU_TOOL, "vote": "ship"})))
            voter.start()
            assert inserting.wait(timeout=30)
            for path in (f"/api/comparisons/{HAIKU}", f"/api/comparisons/{HAIKU}?fresh=1",
                         "/api/comparisons?sort=title&limit=2", "/health"):
                assert client.get(path).status_code == 200
            # Had a read waited for the insert, the insert would be over by now.
            still_stuck = voter.is_alive()
        finally:
            blocker.execute("COMMIT")
        voter.join(timeout=30)
    assert still_stuck
    assert [answer.status_code for answer in answers] == [202]
    assert client.get(f"/api/comparisons/{HAIKU}").json()["tools"][0]["community"]["ship"] == 1


def test_a_new_vote_database_is_not_taken_for_the_old_ones_folds(settings: Settings,
                                                                  repo_path: Path) -> None:
    """Each CMS_DATA numbers its votes from 1: the folds of another (a replaced data folder, or
    an instance with its own) say nothing about which of this one's votes main holds."""
    unlimited = msgspec.structs.replace(settings, vote_rate=0)
    ballot = {"tool": HAIKU_TOOL, "vote": "ship"}
    with TestClient(app=create_app(unlimited)) as old:
        for _ in range(3):
            assert old.post(f"/api/comparisons/{HAIKU}/votes", json=ballot).status_code == 202
        assert old.post("/api/votes/fold", headers=make_tokens(unlimited)["admin"]).status_code == 200
    before = tallies_in_git(repo_path)[HAIKU_TOOL]
    fresh = msgspec.structs.replace(unlimited, data=settings.data.parent / "new-data")
    with TestClient(app=create_app(fresh)) as new:
        for _ in range(2):
            assert new.post(f"/api/comparisons/{HAIKU}/votes", json=ballot).status_code == 202
        shown = new.get(f"/api/comparisons/{HAIKU}").json()["tools"][0]["community"]["ship"]
        assert shown == before[0] + 2
        assert new.post("/api/votes/fold", headers=make_tokens(fresh)["admin"]).status_code == 200
    assert tallies_in_git(repo_path)[HAIKU_TOOL] == (before[0] + 2, before[1])
