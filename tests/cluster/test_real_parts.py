"""The parts a cluster of instances stands on, started for real: a PostgreSQL that keeps what
one connection writes for the next, and a git daemon whose pushes are compare-and-swap across
refs, all or nothing (what an instance relies on to acknowledge a write only once it is on the
upstream)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg

from cms.config import load_settings
from cms.editing.seed import initialise

from ..conftest import SEED
from .support import git_daemon, postgres


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check,
                          timeout=60)


def test_postgres_runs_unprivileged_on_loopback_and_keeps_what_is_written() -> None:
    with postgres() as url:
        with psycopg.connect(url, autocommit=True) as first:
            first.execute("CREATE TABLE leases (name text PRIMARY KEY, holder text NOT NULL)")
            first.execute("INSERT INTO leases VALUES ('scheduler', 'instance-a')")
        with psycopg.connect(url) as second:
            held = second.execute("SELECT holder FROM leases WHERE name = 'scheduler'").fetchone()
            owner = second.execute("SELECT current_user, inet_server_addr()::text").fetchone()
    assert held == ("instance-a",)
    assert owner is not None
    assert owner[1].startswith("127.0.0.1")


def test_a_push_to_the_daemon_moves_refs_only_from_where_it_expects(tmp_path: Path) -> None:
    settings = load_settings({}, repo=tmp_path / "base" / "upstream.git", data=tmp_path / "data")
    initialise(settings, SEED)
    with git_daemon(tmp_path / "base") as prefix:
        url = f"{prefix}/upstream.git"
        for name in ("a", "b"):
            git("clone", "-q", url, str(tmp_path / name))
            git("-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q",
                "--allow-empty", "-m", f"From {name}", cwd=tmp_path / name)
        start = git("rev-parse", "origin/main", cwd=tmp_path / "a").stdout.strip()
        pushed = git("push", "--atomic", f"--force-with-lease=main:{start}", "origin", "main",
                     cwd=tmp_path / "a")
        assert pushed.returncode == 0
        # The second writer read the same start; the upstream has moved: refused, unchanged.
        late = git("push", "--atomic", f"--force-with-lease=main:{start}", "origin", "main",
                   cwd=tmp_path / "b", check=False)
        assert late.returncode != 0
        assert "stale info" in late.stderr
        head = git("ls-remote", url, "refs/heads/main").stdout.split()[0]
    assert head == git("rev-parse", "main", cwd=tmp_path / "a").stdout.strip()
    assert git("fsck", "--strict", cwd=tmp_path / "base" / "upstream.git").returncode == 0
