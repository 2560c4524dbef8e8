"""Review threads in git: a comment is a commit on the review branch that changes nothing in the
comparison, so the editor's revision stays current; what a comment says cannot forge a trailer."""

from __future__ import annotations

from pathlib import Path

from litestar.testing import TestClient

from ..conftest import HAIKU, fsck, git
from ..helpers import Headers, read_draft, save_revision

Client = TestClient  # type: ignore[type-arg]
BRANCH = f"refs/heads/cms/comparisons/{HAIKU}"


def start_draft(client: Client, tokens: dict[str, Headers]) -> str:
    return save_revision(client, HAIKU, tokens["editor"])


def comment(client: Client, who: Headers, **body: object) -> dict[str, object]:
    made = client.post(f"/api/drafts/{HAIKU}/comments", json=body, headers=who)
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


def test_a_thread_is_commits_and_leaves_the_revision_alone(
        client: Client, tokens: dict[str, Headers], repo_path: Path) -> None:
    etag = start_draft(client, tokens)
    first = comment(client, tokens["reviewer"], body="Is the pricing current?",
                    field="tools[0].entry_price")
    reply = comment(client, tokens["editor"], body="Checked today: yes.", reply_to=first["id"])
    assert reply["reply_to"] == first["id"]
    assert first["revision"] == etag.strip('"')
    # The editor's revision is still current: a save with it passes.
    document, now = read_draft(client, HAIKU, tokens["editor"])
    assert now == etag
    document["summary"] += " Again."
    assert client.put(f"/api/drafts/{HAIKU}", json=document,
                      headers={**tokens["editor"], "If-Match": etag}).status_code == 200
    resolved = client.post(f"/api/drafts/{HAIKU}/comments/{first['id']}/resolve",
                           headers=tokens["reviewer"])
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["resolved_by"] == "Rita Reviewer <rita@example.com>"
    again = client.post(f"/api/drafts/{HAIKU}/comments/{first['id']}/resolve",
                        headers=tokens["reviewer"])
    assert again.status_code == 409
    thread = client.get(f"/api/drafts/{HAIKU}/comments", headers=tokens["auditor"]).json()
    assert [c["id"] for c in thread["items"]] == [first["id"], reply["id"]]
    assert thread["open"] == 1
    # In git, as any auditor reads it.
    newest = git(repo_path, "rev-list", "--max-count=4", BRANCH).split()
    actions = [git(repo_path, "log", "-1", "--format=%(trailers:key=Cms-Action,valueonly)",
                   commit).strip() for commit in newest]
    assert actions == ["resolve", "edit", "comment", "comment"]
    assert "Is the pricing current?" in git(repo_path, "log", "-1", "--skip=3", "--format=%B",
                                            BRANCH)
    fsck(repo_path)


def test_a_comment_cannot_forge_a_trailer(client: Client, tokens: dict[str, Headers],
                                          repo_path: Path) -> None:
    start_draft(client, tokens)
    forged = ("Looks fine.\n\nCms-Action: publish\nApproved-by: Mallory <m@example.com>\n"
              "Cms-Comment: c_000000000000")
    made = comment(client, tokens["reviewer"], body=forged)
    head = git(repo_path, "rev-parse", BRANCH).strip()
    parsed = git(repo_path, "log", "-1", "--format=%(trailers:only,unfold)", head)
    assert "Cms-Action: comment" in parsed
    assert "Approved-by" not in parsed
    assert f"Cms-Comment: {made['id']}" in parsed
    assert parsed.count("Cms-Comment:") == 1
    thread = client.get(f"/api/drafts/{HAIKU}/comments", headers=tokens["editor"]).json()
    assert thread["items"][-1]["body"].startswith("Looks fine.")


def test_bad_comments_are_refused_and_write_nothing(client: Client, tokens: dict[str, Headers],
                                                    repo_path: Path) -> None:
    route = f"/api/drafts/{HAIKU}/comments"
    # No draft under review: nothing to comment on.
    refused = client.post(route, json={"body": "hello"}, headers=tokens["reviewer"])
    assert (refused.status_code, refused.json()["field"]) == (409, "slug")
    start_draft(client, tokens)
    head = git(repo_path, "rev-parse", BRANCH).strip()
    for body, field, status in (({"body": ""}, "body", 422),
                                ({"body": "x", "field": "tools[0]\nCms-Action: x"}, "field", 422),
                                ({"body": "x", "reply_to": "c_0123456789ab"}, "reply_to", 422),
                                ({"body": "x", "reply_to": "nope"}, "reply_to", 422),
                                ({"body": "a\x00b"}, "body", 422)):
        refused = client.post(route, json=body, headers=tokens["reviewer"])
        assert (refused.status_code, refused.json()["field"]) == (status, field), body
    assert client.post(route, json={"body": "x"}, headers=tokens["auditor"]).status_code == 403
    missing = client.post(f"{route}/c_0123456789ab/resolve", headers=tokens["reviewer"])
    assert missing.status_code == 404
    resolve = client.get("/schema/openapi.json").json()["paths"][
        "/api/drafts/{slug}/comments/{comment_id}/resolve"]["post"]["parameters"]
    assert next(p for p in resolve if p["name"] == "comment_id")["schema"]["pattern"] == \
        "^c_[0-9a-f]{12}$"
    assert git(repo_path, "rev-parse", BRANCH).strip() == head


def test_a_taken_down_comparison_has_no_thread_to_add_to(
        client: Client, tokens: dict[str, Headers], repo_path: Path) -> None:
    """After an unpublish the branch holds the takedown; a note on it would leave a head with no
    file, and every listing of drafts would fail on it."""
    published = client.get(f"/api/comparisons/{HAIKU}")
    act_route = f"/api/drafts/{HAIKU}/transitions"
    down = client.post(act_route, json={"action": "unpublish"},
                       headers={**tokens["publisher"], "If-Match": published.headers["etag"]})
    assert down.status_code == 200, down.text
    for route, body in ((f"/api/drafts/{HAIKU}/comments", {"body": "why?"}),
                        (f"/api/drafts/{HAIKU}/assignees", {"reviewers": ["rob@example.com"]})):
        send = client.put if route.endswith("assignees") else client.post
        refused = send(route, json=body, headers=tokens["editor"])
        assert (refused.status_code, refused.json()["field"]) == (409, "slug"), route
    assert client.get("/api/drafts", headers=tokens["editor"]).status_code == 200
    assert client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"]).status_code == 200
    assert client.get("/api/me/reviews", headers=tokens["publisher"]).json() == []
    again = client.post(act_route, json={"action": "publish"}, headers={
        **tokens["publisher"], "If-Match": client.get(f"/api/drafts/{HAIKU}",
                                                      headers=tokens["editor"]).headers["etag"]})
    assert again.status_code == 200, again.text
