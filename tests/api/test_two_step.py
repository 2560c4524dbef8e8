"""The two-step workflow over HTTP: a panel reviewer approves, then a chief gives the final
approval, two different people, neither of them an author; an edit voids the approvals given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from cms.audit.verify import verify
from cms.identity.tokens import TokenStore

from ..conftest import HAIKU, git
from ..helpers import Headers, act, new_document, read_draft

Client = TestClient  # type: ignore[type-arg]
SLUG = "two-step-comparison"


def create(client: Client, tokens: dict[str, Headers], workflow: Any = "two-step",
           slug: str = SLUG) -> tuple[dict[str, Any], str]:
    base = client.get(f"/api/comparisons/{HAIKU}").json()
    document = new_document(base, slug, "Two Step Comparison")
    document["workflow"] = workflow
    created = client.post("/api/drafts", json=document, headers=tokens["editor"])
    assert created.status_code == 201, created.text
    return created.json(), created.headers["etag"]


def test_two_approvals_by_two_people_then_publish(client: Client, tokens: dict[str, Headers],
                                                   repo_path: Path) -> None:
    draft, etag = create(client, tokens)
    assert draft["workflow"]["name"] == "two-step"
    submitted = act(client, SLUG, "submit", tokens["editor"], etag)
    assert submitted["allowed_actions"] == [] or "approve" not in submitted["allowed_actions"]
    # The chief cannot give the final approval before the panel has approved.
    act(client, SLUG, "final_approve", tokens["chief"], f'"{submitted["revision"]}"',
        expect=409)
    panel = act(client, SLUG, "approve", tokens["reviewer"], f'"{submitted["revision"]}"')
    assert panel["state"] == "panel_approved"
    # A reviewer is not a chief; the panel's approver may not approve twice, whatever roles.
    act(client, SLUG, "final_approve", tokens["reviewer2"], f'"{panel["revision"]}"', expect=403)
    final = act(client, SLUG, "final_approve", tokens["chief"], f'"{panel["revision"]}"')
    assert final["state"] == "approved"
    assert final["workflow"]["approved_by"] == ["Rita Reviewer <rita@example.com>",
                                                "Cleo Chief <cleo@example.com>"]
    published = act(client, SLUG, "publish", tokens["publisher"], f'"{final["revision"]}"')
    assert published["state"] == "published"
    trailers = git(repo_path, "log", "-1", "--format=%(trailers:key=Approved-by,valueonly)",
                   "main").split("\n")
    assert [line for line in trailers if line] == ["Rita Reviewer <rita@example.com>",
                                                   "Cleo Chief <cleo@example.com>"]
    services = client.app.state.services
    assert verify(services.documents, services.workflows, services.pipeline.committer).ok


def test_one_person_never_gives_both_approvals(client: Client,
                                               tokens: dict[str, Headers]) -> None:
    _, etag = create(client, tokens)
    submitted = act(client, SLUG, "submit", tokens["editor"], etag)
    panel = act(client, SLUG, "approve", tokens["reviewer_chief"], f'"{submitted["revision"]}"')
    refused = act(client, SLUG, "final_approve", tokens["reviewer_chief"],
                  f'"{panel["revision"]}"', expect=409)
    assert "already approved" in refused["message"]


def test_an_author_never_counts(client: Client, tokens: dict[str, Headers]) -> None:
    _, etag = create(client, tokens)
    submitted = act(client, SLUG, "submit", tokens["editor"], etag)
    panel = act(client, SLUG, "approve", tokens["reviewer"], f'"{submitted["revision"]}"')
    # A chief who edits the comparison becomes one of its authors.
    document, etag = read_draft(client, SLUG, tokens["editor_chief"])
    document["summary"] = document["summary"] + " Edited by the chief."
    saved = client.put(f"/api/drafts/{SLUG}", json=document,
                       headers={**tokens["editor_chief"], "If-Match": etag})
    assert saved.status_code == 200, saved.text
    assert panel["revision"] != saved.json()["revision"]
    resubmitted = act(client, SLUG, "approve", tokens["reviewer"], saved.headers["etag"])
    refused = act(client, SLUG, "final_approve", tokens["editor_chief"],
                  f'"{resubmitted["revision"]}"', expect=403)
    assert refused["rule"] == "self_approval"


def test_an_edit_voids_the_approvals_and_review_starts_again(
        client: Client, tokens: dict[str, Headers]) -> None:
    _, etag = create(client, tokens)
    submitted = act(client, SLUG, "submit", tokens["editor"], etag)
    panel = act(client, SLUG, "approve", tokens["reviewer"], f'"{submitted["revision"]}"')
    assert panel["workflow"]["approved_by"] == ["Rita Reviewer <rita@example.com>"]
    document, etag = read_draft(client, SLUG, tokens["editor2"])
    document["summary"] = document["summary"] + " A late change."
    saved = client.put(f"/api/drafts/{SLUG}", json=document,
                       headers={**tokens["editor2"], "If-Match": etag})
    assert saved.status_code == 200, saved.text
    again = saved.json()
    assert again["state"] == "in_review"
    assert again["workflow"].get("approved_by", []) == []
    # The stale approval is gone: the chief must wait for the panel again.
    act(client, SLUG, "final_approve", tokens["chief"], saved.headers["etag"], expect=409)
    panel = act(client, SLUG, "approve", tokens["reviewer2"], saved.headers["etag"])
    final = act(client, SLUG, "final_approve", tokens["chief"], f'"{panel["revision"]}"')
    assert final["workflow"]["approved_by"] == ["Rob Reviewer <rob@example.com>",
                                                "Cleo Chief <cleo@example.com>"]


def test_a_comparison_keeps_its_workflow(client: Client, tokens: dict[str, Headers]) -> None:
    document, etag = read_draft(client, HAIKU, tokens["editor"])
    document["workflow"] = "two-step"
    refused = client.put(f"/api/drafts/{HAIKU}", json=document,
                         headers={**tokens["editor"], "If-Match": etag})
    assert (refused.status_code, refused.json()["field"]) == (422, "workflow")
    unknown = client.get(f"/api/comparisons/{HAIKU}").json()
    unknown.update(slug="no-such-flow", title="No Such Flow", workflow="five-step")
    refused = client.post("/api/drafts", json=unknown, headers=tokens["editor"])
    assert (refused.status_code, refused.json()["field"]) == (422, "workflow")
    assert "two-step" in refused.json()["message"]
    # A body that reads back a record keeps the workflow the record names.
    draft, _ = create(client, tokens, workflow={"name": "two-step", "state": "draft"},
                      slug="round-tripped")
    assert draft["workflow"]["name"] == "two-step"
    default, _ = create(client, tokens, workflow=None, slug="follows-the-default")
    assert default["workflow"]["name"] == "default"


def test_an_action_of_another_workflow_is_a_conflict_and_a_missing_comparison_a_404(
        client: Client, tokens: dict[str, Headers]) -> None:
    _, etag = read_draft(client, HAIKU, tokens["chief"])
    other = client.post(f"/api/drafts/{HAIKU}/transitions", json={"action": "final_approve"},
                        headers={**tokens["chief"], "If-Match": etag})
    assert (other.status_code, other.json()["field"]) == (409, "action")
    assert "`default`" in other.json()["message"]
    missing = client.post("/api/drafts/no-such-comparison/transitions",
                          json={"action": "submit"},
                          headers={**tokens["editor"], "If-Match": '"' + "0" * 40 + '"'})
    assert (missing.status_code, missing.json()["field"]) == (404, "slug")


def test_one_address_is_one_person_whatever_its_names(client: Client,
                                                      tokens: dict[str, Headers]) -> None:
    """Tokens under other names for the same address do not make another person."""
    store = TokenStore.open(client.app.state.services.settings)
    as_reviewer = {"Authorization": "Bearer " + store.create("Ada Lovelace", "ADA@example.com",
                                                             ["reviewer"])[1]}
    as_chief = {"Authorization": "Bearer " + store.create("Ada L", "ada@example.com",
                                                          ["chief"])[1]}
    _, etag = create(client, tokens)  # by Ada Editor <ada@example.com>
    submitted = act(client, SLUG, "submit", tokens["editor"], etag)
    refused = act(client, SLUG, "approve", as_reviewer, f'"{submitted["revision"]}"', expect=403)
    assert refused["rule"] == "self_approval"
    panel = act(client, SLUG, "approve", tokens["reviewer"], f'"{submitted["revision"]}"')
    refused = act(client, SLUG, "final_approve", as_chief, f'"{panel["revision"]}"', expect=403)
    assert refused["rule"] == "self_approval"
    rita_again = {"Authorization": "Bearer " + store.create("R. Reviewer", "rita@example.com",
                                                            ["chief"])[1]}
    act(client, SLUG, "final_approve", rita_again, f'"{panel["revision"]}"', expect=409)


def test_a_revert_does_not_launder_who_wrote_the_content(client: Client,
                                                         tokens: dict[str, Headers],
                                                         repo_path: Path) -> None:
    """Ada writes a revision and discards it; Eve takes the published comparison back to Ada's
    content. Ada wrote what is under review: she is one of its authors, and may not approve."""
    document, etag = read_draft(client, HAIKU, tokens["editor"])
    document["summary"] += " Ada's words."
    saved = client.put(f"/api/drafts/{HAIKU}", json=document,
                       headers={**tokens["editor"], "If-Match": etag})
    assert saved.status_code == 200
    written = git(repo_path, "rev-parse", f"refs/heads/cms/comparisons/{HAIKU}").strip()
    assert client.delete(f"/api/drafts/{HAIKU}", headers={
        **tokens["editor"], "If-Match": saved.headers["etag"]}).status_code == 204
    _, etag = read_draft(client, HAIKU, tokens["editor2"])
    reverted = client.post(f"/api/drafts/{HAIKU}/revert", json={"to": written},
                           headers={**tokens["editor2"], "If-Match": etag})
    assert reverted.status_code == 200, reverted.text
    authors = reverted.json()["workflow"]["authors"]
    assert authors == ["Eve Editor <eve@example.com>", "Ada Editor <ada@example.com>"]
