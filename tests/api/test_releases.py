"""Releases: comparisons gathered, then published together in one commit on main, or not at
all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from cms.audit.verify import verify

from ..conftest import HAIKU, git
from ..helpers import Headers, act, new_document

Client = TestClient  # type: ignore[type-arg]
SLUGS = ["release-one", "release-two", "release-three"]


def draft(client: Client, tokens: dict[str, Headers], slug: str,
          approve: bool = True) -> dict[str, Any]:
    base = client.get(f"/api/comparisons/{HAIKU}").json()
    created = client.post("/api/drafts", json=new_document(base, slug, f"Release {slug}"),
                          headers=tokens["editor"])
    assert created.status_code == 201, created.text
    document = act(client, slug, "submit", tokens["editor"], created.headers["etag"])
    if approve:
        document = act(client, slug, "approve", tokens["reviewer"],
                       f'"{document["revision"]}"')
    return document


def gather(client: Client, tokens: dict[str, Headers], slugs: list[str],
           title: str = "Week 49 refresh") -> dict[str, Any]:
    created = client.post("/api/releases", json={"title": title, "slugs": slugs},
                          headers=tokens["editor"])
    assert created.status_code == 201, created.text
    return created.json()  # type: ignore[no-any-return]


def test_a_release_reaches_main_in_one_commit(client: Client, tokens: dict[str, Headers],
                                              repo_path: Path) -> None:
    for slug in SLUGS:
        draft(client, tokens, slug)
    release = gather(client, tokens, SLUGS)
    assert release["id"].startswith("r_")
    assert release["published"] is False
    assert release["slugs"] == SLUGS
    before = git(repo_path, "rev-parse", "main").strip()
    published = client.post(f"/api/releases/{release['id']}/publish",
                            headers=tokens["publisher"])
    assert published.status_code == 200, published.text
    assert published.json()["published"] is True
    # One commit, whose first parent is main as it was.
    assert git(repo_path, "rev-parse", "main^").strip() == before
    parents = git(repo_path, "log", "-1", "--format=%P", "main").split()
    assert len(parents) == 5  # main, three review branches, the release
    assert parents[-1] == release["commit"]
    trailers = git(repo_path, "log", "-1", "--format=%(trailers)", "main")
    assert "Cms-Action: publish" in trailers
    assert f"Cms-Release: {release['id']}" in trailers
    for slug in SLUGS:
        assert f"Cms-Document: comparisons/{slug}" in trailers
        assert client.get(f"/api/comparisons/{slug}").status_code == 200
        assert git(repo_path, "for-each-ref", f"refs/heads/cms/comparisons/{slug}") == ""
    assert "Approved-by: Rita Reviewer <rita@example.com>" in trailers
    services = client.app.state.services
    assert verify(services.documents, services.workflows, services.pipeline.committer).ok
    history = client.get(f"/api/comparisons/{SLUGS[1]}/history",
                         headers=tokens["auditor"]).json()["entries"]
    assert history[0]["action"] == "publish"
    assert history[0]["sha"] == git(repo_path, "rev-parse", "main").strip()
    feed = client.get("/api/feed.json").json()
    assert {item["url"].rsplit("/", 1)[-1] for item in feed["items"][:3]} == set(SLUGS)
    again = client.post(f"/api/releases/{release['id']}/publish", headers=tokens["publisher"])
    assert again.status_code == 409, again.text
    listed = client.get("/api/releases", headers=tokens["auditor"]).json()["items"]
    assert [(item["id"], item["published"]) for item in listed] == [(release["id"], True)]


def test_a_release_is_all_or_nothing(client: Client, tokens: dict[str, Headers],
                                     repo_path: Path) -> None:
    draft(client, tokens, SLUGS[0])
    draft(client, tokens, SLUGS[1], approve=False)
    draft(client, tokens, SLUGS[2])
    release = gather(client, tokens, SLUGS)
    refs = git(repo_path, "for-each-ref")
    refused = client.post(f"/api/releases/{release['id']}/publish",
                          headers=tokens["publisher"])
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["field"] == "slugs"
    assert list(body["refused"]) == [SLUGS[1]]
    assert "in_review" in body["refused"][SLUGS[1]]
    assert SLUGS[1] in body["message"]
    assert git(repo_path, "for-each-ref") == refs
    for slug in SLUGS:
        assert client.get(f"/api/comparisons/{slug}").status_code == 404
    assert client.get(f"/api/releases/{release['id']}",
                      headers=tokens["editor"]).json()["published"] is False


def test_who_may_gather_and_publish_a_release(client: Client, tokens: dict[str, Headers]
                                              ) -> None:
    draft(client, tokens, SLUGS[0])
    refused = client.post("/api/releases", json={"title": "T", "slugs": [SLUGS[0]]},
                          headers=tokens["reviewer"])
    assert refused.status_code == 403
    release = gather(client, tokens, [SLUGS[0]])
    editor = client.post(f"/api/releases/{release['id']}/publish", headers=tokens["editor"])
    assert editor.status_code == 403
    # An approver of one of them may publish (approving is not authoring) but an author may
    # not approve: the workflow's rules hold for each comparison of a release.
    done = client.post(f"/api/releases/{release['id']}/publish", headers=tokens["admin"])
    assert done.status_code == 200, done.text


def test_bad_releases_are_refused(client: Client, tokens: dict[str, Headers],
                                  repo_path: Path) -> None:
    refs = git(repo_path, "for-each-ref")
    for body, status, field in [
        ({"title": "T", "slugs": ["no-such-comparison"]}, 404, "slugs"),
        ({"title": "T", "slugs": []}, 422, "slugs"),
        ({"title": "   ", "slugs": [HAIKU]}, 422, "title"),
        ({"title": "a\nCms-Action: publish", "slugs": [HAIKU]}, 422, "title"),
        ({"title": "T", "slugs": ["../main"]}, 422, "slugs[0]"),
    ]:
        answer = client.post("/api/releases", json=body, headers=tokens["editor"])
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["field"] == field, answer.json()
    assert git(repo_path, "for-each-ref") == refs
    for unknown in ("r_000000000000", "nope"):
        answer = client.get(f"/api/releases/{unknown}", headers=tokens["editor"])
        assert answer.status_code == 404
        assert answer.json()["field"] == "release_id"


def test_a_release_may_bring_back_what_was_taken_down(client: Client,
                                                      tokens: dict[str, Headers]) -> None:
    """Its branch is main itself (the takedown): the publication merges main and the release,
    and verify accepts it."""
    live = client.get(f"/api/comparisons/{HAIKU}")
    act(client, HAIKU, "unpublish", tokens["publisher"], live.headers["etag"])
    release = gather(client, tokens, [HAIKU], title="Bring it back")
    published = client.post(f"/api/releases/{release['id']}/publish",
                            headers=tokens["publisher"])
    assert published.status_code == 200, published.text
    assert client.get(f"/api/comparisons/{HAIKU}").status_code == 200
    services = client.app.state.services
    report = verify(services.documents, services.workflows, services.pipeline.committer)
    assert report.ok, report.findings


def test_a_release_title_is_one_visible_line_kept_as_written(
        client: Client, tokens: dict[str, Headers]) -> None:
    draft(client, tokens, SLUGS[0])
    for bad in ("\u200b", "a\x86b", "a\u2028b", " padded", "padded "):
        refused = client.post("/api/releases", json={"title": bad, "slugs": [SLUGS[0]]},
                              headers=tokens["editor"])
        assert refused.status_code == 422, bad
        assert refused.json()["field"] == "title"
    for title in ("# Week 49", "--- tidy", "Ünïcode > 8 ✓"):
        made = gather(client, tokens, [SLUGS[0]], title=title)
        assert made["title"] == title
        assert client.get(f"/api/releases/{made['id']}",
                          headers=tokens["editor"]).json()["title"] == title


def test_the_first_publication_in_a_repository_made_empty_is_a_merge(
        tmp_path: Path) -> None:
    from cms.config import load_settings
    from cms.editing.seed import initialise
    from cms.editing.write_side import open_write_side

    from ..helpers import EDITOR, PUBLISHER, REVIEWER
    settings = load_settings({}, repo=tmp_path / "empty.git", data=tmp_path / "data")
    initialise(settings, None)
    side = open_write_side(settings)
    assert side.documents.main_head() is not None  # the definitions in force, at least
    seed = side.documents.repo
    assert seed.subtree(seed.read_commit(side.documents.main_head() or "").tree,
                        ".cms/workflows") is not None
    from cms.bundled import samples
    from cms.editing.seed import seed_comparisons
    comparison = seed_comparisons(samples())[0]
    draft = side.editor.create(comparison, EDITOR)
    submitted = side.editor.transition(comparison.slug, "submit", EDITOR, draft.revision)
    approved = side.editor.transition(comparison.slug, "approve", REVIEWER, submitted.revision)
    side.editor.transition(comparison.slug, "publish", PUBLISHER, approved.revision)
    report = verify(side.documents, side.workflows, side.pipeline.committer)
    assert report.ok, report.findings
    assert report.checked == 2
