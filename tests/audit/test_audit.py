"""The audit trail: history, revisions, diffs, verdict changes and verification, checked against git."""

from __future__ import annotations

import csv
import io
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from cms.audit.history import history
from cms.config import Settings
from cms.content import codec
from cms.editing.write_side import WriteSide, open_write_side
from cms.identity.actors import Actor
from cms.identity.tokens import TokenStore
from cms.store.layout import shard

from ..conftest import HAIKU, git
from ..helpers import Headers, act

Client = TestClient  # type: ignore[type-arg]
PATH = f"content/comparisons/{shard(HAIKU)}/{HAIKU}.md"
HAIKU_TOOL = "claude-haiku-open-weights"
GEMINI_TOOL = "gemini-2-5-flash-native-audio-output"
EDITOR = Actor(name="Ada Editor", email="ada@example.com", roles=frozenset({"editor"}))


def revise(client: Client, tokens: dict[str, Headers], approver: str, tool: int, reviewer: str,
           verdict: str) -> str:
    """Change one verdict through the whole review; return the publication commit."""
    current = client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"])
    document = current.json()
    for review in document["tools"][tool]["reviews"]:
        if review["reviewer"] == reviewer:
            review["verdict"] = verdict
    saved = client.put(f"/api/drafts/{HAIKU}", json=document,
                       headers={**tokens["editor"], "If-Match": current.headers["etag"]})
    assert saved.status_code == 200, saved.text
    return review_and_publish(client, tokens, approver, saved.headers["etag"])


def review_and_publish(client: Client, tokens: dict[str, Headers], approver: str,
                       etag: str) -> str:
    doc = act(client, HAIKU, "submit", tokens["editor"], etag)
    doc = act(client, HAIKU, "approve", tokens[approver], f'"{doc["revision"]}"',
              comment=f"approved by {approver}")
    act(client, HAIKU, "publish", tokens["publisher"], f'"{doc["revision"]}"')
    return git(Path(client.app.state.services.settings.repo), "rev-parse", "main").strip()


@pytest.fixture
def scenario(client: Client, tokens: dict[str, Headers], repo_path: Path) -> dict[str, Any]:
    seed = git(repo_path, "rev-parse", "main").strip()
    first = revise(client, tokens, "reviewer", 0, "builder", "skip")         # 50% -> 25%
    second = revise(client, tokens, "reviewer2", 0, "rival-watcher", "ship")  # 25% -> 50%
    third = revise(client, tokens, "admin", 1, "operator", "skip")           # 100% -> 75%
    current = client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"])
    reverted = client.post(f"/api/drafts/{HAIKU}/revert", json={"to": first},
                           headers={**tokens["editor"], "If-Match": current.headers["etag"]})
    assert reverted.status_code == 200, reverted.text
    assert reverted.json()["state"] == "draft"
    fourth = review_and_publish(client, tokens, "reviewer2", reverted.headers["etag"])
    return {"seed": seed, "publications": [first, second, third, fourth]}


def test_history_matches_git(client: Client, tokens: dict[str, Headers], repo_path: Path,
                             scenario: dict[str, Any]) -> None:
    auditor = tokens["auditor"]
    everything = client.get(f"/api/comparisons/{HAIKU}/history?limit=1000", headers=auditor).json()
    expected = git(repo_path, "log", "--format=%H", "--date-order", "main", "--", PATH).split()
    assert [e["sha"] for e in everything["entries"]] == expected
    actions = [e["action"] for e in everything["entries"]]
    assert actions.count("publish") == 4
    assert actions.count("revert") == 1
    assert actions[-1] == "seed"

    published = client.get(f"/api/comparisons/{HAIKU}/history?action=publish",
                           headers=auditor).json()["entries"]
    assert [e["sha"] for e in published] == scenario["publications"][::-1]
    assert [e["approvers"] for e in published] == [
        ["Rob Reviewer <rob@example.com>"], ["Ann Admin <ann@example.com>"],
        ["Rob Reviewer <rob@example.com>"], ["Rita Reviewer <rita@example.com>"],
    ]
    first_page = client.get(f"/api/comparisons/{HAIKU}/history?limit=3", headers=auditor).json()
    second_page = client.get(f"/api/comparisons/{HAIKU}/history?limit=3&cursor="
                             f"{first_page['next_cursor']}", headers=auditor).json()
    assert [e["sha"] for e in first_page["entries"] + second_page["entries"]] == expected[:6]
    cutoff = published[1]["time"]
    recent = client.get(f"/api/comparisons/{HAIKU}/history", headers=auditor,
                        params={"action": "publish", "since": cutoff}).json()["entries"]
    assert {e["sha"] for e in published[:2]} <= {e["sha"] for e in recent}
    assert all(e["time"] >= cutoff for e in recent)
    future = client.get(f"/api/comparisons/{HAIKU}/history", headers=auditor,
                        params={"since": "2999-01-01T00:00:00Z"}).json()
    assert (future["entries"], future["total"]) == ([], 0)
    past = client.get(f"/api/comparisons/{HAIKU}/history", headers=auditor,
                      params={"until": "2000-01-01T00:00:00Z"}).json()
    assert past["entries"] == []
    naive = client.get(f"/api/comparisons/{HAIKU}/history", headers=auditor,
                       params={"until": "2000-01-01T00:00:00"})  # no offset: read as UTC
    assert naive.status_code == 200
    assert naive.json()["entries"] == []


def test_any_revision_reads_as_it_was(client: Client, tokens: dict[str, Headers],
                                      repo_path: Path, scenario: dict[str, Any]) -> None:
    for commit in [scenario["seed"], *scenario["publications"]]:
        response = client.get(f"/api/comparisons/{HAIKU}/revisions/{commit}",
                              headers=tokens["auditor"])
        assert response.status_code == 200
        stored = codec.decode(git(repo_path, "show", f"{commit}:{PATH}"))
        body = response.json()
        assert body["revision"] == git(repo_path, "rev-parse", f"{commit}:{PATH}").strip()
        assert [[r["verdict"] for r in t["reviews"]] for t in body["tools"]] == \
            [[r.verdict for r in t.reviews] for t in stored.tools]
        assert set(body) == set(client.get(f"/api/comparisons/{HAIKU}").json())
    short = client.get(f"/api/comparisons/{HAIKU}/revisions/{scenario['seed'][:10]}",
                       headers=tokens["auditor"])
    assert short.status_code == 200
    missing = client.get(f"/api/comparisons/{HAIKU}/revisions/{'f' * 40}", headers=tokens["auditor"])
    assert missing.status_code == 404
    bad = client.get(f"/api/comparisons/{HAIKU}/revisions/not-hex", headers=tokens["auditor"])
    assert bad.status_code == 400


def test_field_level_diff(client: Client, tokens: dict[str, Headers],
                          scenario: dict[str, Any]) -> None:
    first, second, third, fourth = scenario["publications"]
    response = client.get(f"/api/comparisons/{HAIKU}/diff",
                          params={"from": first, "to": second}, headers=tokens["reviewer"])
    changes = response.json()["changes"]
    assert {(c["kind"], c["path"], c["before"], c["after"]) for c in changes} >= {
        ("verdict", f"tools[{HAIKU_TOOL}].reviews[rival-watcher].verdict", "skip", "ship"),
        ("panel_ship", f"tools[{HAIKU_TOOL}].panel_ship", 0.25, 0.5),
    }
    share = next(c for c in changes if c["kind"] == "panel_ship")
    assert (share["before_label"], share["after_label"]) == ("25%", "50%")
    default = client.get(f"/api/comparisons/{HAIKU}/diff", headers=tokens["auditor"]).json()
    assert (default["from_commit"], default["to_commit"]) == (third, fourth)
    flips = {(c["tool"], c["reviewer"], c["before"], c["after"])
             for c in default["changes"] if c["kind"] == "verdict"}
    assert flips == {(HAIKU_TOOL, "rival-watcher", "ship", "skip"),
                     (GEMINI_TOOL, "operator", "skip", "ship")}
    body = client.get(f"/api/comparisons/{HAIKU}/diff", headers=tokens["auditor"],
                      params={"from": scenario["seed"], "to": first}).json()
    assert body["body_diff"] is None


def test_verdict_changes_feed_and_csv(client: Client, tokens: dict[str, Headers],
                                      scenario: dict[str, Any]) -> None:
    response = client.get("/api/audit/verdict-changes", headers=tokens["auditor"])
    items = response.json()["items"]
    verdicts = [i for i in items if i["kind"] == "verdict"]
    assert [i["commit"] for i in verdicts] == scenario["publications"][:3] + \
        [scenario["publications"][3]] * 2
    assert all(i["actor"]["name"] == "Paul Publisher" for i in items)
    assert items[0]["approvers"] == ["Rita Reviewer <rita@example.com>"]
    gemini = client.get("/api/audit/verdict-changes", params={"tool": "gemini"},
                        headers=tokens["auditor"]).json()["items"]
    assert {i["tool"] for i in gemini} == {GEMINI_TOOL}
    assert len(gemini) == 4  # two verdict flips and two share moves
    as_csv = client.get("/api/audit/verdict-changes?format=csv", headers=tokens["auditor"])
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [row["commit"] for row in rows] == [i["commit"] for i in items]
    assert rows[0]["approvers"] == "Rita Reviewer <rita@example.com>"
    later = client.get("/api/audit/verdict-changes", headers=tokens["auditor"],
                       params={"since": items[-1]["time"]}).json()["items"]
    assert all(i["time"] >= items[-1]["time"] for i in later)
    assert later


def test_trailers_parse_with_git(repo_path: Path, scenario: dict[str, Any]) -> None:
    for commit in git(repo_path, "rev-list", "--all").split():
        message = git(repo_path, "log", "-1", "--format=%B", commit)
        parsed = subprocess.run(["git", "interpret-trailers", "--parse"], input=message,
                                capture_output=True, text=True, check=True).stdout
        assert "Cms-Action: " in parsed
        if "Cms-Action: seed" not in parsed:
            assert f"Cms-Document: comparisons/{HAIKU}" in parsed
    for commit in scenario["publications"]:
        parsed = subprocess.run(["git", "interpret-trailers", "--parse"],
                                input=git(repo_path, "log", "-1", "--format=%B", commit),
                                capture_output=True, text=True, check=True).stdout
        assert "Approved-by: " in parsed
        assert "Cms-State: published" in parsed


def test_verify_flags_a_commit_made_around_the_workflow(
    client: Client, tokens: dict[str, Headers], repo_path: Path, scenario: dict[str, Any]
) -> None:
    clean = client.get("/api/audit/verify", headers=tokens["auditor"]).json()
    assert clean["ok"] is True
    assert clean["checked"] == 5
    assert clean["findings"] == []
    # Someone writes straight into main with plain git, bypassing review.
    tree = git(repo_path, "rev-parse", "main^{tree}").strip()
    env = {**os.environ, "GIT_AUTHOR_NAME": "Mallory", "GIT_AUTHOR_EMAIL": "mallory@example.com",
           "GIT_COMMITTER_NAME": "Mallory", "GIT_COMMITTER_EMAIL": "mallory@example.com"}
    blob = subprocess.run(["git", "--git-dir", str(repo_path), "hash-object", "-w", "--stdin"],
                          input="sneaky\n", capture_output=True, text=True, check=True,
                          env=env).stdout.strip()
    index = repo_path / "tamper-index"
    tamper_env = {**env, "GIT_INDEX_FILE": str(index)}
    subprocess.run(["git", "--git-dir", str(repo_path), "read-tree", tree], check=True,
                   env=tamper_env)
    subprocess.run(["git", "--git-dir", str(repo_path), "update-index", "--add", "--cacheinfo",
                    f"100644,{blob},content/extra.md"], check=True, env=tamper_env)
    new_tree = subprocess.run(["git", "--git-dir", str(repo_path), "write-tree"],
                              capture_output=True, text=True, check=True,
                              env=tamper_env).stdout.strip()
    index.unlink()
    sneaky = subprocess.run(["git", "--git-dir", str(repo_path), "commit-tree", new_tree, "-p",
                             "main", "-m", "Quick fix"], capture_output=True, text=True,
                            check=True, env=env).stdout.strip()
    git(repo_path, "update-ref", "refs/heads/main", sneaky)
    report = client.get("/api/audit/verify", headers=tokens["auditor"]).json()
    assert report["ok"] is False
    assert [f["sha"] for f in report["findings"]] == [sneaky]
    finding = report["findings"][0]
    assert finding["author"] == "Mallory <mallory@example.com>"
    assert finding["subject"] == "Quick fix"
    assert any("not by the CMS" in p for p in finding["problems"])
    assert any("Cms-Action" in p for p in finding["problems"])


def test_history_while_the_branch_vanishes_is_read_from_the_commits(
        settings: Settings, repo_path: Path) -> None:
    """A branch merged or discarded between listing the refs and reading the log is no error."""
    side = open_write_side(settings)
    published = side.documents.published(HAIKU)
    assert published is not None
    draft = side.editor.save(HAIKU, published.comparison, EDITOR, published.revision)
    original = side.repo.git

    discarded: list[bool] = []

    def log_after_the_branch_went(*args: str, input_text: str | None = None) -> str:
        if args and args[0] == "log" and not discarded:
            side.editor.discard(HAIKU, EDITOR, draft.revision)
            discarded.append(True)
        return original(*args, input_text=input_text)

    side.repo.git = log_after_the_branch_went  # type: ignore[method-assign]
    entries = history(side.documents, HAIKU)
    assert draft.commit in [entry.sha for entry in entries]


def test_verify_accepts_an_approver_named_with_odd_spaces(
        client: Client, tokens: dict[str, Headers], settings: Settings) -> None:
    """The Approved-by trailer collapses whitespace; the file keeps the name as typed."""
    _, token = TokenStore.open(settings).create("Rita  Reviewer   Two", "rita2@example.com",
                                                ["reviewer"])
    spaced = {"Authorization": f"Bearer {token}"}
    current = client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"])
    document = dict(current.json(), summary="Approved by someone with two spaces in her name.")
    saved = client.put(f"/api/drafts/{HAIKU}", json=document,
                       headers={**tokens["editor"], "If-Match": current.headers["etag"]})
    assert saved.status_code == 200, saved.text
    doc = act(client, HAIKU, "submit", tokens["editor"], saved.headers["etag"])
    doc = act(client, HAIKU, "approve", spaced, f'"{doc["revision"]}"')
    act(client, HAIKU, "publish", tokens["publisher"], f'"{doc["revision"]}"')
    report = client.get("/api/audit/verify", headers=tokens["auditor"]).json()
    assert report["ok"] is True, report["findings"]


def test_a_revert_retried_after_its_answer_was_lost_is_not_applied_twice(
        client: Client, tokens: dict[str, Headers], repo_path: Path) -> None:
    """A revert that changes nothing keeps the revision as it was: a retry of it (its answer
    lost to a dropped connection) passes If-Match again, and must not make a second commit."""
    first = revise(client, tokens, "reviewer", 0, "builder", "skip")
    current = client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"])
    reverted = client.post(f"/api/drafts/{HAIKU}/revert", json={"to": first},
                           headers={**tokens["editor"], "If-Match": current.headers["etag"]})
    assert reverted.status_code == 200, reverted.text
    branch = f"refs/heads/cms/comparisons/{HAIKU}"
    head = git(repo_path, "rev-parse", branch).strip()
    for _ in range(2):  # a revert to what the draft already is, sent again as a client retries
        again = client.post(f"/api/drafts/{HAIKU}/revert", json={"to": first},
                            headers={**tokens["editor"], "If-Match": reverted.headers["etag"]})
        assert again.status_code == 200, again.text
        assert again.headers["etag"] == reverted.headers["etag"]
        assert git(repo_path, "rev-parse", branch).strip() == head


def test_a_history_is_parsed_once_and_follows_its_refs(settings: Settings, repo_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked again with its refs where they were, a history parses nothing; after a change, only
    the new commits are parsed, and it is what git walks."""
    from cms.audit import history as history_module

    side = open_write_side(settings)
    parsed: list[str] = []
    original = history_module._entry

    def counting(record: str) -> history_module.HistoryEntry:
        entry = original(record)
        parsed.append(entry.sha)
        return entry

    monkeypatch.setattr(history_module, "_entry", counting)
    first = history(side.documents, HAIKU)
    assert sorted(parsed) == sorted(entry.sha for entry in first)
    parsed.clear()
    assert history(side.documents, HAIKU) == first
    assert parsed == []
    published = side.documents.published(HAIKU)
    assert published is not None
    draft = side.editor.save(HAIKU, published.comparison, EDITOR, published.revision)
    after = history(side.documents, HAIKU)
    assert parsed == [draft.commit]
    expected = git(repo_path, "log", "--format=%H", "--date-order", "main",
                   f"cms/comparisons/{HAIKU}", "--", PATH).split()
    assert [entry.sha for entry in after] == expected
    # The draft is discarded: its commits are still history, under the discarded ref.
    side.editor.discard(HAIKU, EDITOR, draft.revision)
    kept = git(repo_path, "for-each-ref", "--format=%(refname)",
               f"refs/cms/discarded/comparisons/{HAIKU}/").split()
    expected = git(repo_path, "log", "--format=%H", "--date-order", "main", *kept, "--",
                   PATH).split()
    assert draft.commit in expected
    assert [entry.sha for entry in history(side.documents, HAIKU)] == expected


def recorded_walks(side: WriteSide, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The git commands the history's walks run from now on, as they run."""
    walks: list[list[str]] = []
    original = side.documents.repo.git_together

    def recording(*commands: list[str]) -> list[str]:
        walks.extend(commands)
        return original(*commands)

    monkeypatch.setattr(side.documents.repo, "git_together", recording)
    return walks


def test_a_history_walks_only_what_moved_on_unless_a_merge_would_show_more(
        settings: Settings, repo_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After plain commits on its refs, only those are walked; when a ref that began inside a
    merged side is gone, the whole history is walked again, since git's walk of a path skips
    a side that a merge left as it was and the history must be what a fresh walk shows."""
    from cms.audit import history as history_module

    side = open_write_side(settings)
    walks = recorded_walks(side, monkeypatch)

    def fresh() -> list[str]:
        monkeypatch.setattr(history_module, "_kept", history_module.WeighedCache(
            history_module._KEPT_BYTES, history_module._weight))
        return [entry.sha for entry in history(side.documents, HAIKU)]

    history(side.documents, HAIKU)
    published = side.documents.published(HAIKU)
    assert published is not None
    draft = side.editor.save(HAIKU, published.comparison, EDITOR, published.revision)
    walks.clear()
    after = [entry.sha for entry in history(side.documents, HAIKU)]
    assert walks == []  # a plain commit: judged in process (see plain_commits.py)
    assert draft.commit in after
    assert after == git(repo_path, "log", "--format=%H", "--date-order", "main",
                        f"cms/comparisons/{HAIKU}", "--", PATH).split()
    # A commit with an encoding header is git's to judge: only it is walked.
    branch = f"refs/heads/cms/comparisons/{HAIKU}"
    encoded = subprocess.run(
        ["git", "--git-dir", str(repo_path), "-c", "i18n.commitEncoding=ISO-8859-1",
         "commit-tree", f"{draft.commit}^{{tree}}", "-p", draft.commit, "-m", "Latin-1"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert "encoding ISO-8859-1" in git(repo_path, "cat-file", "commit", encoded)
    git(repo_path, "update-ref", branch, encoded)
    walks.clear()
    assert [entry.sha for entry in history(side.documents, HAIKU)] == after
    assert walks
    assert all("--not" in walk for walk in walks)
    git(repo_path, "update-ref", branch, draft.commit)
    # The draft merged with plain git so that main's file stays as it was: git's walk of the
    # file from main alone no longer shows the draft's commit.
    main = git(repo_path, "rev-parse", "main").strip()
    tree = git(repo_path, "rev-parse", "main^{tree}").strip()
    merge = git(repo_path, "commit-tree", tree, "-p", main, "-p", draft.commit,
                "-m", "Merge without the draft's change").strip()
    git(repo_path, "update-ref", "refs/heads/main", merge)
    assert draft.commit in [entry.sha for entry in history(side.documents, HAIKU)]
    onward = git(repo_path, "commit-tree", tree, "-p", merge, "-m", "Later").strip()
    git(repo_path, "update-ref", "refs/heads/main", onward)
    git(repo_path, "update-ref", "-d", f"refs/heads/cms/comparisons/{HAIKU}")
    walks.clear()
    now = [entry.sha for entry in history(side.documents, HAIKU)]
    assert walks
    assert not any("--not" in walk for walk in walks)
    assert draft.commit not in now
    assert now == git(repo_path, "log", "--format=%H", "--date-order", "main", "--",
                      PATH).split()
    assert now == fresh()


def commit_changing(repo_path: Path, content: str, parents: list[str], message: str,
                    when: str | None = None) -> str:
    """A commit made with plain git whose comparison file holds ``content``, on the tree of
    its first parent; at ``when`` (author and committer) if given."""
    changed = subprocess.run(["git", "--git-dir", str(repo_path), "hash-object", "-w", "--stdin"],
                             input=content, capture_output=True, text=True,
                             check=True).stdout.strip()
    env = {**os.environ, "GIT_INDEX_FILE": str(repo_path / "test-index")}
    if when is not None:
        env.update(GIT_AUTHOR_DATE=when, GIT_COMMITTER_DATE=when)
    subprocess.run(["git", "--git-dir", str(repo_path), "read-tree", parents[0]], env=env,
                   check=True)
    subprocess.run(["git", "--git-dir", str(repo_path), "update-index", "--cacheinfo",
                    f"100644,{changed},{PATH}"], env=env, check=True)
    tree = subprocess.run(["git", "--git-dir", str(repo_path), "write-tree"], env=env,
                          capture_output=True, text=True, check=True).stdout.strip()
    (repo_path / "test-index").unlink()
    arguments = [argument for parent in parents for argument in ("-p", parent)]
    return subprocess.run(["git", "--git-dir", str(repo_path), "commit-tree", tree, *arguments,
                           "-m", message], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_a_merge_that_takes_the_other_side_s_file_walks_everything_again(
        settings: Settings, repo_path: Path) -> None:
    """Main moves on by a merge whose file is the side's version: git's walk of the file then
    skips main's own change, so the kept history (which holds it) is not added to but walked
    again, and is what a fresh walk shows."""
    from cms.audit import history as history_module

    side = open_write_side(settings)
    main = git(repo_path, "rev-parse", "main").strip()
    blob = git(repo_path, "rev-parse", f"main:{PATH}").strip()
    text = git(repo_path, "cat-file", "blob", blob)

    on_main = commit_changing(repo_path, text + "\nMain's line.\n", [main], "Main changes it")
    git(repo_path, "update-ref", "refs/heads/main", on_main)
    assert on_main in [entry.sha for entry in history(side.documents, HAIKU)]
    aside = commit_changing(repo_path, text + "\nThe side's line.\n", [main], "A side changes it")
    merge = commit_changing(repo_path, text + "\nThe side's line.\n", [on_main, aside],
                            "Merge, the side's way")
    git(repo_path, "update-ref", "refs/heads/main", merge)
    kept = [entry.sha for entry in history(side.documents, HAIKU)]
    assert kept == git(repo_path, "log", "--format=%H", "--date-order", "main", "--",
                       PATH).split()
    assert on_main not in kept
    history_module._kept.put((str(side.documents.repo.git_dir), PATH),
                             history_module._Kept((), [], frozenset()))
    assert [entry.sha for entry in history(side.documents, HAIKU)] == kept



def test_commits_of_one_second_come_in_the_order_a_fresh_walk_gives(
        settings: Settings, repo_path: Path) -> None:
    """Two commits of the same second, neither the other's parent, are in the order git walks
    them: a history that took one of them in before must not put it first for that reason."""
    from cms.audit import history as history_module

    side = open_write_side(settings)
    main = git(repo_path, "rev-parse", "main").strip()
    text = git(repo_path, "cat-file", "blob", f"main:{PATH}")
    when = "2030-01-01T12:00:00+00:00"
    history(side.documents, HAIKU)
    on_branch = commit_changing(repo_path, text + "\nA draft.\n", [main], "A draft", when)
    git(repo_path, "update-ref", f"refs/heads/cms/comparisons/{HAIKU}", on_branch)
    assert history(side.documents, HAIKU)[0].sha == on_branch
    on_main = commit_changing(repo_path, text + "\nOn main.\n", [main], "On main", when)
    git(repo_path, "update-ref", "refs/heads/main", on_main)
    kept = [entry.sha for entry in history(side.documents, HAIKU)]
    history_module._kept.put((str(side.documents.repo.git_dir), PATH),
                             history_module._Kept((), [], frozenset()))
    fresh = [entry.sha for entry in history(side.documents, HAIKU)]
    assert kept == fresh
    assert set(kept[:2]) == {on_branch, on_main}


def test_a_history_with_commits_of_one_second_in_walk_order_is_walked_again_whole(
        settings: Settings, repo_path: Path) -> None:
    """Main and a draft each moved in one second, neither commit the other's parent: their
    order is the order git walks them in, which changes when main moves on (git then meets
    main's commit later). So such a history is walked whole again, and stays a fresh walk's."""
    from cms.audit import history as history_module

    side = open_write_side(settings)
    main = git(repo_path, "rev-parse", "main").strip()
    text = git(repo_path, "cat-file", "blob", f"main:{PATH}")
    same = "2030-01-01T12:00:00+00:00"
    on_main = commit_changing(repo_path, text + "\\nOn main.\\n", [main], "On main", same)
    on_branch = commit_changing(repo_path, text + "\\nA draft.\\n", [main], "A draft", same)
    git(repo_path, "update-ref", "refs/heads/main", on_main)
    git(repo_path, "update-ref", f"refs/heads/cms/comparisons/{HAIKU}", on_branch)
    before = [entry.sha for entry in history(side.documents, HAIKU)]
    assert set(before[:2]) == {on_main, on_branch}
    later = commit_changing(repo_path, text + "\\nLater on main.\\n", [on_main], "Later",
                            "2030-01-01T12:00:05+00:00")
    git(repo_path, "update-ref", "refs/heads/main", later)
    kept = [entry.sha for entry in history(side.documents, HAIKU)]
    history_module._kept.put((str(side.documents.repo.git_dir), PATH),
                             history_module._Kept((), [], frozenset()))
    assert kept == [entry.sha for entry in history(side.documents, HAIKU)]
    assert kept == git(repo_path, "log", "--format=%H", "--date-order", "main",
                       f"cms/comparisons/{HAIKU}", "--", PATH).split()



@pytest.mark.parametrize("graft", ["info/grafts", "shallow"])
def test_a_history_of_a_grafted_or_shallow_repository_is_walked_whole(
        settings: Settings, repo_path: Path, monkeypatch: pytest.MonkeyPatch, graft: str) -> None:
    """Git then walks other parents than the commits hold, which only git's own walk knows."""
    side = open_write_side(settings)
    walks = recorded_walks(side, monkeypatch)
    main = git(repo_path, "rev-parse", "main").strip()
    history(side.documents, HAIKU)
    (repo_path / graft).parent.mkdir(exist_ok=True)
    (repo_path / graft).write_text(f"{main}\n")
    published = side.documents.published(HAIKU)
    assert published is not None
    side.editor.save(HAIKU, published.comparison, EDITOR, published.revision)
    walks.clear()
    after = [entry.sha for entry in history(side.documents, HAIKU)]
    assert walks
    assert not any("--not" in walk for walk in walks)
    assert after == git(repo_path, "log", "--format=%H", "--date-order", "main",
                        f"cms/comparisons/{HAIKU}", "--", PATH).split()
