"""The editorial path end to end through the real app and a real git repository."""

from __future__ import annotations

from pathlib import Path

from litestar.testing import TestClient

from ..conftest import HAIKU, git
from ..helpers import Headers, act, new_document, read_draft

NEW = "cursor-vs-windsurf"


def create(client: TestClient, tokens: dict[str, Headers], slug: str = NEW) -> str:  # type: ignore[type-arg]
    base = client.get(f"/api/comparisons/{HAIKU}").json()
    document = new_document(base, slug, "Cursor vs Windsurf")
    response = client.post("/api/drafts", json=document, headers=tokens["editor"])
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "draft"
    return response.headers["etag"]


def test_draft_review_publish_and_read_back(
    client: TestClient, tokens: dict[str, Headers], repo_path: Path  # type: ignore[type-arg]
) -> None:
    etag = create(client, tokens)
    assert client.get(f"/api/comparisons/{NEW}").status_code == 404

    doc = act(client, NEW, "submit", tokens["editor"], etag)
    assert doc["state"] == "in_review"
    doc = act(client, NEW, "approve", tokens["reviewer"], f'"{doc["revision"]}"',
              comment="Verdicts are well argued.")
    assert doc["state"] == "approved"
    assert doc["workflow"]["approved_by"] == ["Rita Reviewer <rita@example.com>"]
    doc = act(client, NEW, "publish", tokens["publisher"], f'"{doc["revision"]}"')
    assert doc["state"] == "published"

    public = client.get(f"/api/comparisons/{NEW}")
    assert public.status_code == 200
    body = public.json()
    assert body["title"] == "Cursor vs Windsurf"
    assert body["workflow"]["published_at"]
    assert public.headers["etag"] == f'"{body["revision"]}"'
    assert client.get("/api/drafts", headers=tokens["editor"]).json()["items"] == []

    log = git(repo_path, "log", "--first-parent",
              "--format=%s|%an|%(trailers:key=Approved-by,valueonly)", "main")
    first = log.splitlines()[0]
    assert first.startswith("Publish: Cursor vs Windsurf|Paul Publisher|Rita Reviewer <rita@example.com>")
    trailers = git(repo_path, "log", "-1", "--format=%(trailers)", "main")
    assert "Cms-Action: publish" in trailers
    assert f"Cms-Document: comparisons/{NEW}" in trailers
    assert "Cms-State: published" in trailers
    parents = git(repo_path, "log", "-1", "--format=%P", "main").split()
    assert len(parents) == 2
    assert git(repo_path, "branch", "--list", "cms/*").strip() == ""


def test_every_state_change_is_one_commit_by_the_actor(
    client: TestClient, tokens: dict[str, Headers], repo_path: Path  # type: ignore[type-arg]
) -> None:
    etag = create(client, tokens)
    doc = act(client, NEW, "submit", tokens["editor"], etag)
    doc = act(client, NEW, "request_changes", tokens["reviewer"], f'"{doc["revision"]}"',
              comment="Cite the pricing page.")
    assert doc["state"] == "changes_requested"
    branch = f"refs/heads/cms/comparisons/{NEW}"
    lines = git(repo_path, "log", "--format=%an|%cn|%s|%(trailers:key=Cms-Action,valueonly)",
                f"main..{branch}").split("\n")
    entries = [line for line in lines if line]
    assert entries == [
        "Rita Reviewer|CMS|Request changes: Cursor vs Windsurf|request_changes",
        "Ada Editor|CMS|Submit for review: Cursor vs Windsurf|submit",
        "Ada Editor|CMS|Create: Cursor vs Windsurf|create",
    ]
    body = git(repo_path, "log", "-1", "--format=%b", branch)
    assert body.startswith("Cite the pricing page.")


def test_published_stays_served_while_next_revision_is_drafted(
    client: TestClient, tokens: dict[str, Headers]  # type: ignore[type-arg]
) -> None:
    public = client.get(f"/api/comparisons/{HAIKU}")
    document = public.json()
    document["summary"] = "A revised summary, still in review."
    response = client.put(f"/api/drafts/{HAIKU}", json=document,
                          headers={**tokens["editor"], "If-Match": public.headers["etag"]})
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "draft"
    assert response.json()["workflow"]["authors"] == ["Ada Editor <ada@example.com>"]

    again = client.get(f"/api/comparisons/{HAIKU}")
    assert again.json()["summary"] == public.json()["summary"]
    assert again.headers["etag"] == public.headers["etag"]
    draft, _ = read_draft(client, HAIKU, tokens["reviewer"])
    assert draft["summary"] == "A revised summary, still in review."


def test_author_may_not_approve_own_work_even_with_both_roles(
    client: TestClient, tokens: dict[str, Headers]  # type: ignore[type-arg]
) -> None:
    base = client.get(f"/api/comparisons/{HAIKU}").json()
    document = new_document(base, NEW, "Cursor vs Windsurf")
    created = client.post("/api/drafts", json=document, headers=tokens["both"])
    assert created.status_code == 201
    doc = act(client, NEW, "submit", tokens["both"], created.headers["etag"])
    response = client.post(f"/api/drafts/{NEW}/transitions", json={"action": "approve"},
                           headers={**tokens["both"], "If-Match": f'"{doc["revision"]}"'})
    assert response.status_code == 403
    assert response.json()["rule"] == "self_approval"
    doc = act(client, NEW, "approve", tokens["reviewer"], f'"{doc["revision"]}"')
    assert doc["state"] == "approved"


def test_illegal_transition_names_state_and_allowed_actions(
    client: TestClient, tokens: dict[str, Headers]  # type: ignore[type-arg]
) -> None:
    etag = create(client, tokens)
    response = client.post(f"/api/drafts/{NEW}/transitions", json={"action": "publish"},
                           headers={**tokens["publisher"], "If-Match": etag})
    assert response.status_code == 409
    error = response.json()
    assert error["code"] == "transition_not_allowed"
    assert error["state"] == "draft"
    assert "submit" in error["allowed"]
    assert "draft" in error["message"]


def test_unpublish_then_republish(
    client: TestClient, tokens: dict[str, Headers], repo_path: Path  # type: ignore[type-arg]
) -> None:
    etag = client.get(f"/api/comparisons/{HAIKU}").headers["etag"]
    doc = act(client, HAIKU, "unpublish", tokens["publisher"], etag, comment="Licence unclear")
    assert doc["state"] == "unpublished"
    assert client.get(f"/api/comparisons/{HAIKU}").status_code == 404
    assert HAIKU not in git(repo_path, "ls-tree", "-r", "--name-only", "main")
    drafts = client.get("/api/drafts?state=unpublished", headers=tokens["auditor"]).json()
    assert [item["slug"] for item in drafts["items"]] == [HAIKU]

    doc = act(client, HAIKU, "publish", tokens["publisher"], f'"{doc["revision"]}"')
    assert doc["state"] == "published"
    assert client.get(f"/api/comparisons/{HAIKU}").status_code == 200
    subjects = git(repo_path, "log", "--first-parent", "--format=%s", "main").splitlines()
    assert subjects[:2] == [
        "Publish: Claude Haiku Open Weights vs Gemini 2.5 Flash Native Audio…",
        "Unpublish: Claude Haiku Open Weights vs Gemini 2.5 Flash Native Audio…",
    ]


def test_discard_removes_work_in_progress_but_keeps_it_in_git(
    client: TestClient, tokens: dict[str, Headers], repo_path: Path  # type: ignore[type-arg]
) -> None:
    etag = create(client, tokens)
    response = client.delete(f"/api/drafts/{NEW}", headers={**tokens["editor"], "If-Match": etag})
    assert response.status_code == 204
    assert client.get(f"/api/drafts/{NEW}", headers=tokens["editor"]).status_code == 404
    archived = git(repo_path, "for-each-ref", "--format=%(refname)", "refs/cms/discarded/")
    assert archived.startswith(f"refs/cms/discarded/comparisons/{NEW}/")
    history = client.get(f"/api/comparisons/{NEW}/history", headers=tokens["auditor"]).json()
    assert [entry["action"] for entry in history["entries"]] == ["discard", "create"]


def test_history_lists_actor_action_state_and_approvers(
    client: TestClient, tokens: dict[str, Headers]  # type: ignore[type-arg]
) -> None:
    etag = create(client, tokens)
    doc = act(client, NEW, "submit", tokens["editor"], etag)
    doc = act(client, NEW, "approve", tokens["reviewer"], f'"{doc["revision"]}"', comment="Good")
    act(client, NEW, "publish", tokens["publisher"], f'"{doc["revision"]}"')
    response = client.get(f"/api/comparisons/{NEW}/history", headers=tokens["auditor"])
    assert response.status_code == 200
    entries = response.json()["entries"]
    assert [(e["action"], e["state"], e["actor"]["name"]) for e in entries] == [
        ("publish", "published", "Paul Publisher"),
        ("approve", "approved", "Rita Reviewer"),
        ("submit", "in_review", "Ada Editor"),
        ("create", "draft", "Ada Editor"),
    ]
    assert entries[0]["approvers"] == ["Rita Reviewer <rita@example.com>"]
    assert entries[1]["comment"] == "Good"
    assert entries[1]["approvers"] == ["Rita Reviewer <rita@example.com>"]
    assert entries[2]["approvers"] == []


def test_unpublish_works_while_a_next_revision_is_drafted(
    client: TestClient, tokens: dict[str, Headers], repo_path: Path  # type: ignore[type-arg]
) -> None:
    public = client.get(f"/api/comparisons/{HAIKU}")
    document = dict(public.json(), summary="Next revision, in progress.")
    draft = client.put(f"/api/drafts/{HAIKU}", json=document,
                       headers={**tokens["editor"], "If-Match": public.headers["etag"]})
    assert draft.status_code == 200
    taken_down = act(client, HAIKU, "unpublish", tokens["publisher"], public.headers["etag"])
    assert taken_down["summary"] == "Next revision, in progress."  # the draft lives on
    assert client.get(f"/api/comparisons/{HAIKU}").status_code == 404
    current = client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"])
    assert current.json()["revision"] == draft.json()["revision"]
    assert "Unpublish:" in git(repo_path, "log", "-1", "--format=%s", "main")


def test_a_body_with_windows_line_endings_is_stored_canonical(
        client: TestClient, tokens: dict[str, Headers]) -> None:  # type: ignore[type-arg]
    published = client.get(f"/api/comparisons/{HAIKU}").json()
    document = new_document(published, "crlf-comparison", "Written in a browser")
    document["body"] = "Line one\r\n\r\nLine two\r\n\r\n"
    created = client.post("/api/drafts", json=document, headers=tokens["editor"])
    assert created.status_code == 201, created.text
    assert created.json()["body"] == "Line one\n\nLine two\n"


def test_a_fold_of_votes_does_not_make_an_editors_revision_stale(
        client: TestClient, tokens: dict[str, Headers]) -> None:  # type: ignore[type-arg]
    read = client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"])
    document, etag = read.json(), read.headers["etag"]
    tool = document["tools"][0]["id"]
    assert client.post(f"/api/comparisons/{HAIKU}/votes",
                       json={"tool": tool, "vote": "ship"}).status_code == 202
    folded = client.post("/api/votes/fold", headers=tokens["admin"])
    assert folded.status_code == 200, folded.text
    assert client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"]).headers["etag"] != etag
    document["summary"] = "Edited while the public voted."
    saved = client.put(f"/api/drafts/{HAIKU}", json=document,
                       headers={**tokens["editor"], "If-Match": etag})
    assert saved.status_code == 200, saved.text
    # The tallies are the folded ones, not those of the revision the editor read.
    assert saved.json()["tools"][0]["community"]["ship"] == document["tools"][0]["community"][
        "ship"] + 1
    # A change of content meanwhile is still a conflict.
    stale = client.put(f"/api/drafts/{HAIKU}", json=document,
                       headers={**tokens["editor"], "If-Match": etag})
    assert stale.status_code == 412
