"""A read-only replica (`cms serve --read-only`): it follows the upstream and serves the delivery
API (published reads, sync, feeds) and nothing else. It runs here on a PostgreSQL role that may
only read, so that any write it made to the shared database would fail the test."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
import pytest
from litestar.testing import TestClient

from cms.api.app import create_app
from cms.config import Settings

from ..conftest import make_tokens
from ..helpers import new_document
from .support import git_daemon
from .test_instances import SLUG, cms_init, instance, sign


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[str]:
    bare = tmp_path / "srv" / "site.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    with git_daemon(tmp_path / "srv") as prefix:
        yield f"{prefix}/site.git"


def reading_role(database_url: str) -> str:
    """The URL of ``database_url`` for a new role that may only read its tables."""
    base, _, name = database_url.rpartition("/")
    role = f"reader_{name}"
    with psycopg.connect(database_url, autocommit=True) as db:
        db.execute(f"CREATE ROLE {role} LOGIN")
        db.execute(f"GRANT CONNECT ON DATABASE {name} TO {role}")
        db.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    return base.replace("//cms@", f"//{role}@") + f"/{name}"


def publish_new(client: TestClient, people: dict[str, dict[str, str]],  # type: ignore[type-arg]
                slug: str) -> None:
    base = client.get(f"/api/comparisons/{SLUG}").json()
    created = client.post("/api/drafts", headers=people["editor"],
                          json=new_document(base, slug, f"Title of {slug}"))
    assert created.status_code == 201, created.text
    etag = created.headers["etag"]
    for action, who in (("submit", "editor"), ("approve", "reviewer"), ("publish", "publisher")):
        answer = client.post(f"/api/drafts/{slug}/transitions", json={"action": action},
                             headers={**people[who], "If-Match": etag})
        assert answer.status_code == 200, answer.text
        etag = answer.headers["etag"]


def replica_of(writer: Settings, tmp_path: Path, database_url: str) -> Settings:
    return msgspec.structs.replace(
        instance(tmp_path, "replica", writer.upstream), read_only=True,
        database_url=database_url)


def test_a_replica_serves_what_the_writers_publish_and_writes_nothing(
        tmp_path: Path, upstream: str, postgres_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    writer = msgspec.structs.replace(instance(tmp_path, "a", upstream), database_url=postgres_url)
    cms_init(writer, capsys)
    people = make_tokens(writer)
    with TestClient(app=create_app(writer)) as first:
        publish_new(first, people, "first-new-vs-old")
        synced = first.get("/api/sync").json()
        replica = replica_of(writer, tmp_path, reading_role(postgres_url))
        with TestClient(app=create_app(replica)) as reader:
            # Cloned at start: what was published is there.
            assert reader.get("/api/comparisons/first-new-vs-old").status_code == 200
            publish_new(first, people, "second-new-vs-old")
            fetched = reader.post("/api/hooks/git", content=b"{}",
                                  headers={"X-Hub-Signature-256": sign(b"{}")})
            assert fetched.status_code == 200, fetched.text
            assert reader.get("/api/comparisons/second-new-vs-old").status_code == 200
            # A sync token of the writer goes on at the replica: one key, in the database.
            changes = reader.get("/api/sync", params={"token": synced["next_sync"]})
            assert changes.status_code == 200, changes.text
            assert [item["slug"] for item in changes.json()["items"]] == ["second-new-vs-old"]
            assert reader.get("/api/feed.json").status_code == 200
            # A token is not looked at (every route is public), and nothing writes.
            listed = reader.get("/api/comparisons", headers=people["editor"])
            assert listed.status_code == 200
            base = reader.get(f"/api/comparisons/{SLUG}").json()
            refused = [
                reader.post("/api/drafts", headers=people["editor"],
                            json=new_document(base, "third-new-vs-old", "Third")),
                reader.post(f"/api/comparisons/{SLUG}/votes",
                            json={"tool": base["tools"][0]["id"], "vote": "ship"}),
                reader.get("/api/tokens", headers=people["admin"]),
            ]
            assert [answer.status_code in (404, 405) for answer in refused] == [True] * 3
            paths = set(reader.get("/schema/openapi.json").json()["paths"])
            assert paths == {"/health", "/api/comparisons", "/api/comparisons/{slug}",
                             "/api/comparisons/{slug}/verdict-changes", "/api/verdict-changes",
                             "/api/sync", "/api/feed.atom", "/api/feed.json", "/api/hooks/git"}


def test_a_replica_needs_a_writer_to_have_started_once(
        tmp_path: Path, upstream: str, postgres_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    writer = msgspec.structs.replace(instance(tmp_path, "a", upstream), database_url=postgres_url)
    cms_init(writer, capsys)
    replica = replica_of(writer, tmp_path, postgres_url)
    from cms.errors import StoreError

    with pytest.raises(StoreError, match="start an instance that writes"):
        create_app(replica)
