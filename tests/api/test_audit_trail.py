"""The history of a comparison shows every step of its review, also those that change nothing
in it: comments, assignments, schedules and their cancellation, releases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from litestar.testing import TestClient

from ..conftest import HAIKU
from ..helpers import Headers, act, save_revision

Client = TestClient  # type: ignore[type-arg]


def history(client: Client, tokens: dict[str, Headers]) -> list[dict[str, object]]:
    response = client.get(f"/api/comparisons/{HAIKU}/history", headers=tokens["auditor"])
    assert response.status_code == 200, response.text
    return response.json()["entries"]  # type: ignore[no-any-return]


def test_history_shows_the_review_conversation_and_schedules(
        client: Client, tokens: dict[str, Headers]) -> None:
    etag = save_revision(client, HAIKU, tokens["editor"])
    comment = client.post(f"/api/drafts/{HAIKU}/comments", headers=tokens["reviewer"],
                          json={"body": "Check the price.", "field": "summary"}).json()
    client.put(f"/api/drafts/{HAIKU}/assignees", headers=tokens["editor"],
               json={"reviewers": ["rita@example.com"]})
    submitted = act(client, HAIKU, "submit", tokens["editor"], etag)
    approved = act(client, HAIKU, "approve", tokens["reviewer"], f'"{submitted["revision"]}"')
    at = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    scheduled = client.post(f"/api/drafts/{HAIKU}/transitions",
                            json={"action": "publish", "at": at.isoformat()},
                            headers={**tokens["publisher"],
                                     "If-Match": f'"{approved["revision"]}"'})
    assert scheduled.status_code == 202, scheduled.text
    cancelled = client.post(f"/api/drafts/{HAIKU}/transitions",
                            json={"action": "cancel_schedule"},
                            headers={**tokens["publisher"], "If-Match": f'"{approved["revision"]}"'})
    assert cancelled.status_code == 200, cancelled.text
    release = client.post("/api/releases", headers=tokens["editor"],
                          json={"title": "Haiku refresh", "slugs": [HAIKU]}).json()
    entries = history(client, tokens)
    actions = [entry["action"] for entry in entries]
    for action in ("edit", "comment", "assign", "submit", "approve", "schedule",
                   "cancel_schedule", "release"):
        assert action in actions, (action, actions)
    by_action = {entry["action"]: entry for entry in entries}
    assert by_action["comment"]["details"]["Cms-Comment"] == [comment["id"]]
    assert by_action["comment"]["comment"] == "Check the price."
    assert by_action["assign"]["details"]["Cms-Assignee"] == ["rita@example.com"]
    assert by_action["schedule"]["details"]["Cms-Scheduled-At"] == [
        at.strftime("%Y-%m-%dT%H:%M:%SZ")]
    assert by_action["cancel_schedule"]["details"]["Cms-Schedule"] == [
        scheduled.json()["commit"]]
    assert by_action["release"]["details"]["Cms-Release"] == [release["id"]]
    # Newest first.
    times = [entry["time"] for entry in entries]
    assert times == sorted(times, reverse=True)
    # Each commit once.
    assert len({entry["sha"] for entry in entries}) == len(entries)


def test_a_takedown_schedule_on_main_is_in_the_history(client: Client,
                                                       tokens: dict[str, Headers]) -> None:
    live = client.get(f"/api/comparisons/{HAIKU}")
    at = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    made = client.post(f"/api/drafts/{HAIKU}/transitions",
                       json={"action": "unpublish", "at": at.isoformat()},
                       headers={**tokens["publisher"], "If-Match": live.headers["etag"]})
    assert made.status_code == 202, made.text
    entries = history(client, tokens)
    assert entries[0]["action"] == "schedule"
    assert entries[0]["sha"] == made.json()["commit"]
    assert entries[0]["details"]["Cms-Scheduled-Action"] == ["unpublish"]
