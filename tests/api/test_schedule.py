"""Scheduled publication and takedown over HTTP: a schedule is a commit and a ref, the
publication it makes goes through the one write path, once, whichever server carries it out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from cms.api.app import create_app
from cms.api.services import Services
from cms.audit.verify import verify
from cms.config import Settings
from cms.editing.scheduled import ScheduledRun
from cms.editing.schedules import Schedules
from cms.editing.write_side import open_write_side

from ..conftest import HAIKU, git
from ..helpers import Headers, act, race, save_revision

Client = TestClient  # type: ignore[type-arg]


def approved(client: Client, tokens: dict[str, Headers]) -> str:
    """A revision of HAIKU, submitted and approved; its ETag."""
    etag = save_revision(client, HAIKU, tokens["editor"])
    submitted = act(client, HAIKU, "submit", tokens["editor"], etag)
    approval = act(client, HAIKU, "approve", tokens["reviewer"], f'"{submitted["revision"]}"')
    return f'"{approval["revision"]}"'


def schedule(client: Client, who: Headers, etag: str, at: datetime | str,
             action: str = "publish", expect: int = 202) -> dict[str, Any]:
    when = at if isinstance(at, str) else at.isoformat()
    response = client.post(f"/api/drafts/{HAIKU}/transitions",
                           json={"action": action, "at": when},
                           headers={**who, "If-Match": etag})
    assert response.status_code == expect, response.text
    return response.json()  # type: ignore[no-any-return]


def services_of(client: Client) -> Services:
    return client.app.state.services  # type: ignore[no-any-return]


def later(hours: float = 1) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(hours=hours)


def run_at(client: Client, at: datetime) -> list[str]:
    services = services_of(client)
    return services.schedules.run_due(services.tokens.roles_of, now=at)


def test_a_scheduled_publication_waits_then_publishes_once(
        client: Client, tokens: dict[str, Headers], repo_path: Path) -> None:
    etag = approved(client, tokens)
    main_before = git(repo_path, "rev-parse", "main").strip()
    at = later()
    made = schedule(client, tokens["publisher"], etag, at)
    assert made["action"] == "publish"
    assert made["revision"] == etag.strip('"')
    assert made["at"] == at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert made["scheduled_by"] == "Paul Publisher <paul@example.com>"
    # Nothing is published yet, and the editor's revision is still current.
    assert git(repo_path, "rev-parse", "main").strip() == main_before
    draft = client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"])
    assert draft.headers["etag"] == etag
    assert draft.json()["state"] == "approved"
    listed = client.get("/api/schedule", headers=tokens["auditor"]).json()["items"]
    assert [item["commit"] for item in listed] == [made["commit"]]
    trailers = git(repo_path, "log", "-1", "--format=%(trailers)", made["commit"])
    assert f"Cms-Scheduled-At: {made['at']}" in trailers
    assert "Cms-Scheduled-Action: publish" in trailers

    assert run_at(client, at - timedelta(seconds=1)) == []  # not yet due
    done = run_at(client, at)
    assert len(done) == 1
    assert git(repo_path, "rev-parse", "main").strip() == done[0]
    head = git(repo_path, "log", "-1", "--format=%(trailers)", "main")
    assert "Cms-Action: publish" in head
    assert f"Cms-Schedule: {made['commit']}" in head
    assert "Approved-by: Rita Reviewer <rita@example.com>" in head
    # The schedule commit is part of what was published, for auditors.
    assert git(repo_path, "merge-base", "--is-ancestor", made["commit"], "main") == ""
    assert git(repo_path, "log", "-1", "--format=%an", "main").strip() == "Paul Publisher"
    assert client.get("/api/schedule", headers=tokens["auditor"]).json()["items"] == []
    assert run_at(client, at + timedelta(days=1)) == []
    runs = git(repo_path, "log", "--format=%(trailers:key=Cms-Schedule,valueonly)", "main")
    assert runs.split() == [made["commit"]]
    services = services_of(client)
    assert verify(services.documents, services.workflows, services.pipeline.committer).ok


def test_an_edit_voids_the_schedule_and_a_comment_does_not(
        client: Client, tokens: dict[str, Headers], repo_path: Path) -> None:
    etag = approved(client, tokens)
    schedule(client, tokens["publisher"], etag, later())
    comment = client.post(f"/api/drafts/{HAIKU}/comments", json={"body": "Looks good."},
                          headers=tokens["reviewer"])
    assert comment.status_code == 201, comment.text
    assert len(client.get("/api/schedule", headers=tokens["editor"]).json()["items"]) == 1
    main_before = git(repo_path, "rev-parse", "main").strip()
    # Approved content is not editable: taking it back to the editors is the change.
    etag = client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"]).headers["etag"]
    act(client, HAIKU, "request_changes", tokens["reviewer2"], etag)
    save_revision(client, HAIKU, tokens["editor"], " Changed after scheduling.")
    assert client.get("/api/schedule", headers=tokens["editor"]).json()["items"] == []
    assert git(repo_path, "for-each-ref", "refs/cms/scheduled/") == ""
    assert run_at(client, later(2)) == []
    assert git(repo_path, "rev-parse", "main").strip() == main_before


def test_cancel_a_schedule(client: Client, tokens: dict[str, Headers], repo_path: Path) -> None:
    etag = approved(client, tokens)
    made = schedule(client, tokens["publisher"], etag, later())
    def cancel(who: Headers, revision: str | None, comment: str = "") -> Any:
        headers = {**who, "If-Match": revision} if revision else who
        return client.post(f"/api/drafts/{HAIKU}/transitions", headers=headers,
                           json={"action": "cancel_schedule", "comment": comment})

    # An editor may not take a publication back.
    assert cancel(tokens["editor"], etag).status_code == 403
    # The cancel names the revision the schedule is for: none, or another, cancels nothing.
    assert cancel(tokens["publisher"], None).status_code == 428
    live = client.get(f"/api/comparisons/{HAIKU}").headers["etag"]
    stale = cancel(tokens["publisher"], live)
    assert stale.status_code == 412
    assert stale.json()["field"] == "If-Match"
    cancelled = cancel(tokens["publisher"], etag, "Not this week.")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.headers["etag"] == etag  # the revision is untouched
    assert client.get("/api/schedule", headers=tokens["editor"]).json()["items"] == []
    note = git(repo_path, "log", "-1", "--format=%B", f"refs/heads/cms/comparisons/{HAIKU}")
    assert "Cms-Action: cancel_schedule" in note
    assert f"Cms-Schedule: {made['commit']}" in note
    assert "Not this week." in note
    again = cancel(tokens["publisher"], etag)
    assert again.status_code == 409
    assert again.json()["field"] == "action"
    assert run_at(client, later(2)) == []


@pytest.mark.parametrize(("at", "status", "field"), [
    ("2001-01-01T00:00:00Z", 422, "at"),  # the past
    ("2999-01-01T00:00:00Z", 422, "at"),  # too far ahead
    ("2030-01-01T00:00:00", 422, "at"),  # no offset: whose midnight?
    ("next tuesday", 422, "at"),
])
def test_a_schedule_needs_a_time_to_come(client: Client, tokens: dict[str, Headers],
                                         repo_path: Path, at: str, status: int,
                                         field: str) -> None:
    etag = approved(client, tokens)
    refs_before = git(repo_path, "for-each-ref")
    refused = schedule(client, tokens["publisher"], etag, at, expect=status)
    assert refused["field"] == field, refused
    assert git(repo_path, "for-each-ref") == refs_before


def test_only_what_could_be_taken_now_can_be_scheduled(
        client: Client, tokens: dict[str, Headers], repo_path: Path) -> None:
    etag = save_revision(client, HAIKU, tokens["editor"])
    submitted = act(client, HAIKU, "submit", tokens["editor"], etag)
    etag = f'"{submitted["revision"]}"'
    # Not approved yet: publishing would be refused now, so is its schedule.
    assert schedule(client, tokens["publisher"], etag, later(), expect=409)["field"] == "action"
    # An approval is no publication: it is not scheduled.
    assert schedule(client, tokens["reviewer"], etag, later(), action="approve",
                    expect=409)["field"] == "action"
    assert schedule(client, tokens["editor"], etag, later(), expect=403)["field"] == "action"
    assert schedule(client, tokens["publisher"], '"' + "0" * 40 + '"', later(),
                    expect=412)["field"] == "If-Match"
    missing = client.post("/api/drafts/no-such-comparison/transitions",
                          json={"action": "publish", "at": later().isoformat()},
                          headers={**tokens["publisher"], "If-Match": etag})
    assert missing.status_code == 404, missing.text
    assert git(repo_path, "for-each-ref", "refs/cms/scheduled/") == ""


def test_a_scheduled_takedown(client: Client, tokens: dict[str, Headers],
                              repo_path: Path) -> None:
    live = client.get(f"/api/comparisons/{HAIKU}")
    at = later()
    made = schedule(client, tokens["publisher"], live.headers["etag"], at, action="unpublish")
    # Recorded on main, which keeps its content meanwhile.
    assert git(repo_path, "rev-parse", "main").strip() == made["commit"]
    assert git(repo_path, "diff", "--stat", "main^", "main") == ""
    assert client.get(f"/api/comparisons/{HAIKU}").status_code == 200
    done = run_at(client, at)
    assert len(done) == 1
    assert client.get(f"/api/comparisons/{HAIKU}").status_code == 404
    head = git(repo_path, "log", "-1", "--format=%(trailers)", "main")
    assert "Cms-Action: unpublish" in head
    assert f"Cms-Schedule: {made['commit']}" in head
    assert run_at(client, later(2)) == []
    services = services_of(client)
    assert verify(services.documents, services.workflows, services.pipeline.committer).ok


def test_a_schedule_runs_with_its_authors_rights_as_they_are_then(
        client: Client, tokens: dict[str, Headers], repo_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    etag = approved(client, tokens)
    at = later()
    schedule(client, tokens["publisher"], etag, at)
    services = services_of(client)
    for record in services.tokens.all():
        if record.email == "paul@example.com":
            services.tokens.revoke(record.id)
    main_before = git(repo_path, "rev-parse", "main").strip()
    assert run_at(client, at) == []
    assert git(repo_path, "rev-parse", "main").strip() == main_before
    assert "was not carried out" in caplog.text
    assert client.get("/api/schedule", headers=tokens["editor"]).json()["items"] == []


def test_two_servers_carry_a_schedule_out_once(client: Client, tokens: dict[str, Headers],
                                               settings: Settings, repo_path: Path) -> None:
    etag = approved(client, tokens)
    at = later()
    schedule(client, tokens["publisher"], etag, at)
    services = services_of(client)
    others = []
    for _ in range(3):
        side = open_write_side(settings)
        others.append(Schedules(side.documents, side.pipeline, side.editor, side.workflows))
    made = race([lambda one=one: one.run_due(services.tokens.roles_of, now=at)
                 for one in others])
    assert sorted(len(commits) for commits in made) == [0, 0, 1]
    scheduled_runs = git(repo_path, "log", "--format=%(trailers:key=Cms-Schedule,valueonly)",
                         "main").split()
    assert len(scheduled_runs) == 1


def test_a_schedule_due_while_no_server_ran_is_carried_out_at_start(
        settings: Settings, tokens: dict[str, Headers], repo_path: Path) -> None:
    with TestClient(app=create_app(settings)) as client:
        etag = approved(client, tokens)
        services = services_of(client)
        # Stopped: a schedule falls due only while a server looks.
        services.scheduler.stop()
        publisher = next(r for r in services.tokens.all() if r.email == "paul@example.com")
        # Scheduled an hour ago for half an hour ago, as the clock then allowed.
        due = datetime.now(UTC) - timedelta(minutes=30)
        services.schedules.schedule(HAIKU, "publish", due, publisher.actor(),
                                    etag.strip('"'), now=due - timedelta(minutes=30))
        main_before = git(repo_path, "rev-parse", "main").strip()
    assert git(repo_path, "rev-parse", "main").strip() == main_before
    for _ in range(2):  # started, stopped, started again: published once
        with TestClient(app=create_app(settings)) as client:
            assert client.get(f"/api/comparisons/{HAIKU}").json()["summary"].endswith("Revised.")
            assert client.get("/api/schedule", headers=tokens["editor"]).json()["items"] == []
    runs = git(repo_path, "log", "--format=%(trailers:key=Cms-Schedule,valueonly)",
               "main").split()
    assert len(runs) == 1


def test_verify_finds_a_publication_naming_a_schedule_it_had_not(
        client: Client, tokens: dict[str, Headers], repo_path: Path) -> None:
    """A publication that claims a schedule that is none (here: the approval's commit) is
    reported by verify."""
    etag = approved(client, tokens)
    services = services_of(client)
    approval = git(repo_path, "rev-parse", f"refs/heads/cms/comparisons/{HAIKU}").strip()
    ref = f"refs/cms/scheduled/{HAIKU}/draft"
    git(repo_path, "update-ref", ref, approval)
    publisher = next(r for r in services.tokens.all() if r.email == "paul@example.com")
    services.editor.transition(HAIKU, "publish", publisher.actor(), etag.strip('"'),
                               run=ScheduledRun(ref=ref, commit=approval,
                                                due=datetime.now(UTC)))
    report = verify(services.documents, services.workflows, services.pipeline.committer)
    assert not report.ok
    assert report.findings[-1].problems == [f"names a schedule {approval[:12]} that is no schedule"]


def test_a_cancel_of_what_was_carried_out_meanwhile_is_refused(
        client: Client, tokens: dict[str, Headers], repo_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The cancel read the schedule, then a server published it: a 409, not a 200 for a
    cancellation that did not happen."""
    etag = approved(client, tokens)
    at = later()
    schedule(client, tokens["publisher"], etag, at)
    schedules = services_of(client).schedules
    stale = schedules._pending_at(HAIKU, "draft")
    assert len(run_at(client, at)) == 1
    monkeypatch.setattr(schedules, "_pending_at",
                        lambda slug, place: stale if place == "draft" else None)
    refused = client.post(f"/api/drafts/{HAIKU}/transitions",
                          json={"action": "cancel_schedule"},
                          headers={**tokens["publisher"], "If-Match": etag})
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "schedule_gone"
    assert "cancel_schedule" not in git(repo_path, "log", "--format=%B", "main")


def test_the_same_schedule_again_writes_nothing(client: Client, tokens: dict[str, Headers],
                                                repo_path: Path) -> None:
    etag = approved(client, tokens)
    at = later()
    first = schedule(client, tokens["publisher"], etag, at)
    again = schedule(client, tokens["publisher"], etag, at)
    assert again["commit"] == first["commit"]
    other = schedule(client, tokens["publisher"], etag, later(2))
    assert other["commit"] != first["commit"]
    notes = git(repo_path, "log", "--format=%(trailers:key=Cms-Action,valueonly)",
                f"refs/heads/cms/comparisons/{HAIKU}").split()
    assert notes.count("schedule") == 2


def test_five_years_ahead_is_the_calendars(client: Client, tokens: dict[str, Headers]) -> None:
    etag = approved(client, tokens)
    now = datetime.now(UTC).replace(microsecond=0)
    five = now.replace(year=now.year + 5) if not (now.month == 2 and now.day == 29) \
        else now.replace(year=now.year + 5, day=28)
    refused = schedule(client, tokens["publisher"], etag, five + timedelta(days=1), expect=422)
    assert refused["field"] == "at"
    schedule(client, tokens["publisher"], etag, five - timedelta(days=1))
    early = schedule(client, tokens["publisher"], etag, "0001-01-01T00:00:00Z", expect=422)
    assert "0001-01-01T00:00:00Z" in early["message"]


def test_comments_that_look_like_trailers_do_not_crowd_out_the_feed(
        client: Client, tokens: dict[str, Headers]) -> None:
    etag = approved(client, tokens)
    act(client, HAIKU, "publish", tokens["publisher"], etag)
    services = services_of(client)
    publisher = next(r for r in services.tokens.all() if r.email == "paul@example.com").actor()
    for hours in range(1, 36):  # each replaces the last, each a commit on main
        live = services.documents.published(HAIKU)
        assert live is not None
        services.schedules.schedule(HAIKU, "unpublish", later(hours), publisher, live.revision,
                                    "Rescheduled.\nCms-Action: publish")
    feed = client.get("/api/feed.json").json()
    assert [item["url"].rsplit("/", 1)[-1] for item in feed["items"]] == [HAIKU]


def test_a_run_never_drops_the_schedule_that_replaced_its_own(
        client: Client, tokens: dict[str, Headers], repo_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A server read schedule S1 as due; another moved it to two days later (S2) before the
    first one's write: nothing is published, and S2 stays."""
    etag = approved(client, tokens)
    at = later()
    schedule(client, tokens["publisher"], etag, at)
    services = services_of(client)
    first = services.schedules.pending()[0]
    replaced = schedule(client, tokens["publisher"], etag, later(48))
    # As if the first server's check had passed just before the replacement landed.
    monkeypatch.setattr(ScheduledRun, "check", lambda self, refs: None)
    main_before = git(repo_path, "rev-parse", "main").strip()
    assert services.schedules.run_due(services.tokens.roles_of, now=at) == []
    assert first.commit != replaced["commit"]
    assert git(repo_path, "rev-parse", "main").strip() == main_before
    assert [s.commit for s in services.schedules.pending()] == [replaced["commit"]]


def test_verify_finds_a_publication_naming_a_schedule_cancelled_before_it_ran(
        client: Client, tokens: dict[str, Headers], repo_path: Path) -> None:
    etag = approved(client, tokens)
    made = schedule(client, tokens["publisher"], etag, later())
    cancelled = client.post(f"/api/drafts/{HAIKU}/transitions",
                            json={"action": "cancel_schedule"},
                            headers={**tokens["publisher"], "If-Match": etag})
    assert cancelled.status_code == 200, cancelled.text
    # Someone puts the index back with plain git, and a server carries the schedule out.
    ref = f"refs/cms/scheduled/{HAIKU}/draft"
    git(repo_path, "update-ref", ref, made["commit"])
    services = services_of(client)
    publisher = next(r for r in services.tokens.all() if r.email == "paul@example.com")
    services.editor.transition(HAIKU, "publish", publisher.actor(), etag.strip('"'),
                               run=ScheduledRun(ref=ref, commit=made["commit"],
                                                due=datetime.now(UTC)))
    report = verify(services.documents, services.workflows, services.pipeline.committer)
    assert len(report.findings) == 1
    # Carried out early too: it was due an hour from now.
    assert report.findings[0].problems[-1] == "names a schedule that was cancelled before it ran"
