"""A writer killed mid-write, and a full disk: the repository stays valid and nothing acked is lost."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from cms.api.app import create_app
from cms.config import Settings, load_settings
from cms.editing.seed import initialise
from cms.editing.write_side import open_write_side
from cms.identity.actors import Actor
from cms.identity.tokens import TokenStore
from cms.store import refs as refs_module
from cms.store.recovery import recover
from cms.store.refs import Move, Refs
from cms.store.repository import Repository

from ..conftest import HAIKU, SEED, fsck, git
from ..helpers import approved_draft

PUBLISHER = Actor(name="Paul Publisher", email="paul@example.com", roles=frozenset({"publisher"}))


WRITER = textwrap.dedent("""
    import sys, msgspec
    from cms.config import load_settings
    from cms.editing.write_side import open_write_side
    from cms.identity.actors import Actor

    settings = load_settings({}, repo=sys.argv[1], data=sys.argv[2])
    store = open_write_side(settings)
    editor = Actor(name="Crash Editor", email="crash@example.com", roles=frozenset({"editor"}))
    current = store.documents.current(sys.argv[3])
    for number in range(500):
        edited = msgspec.structs.replace(current.comparison, summary=f"Edit number {number}.")
        current = store.editor.save(sys.argv[3], edited, editor, current.revision)
        print(current.commit, flush=True)
""")


def test_kill_nine_mid_write_loses_no_acknowledged_write(settings: Settings,
                                                         repo_path: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", WRITER, str(repo_path), str(settings.data), HAIKU],
                          stdout=subprocess.PIPE, text=True) as writer:
        assert writer.stdout is not None
        acknowledged = [writer.stdout.readline().strip() for _ in range(20)]
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        acknowledged += [line.strip() for line in writer.stdout if line.strip()]
    branch = f"refs/heads/cms/comparisons/{HAIKU}"
    for commit in acknowledged:
        ancestor = subprocess.run(["git", "--git-dir", str(repo_path), "merge-base",
                                   "--is-ancestor", commit, branch], check=False)
        assert ancestor.returncode == 0, commit
    store = open_write_side(settings, repo=Repository(repo_path))
    recover(store.documents)
    fsck(repo_path)
    current = store.documents.current(HAIKU)
    assert current is not None
    assert current.comparison.summary.startswith("Edit number ")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                            capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip("mounting a small tmpfs needs privileges this machine does not grant")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_refuses_the_write_and_changes_nothing(small_disk: Path) -> None:
    settings = load_settings({}, repo=small_disk / "content.git", data=small_disk / "data")
    initialise(settings, SEED)
    _, token = TokenStore.open(settings).create("Ada Editor", "ada@example.com", ["editor"])
    editor = {"Authorization": f"Bearer {token}"}
    with TestClient(app=create_app(settings)) as client:
        public = client.get(f"/api/comparisons/{HAIKU}")
        # The catalogue is filled in the background after a start: filled before the disk is,
        # so that it does not meet the full disk, set its file aside and free the space the
        # write is to find missing.
        assert client.get("/api/comparisons?limit=1").status_code == 200
        assert client.get("/health").json()["index_ready"]
        refs_before = git(settings.repo, "for-each-ref")
        filler = small_disk / "filler"
        try:
            with open(filler, "wb") as handle:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
        except OSError:
            pass  # full
        document = dict(public.json(), summary="Written to a full disk.")
        response = client.put(f"/api/drafts/{HAIKU}", json=document,
                              headers={**editor, "If-Match": public.headers["etag"]})
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "store_unavailable"
        assert "Traceback" not in response.text
        assert git(settings.repo, "for-each-ref") == refs_before

        filler.unlink(missing_ok=True)
        retry = client.put(f"/api/drafts/{HAIKU}", json=document,
                           headers={**editor, "If-Match": public.headers["etag"]})
        assert retry.status_code == 200, retry.text
    fsck(settings.repo)
    shutil.rmtree(settings.repo)


def interrupted_unpublish(settings: Settings) -> None:
    """An unpublish that a crash stopped between its two ref moves, a moment ago."""
    store = open_write_side(settings)
    published = store.documents.published(HAIKU)
    assert published is not None
    main_before = store.documents.main_head()
    unpublished = store.editor.transition(HAIKU, "unpublish", PUBLISHER, published.revision)
    store.repo.refs.update(store.layout.main_ref, main_before or "", unpublished.commit)


def test_a_server_restarted_at_once_finishes_what_its_crash_left(settings: Settings,
                                                                 repo_path: Path) -> None:
    interrupted_unpublish(settings)
    with TestClient(app=create_app(settings)) as client:
        assert client.get(f"/api/comparisons/{HAIKU}").status_code == 404
    fsck(repo_path)


def test_beside_a_live_server_a_fresh_half_write_is_recovered_too(settings: Settings,
                                                                  repo_path: Path) -> None:
    with TestClient(app=create_app(settings)):  # another server, alive
        interrupted_unpublish(settings)
        with TestClient(app=create_app(settings)) as client:
            assert client.get(f"/api/comparisons/{HAIKU}").status_code == 404
    fsck(repo_path)


@pytest.mark.parametrize("action", ["unpublish", "publish"])
def test_recovery_leaves_a_live_writer_between_its_two_moves_alone(
        settings: Settings, repo_path: Path, monkeypatch: pytest.MonkeyPatch, action: str) -> None:
    """Recovery from another process runs while a live writer has moved its first ref and not
    its second: it waits on the writer's locks and gives up, changing nothing, and the write
    completes as if recovery had never looked."""
    monkeypatch.setattr(refs_module, "_LOCK_WAIT_SECONDS", 0.2)
    writer, recovering = open_write_side(settings), open_write_side(settings)
    revision = writer.documents.published(HAIKU)
    assert revision is not None
    if action == "publish":
        revision = approved_draft(writer, HAIKU)
    first_moved, recovered = threading.Event(), threading.Event()
    original = Refs._commit

    def apply(self: Refs, move: Move, lock: Any, done: list[Move]) -> None:
        original(self, move, lock, done)
        if self is writer.repo.refs and not first_moved.is_set():
            first_moved.set()
            assert recovered.wait(30)

    monkeypatch.setattr(Refs, "_commit", apply)
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(writer.editor.transition(
        HAIKU, action, PUBLISHER, revision.revision).state))
    thread.start()
    try:
        assert first_moved.wait(30)
        assert recover(recovering.documents) == []
    finally:
        recovered.set()
        thread.join(timeout=30)
    assert outcome == [{"publish": "published", "unpublish": "unpublished"}[action]]
    current = recovering.documents.current(HAIKU)
    assert current is not None
    assert current.state == outcome[0]
    assert recover(recovering.documents) == []  # and nothing is left to recover
    fsck(repo_path)


def test_a_vote_on_a_full_disk_is_a_503_without_a_traceback(
        small_disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    settings = load_settings({}, repo=small_disk / "content.git", data=small_disk / "data",
                             vote_rate=0)
    initialise(settings, SEED)
    with TestClient(app=create_app(settings)) as client:
        tool = client.get(f"/api/comparisons/{HAIKU}").json()["tools"][0]["id"]
        ballot = {"tool": tool, "vote": "ship"}
        assert client.post(f"/api/comparisons/{HAIKU}/votes", json=ballot).status_code == 202
        filler = small_disk / "filler"
        with open(filler, "wb", buffering=0) as handle, contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 4096)
        with caplog.at_level(logging.WARNING):
            answers = [client.post(f"/api/comparisons/{HAIKU}/votes", json=ballot)
                       for _ in range(20)]
        assert {answer.status_code for answer in answers} <= {202, 503}
        assert 503 in {answer.status_code for answer in answers}
        assert all(answer.json()["code"] == "store_unavailable"
                   for answer in answers if answer.status_code == 503)
        assert not [record for record in caplog.records if record.exc_info]
        filler.unlink(missing_ok=True)
        assert client.post(f"/api/comparisons/{HAIKU}/votes", json=ballot).status_code == 202
