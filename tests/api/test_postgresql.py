"""The app on PostgreSQL (CMS_DATABASE_URL), as two instances with CMS_DATA folders of their own
would run it: tokens, webhooks, votes and previews are shared through the one database, a
publication is delivered once, and a database that goes away is a 503 with a JSON body."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
import pytest
from litestar.testing import TestClient

from cms.api.app import create_app
from cms.config import Settings
from cms.editing.seed import initialise
from cms.votes import store as votes_store

from ..conftest import HAIKU, SEED, fsck, make_tokens
from ..receivers import Receiver, running
from ..votes.test_votes import HAIKU_TOOL
from ..webhooks.test_webhooks import deliveries, publish_new, subscribe, webhook_settings

Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
def on_postgres(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Settings, Settings]]:
    """Two instances' settings: one repository, one database, CMS_DATA folders of their own."""
    one = webhook_settings(tmp_path, database_url=postgres_url, webhook_worker=True)
    two = msgspec.structs.replace(one, data=tmp_path / "data-two")
    initialise(one, SEED)
    yield one, two
    fsck(one.repo)


def test_two_instances_share_tokens_webhooks_votes_and_previews(
        on_postgres: tuple[Settings, Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(votes_store, "RECHECK_SECONDS", 0.0)  # exactness, not timing
    settings, other = on_postgres
    tokens = make_tokens(settings)
    with running(Receiver()) as receiver, TestClient(app=create_app(settings)) as one, \
            TestClient(app=create_app(other)) as two:
        made = one.post("/api/tokens", headers=tokens["admin"],
                        json={"name": "Ed Two", "email": "ed2@example.com", "roles": ["editor"]})
        assert made.status_code == 201, made.text
        assert two.get(f"/api/drafts/{HAIKU}", headers={
            "Authorization": f"Bearer {made.json()['token']}"}).status_code == 200
        endpoint = subscribe(two, tokens["admin"], receiver.url)["endpoint"]
        publish_new(one, tokens, "shared-on-postgres")
        assert receiver.wait_finished(1)
        # The other instance reads the publication log too, and sends what is due: nothing.
        two.app.state.services.webhooks.catch_up()
        two.app.state.services.webhooks.dispatcher.drain()
        log = deliveries(one, tokens["admin"], endpoint["id"])
        assert [(d["status"], d["slug"]) for d in log] == [("delivered", "shared-on-postgres")]

        before = two.get(f"/api/comparisons/{HAIKU}").json()["tools"][0]["community"]["ship"]
        assert one.post(f"/api/comparisons/{HAIKU}/votes",
                        json={"tool": HAIKU_TOOL, "vote": "ship"}).status_code == 202
        after = two.get(f"/api/comparisons/{HAIKU}").json()["tools"][0]["community"]["ship"]
        assert after == before + 1

        link = one.post(f"/api/drafts/{HAIKU}/preview", headers=tokens["editor"], json={})
        assert link.status_code == 201, link.text
        path = link.json()["url"].removeprefix(settings.base_url)
        assert two.get(path).status_code == 200
    assert len(receiver.received) == 1  # both stopped: once, whoever recorded and sent it


def test_a_database_gone_is_a_503_with_a_json_body(on_postgres: tuple[Settings, Settings],
                                                   postgres_server: str) -> None:
    settings, _ = on_postgres
    tokens = make_tokens(settings)
    with TestClient(app=create_app(settings)) as client:
        assert client.get("/api/tokens", headers=tokens["admin"]).status_code == 200
        name = settings.database_url.rsplit("/", 1)[1]
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        for answer in (client.get("/api/tokens", headers=tokens["admin"]),
                       client.post("/api/webhooks", headers=tokens["admin"],
                                   json={"url": "https://hooks.example.com/x"})):
            assert answer.status_code == 503, answer.text
            body = answer.json()
            assert body["code"] == "store_unavailable"
            assert settings.database_url not in answer.text
        # Published reads do not need the database.
        assert client.get(f"/api/comparisons/{HAIKU}").status_code == 200
