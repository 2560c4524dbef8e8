"""The public record of verdict changes: what publications changed, by name only, for the
comparisons now published."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from ..conftest import HAIKU
from ..helpers import Headers, act
from ..site.test_build import flip_builder, republish

Client = TestClient  # type: ignore[type-arg]


def test_a_comparison_s_record_names_who_without_addresses(
        client: Client, tokens: dict[str, Headers]) -> None:
    assert client.get(f"/api/comparisons/{HAIKU}/verdict-changes").json()["items"] == []
    republish(client, tokens, HAIKU, flip_builder)
    answer = client.get(f"/api/comparisons/{HAIKU}/verdict-changes")
    assert answer.status_code == 200
    assert answer.headers["cache-control"].startswith("public")
    items = answer.json()["items"]
    kinds = {(item["kind"], item["reviewer"]) for item in items}
    assert kinds == {("verdict", "builder"), ("panel_ship", None)}
    verdict = next(item for item in items if item["kind"] == "verdict")
    assert (verdict["before"], verdict["after"]) == ("ship", "skip")
    assert verdict["published_by"] == "Paul Publisher"
    assert verdict["approved_by"] == ["Rita Reviewer"]
    assert "@" not in answer.text
    again = client.get(f"/api/comparisons/{HAIKU}/verdict-changes",
                       headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304
    republish(client, tokens, HAIKU, flip_builder)
    changed = client.get(f"/api/comparisons/{HAIKU}/verdict-changes",
                         headers={"If-None-Match": answer.headers["etag"]})
    assert changed.status_code == 200  # a record that grew is never answered 304
    assert len(changed.json()["items"]) == 4


def test_the_record_of_a_comparison_taken_down_is_not_public(
        client: Client, tokens: dict[str, Headers]) -> None:
    republish(client, tokens, HAIKU, flip_builder)
    assert len(client.get("/api/verdict-changes").json()["items"]) == 2
    etag = client.get(f"/api/comparisons/{HAIKU}").headers["etag"]
    act(client, HAIKU, "unpublish", tokens["publisher"], etag)
    gone = client.get(f"/api/comparisons/{HAIKU}/verdict-changes")
    assert gone.status_code == 404
    assert gone.json()["field"] == "slug"
    assert client.get("/api/verdict-changes").json()["items"] == []
    audit = client.get("/api/audit/verdict-changes", headers=tokens["auditor"]).json()
    assert len(audit["items"]) == 2  # the auditors' record keeps it


def test_the_latest_changes_newest_first_and_bounded(
        client: Client, tokens: dict[str, Headers]) -> None:
    republish(client, tokens, HAIKU, flip_builder)
    republish(client, tokens, HAIKU, flip_builder)
    items: list[dict[str, Any]] = client.get("/api/verdict-changes").json()["items"]
    times = [item["time"] for item in items]
    assert times == sorted(times, reverse=True)
    newest = next(item for item in items if item["kind"] == "verdict")
    assert newest["after"] == "ship"  # flipped back by the newest publication
    assert len(client.get("/api/verdict-changes?limit=1").json()["items"]) == 1
    for bad in ("0", "1001", "many"):
        refused = client.get(f"/api/verdict-changes?limit={bad}")
        assert refused.status_code == 400
        assert refused.json()["field"] == "limit"
    assert client.get("/api/comparisons/Not_A_Slug/verdict-changes").status_code == 400


def test_pages_of_the_record_cover_it_once_while_it_grows(
        client: Client, tokens: dict[str, Headers]) -> None:
    republish(client, tokens, HAIKU, flip_builder)
    republish(client, tokens, HAIKU, flip_builder)
    whole = client.get("/api/verdict-changes?limit=1000").json()
    assert whole["next_cursor"] is None
    seen: list[dict[str, Any]] = []
    answer = client.get("/api/verdict-changes?limit=1").json()
    republish(client, tokens, HAIKU, flip_builder)  # newer changes do not move the pages
    while True:
        seen += answer["items"]
        if answer["next_cursor"] is None:
            break
        answer = client.get(f"/api/verdict-changes?limit=1&cursor={answer['next_cursor']}").json()
    assert seen == whole["items"]
    for bad in ("-1", "x", "1" * 13):
        refused = client.get(f"/api/verdict-changes?cursor={bad}")
        assert refused.status_code == 400
        assert refused.json()["field"] == "cursor"


def test_a_first_publication_sets_verdicts_and_is_no_change(
        client: Client, tokens: dict[str, Headers]) -> None:
    document = client.get(f"/api/comparisons/{HAIKU}").json()
    document.update(slug="brand-new-comparison", title="Brand New Comparison")
    created = client.post("/api/drafts", json=document, headers=tokens["editor"])
    assert created.status_code == 201, created.text
    doc = act(client, "brand-new-comparison", "submit", tokens["editor"], created.headers["etag"])
    doc = act(client, "brand-new-comparison", "approve", tokens["reviewer"],
              f'"{doc["revision"]}"')
    act(client, "brand-new-comparison", "publish", tokens["publisher"], f'"{doc["revision"]}"')
    record = client.get("/api/comparisons/brand-new-comparison/verdict-changes").json()
    assert record["items"] == []
    assert client.get("/api/verdict-changes").json()["items"] == []
    audit = client.get("/api/audit/verdict-changes?slug=brand-new-comparison",
                       headers=tokens["auditor"]).json()["items"]
    assert audit
    assert all(item["first"] for item in audit)  # the auditors see them, marked
