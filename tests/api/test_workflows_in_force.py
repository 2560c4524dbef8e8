"""The workflow definitions in force live on main: put there when the repository is made,
changed only by an admin (a checked commit), obeyed by every server from the next write, and
each commit is verified against the definitions in force when it was made."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from litestar.testing import TestClient

from cms.api.services import build_services
from cms.audit.verify import verify
from cms.config import Settings
from cms.editing.write_side import open_write_side
from cms.errors import InvalidContent

from ..conftest import HAIKU, git
from ..helpers import Headers, act, save_revision

Client = TestClient  # type: ignore[type-arg]
DEFAULT = (Path(__file__).resolve().parents[2] / "workflows" / "default.toml").read_text()
TWO_APPROVALS = DEFAULT.replace("approvals_required = 1", "approvals_required = 2")


def push(client: Client, who: Headers, text: str, name: str = "default",
         expect: int = 200) -> dict[str, object]:
    response = client.put(f"/api/workflows/{name}", headers=who,
                          json={"definition": text, "comment": "Two reviewers from now on."})
    assert response.status_code == expect, response.text
    return response.json()  # type: ignore[no-any-return]


def test_the_definitions_are_on_main_and_readable(client: Client, tokens: dict[str, Headers],
                                                  repo_path: Path) -> None:
    files = git(repo_path, "ls-tree", "--name-only", "main", ".cms/workflows/").split()
    assert files == [".cms/workflows/default.toml", ".cms/workflows/two-step.toml"]
    listed = client.get("/api/workflows", headers=tokens["editor"]).json()["items"]
    assert [(item["name"], item["default"]) for item in listed] == [
        ("default", True), ("two-step", False)]
    assert listed[0]["definition"] == DEFAULT
    assert listed[1]["approvals_to_publish"] == 2
    assert client.get("/api/workflows/nope", headers=tokens["editor"]).status_code == 404
    assert client.get("/api/workflows/NOPE..", headers=tokens["editor"]).status_code == 404
    assert client.get("/api/workflows").status_code == 401


def test_an_admin_changes_the_rules_and_they_hold_from_the_next_write(
        client: Client, tokens: dict[str, Headers], repo_path: Path) -> None:
    # Published under one approval.
    etag = save_revision(client, HAIKU, tokens["editor"])
    submitted = act(client, HAIKU, "submit", tokens["editor"], etag)
    approved = act(client, HAIKU, "approve", tokens["reviewer"], f'"{submitted["revision"]}"')
    act(client, HAIKU, "publish", tokens["publisher"], f'"{approved["revision"]}"')
    push(client, tokens["editor"], TWO_APPROVALS, expect=403)
    before = git(repo_path, "rev-parse", "main").strip()
    pushed = push(client, tokens["admin"], TWO_APPROVALS)
    assert pushed["definition"] == TWO_APPROVALS
    assert git(repo_path, "rev-parse", "main^").strip() == before
    trailers = git(repo_path, "log", "-1", "--format=%(trailers)", "main")
    assert "Cms-Action: workflows" in trailers
    assert git(repo_path, "diff", "--name-only", "main^", "main").split() == [
        ".cms/workflows/default.toml"]
    assert git(repo_path, "log", "-1", "--format=%an|%b", "main").startswith(
        "Ann Admin|Two reviewers from now on.")
    # The same push again writes nothing.
    push(client, tokens["admin"], TWO_APPROVALS)
    assert git(repo_path, "rev-parse", "main^").strip() == before
    # Now one approval is not enough.
    etag = save_revision(client, HAIKU, tokens["editor"], " Again.")
    submitted = act(client, HAIKU, "submit", tokens["editor"], etag)
    once = act(client, HAIKU, "approve", tokens["reviewer"], f'"{submitted["revision"]}"')
    assert once["state"] == "in_review"
    twice = act(client, HAIKU, "approve", tokens["reviewer2"], f'"{once["revision"]}"')
    assert twice["state"] == "approved"
    act(client, HAIKU, "publish", tokens["publisher"], f'"{twice["revision"]}"')
    # Each publication is held to the rules of its time: the first, made under one approval,
    # stays valid.
    services = client.app.state.services
    report = verify(services.documents, services.workflows, services.pipeline.committer)
    assert report.ok, report.findings


@pytest.mark.parametrize(("text", "reason"), [
    (DEFAULT.replace('roles = ["reviewer"]\n# Adds', 'roles = ["reviewr"]\n# Adds'),
     "transitions.approve.roles: `reviewr` is not a role"),
    (DEFAULT.replace('name = "default"', 'name = "other"'), "differs from the file's name"),
    ("name = [", "default.toml"),
])
def test_bad_definitions_are_refused_and_nothing_is_written(
        client: Client, tokens: dict[str, Headers], repo_path: Path, text: str,
        reason: str) -> None:
    before = git(repo_path, "rev-parse", "main").strip()
    refused = push(client, tokens["admin"], text, expect=422)
    assert refused["field"] == "workflow"
    assert ".cms/workflows/default.toml" in str(refused["message"]) or \
        "default.toml" in str(refused["message"])
    assert reason in str(refused["message"])
    assert git(repo_path, "rev-parse", "main").strip() == before


def test_another_server_obeys_a_push_at_once(client: Client, tokens: dict[str, Headers],
                                             settings: Settings) -> None:
    other = open_write_side(settings)
    assert other.workflows.default.approvals_required == 1
    push(client, tokens["admin"], TWO_APPROVALS)
    assert other.workflows.default.approvals_required == 2


def test_a_server_does_not_start_on_definitions_pushed_around_the_cms(
        settings: Settings, repo_path: Path) -> None:
    """Plain git can put anything on main; a server refuses to follow broken rules."""
    work = repo_path.parent / "work"
    subprocess.run(["git", "clone", "-q", str(repo_path), str(work)], check=True)
    (work / ".cms" / "workflows" / "default.toml").write_text("name = [\n")
    for command in (["add", "-A"], ["-c", "user.name=M", "-c", "user.email=m@example.com",
                                    "commit", "-qm", "Break"], ["push", "-q", "origin", "main"]):
        subprocess.run(["git", "-C", str(work), *command], check=True)
    with pytest.raises(InvalidContent) as refused:
        build_services(settings)
    assert ".cms/workflows on main/default.toml" in refused.value.message
    # Reset, so the fixture's fsck sees a repository the CMS would serve again.
    git(repo_path, "update-ref", "refs/heads/main", "main^")


def test_the_contract_names_the_actions_of_the_rules_in_force(
        client: Client, tokens: dict[str, Headers]) -> None:
    def actions() -> list[str]:
        document = client.get("/schema/openapi.json").json()
        return document["components"]["schemas"]["TransitionIn"]["properties"]["action"]["enum"]

    assert "legal_approve" not in actions()
    push(client, tokens["admin"], DEFAULT.replace("[transitions.approve]",
                                                  "[transitions.legal_approve]"))
    assert "legal_approve" in actions()


def test_a_push_may_not_strand_a_comparison_in_a_state_it_removes(
        client: Client, tokens: dict[str, Headers], repo_path: Path) -> None:
    etag = save_revision(client, HAIKU, tokens["editor"])
    act(client, HAIKU, "submit", tokens["editor"], etag)  # in_review
    without = DEFAULT.replace("in_review", "under_review")  # the state renamed
    before = git(repo_path, "rev-parse", "main").strip()
    refused = push(client, tokens["admin"], without, expect=409)
    assert refused["field"] == "workflow"
    assert f"`{HAIKU}` is `in_review`" in str(refused["message"])
    assert git(repo_path, "rev-parse", "main").strip() == before
    # And nobody's request meets a state the rules lack: the draft is still served.
    assert client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"]).status_code == 200
