"""A release published at a set time: once, by whichever server looks, all or nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from litestar.testing import TestClient

from cms.audit.verify import verify
from cms.config import Settings
from cms.editing.release_schedules import ReleaseSchedules
from cms.editing.releases import Releases
from cms.editing.write_side import open_write_side

from ..conftest import git
from ..helpers import Headers, act, race
from .test_releases import SLUGS, draft, gather

Client = TestClient  # type: ignore[type-arg]


def later(hours: float = 1) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(hours=hours)


def schedule(client: Client, who: Headers, release: str, at: datetime,
             expect: int = 202) -> dict[str, object]:
    response = client.post(f"/api/releases/{release}/publish", headers=who,
                           json={"at": at.isoformat()})
    assert response.status_code == expect, response.text
    return response.json()  # type: ignore[no-any-return]


def run_at(client: Client, at: datetime) -> list[str]:
    services = client.app.state.services
    return services.release_schedules.run_due(services.tokens.roles_of, now=at)  # type: ignore[no-any-return]


def test_a_scheduled_release_is_published_once_in_one_commit(
        client: Client, tokens: dict[str, Headers], repo_path: Path) -> None:
    for slug in SLUGS:
        draft(client, tokens, slug)
    release = gather(client, tokens, SLUGS)
    at = later()
    scheduled = schedule(client, tokens["publisher"], release["id"], at)
    assert scheduled["scheduled_at"] == at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert scheduled["published"] is False
    assert scheduled["commit"] == release["commit"]
    listed = client.get("/api/schedule", headers=tokens["auditor"]).json()["releases"]
    assert [(item["release"], item["slugs"]) for item in listed] == [(release["id"], SLUGS)]
    # The same again writes nothing.
    head = git(repo_path, "rev-parse", f"refs/cms/releases/{release['id']}").strip()
    schedule(client, tokens["publisher"], release["id"], at)
    assert git(repo_path, "rev-parse", f"refs/cms/releases/{release['id']}").strip() == head
    before = git(repo_path, "rev-parse", "main").strip()
    assert run_at(client, at - timedelta(seconds=1)) == []
    assert len(run_at(client, at)) == 1
    assert git(repo_path, "rev-parse", "main^").strip() == before
    trailers = git(repo_path, "log", "-1", "--format=%(trailers)", "main")
    assert f"Cms-Release: {release['id']}" in trailers
    assert f"Cms-Schedule: {head}" in trailers
    for slug in SLUGS:
        assert client.get(f"/api/comparisons/{slug}").status_code == 200
    assert run_at(client, later(2)) == []
    read = client.get(f"/api/releases/{release['id']}", headers=tokens["editor"]).json()
    assert read["published"] is True
    assert read["scheduled_at"] is None
    services = client.app.state.services
    report = verify(services.documents, services.workflows, services.pipeline.committer)
    assert report.ok, report.findings


def test_a_scheduled_release_stays_all_or_nothing(client: Client, tokens: dict[str, Headers],
                                                  repo_path: Path) -> None:
    for slug in SLUGS:
        draft(client, tokens, slug)
    release = gather(client, tokens, SLUGS)
    # Not publishable now: not scheduled either.
    refused = schedule(client, tokens["editor"], release["id"], later(), expect=403)
    assert refused["status"] == 403
    at = later()
    schedule(client, tokens["publisher"], release["id"], at)
    # One of them goes back for changes meanwhile: when due, nothing is published.
    document = client.get(f"/api/drafts/{SLUGS[1]}", headers=tokens["editor"])
    act(client, SLUGS[1], "request_changes", tokens["reviewer2"], document.headers["etag"])
    before = git(repo_path, "rev-parse", "main").strip()
    assert run_at(client, at) == []
    assert git(repo_path, "rev-parse", "main").strip() == before
    assert client.get("/api/schedule", headers=tokens["editor"]).json()["releases"] == []


def test_cancel_a_scheduled_release(client: Client, tokens: dict[str, Headers],
                                    repo_path: Path) -> None:
    draft(client, tokens, SLUGS[0])
    release = gather(client, tokens, [SLUGS[0]])
    at = later()
    schedule(client, tokens["publisher"], release["id"], at)
    cancelled = client.delete(f"/api/releases/{release['id']}/schedule",
                              headers=tokens["publisher"])
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["scheduled_at"] is None
    assert "Cms-Action: cancel_schedule" in git(
        repo_path, "log", "-1", "--format=%(trailers)", f"refs/cms/releases/{release['id']}")
    again = client.delete(f"/api/releases/{release['id']}/schedule",
                          headers=tokens["publisher"])
    assert again.status_code == 409
    assert run_at(client, at) == []
    # Published later by hand, the release's history (schedule, cancellation) goes with it.
    published = client.post(f"/api/releases/{release['id']}/publish",
                            headers=tokens["publisher"])
    assert published.status_code == 200, published.text
    services = client.app.state.services
    report = verify(services.documents, services.workflows, services.pipeline.committer)
    assert report.ok, report.findings


def test_two_servers_publish_a_scheduled_release_once(
        client: Client, tokens: dict[str, Headers], settings: Settings,
        repo_path: Path) -> None:
    for slug in SLUGS:
        draft(client, tokens, slug)
    release = gather(client, tokens, SLUGS)
    at = later()
    schedule(client, tokens["publisher"], release["id"], at)
    roles_of = client.app.state.services.tokens.roles_of
    others = []
    for _ in range(3):
        side = open_write_side(settings)
        others.append(ReleaseSchedules(Releases(side.documents, side.pipeline, side.workflows)))
    made = race([lambda one=one: one.run_due(roles_of, now=at) for one in others])
    assert sorted(len(commits) for commits in made) == [0, 0, 1]
    runs = git(repo_path, "log", "--format=%(trailers:key=Cms-Release,valueonly)",
               "--first-parent", "main").split()
    assert runs == [release["id"]]


def test_publishing_a_scheduled_release_by_hand_takes_its_schedule_with_it(
        client: Client, tokens: dict[str, Headers]) -> None:
    draft(client, tokens, SLUGS[0])
    release = gather(client, tokens, [SLUGS[0]])
    schedule(client, tokens["publisher"], release["id"], later())
    published = client.post(f"/api/releases/{release['id']}/publish",
                            headers=tokens["publisher"])
    assert published.status_code == 200, published.text
    assert published.json()["scheduled_at"] is None
    assert client.get("/api/schedule", headers=tokens["editor"]).json()["releases"] == []
    cancel = client.delete(f"/api/releases/{release['id']}/schedule",
                           headers=tokens["publisher"])
    assert cancel.status_code == 409
    listed = client.get("/api/releases", headers=tokens["editor"]).json()["items"]
    assert [(item["id"], item["published"]) for item in listed] == [(release["id"], True)]


def test_an_edit_after_scheduling_keeps_a_release_from_publishing_it_unseen(
        client: Client, tokens: dict[str, Headers], repo_path: Path) -> None:
    for slug in SLUGS[:2]:
        draft(client, tokens, slug)
    release = gather(client, tokens, SLUGS[:2])
    at = later()
    schedule(client, tokens["publisher"], release["id"], at)
    # Sent back, edited, approved again: publishable, but not what was scheduled.
    current = client.get(f"/api/drafts/{SLUGS[1]}", headers=tokens["editor"])
    changes = act(client, SLUGS[1], "request_changes", tokens["reviewer2"],
                  current.headers["etag"])
    document = client.get(f"/api/drafts/{SLUGS[1]}", headers=tokens["editor"]).json()
    document["summary"] += " Changed after scheduling."
    saved = client.put(f"/api/drafts/{SLUGS[1]}", json=document,
                       headers={**tokens["editor"], "If-Match": f'"{changes["revision"]}"'})
    assert saved.status_code == 200, saved.text
    submitted = act(client, SLUGS[1], "submit", tokens["editor"], saved.headers["etag"])
    act(client, SLUGS[1], "approve", tokens["reviewer"], f'"{submitted["revision"]}"')
    before = git(repo_path, "rev-parse", "main").strip()
    assert run_at(client, at) == []
    assert git(repo_path, "rev-parse", "main").strip() == before
    assert client.get("/api/schedule", headers=tokens["editor"]).json()["releases"] == []
