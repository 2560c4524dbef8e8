"""Review notifications: every step of a review reaches a subscribed endpoint, signed and
delivered like a publication, so a team can wire it to chat; a step a server committed but did
not record (it died in between) is recorded when a server starts."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import TestClient
from standardwebhooks.webhooks import Webhook

from cms.api.app import create_app
from cms.config import Settings
from cms.editing.comments import Comments
from cms.editing.review_branch import ReviewBranch
from cms.editing.write_side import open_write_side

from ..conftest import HAIKU, make_tokens
from ..helpers import EDITOR, Headers, act, new_document, save_revision
from ..receivers import Receiver, running
from .test_webhooks import Client, drain, publish_new, subscribe

REVIEW_EVENTS = ["review.requested", "review.approved", "review.changes_requested",
                 "comment.created", "comparison.scheduled"]


def approved_new(client: Client, tokens: dict[str, Headers], slug: str) -> None:
    """A new comparison, submitted and approved: ready to publish."""
    base = client.get(f"/api/comparisons/{HAIKU}").json()
    created = client.post("/api/drafts", json=new_document(base, slug, slug.title()),
                          headers=tokens["editor"])
    submitted = act(client, slug, "submit", tokens["editor"], created.headers["etag"])
    act(client, slug, "approve", tokens["reviewer"], f'"{submitted["revision"]}"')


def gathered(client: Client, tokens: dict[str, Headers], title: str,
             slugs: list[str]) -> dict[str, Any]:
    """A release of new comparisons, each approved: ready to publish."""
    for slug in slugs:
        approved_new(client, tokens, slug)
    created = client.post("/api/releases", headers=tokens["editor"],
                          json={"title": title, "slugs": slugs})
    assert created.status_code == 201, created.text
    return created.json()  # type: ignore[no-any-return]


def received(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    return [Webhook(secret).verify(request.body, request.headers)  # type: ignore[misc]
            for request in receiver.received]


def test_a_chat_receiver_hears_every_review_step(hooks: tuple[Client, dict[str, Headers]]
                                                 ) -> None:
    client, tokens = hooks
    with running(Receiver()) as receiver:
        secret = subscribe(client, tokens["admin"], receiver.url, events=REVIEW_EVENTS)["secret"]
        etag = save_revision(client, HAIKU, tokens["editor"])
        assigned = client.put(f"/api/drafts/{HAIKU}/assignees", headers=tokens["editor"],
                              json={"reviewers": ["rita@example.com"]})
        assert assigned.status_code == 200, assigned.text
        submitted = act(client, HAIKU, "submit", tokens["editor"], etag)
        comment = client.post(f"/api/drafts/{HAIKU}/comments", headers=tokens["reviewer"],
                              json={"body": "Is the price right?", "field": "pricing"})
        assert comment.status_code == 201, comment.text
        changes = act(client, HAIKU, "request_changes", tokens["reviewer"],
                      f'"{submitted["revision"]}"')
        again = act(client, HAIKU, "submit", tokens["editor"], f'"{changes["revision"]}"')
        approved = act(client, HAIKU, "approve", tokens["reviewer"], f'"{again["revision"]}"')
        at = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
        scheduled = client.post(f"/api/drafts/{HAIKU}/transitions",
                                json={"action": "publish", "at": at.isoformat()},
                                headers={**tokens["publisher"],
                                         "If-Match": f'"{approved["revision"]}"'})
        assert scheduled.status_code == 202, scheduled.text
        drain(client)
        payloads = received(receiver, secret)
    assert [p["type"] for p in payloads] == [
        "review.requested", "review.requested", "comment.created", "review.changes_requested",
        "review.requested", "review.approved", "comparison.scheduled"]
    for payload in payloads:
        assert payload["data"]["slug"] == HAIKU
        assert payload["data"]["url"] == f"http://cms.test/api/drafts/{HAIKU}"
    assert payloads[0]["data"]["reviewers"] == ["rita@example.com"]
    assert payloads[0]["data"]["actor"]["email"] == "ada@example.com"
    assert payloads[2]["data"]["comment"] == {
        "id": comment.json()["id"], "body": "Is the price right?", "field": "pricing"}
    assert payloads[2]["data"]["actor"]["email"] == "rita@example.com"
    assert payloads[5]["data"]["approvers"] == ["Rita Reviewer <rita@example.com>"]
    assert payloads[6]["data"]["schedule"] == {"action": "publish",
                                               "at": at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    # Each event once, with an id that stays its own across retries.
    assert len({p["data"]["commit"] for p in payloads}) == len(payloads)


def test_review_events_stay_out_of_publication_endpoints(
        hooks: tuple[Client, dict[str, Headers]]) -> None:
    client, tokens = hooks
    with running(Receiver()) as receiver:
        subscribe(client, tokens["admin"], receiver.url)  # the default: publications only
        etag = save_revision(client, HAIKU, tokens["editor"])
        act(client, HAIKU, "submit", tokens["editor"], etag)
        client.post(f"/api/drafts/{HAIKU}/comments", headers=tokens["reviewer"],
                    json={"body": "Fine."})
        drain(client)
        assert receiver.received == []


def test_a_step_committed_but_never_recorded_is_recorded_at_start(
        hooks_settings: Settings) -> None:
    tokens = make_tokens(hooks_settings)
    with running(Receiver()) as receiver:
        with TestClient(app=create_app(hooks_settings)) as client:
            secret = subscribe(client, tokens["admin"], receiver.url,
                               events=REVIEW_EVENTS)["secret"]
            save_revision(client, HAIKU, tokens["editor"])
        # Another server's comment, whose process died before it told its outbox.
        side = open_write_side(hooks_settings)
        Comments(ReviewBranch(side.documents, side.pipeline)).add(HAIKU, EDITOR, "Unheard?")
        for _ in range(2):  # two starts: one event
            with TestClient(app=create_app(hooks_settings)) as client:
                drain(client)
        payloads = received(receiver, secret)
    assert [p["type"] for p in payloads] == ["comment.created"]
    assert payloads[0]["data"]["comment"]["body"] == "Unheard?"
    assert json.loads(receiver.received[0].body)["data"]["actor"]["name"] == "Ada Editor"


def test_a_release_fires_each_publication_then_its_own(
        hooks: tuple[Client, dict[str, Headers]]) -> None:
    client, tokens = hooks
    slugs = ["hook-release-one", "hook-release-two"]
    with running(Receiver()) as receiver:
        secret = subscribe(client, tokens["admin"], receiver.url,
                           events=["comparison.published", "release.published"])["secret"]
        release = gathered(client, tokens, "Two at once", slugs)
        published = client.post(f"/api/releases/{release['id']}/publish",
                                headers=tokens["publisher"])
        assert published.status_code == 200, published.text
        drain(client)
        payloads = received(receiver, secret)
    assert [(p["type"], p["data"].get("slug")) for p in payloads] == [
        ("comparison.published", slugs[0]), ("comparison.published", slugs[1]),
        ("release.published", None)]
    commit = payloads[2]["data"]["commit"]
    assert {p["data"]["commit"] for p in payloads} == {commit}
    assert payloads[2]["data"]["id"] == release["id"]
    assert payloads[2]["data"]["title"] == "Two at once"
    assert payloads[2]["data"]["slugs"] == slugs
    assert len({request.headers["webhook-id"] for request in receiver.received}) == 3


def test_coalescing_never_lets_one_kind_of_event_stand_for_another(
        hooks: tuple[Client, dict[str, Headers]]) -> None:
    client, tokens = hooks
    with running(Receiver()) as receiver:
        subscribe(client, tokens["admin"], receiver.url, coalesce_seconds=600,
                  events=["comparison.published", "comment.created"])
        publish_new(client, tokens, "coalesced-publication")
        save_revision(client, HAIKU, tokens["editor"])
        client.post(f"/api/drafts/{HAIKU}/comments", headers=tokens["reviewer"],
                    json={"body": "Soon after."})
        drain(client, at=time.time() + 601)
        drain(client, at=time.time() + 1202)
        types = [json.loads(request.body)["type"] for request in receiver.received]
    assert types == ["comparison.published", "comment.created"]


def test_a_release_is_a_transition_of_each_of_its_comparisons(
        hooks: tuple[Client, dict[str, Headers]]) -> None:
    client, tokens = hooks
    slugs = ["transit-one", "transit-two"]
    with running(Receiver()) as receiver:
        subscribe(client, tokens["admin"], receiver.url, events=["comparison.transitioned"])
        release = gathered(client, tokens, "Both", slugs)
        client.post(f"/api/releases/{release['id']}/publish", headers=tokens["publisher"])
        drain(client)
        published = [json.loads(request.body)["data"] for request in receiver.received
                     if json.loads(request.body)["data"]["action"] == "publish"]
        ids = {request.headers["webhook-id"] for request in receiver.received}
    assert sorted(item["slug"] for item in published) == slugs
    assert len(ids) == len(receiver.received)


def test_clearing_the_reviewers_asks_nobody_for_a_review(
        hooks: tuple[Client, dict[str, Headers]]) -> None:
    client, tokens = hooks
    with running(Receiver()) as receiver:
        subscribe(client, tokens["admin"], receiver.url, events=["review.requested"])
        save_revision(client, HAIKU, tokens["editor"])
        for reviewers in (["rita@example.com"], []):
            assigned = client.put(f"/api/drafts/{HAIKU}/assignees", headers=tokens["editor"],
                                  json={"reviewers": reviewers})
            assert assigned.status_code == 200, assigned.text
        drain(client)
        bodies = [json.loads(request.body)["data"] for request in receiver.received]
    assert [body["reviewers"] for body in bodies] == [["rita@example.com"]]


def test_a_release_schedule_is_announced_for_each_of_its_comparisons(
        hooks: tuple[Client, dict[str, Headers]]) -> None:
    client, tokens = hooks
    slugs = ["announced-one", "announced-two"]
    with running(Receiver()) as receiver:
        subscribe(client, tokens["admin"], receiver.url, events=["comparison.scheduled"])
        release = gathered(client, tokens, "Later", slugs)
        at = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
        scheduled = client.post(f"/api/releases/{release['id']}/publish",
                                headers=tokens["publisher"], json={"at": at.isoformat()})
        assert scheduled.status_code == 202, scheduled.text
        drain(client)
        data = [json.loads(request.body)["data"] for request in receiver.received]
    assert sorted(item["slug"] for item in data) == slugs
    assert {item["url"] for item in data} == {f"http://cms.test/api/drafts/{s}" for s in slugs}


def test_a_pushed_workflow_is_heard_from_its_next_event(
        hooks: tuple[Client, dict[str, Headers]]) -> None:
    client, tokens = hooks
    definition = client.get("/api/workflows/default", headers=tokens["admin"]).json()
    renamed = definition["definition"].replace("[transitions.approve]",
                                               "[transitions.legal_approve]")
    pushed = client.put("/api/workflows/default", headers=tokens["admin"],
                        json={"definition": renamed})
    assert pushed.status_code == 200, pushed.text
    with running(Receiver()) as receiver:
        subscribe(client, tokens["admin"], receiver.url, events=["review.approved"])
        etag = save_revision(client, HAIKU, tokens["editor"])
        submitted = act(client, HAIKU, "submit", tokens["editor"], etag)
        act(client, HAIKU, "legal_approve", tokens["reviewer"], f'"{submitted["revision"]}"')
        drain(client)
        data = [json.loads(request.body)["data"] for request in receiver.received]
    assert [item["action"] for item in data] == ["legal_approve"]
