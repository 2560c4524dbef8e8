"""Community votes: counted at once, folded into git in few commits, never twice."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from litestar.testing import TestClient

from cms.content import codec
from cms.store.layout import shard

from ..conftest import HAIKU, fsck, git
from ..helpers import Headers, act
from ..test_e2e import Server, start

Client = TestClient  # type: ignore[type-arg]
HAIKU_TOOL = "claude-haiku-open-weights"
GEMINI_TOOL = "gemini-2-5-flash-native-audio-output"
PATH = f"content/comparisons/{shard(HAIKU)}/{HAIKU}.md"


def vote(client: Client, tool: str, choice: str) -> httpx.Response:
    return client.post(f"/api/comparisons/{HAIKU}/votes", json={"tool": tool, "vote": choice})


def tallies_in_git(repo: Path) -> dict[str, tuple[int, int]]:
    comparison = codec.decode(git(repo, "show", f"main:{PATH}"))
    return {t.id: (t.community.ship, t.community.skip) for t in comparison.tools}


def test_votes_show_at_once_and_fold_into_one_commit(client: Client, tokens: dict[str, Headers],
                                                     repo_path: Path) -> None:
    before = git(repo_path, "rev-list", "--count", "main").strip()
    listing = client.get("/api/comparisons", params={"tool": HAIKU_TOOL})
    assert listing.json()["items"][0]["tools"][0]["community_label"] == "—"
    for choice in ("ship", "ship", "skip"):
        answer = vote(client, HAIKU_TOOL, choice)
        assert answer.status_code == 202, answer.text
    assert answer.json()["community"] == {"ship": 2, "skip": 1}
    assert answer.json()["community_label"] == "67%"
    assert vote(client, GEMINI_TOOL, "ship").status_code == 202
    shown = client.get(f"/api/comparisons/{HAIKU}")
    tools = shown.json()["tools"]
    assert (tools[0]["community_label"], tools[1]["community_label"]) == ("67%", "100%")
    assert shown.headers["etag"].startswith('W/"')
    relisted = client.get("/api/comparisons", params={"tool": HAIKU_TOOL},
                          headers={"If-None-Match": listing.headers["etag"]})
    assert relisted.status_code == 200  # the votes changed the page, so not 304
    assert relisted.json()["items"][0]["tools"][0]["community_label"] == "67%"
    assert git(repo_path, "rev-list", "--count", "main").strip() == before  # nothing in git yet

    # The weak ETag of a read with pending votes still works as a revision to edit.
    edited = client.put(f"/api/drafts/{HAIKU}", json=shown.json(),
                        headers={**tokens["editor"], "If-Match": shown.headers["etag"]})
    assert edited.status_code == 200, edited.text

    folded = client.post("/api/votes/fold", headers=tokens["admin"])
    assert folded.status_code == 200
    commit = folded.json()["commit"]
    assert git(repo_path, "rev-parse", "main").strip() == commit
    assert tallies_in_git(repo_path) == {HAIKU_TOOL: (2, 1), GEMINI_TOOL: (1, 0)}
    trailers = git(repo_path, "log", "-1", "--format=%(trailers)", commit)
    assert "Cms-Action: votes" in trailers
    assert f"Cms-Document: comparisons/{HAIKU}" in trailers
    assert client.post("/api/votes/fold", headers=tokens["admin"]).json() == {"commit": None}
    again = client.get(f"/api/comparisons/{HAIKU}")
    assert again.headers["etag"] == f'"{again.json()["revision"]}"'
    assert again.json()["tools"][0]["community"] == {"ship": 2, "skip": 1}

    # The draft started before the fold carries the old tallies; publishing keeps main's.
    doc = act(client, HAIKU, "submit", tokens["editor"], edited.headers["etag"])
    doc = act(client, HAIKU, "approve", tokens["reviewer"], f'"{doc["revision"]}"')
    act(client, HAIKU, "publish", tokens["publisher"], f'"{doc["revision"]}"')
    assert tallies_in_git(repo_path) == {HAIKU_TOOL: (2, 1), GEMINI_TOOL: (1, 0)}
    assert client.get("/api/audit/verify", headers=tokens["auditor"]).json()["ok"] is True
    for _ in range(3):  # folds between publications do not push them out of the feed
        assert vote(client, GEMINI_TOOL, "skip").status_code == 202
        client.post("/api/votes/fold", headers=tokens["admin"])
    feed = client.get("/api/feed.json").json()
    assert feed["items"][0]["url"].endswith(HAIKU)
    actions = [e["action"] for e in client.get(f"/api/comparisons/{HAIKU}/history",
                                               headers=tokens["auditor"]).json()["entries"]]
    assert "votes" in actions


def test_bad_votes_and_the_rate_limit(client: Client) -> None:
    unknown_tool = vote(client, "not-a-tool", "ship")
    assert unknown_tool.status_code == 422
    assert unknown_tool.json()["field"] == "tool"
    assert vote(client, HAIKU_TOOL, "maybe").status_code == 422
    missing = client.post("/api/comparisons/no-such-comparison/votes",
                          json={"tool": HAIKU_TOOL, "vote": "ship"})
    assert missing.status_code == 404
    statuses = [vote(client, HAIKU_TOOL, "ship").status_code for _ in range(31)]
    assert statuses[:30] == [202] * 30
    assert statuses[30] == 429
    assert client.get(f"/api/comparisons/{HAIKU}").json()["tools"][0]["community"]["ship"] == 30


def test_a_crash_after_the_fold_commit_never_counts_twice(client: Client, repo_path: Path) -> None:
    for _ in range(5):
        assert vote(client, HAIKU_TOOL, "skip").status_code == 202
    services = client.app.state.services
    commit = services.vote_folder.fold_now()
    assert commit is not None
    # As if the server died after the commit and before marking the votes as folded.
    with contextlib.closing(sqlite3.connect(services.settings.data / "votes.sqlite3")) as db:
        db.execute("UPDATE votes SET folded_in = NULL")
        db.commit()
    # Main holds them, whatever the bookkeeping says: shown once, not as pending on top.
    assert client.get(f"/api/comparisons/{HAIKU}").json()["tools"][0]["community"] == {
        "ship": 0, "skip": 5}
    assert services.vote_folder.fold_now() is None
    assert tallies_in_git(repo_path)[HAIKU_TOOL] == (0, 5)


def test_a_thousand_concurrent_votes_on_a_live_server(tmp_path: Path) -> None:
    env = {**os.environ, "CMS_REPO": str(tmp_path / "content"), "CMS_DATA": str(tmp_path / "var"),
           "CMS_PORT": "0", "CMS_VOTE_RATE": "0"}
    subprocess.run([sys.executable, "-m", "cms", "init"], env=env, check=True,
                   capture_output=True, timeout=60)
    admin = Server("", env).token("Ann Admin", "ann@example.com", "admin")
    accepted: list[int] = []
    lock = threading.Lock()
    with start(env) as (_, url):
        def voter(worker: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as http:
                for number in range(50):  # bounded: 20 workers × 50 votes
                    tool = HAIKU_TOOL if (worker + number) % 2 else GEMINI_TOOL
                    answer = http.post(f"/api/comparisons/{HAIKU}/votes",
                                       json={"tool": tool, "vote": "ship"})
                    with lock:
                        accepted.append(answer.status_code)

        workers = [threading.Thread(target=voter, args=(n,)) for n in range(20)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        with httpx.Client(base_url=url, timeout=30) as http:
            shown = http.get(f"/api/comparisons/{HAIKU}").json()["tools"]
            assert sum(t["community"]["ship"] for t in shown) == 1000
            assert http.post("/api/votes/fold", headers=admin).status_code == 200
    assert accepted == [202] * 1000
    repo = tmp_path / "content"
    assert sum(ship for ship, _ in tallies_in_git(repo).values()) == 1000
    folds = git(repo, "log", "--format=%s", "--grep=^Fold community votes", "main").splitlines()
    assert 1 <= len(folds) <= 3
    fsck(repo)


def test_votes_dropped_with_their_comparison_stay_dropped(client: Client,
                                                          tokens: dict[str, Headers],
                                                          repo_path: Path) -> None:
    for _ in range(3):
        assert vote(client, HAIKU_TOOL, "ship").status_code == 202
    shown = client.get(f"/api/comparisons/{HAIKU}")
    act(client, HAIKU, "unpublish", tokens["publisher"], shown.headers["etag"])
    assert client.post("/api/votes/fold", headers=tokens["admin"]).json() == {"commit": None}
    # Published again: the votes cast before are gone, shown nowhere and folded never.
    draft = client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"])
    saved = client.put(f"/api/drafts/{HAIKU}", json=draft.json(),
                       headers={**tokens["editor"], "If-Match": draft.headers["etag"]})
    assert saved.status_code == 200, saved.text
    doc = act(client, HAIKU, "submit", tokens["editor"], saved.headers["etag"])
    doc = act(client, HAIKU, "approve", tokens["reviewer"], f'"{doc["revision"]}"')
    act(client, HAIKU, "publish", tokens["publisher"], f'"{doc["revision"]}"')
    assert client.get(f"/api/comparisons/{HAIKU}").json()["tools"][0]["community"]["ship"] == 0
    assert vote(client, HAIKU_TOOL, "skip").status_code == 202
    assert client.get(f"/api/comparisons/{HAIKU}").json()["tools"][0]["community"] == {
        "ship": 0, "skip": 1}
    assert client.post("/api/votes/fold", headers=tokens["admin"]).json()["commit"] is not None
    assert tallies_in_git(repo_path)[HAIKU_TOOL] == (0, 1)
    assert client.get(f"/api/comparisons/{HAIKU}").json()["tools"][0]["community"] == {
        "ship": 0, "skip": 1}
