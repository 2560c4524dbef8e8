"""Instances that share one upstream, through their API: `cms init` seeds an empty upstream once
and clones one that has content; a forge's signed push hook makes an instance fetch at once; an
unreachable upstream answers 503 and writes nothing."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from litestar.testing import TestClient

from cms.api.app import create_app
from cms.cli import main
from cms.config import Settings, load_settings

from ..conftest import fsck, make_tokens
from ..helpers import new_document
from .support import git_daemon
from .test_upstream import upstream_refs

SECRET = "hook-secret-for-tests"
SLUG = "langgraph-vs-crewai"


def instance(base: Path, name: str, url: str) -> Settings:
    return load_settings({}, repo=base / name / "content", data=base / name / "data",
                         upstream=url, git_hook_secret=SECRET, public_url="http://cms.test",
                         webhook_worker=False)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    bare = tmp_path / "srv" / "site.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    with git_daemon(tmp_path / "srv") as prefix:
        yield bare, f"{prefix}/site.git"


def cms_init(settings: Settings, capsys: pytest.CaptureFixture[str]) -> str:
    environment = {"CMS_REPO": str(settings.repo), "CMS_UPSTREAM": settings.upstream}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        assert main(["init"]) == 0
    return capsys.readouterr().out


def test_init_seeds_an_empty_upstream_once_and_clones_it_after(
        tmp_path: Path, upstream: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    bare, url = upstream
    first, second = instance(tmp_path, "a", url), instance(tmp_path, "b", url)
    assert "published comparisons" in cms_init(first, capsys)
    seeded = upstream_refs(bare)
    assert "refs/heads/main" in seeded
    assert "Cloned" in cms_init(second, capsys)
    assert upstream_refs(bare) == seeded
    assert upstream_refs(second.repo) == seeded
    fsck(bare)


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def test_a_signed_push_hook_makes_an_instance_read_another_ones_write_at_once(
        tmp_path: Path, upstream: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    bare, url = upstream
    a = instance(tmp_path, "a", url)
    # b follows only when called: what it learns here, it learns from the hook.
    b = msgspec.structs.replace(instance(tmp_path, "b", url), fetch_interval=3600.0)
    cms_init(a, capsys)
    people = make_tokens(a)
    with TestClient(app=create_app(a)) as first, TestClient(app=create_app(b)) as second:
        base = first.get(f"/api/comparisons/{SLUG}").json()
        created = first.post("/api/drafts", headers=people["editor"],
                             json=new_document(base, "new-one-vs-other", "New one vs other"))
        assert created.status_code == 201, created.text
        body = b'{"ref": "refs/heads/cms/comparisons/new-one-vs-other"}'
        refused = [
            second.post("/api/hooks/git", content=body),
            second.post("/api/hooks/git", content=body,
                        headers={"X-Hub-Signature-256": sign(b"other body")}),
            second.post("/api/hooks/git", content=body, headers={"X-Gitlab-Token": "guess"}),
        ]
        assert [answer.status_code for answer in refused] == [401, 401, 401]
        assert all(answer.json()["code"] == "unauthorized" for answer in refused)
        # Nothing the refused calls did made b fetch: b has not seen a's draft.
        assert b.repo.exists()
        assert "refs/heads/cms/comparisons/new-one-vs-other" not in upstream_refs(b.repo)
        fetched = second.post("/api/hooks/git", content=body,
                              headers={"X-Hub-Signature-256": sign(body)})
        assert fetched.status_code == 200, fetched.text
        assert fetched.json()["main"] == upstream_refs(bare)["refs/heads/main"]
        assert "refs/heads/cms/comparisons/new-one-vs-other" in upstream_refs(b.repo)
        assert upstream_refs(b.repo) == upstream_refs(bare)
        by_gitlab = second.post("/api/hooks/git", content=body,
                                headers={"X-Gitlab-Token": SECRET})
        assert by_gitlab.status_code == 200


def test_an_instance_without_an_upstream_has_no_hook_to_call(
        client: TestClient) -> None:  # type: ignore[type-arg]
    answer = client.post("/api/hooks/git", content=b"{}",
                         headers={"X-Hub-Signature-256": sign(b"{}")})
    assert answer.status_code == 404
    assert "CMS_UPSTREAM" in answer.json()["message"]


def test_an_unreachable_upstream_answers_503_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = tmp_path / "srv" / "site.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    with git_daemon(tmp_path / "srv") as prefix:
        a = instance(tmp_path, "a", f"{prefix}/site.git")
        cms_init(a, capsys)
        people = make_tokens(a)
        app = create_app(a)
    before = upstream_refs(bare)
    local = upstream_refs(a.repo)
    with TestClient(app=app) as client:
        base = client.get(f"/api/comparisons/{SLUG}").json()
        answer = client.post("/api/drafts", headers=people["editor"],
                             json=new_document(base, "new-one-vs-other", "New one vs other"))
    assert answer.status_code == 503
    assert answer.json()["code"] == "upstream_unavailable"
    assert "nothing was written" in answer.json()["message"]
    assert upstream_refs(bare) == before
    assert upstream_refs(a.repo) == local
