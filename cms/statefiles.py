"""State kept under ``CMS_DATA``, outside git: small files (tokens, preview grants), locked and
replaced whole, and SQLite databases (votes, the webhook outbox)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an advisory lock shared with other processes (the CLI beside the server)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as a whole, owner-only, flushed before it replaces the old."""
    temp = write_temporary(path, data)
    os.replace(temp, path)
    fsync_dir(path.parent)  # the rename itself must reach the disk, or a revocation may not


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temporary(path: Path, data: bytes) -> Path:
    """``data`` in an owner-only, flushed file beside ``path``, ready to be renamed onto it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return temp


def private_file(path: Path) -> None:
    """Create ``path`` readable by its owner only, before anything writes secrets into it.
    SQLite gives its journal files the permissions of the database file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


def open_database(path: Path) -> sqlite3.Connection:
    """An owner-only SQLite database whose every committed transaction is on disk: WAL with full
    synchronous commits survives a crash of the process or of the machine. Callers serialise
    their use of the connection."""
    private_file(path)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db
