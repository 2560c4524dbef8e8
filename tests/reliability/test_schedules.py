"""Schedules across real processes: what fell due while no server ran is carried out once, by
whichever of several servers starting together gets to it, and never again after a SIGKILL and
an immediate restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from cms.config import load_settings
from cms.editing.release_schedules import ReleaseSchedules
from cms.editing.releases import Releases
from cms.editing.schedules import Schedules
from cms.editing.write_side import open_write_side
from cms.identity.actors import Actor

from ..helpers import EDITOR, approved_draft, race
from .support import (
    MAIN,
    Server,
    cms_env,
    first_parents,
    free_port,
    fsck,
    git,
    init_repository,
    token,
    tracebacks,
)

PUBLISHER = Actor(name="Paul Publisher", email="paul@example.com",
                  roles=frozenset({"publisher"}))


def test_overdue_schedules_run_once_across_servers_starting_together(tmp_path: Path) -> None:
    repo, data = tmp_path / "content.git", tmp_path / "data"
    envs = [cms_env(repo, data, free_port()) for _ in range(3)]
    init_repository(envs[0])
    auditor = token(data, "Aud Auditor", "aud@example.com", "auditor")
    token(data, "Paul Publisher", "paul@example.com", "publisher")  # whose schedules run
    side = open_write_side(load_settings({}, repo=repo, data=data))
    schedules = Schedules(side.documents, side.pipeline, side.editor, side.workflows)
    releases = Releases(side.documents, side.pipeline, side.workflows)
    slugs = sorted(ref.rsplit("/", 1)[-1].removesuffix(".md") for ref in git(
        repo, "ls-tree", "-r", "--name-only", MAIN, "content/comparisons").split())
    due = datetime.now(UTC) - timedelta(minutes=30)
    made_at = due - timedelta(minutes=30)  # scheduled an hour ago, as the clock then allowed
    for slug in slugs[:3]:
        draft = approved_draft(side, slug, f"Scheduled {slug}.")
        schedules.schedule(slug, "publish", due, PUBLISHER, draft.revision, now=made_at)
    for slug in slugs[3:5]:
        approved_draft(side, slug, f"Released {slug}.")
    release = releases.create("Overdue", slugs[3:5], EDITOR)
    ReleaseSchedules(releases).schedule(release.id, due, PUBLISHER, now=made_at)
    before = len(first_parents(repo))

    servers = [Server(env, tmp_path / f"server-{n}.log", f"server-{n}")
               for n, env in enumerate(envs)]
    try:
        race([server.start for server in servers])  # each carries out what is due, at start
        runs = git(repo, "log", "--first-parent", "--format=%(trailers:key=Cms-Schedule,"
                   "valueonly,separator=)", MAIN).split()
        assert len(runs) == 4, runs  # three publications and one release
        assert len(set(runs)) == 4
        assert len(first_parents(repo)) == before + 4
        # Killed and started again at once: nothing runs twice.
        servers[0].kill()
        servers[0].start()
        assert len(first_parents(repo)) == before + 4
        for server in servers:
            listed = httpx.get(f"{server.url}/api/schedule", headers=auditor, timeout=30).json()
            assert listed == {"items": [], "releases": []}
        report = httpx.get(f"{servers[1].url}/api/audit/verify", headers=auditor,
                           timeout=60).json()
        assert report["ok"], report["findings"]
    finally:
        for server in servers:
            server.stop()
    assert fsck(repo) == ""
    assert tracebacks(servers) == []
