"""Publish webhooks against real HTTP receivers on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from litestar.testing import TestClient
from standardwebhooks.webhooks import Webhook

from cms.api.app import create_app
from cms.config import Settings, load_settings
from cms.editing.seed import initialise
from cms.editing.write_side import open_write_side
from cms.identity.actors import Actor
from cms.store.repository import Repository

from ..conftest import HAIKU, SEED, make_tokens
from ..helpers import Headers, act, new_document
from ..receivers import Receiver, dead_url, running

Client = TestClient  # type: ignore[type-arg]


def webhook_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"repo": tmp_path / "content.git", "data": tmp_path / "data",
                              "public_url": "http://cms.test", "webhook_allow_private": True,
                              "webhook_backoff": (0.0, 0.0, 0.0), "webhook_worker": False}
    values.update(overrides)
    return load_settings({}, **values)


def subscribe(client: Client, admin: Headers, url: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/api/webhooks", json={"url": url, **extra}, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def drain(client: Client, at: float | None = None) -> None:
    client.app.state.services.webhooks.dispatcher.drain(at=at)


def publish_new(client: Client, tokens: dict[str, Headers], slug: str) -> dict[str, Any]:
    base = client.get(f"/api/comparisons/{HAIKU}").json()
    created = client.post("/api/drafts", json=new_document(base, slug, f"Comparison {slug}"),
                          headers=tokens["editor"])
    assert created.status_code == 201, created.text
    doc = act(client, slug, "submit", tokens["editor"], created.headers["etag"])
    doc = act(client, slug, "approve", tokens["reviewer"], f'"{doc["revision"]}"')
    return act(client, slug, "publish", tokens["publisher"], f'"{doc["revision"]}"')


def deliveries(client: Client, admin: Headers, endpoint_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/webhooks/{endpoint_id}/deliveries", headers=admin)
    assert response.status_code == 200
    return response.json()["items"]  # type: ignore[no-any-return]


def test_endpoint_management_shows_the_secret_once(hooks: tuple[Client, dict[str, Headers]],
                                                   hooks_settings: Settings) -> None:
    client, tokens = hooks
    admin = tokens["admin"]
    created = subscribe(client, admin, "https://hooks.example.com/rebuild",
                        description="Static site")
    secret = created["secret"]
    assert secret.startswith("whsec_")
    endpoint = created["endpoint"]
    assert endpoint["events"] == ["comparison.published", "comparison.unpublished"]
    read = client.get(f"/api/webhooks/{endpoint['id']}", headers=admin)
    assert "secret" not in read.text
    assert secret not in client.get("/api/webhooks", headers=admin).text
    patched = client.patch(f"/api/webhooks/{endpoint['id']}", headers=admin,
                           json={"events": ["comparison.transitioned"], "enabled": False})
    assert patched.json()["events"] == ["comparison.transitioned"]
    assert patched.json()["enabled"] is False
    rotated = client.post(f"/api/webhooks/{endpoint['id']}/rotate-secret", headers=admin)
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != secret
    bad = client.post("/api/webhooks", json={"url": "ftp://example.com"}, headers=admin)
    assert bad.status_code == 422
    assert bad.json()["field"] == "url"
    for broken in ("http://[::1/hook", "http://example.com:99999/hook", "http://example.com:0/"):
        refused = client.post("/api/webhooks", json={"url": broken}, headers=admin)
        assert refused.status_code == 422, broken
        assert refused.json()["field"] == "url"
    data = hooks_settings.data
    for name in ("webhooks.sqlite3", "webhooks.sqlite3-wal"):
        assert (data / name).stat().st_mode & 0o077 == 0, name
    unknown_event = client.post("/api/webhooks", headers=admin,
                                json={"url": "https://example.com/h", "events": ["comparison.saved"]})
    assert unknown_event.status_code == 422
    assert client.delete(f"/api/webhooks/{endpoint['id']}", headers=admin).status_code == 204
    assert client.get(f"/api/webhooks/{endpoint['id']}", headers=admin).status_code == 404
    # Secrets stay out of the content repository.
    for path in hooks_settings.repo.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes()


def test_publish_is_delivered_signed_and_verifiable(hooks: tuple[Client, dict[str, Headers]]
                                                    ) -> None:
    client, tokens = hooks
    with running(Receiver()) as receiver:
        created = subscribe(client, tokens["admin"], receiver.url)
        publish_new(client, tokens, "webhook-one")
        drain(client)
        assert len(receiver.received) == 1
        request = receiver.received[0]
        payload = Webhook(created["secret"]).verify(request.body, request.headers)
    assert payload["type"] == "comparison.published"
    data = payload["data"]
    assert data["slug"] == "webhook-one"
    assert data["url"] == "http://cms.test/api/comparisons/webhook-one"
    assert data["actor"] == {"name": "Paul Publisher", "email": "paul@example.com"}
    assert data["approvers"] == ["Rita Reviewer <rita@example.com>"]
    assert len(data["commit"]) == 40
    assert data["previous_commit"] != data["commit"]
    assert request.headers["Content-Type"] == "application/json"
    log = deliveries(client, tokens["admin"], created["endpoint"]["id"])
    assert log[0]["status"] == "delivered"
    assert log[0]["attempt_log"][0]["status_code"] == 200


def test_draft_saves_and_transitions_send_nothing_unless_asked(
    hooks: tuple[Client, dict[str, Headers]]
) -> None:
    client, tokens = hooks
    with running(Receiver()) as published_only, running(Receiver()) as everything:
        subscribe(client, tokens["admin"], published_only.url)
        subscribe(client, tokens["admin"], everything.url,
                  events=["comparison.transitioned"])
        base = client.get(f"/api/comparisons/{HAIKU}").json()
        created = client.post("/api/drafts", json=new_document(base, "quiet-draft", "Quiet"),
                              headers=tokens["editor"])
        act(client, "quiet-draft", "submit", tokens["editor"], created.headers["etag"])
        drain(client)
        assert published_only.received == []
        assert len(everything.received) == 1
        event = json.loads(everything.received[0].body)
        assert event["type"] == "comparison.transitioned"
        assert (event["data"]["action"], event["data"]["state"]) == ("submit", "in_review")


def test_retries_until_2xx_and_keeps_the_id(hooks: tuple[Client, dict[str, Headers]]) -> None:
    client, tokens = hooks
    with running(Receiver(answers=[500, 302, 200])) as flaky:
        created = subscribe(client, tokens["admin"], flaky.url)
        publish_new(client, tokens, "flaky-one")
        drain(client)
        assert len(flaky.received) == 3
        assert len(set(flaky.ids())) == 1
        stamps = {r.headers["webhook-timestamp"] for r in flaky.received}
        assert stamps
    log = deliveries(client, tokens["admin"], created["endpoint"]["id"])
    assert [a["status_code"] for a in log[0]["attempt_log"]] == [500, 302, 200]
    assert log[0]["status"] == "delivered"


def test_a_dead_receiver_is_given_up_on_after_the_schedule(
    hooks: tuple[Client, dict[str, Headers]]
) -> None:
    client, tokens = hooks
    created = subscribe(client, tokens["admin"], dead_url())
    publish_new(client, tokens, "to-nowhere")
    drain(client)
    log = deliveries(client, tokens["admin"], created["endpoint"]["id"])
    assert log[0]["status"] == "failed"
    assert len(log[0]["attempt_log"]) == 4  # the first try and three retries
    assert all(a["error"] and a["status_code"] is None for a in log[0]["attempt_log"])


def test_410_disables_the_endpoint(hooks: tuple[Client, dict[str, Headers]]) -> None:
    client, tokens = hooks
    with running(Receiver(answers=[410])) as gone:
        created = subscribe(client, tokens["admin"], gone.url)
        publish_new(client, tokens, "gone-one")
        publish_new(client, tokens, "gone-two")
        drain(client)
        assert len(gone.received) == 1
    endpoint = client.get(f"/api/webhooks/{created['endpoint']['id']}", headers=tokens["admin"])
    assert endpoint.json()["enabled"] is False
    assert "410" in endpoint.json()["disabled_reason"]
    statuses = [d["status"] for d in deliveries(client, tokens["admin"], created["endpoint"]["id"])]
    assert statuses == ["pending", "failed"]


def test_retry_after_is_honoured(hooks: tuple[Client, dict[str, Headers]]) -> None:
    client, tokens = hooks
    with running(Receiver(answers=[503, 200], extra_headers={"Retry-After": "120"})) as busy:
        created = subscribe(client, tokens["admin"], busy.url)
        before = time.time()
        publish_new(client, tokens, "busy-one")
        drain(client)
        assert len(busy.received) == 1
        pending = deliveries(client, tokens["admin"], created["endpoint"]["id"])[0]
        assert pending["status"] == "pending"
        due = msgspec.convert(pending["next_attempt_at"], type=datetime)
        assert due.timestamp() >= before + 119
        drain(client, at=due.timestamp() + 1)
        assert len(busy.received) == 2


def test_order_is_kept_per_endpoint(hooks: tuple[Client, dict[str, Headers]]) -> None:
    client, tokens = hooks
    with running(Receiver(answers=[500, 200])) as first, running(Receiver()) as second:
        subscribe(client, tokens["admin"], first.url)
        subscribe(client, tokens["admin"], second.url)
        slugs = [f"ordered-{n}" for n in range(5)]
        for slug in slugs:
            publish_new(client, tokens, slug)
        drain(client)
        for receiver in (first, second):
            seen = [json.loads(r.body)["data"]["slug"] for r in receiver.received]
            assert [s for i, s in enumerate(seen) if s not in seen[:i]] == slugs
        assert len(first.received) == 6
        assert len(second.received) == 5


def test_private_targets_are_refused_unless_allowed(tmp_path: Path) -> None:
    settings = webhook_settings(tmp_path, webhook_allow_private=False)
    initialise(settings, SEED)
    tokens = make_tokens(settings)
    with running(Receiver()) as receiver, TestClient(app=create_app(settings)) as client:
        created = subscribe(client, tokens["admin"], receiver.url)
        publish_new(client, tokens, "private-target")
        drain(client)
        assert receiver.received == []
        log = deliveries(client, tokens["admin"], created["endpoint"]["id"])
    assert "non-public address" in log[0]["attempt_log"][0]["error"]


def test_both_signatures_during_a_rotation(hooks: tuple[Client, dict[str, Headers]]) -> None:
    client, tokens = hooks
    with running(Receiver()) as receiver:
        created = subscribe(client, tokens["admin"], receiver.url)
        endpoint_id = created["endpoint"]["id"]
        rotated = client.post(f"/api/webhooks/{endpoint_id}/rotate-secret",
                              headers=tokens["admin"]).json()
        publish_new(client, tokens, "rotated-one")
        drain(client)
        request = receiver.received[0]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (created["secret"], rotated["secret"]):
        Webhook(secret).verify(request.body, request.headers)


def test_redeliver_and_replay(hooks: tuple[Client, dict[str, Headers]]) -> None:
    client, tokens = hooks
    admin = tokens["admin"]
    with running(Receiver()) as receiver:
        created = subscribe(client, admin, receiver.url)
        endpoint_id = created["endpoint"]["id"]
        start = client.get("/health").json()["head"]
        publish_new(client, tokens, "replayed-one")
        publish_new(client, tokens, "replayed-two")
        drain(client)
        assert len(receiver.received) == 2
        first = deliveries(client, admin, endpoint_id)[-1]
        again = client.post(f"/api/webhooks/{endpoint_id}/deliveries/{first['id']}/redeliver",
                            headers=admin)
        assert again.status_code == 201
        assert again.json()["redelivery_of"] == first["id"]
        replayed = client.post(f"/api/webhooks/{endpoint_id}/replay", json={"since": start},
                               headers=admin)
        assert replayed.json() == {"queued": 2}
        drain(client)
        ids = receiver.ids()
        assert len(ids) == 5
        assert ids[2] == ids[0]
        assert ids[3:] == ids[:2]
        foreign = client.post(f"/api/webhooks/{endpoint_id}/replay", json={"since": "1" * 40},
                              headers=admin)
        assert foreign.status_code == 422  # well formed, but not a publication
        assert foreign.json()["field"] == "since"


def test_a_burst_coalesces_into_one_call(hooks: tuple[Client, dict[str, Headers]]) -> None:
    client, tokens = hooks
    with running(Receiver()) as receiver:
        created = subscribe(client, tokens["admin"], receiver.url, coalesce_seconds=600)
        for number in range(5):
            publish_new(client, tokens, f"burst-{number}")
        drain(client)
        assert receiver.received == []
        drain(client, at=time.time() + 601)
        assert len(receiver.received) == 1
        assert json.loads(receiver.received[0].body)["data"]["slug"] == "burst-4"
    statuses = [d["status"] for d in deliveries(client, tokens["admin"], created["endpoint"]["id"])]
    assert statuses == ["delivered", "coalesced", "coalesced", "coalesced", "coalesced"]


def test_a_slow_receiver_never_blocks_an_editor(tmp_path: Path) -> None:
    settings = webhook_settings(tmp_path, webhook_worker=True)
    initialise(settings, SEED)
    tokens = make_tokens(settings)
    slow = Receiver()
    slow.hold = threading.Event()
    with running(slow), running(Receiver()) as fast, \
            TestClient(app=create_app(settings)) as client:
        subscribe(client, tokens["admin"], slow.url)
        subscribe(client, tokens["admin"], fast.url)
        publish_new(client, tokens, "slow-one")
        assert slow.wait_for(1)
        # The receiver is still holding its first request, and yet the next publish completes
        # and the other endpoint hears of both.
        publish_new(client, tokens, "slow-two")
        assert fast.wait_for(2)
        assert not slow.hold.is_set()
        assert len(slow.received) == 1
        slow.hold.set()
        assert slow.wait_for(2)


def test_events_survive_a_restart_and_a_crash_before_recording(tmp_path: Path) -> None:
    settings = webhook_settings(tmp_path, webhook_worker=True)
    initialise(settings, SEED)
    tokens = make_tokens(settings)
    receiver = Receiver()
    with TestClient(app=create_app(settings)) as client:
        subscribe(client, tokens["admin"], receiver.url)
    # While no server runs, a comparison is published by the store alone, as if the server had
    # died between the commit and recording its event.
    store = open_write_side(settings, repo=Repository(settings.repo))
    current = store.documents.published(HAIKU)
    assert current is not None
    publisher = Actor(name="Paul Publisher", email="paul@example.com",
                      roles=frozenset({"publisher"}))
    store.editor.transition(HAIKU, "unpublish", publisher, current.revision)
    with running(receiver), TestClient(app=create_app(settings)):
        assert receiver.wait_for(1)
    event = json.loads(receiver.received[0].body)
    assert (event["type"], event["data"]["slug"]) == ("comparison.unpublished", HAIKU)


def test_a_build_hook_gets_a_signed_empty_post(hooks: tuple[Client, dict[str, Headers]]) -> None:
    client, tokens = hooks
    with running(Receiver()) as receiver:
        created = subscribe(client, tokens["admin"], receiver.url, kind="build_hook")
        publish_new(client, tokens, "build-hook-one")
        drain(client)
        request = receiver.received[0]
    assert request.body == b""
    Webhook(created["secret"]).verify(request.body, request.headers, json_parse=False)
