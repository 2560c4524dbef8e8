"""Files kept outside git: folders flushed after a rename, and the owner-only SQLite databases of
the embedded default (cms/shared/database.py opens them)."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_file(path: Path) -> None:
    """Create ``path`` readable by its owner only, before anything writes secrets into it.
    SQLite gives its journal files the permissions of the database file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Never opened once it exists: closing any descriptor of a file drops every POSIX
        # lock this process holds on it, SQLite's too, and another process would then take
        # itself for the only one and reset the write-ahead log under this one's readers.
        os.chmod(path, 0o600)
        return
    os.close(fd)


def open_database(path: Path) -> sqlite3.Connection:
    """An owner-only SQLite database whose every committed transaction is on disk: WAL with full
    synchronous commits survives a crash of the process or of the machine. Callers serialise
    their use of the connection."""
    private_file(path)
    # Switching a new database to WAL answers "locked" at once, without waiting, to a second
    # connection doing the same: processes (and threads) that start together take turns.
    with open(path.with_name(f".{path.name}.open-lock"), "a") as turn:
        fcntl.flock(turn, fcntl.LOCK_EX)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db
