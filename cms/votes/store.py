"""Community votes, recorded at once outside git and pending until a fold commits them.

A vote is one durable SQLite insert, so the public can vote as fast as they like without a
commit each; readers see main's tallies plus the pending votes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Literal

from ..editing.events import Committed
from ..statefiles import open_database

Vote = Literal["ship", "skip"]
Tallies = dict[str, dict[str, list[int]]]  # slug -> tool -> [ship, skip]


class VoteStore:
    def __init__(self, path: Path) -> None:
        self._db = open_database(path)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS votes (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "slug TEXT NOT NULL, tool TEXT NOT NULL, vote TEXT NOT NULL, client TEXT NOT NULL, "
                "at REAL NOT NULL, folded_in TEXT)")
            self._db.execute("CREATE INDEX IF NOT EXISTS pending ON votes (folded_in, id)")
        self._pending: Tallies = self._load_pending()
        # Moves whenever the pending tallies change (a vote, or a fold's bookkeeping): part of
        # the ETag of pages showing tallies.
        self.version = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record(self, slug: str, tool: str, vote: Vote, client: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO votes (slug, tool, vote, client, at) VALUES (?, ?, ?, ?, ?)",
                             (slug, tool, vote, client, time.time()))
            counts = self._pending.setdefault(slug, {}).setdefault(tool, [0, 0])
            counts[0 if vote == "ship" else 1] += 1
            self.version += 1

    def pending(self, slug: str) -> dict[str, list[int]]:
        with self._lock:
            return {tool: list(counts) for tool, counts in self._pending.get(slug, {}).items()}

    def batch(self) -> tuple[int, Tallies]:
        """The id of the newest pending vote and every pending vote up to it, summed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT slug, tool, vote, COUNT(*), MAX(id) FROM votes WHERE folded_in IS NULL "
                "GROUP BY slug, tool, vote").fetchall()
        through = 0
        tallies: Tallies = {}
        for slug, tool, vote, count, newest in rows:
            counts = tallies.setdefault(slug, {}).setdefault(tool, [0, 0])
            counts[0 if vote == "ship" else 1] += count
            through = max(through, newest)
        return through, tallies

    def on_committed(self, event: Committed) -> None:
        """A fold's bookkeeping: its votes are in git now (``reconcile`` repairs a crash here)."""
        if event.action == "votes" and event.votes_through is not None:
            self.mark_folded(event.votes_through, event.commit)

    def mark_folded(self, through: int, commit: str) -> None:
        with self._lock:
            marked = self._db.execute(
                "UPDATE votes SET folded_in = ? WHERE folded_in IS NULL AND id <= ?",
                (commit, through)).rowcount
            self._pending = self._load_pending_locked()
            if marked:
                self.version += 1

    def _load_pending(self) -> Tallies:
        with self._lock:
            return self._load_pending_locked()

    def _load_pending_locked(self) -> Tallies:
        pending: Tallies = {}
        for slug, tool, vote, count in self._db.execute(
                "SELECT slug, tool, vote, COUNT(*) FROM votes WHERE folded_in IS NULL "
                "GROUP BY slug, tool, vote"):
            counts = pending.setdefault(slug, {}).setdefault(tool, [0, 0])
            counts[0 if vote == "ship" else 1] += count
        return pending
