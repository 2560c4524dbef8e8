"""Assignment: who is asked to review a draft (a commit that leaves the revision alone), and the
list of what awaits each person."""

from __future__ import annotations

from pathlib import Path

from litestar.testing import TestClient

from ..conftest import HAIKU, git
from ..helpers import Headers, act, read_draft, save_revision

Client = TestClient  # type: ignore[type-arg]
ROUTE = f"/api/drafts/{HAIKU}/assignees"


def submitted_draft(client: Client, tokens: dict[str, Headers]) -> str:
    saved = save_revision(client, HAIKU, tokens["editor"])
    return f'"{act(client, HAIKU, "submit", tokens["editor"], saved)["revision"]}"'


def test_assigning_asks_people_and_keeps_the_revision(client: Client, tokens: dict[str, Headers],
                                                      repo_path: Path) -> None:
    refused = client.put(ROUTE, json={"reviewers": ["rob@example.com"]},
                         headers=tokens["editor"])
    assert (refused.status_code, refused.json()["field"]) == (409, "slug")  # no draft yet
    etag = submitted_draft(client, tokens)
    assigned = client.put(ROUTE, json={"reviewers": ["Rob@Example.com", "rob@example.com"]},
                          headers=tokens["editor"])
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["reviewers"] == ["rob@example.com"]
    assert assigned.json()["by"] == "Ada Editor <ada@example.com>"
    head = git(repo_path, "rev-parse", f"refs/heads/cms/comparisons/{HAIKU}").strip()
    again = client.put(ROUTE, json={"reviewers": ["rob@example.com"]}, headers=tokens["editor"])
    assert again.status_code == 200
    assert git(repo_path, "rev-parse", f"refs/heads/cms/comparisons/{HAIKU}").strip() == head
    assert read_draft(client, HAIKU, tokens["editor"])[1] == etag  # the revision stands
    head = git(repo_path, "rev-parse", f"refs/heads/cms/comparisons/{HAIKU}").strip()
    assert git(repo_path, "log", "-1", "--format=%(trailers:key=Cms-Assignee,valueonly)",
               head).strip() == "rob@example.com"
    unknown = client.put(ROUTE, json={"reviewers": ["nobody@example.com"]},
                         headers=tokens["editor"])
    assert (unknown.status_code, unknown.json()["field"]) == (422, "reviewers")
    malformed = client.put(ROUTE, json={"reviewers": ["not an address"]},
                           headers=tokens["editor"])
    assert malformed.status_code == 422
    assert client.put(ROUTE, json={"reviewers": []},
                      headers=tokens["auditor"]).status_code == 403
    assert client.get(ROUTE, headers=tokens["auditor"]).json()["reviewers"] == ["rob@example.com"]


def test_what_awaits_each_person(client: Client, tokens: dict[str, Headers]) -> None:
    submitted_draft(client, tokens)
    client.put(ROUTE, json={"reviewers": ["rob@example.com"]}, headers=tokens["editor"])
    mine = client.get("/api/me/reviews", headers=tokens["reviewer2"]).json()
    assert [(item["slug"], item["assigned"]) for item in mine] == [(HAIKU, True)]
    assert set(mine[0]["actions"]) == {"approve", "request_changes"}
    open_to_role = client.get("/api/me/reviews", headers=tokens["reviewer"]).json()
    assert [(item["slug"], item["assigned"]) for item in open_to_role] == [(HAIKU, False)]
    # The editor who wrote it, a publisher before approval, an auditor: nothing awaits them.
    for who in ("editor", "publisher", "auditor"):
        assert client.get("/api/me/reviews", headers=tokens[who]).json() == [], who
    approved = act(client, HAIKU, "approve", tokens["reviewer2"],
                   read_draft(client, HAIKU, tokens["editor"])[1])
    assert approved["state"] == "approved"
    publisher = client.get("/api/me/reviews", headers=tokens["publisher"]).json()
    assert [item["actions"] for item in publisher] == [["publish"]]
