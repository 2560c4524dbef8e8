"""The real parts of a cluster of instances, each started by the test that needs it: PostgreSQL
from Debian's packages, run as an unprivileged user in a temporary folder, and `git daemon` on
127.0.0.1 serving a bare repository that takes pushes.

Nothing here sleeps to synchronise: a part is up when it answers, and every wait is bounded in
tries and time.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

# Who runs the database: PostgreSQL refuses to run as root.
DATABASE_USER = "nobody"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postgres_bin() -> Path:
    """Where Debian's PostgreSQL keeps its server programs (the newest, if several)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: `make test` installs Debian's package")
    return Path(found[-1]).parent


def _as_database_user(*command: str) -> list[str]:
    return ["setpriv", "--reuid", DATABASE_USER, "--regid", "nogroup", "--clear-groups",
            "--", *command]


def _wait(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str,
          timeout: float = 60) -> None:
    """Until ``ready()``; bounded in tries and time, and a part that dies meanwhile is seen."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.05) + 10):
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} while starting")
        if ready():
            return
        if time.monotonic() > deadline:
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.05)
    raise RuntimeError(f"{what} was not ready within {timeout} s")


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL server of its own, on 127.0.0.1; its connection URL. Its folder is made
    outside the test's own (which only root may enter) and removed afterwards."""
    bin_dir = postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="cms-postgres-"))
    data = folder / "pgdata"
    data.mkdir()
    for path in (folder, data):
        shutil.chown(path, DATABASE_USER, "nogroup")
    data.chmod(0o700)
    try:
        subprocess.run(_as_database_user(str(bin_dir / "initdb"), "-D", str(data), "-U", "cms",
                                         "--auth=trust", "-E", "UTF8", "--no-sync"),
                       check=True, capture_output=True, timeout=120)
        port = free_port()
        with open(folder / "postgres.log", "wb") as log:
            server = subprocess.Popen(
                _as_database_user(str(bin_dir / "postgres"), "-D", str(data),
                                  "-h", "127.0.0.1", "-p", str(port), "-k", str(folder),
                                  "-c", "fsync=off"),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                # Its port opens before it takes connections: ask it.
                _wait(lambda: subprocess.run(
                    [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port),
                     "-U", "cms"], check=False, timeout=10).returncode == 0, server, "postgres")
                yield f"postgresql://cms@127.0.0.1:{port}/postgres"
            finally:
                _stop(server)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def git_daemon(base: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`git daemon` on 127.0.0.1 serving the bare repositories under ``base``, pushes enabled
    (with ``env`` added to its environment); the URL prefix to add a repository's name to."""
    port = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", f"--base-path={base}", "--export-all",
         "--enable=receive-pack", "--listen=127.0.0.1", f"--port={port}", str(base)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", **(env or {})})
    try:
        _wait(lambda: _accepts(port), daemon, "git daemon")
        yield f"git://127.0.0.1:{port}"
    finally:
        _stop(daemon)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM and a bounded wait; SIGKILL when that is not enough."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)
