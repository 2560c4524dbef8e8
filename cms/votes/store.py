"""Community votes, recorded at once outside git and pending until a fold commits them.

A vote is one durable SQLite insert, so the public can vote as fast as they like without a
commit each. The database is the truth that every server process on one ``CMS_DATA`` shares:
votes get increasing ids, and a fold commit names the newest id it holds, so the votes pending
on top of a commit of main are those with a higher id (see ``live.py``). Each process keeps those
counts in memory for reads, and brings them up to date whenever SQLite reports that another
connection changed the database (``PRAGMA data_version``), whichever process that was.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..editing.events import Committed
from ..errors import StoreError
from ..statefiles import open_database
from .limits import WINDOW_SECONDS, too_many

Vote = Literal["ship", "skip"]
# How often another process's votes are looked for (the index looks at main as often).
RECHECK_SECONDS = 0.05
Counts = tuple[int, int]  # ship, skip
Tallies = dict[str, dict[str, Counts]]  # slug -> tool -> counts
Rows = Iterable[tuple[str, str, str, int]]  # slug, tool, vote, how many

# Ids are never reused and only ever grow, and the columns counted are never changed, so the
# votes of a range of ids count the same whenever they are read.
_COUNT_RANGE = ("SELECT slug, tool, vote, COUNT(*) FROM votes WHERE id > ? AND id <= ? "
                "GROUP BY slug, tool, vote")


@dataclass(frozen=True, slots=True)
class Pending:
    """The votes with ids in (``through``, ``seen``], summed: never changed once made, so a
    reader may hold one while the next is being made."""

    through: int
    seen: int
    tallies: Tallies = field(default_factory=dict)

    def of(self, slug: str) -> dict[str, Counts]:
        return self.tallies.get(slug, {})


@dataclass(frozen=True, slots=True)
class Ledger:
    seen: int  # the newest vote recorded, by any process
    folded: int  # every vote up to this one is marked folded (or dropped) in the database


class VoteStore:
    def __init__(self, path: Path) -> None:
        # Two connections. Votes are inserted on one, each insert flushed to disk, in turn under
        # _write_lock; reads count on the other under their own short lock. A WAL reader never
        # waits for a writer, so a read (on the event loop, say) never queues behind an fsync.
        self._writer = open_database(path)
        self._write_lock = threading.Lock()
        with self._write_lock:
            self._writer.execute(
                "CREATE TABLE IF NOT EXISTS votes (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "slug TEXT NOT NULL, tool TEXT NOT NULL, vote TEXT NOT NULL, client TEXT NOT NULL, "
                "at REAL NOT NULL, folded_in TEXT)")
            self._writer.execute("CREATE INDEX IF NOT EXISTS pending ON votes (folded_in, id)")
            self._writer.execute(
                "CREATE INDEX IF NOT EXISTS by_client ON votes (client, slug, at)")
            self._writer.execute(
                "CREATE TABLE IF NOT EXISTS ledger (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._writer.execute("INSERT OR IGNORE INTO ledger (name, value) VALUES ('id', ?)",
                                 (secrets.token_hex(8),))
            # Names this database in the folds made from it, whose vote ids are its own.
            self.ledger_id: str = self._writer.execute(
                "SELECT value FROM ledger WHERE name = 'id'").fetchone()[0]
        self._reader = open_database(path)
        self._read_lock = threading.Lock()
        self._changed_here = False
        self._checked_at = float("-inf")
        with self._read_lock:
            self._data_version = self._reader.execute("PRAGMA data_version").fetchone()[0]
            ledger = self._ledger_now()
            # Start from what the ledger says is folded: usually exactly what main holds, so
            # the first read needs no correction.
            self._ledger = ledger
            self._pending = Pending(ledger.folded, ledger.seen, _summed(
                self._reader.execute(_COUNT_RANGE, (ledger.folded, ledger.seen))))

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._writer.close()
            self._reader.close()

    def record(self, slug: str, tool: str, vote: Vote, client: str, *,
               per_minute: int = 0) -> None:
        """Count a vote. With ``per_minute``, refuse it (TooManyVotes) when the client already
        has that many counted on this comparison in the last minute, by whichever process: the
        count and the insert are one transaction, which SQLite serialises across processes."""
        now = time.time()
        with self._write_lock, _storing("the vote"):
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                if per_minute > 0:
                    recent = [at for (at,) in self._writer.execute(
                        "SELECT at FROM votes WHERE client = ? AND slug = ? AND at > ? "
                        "ORDER BY at DESC LIMIT ?",
                        (client, slug, now - WINDOW_SECONDS, per_minute))]
                    if len(recent) >= per_minute:
                        raise too_many(per_minute, recent[-1] + WINDOW_SECONDS - now)
                self._writer.execute(
                    "INSERT INTO votes (slug, tool, vote, client, at) VALUES (?, ?, ?, ?, ?)",
                    (slug, tool, vote, client, now))
                self._writer.execute("COMMIT")
            finally:
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
        self._changed_here = True

    @property
    def version(self) -> str:
        """Moves whenever a vote is recorded or marked folded, in any process: with main's
        commit, it names what a page showing live tallies is made from."""
        ledger = self.ledger()
        return f"{ledger.seen}.{ledger.folded}"

    def ledger(self) -> Ledger:
        with self._read_lock:
            self._catch_up()
            return self._ledger

    def pending(self, through: int) -> Pending:
        """The votes recorded after vote ``through``, summed per comparison and tool."""
        with self._read_lock:
            self._catch_up()
            if self._pending.through != through:
                self._pending = self._rebased(self._pending, through)
            return self._pending

    def batch(self) -> tuple[int, Tallies]:
        """The id of the newest vote not marked folded, and every such vote, summed."""
        # On the writer's connection: a fold runs in its own thread, and a long count here
        # must not hold up reads.
        with self._write_lock:
            rows = self._writer.execute(
                "SELECT slug, tool, vote, COUNT(*), MAX(id) FROM votes WHERE folded_in IS NULL "
                "GROUP BY slug, tool, vote").fetchall()
        through = max((newest for *_, newest in rows), default=0)
        return through, _summed(row[:4] for row in rows)

    def on_committed(self, event: Committed) -> None:
        """A fold's bookkeeping: its votes are in git now (``reconcile`` repairs a crash here)."""
        if (event.action == "votes" and event.votes_through is not None
                and event.votes_ledger in (None, self.ledger_id)):
            self.mark_folded(event.votes_through, event.commit)

    def mark_folded(self, through: int, commit: str) -> None:
        with self._write_lock:
            self._writer.execute(
                "UPDATE votes SET folded_in = ? WHERE folded_in IS NULL AND id <= ?",
                (commit, through))
        self._changed_here = True

    # Keeping up with the database, under _read_lock

    def _catch_up(self) -> None:
        """Count the votes recorded since the last look, if any connection changed anything.

        This process's own writes are looked for at once; other processes' at most every
        ``RECHECK_SECONDS``, since asking SQLite on every cached read would cost a fifth of it.
        """
        moment = time.monotonic()
        if not self._changed_here and moment - self._checked_at < RECHECK_SECONDS:
            return
        self._changed_here = False
        self._checked_at = moment
        # Read before the counts: a change made in between is then seen next time, not lost.
        version = self._reader.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        self._data_version = version
        ledger = self._ledger_now()
        pending = self._pending
        low = max(pending.seen, pending.through)
        if ledger.seen > low:
            rows = self._reader.execute(_COUNT_RANGE, (low, ledger.seen))
            pending = Pending(pending.through, ledger.seen, _added(pending.tallies, rows, 1))
        else:
            pending = Pending(pending.through, max(pending.seen, ledger.seen), pending.tallies)
        self._ledger, self._pending = ledger, pending

    def _ledger_now(self) -> Ledger:
        seen = self._reader.execute("SELECT COALESCE(MAX(id), 0) FROM votes").fetchone()[0]
        # Votes are marked folded by id, oldest first, so the marked ones are exactly those
        # below the oldest unmarked one (found through the index, however long the table).
        oldest = self._reader.execute(
            "SELECT MIN(id) FROM votes WHERE folded_in IS NULL").fetchone()[0]
        return Ledger(seen=seen, folded=seen if oldest is None else min(seen, oldest - 1))

    def _rebased(self, pending: Pending, through: int) -> Pending:
        """``pending`` counted from another vote on: subtract or add the difference, or count
        afresh, whichever reads fewer votes."""
        seen = pending.seen
        before, after = min(pending.through, seen), min(through, seen)
        if after == before:
            return Pending(through, seen, pending.tallies)
        if after < before:
            rows = self._reader.execute(_COUNT_RANGE, (after, before))
            return Pending(through, seen, _added(pending.tallies, rows, 1))
        if after - before <= seen - after:
            rows = self._reader.execute(_COUNT_RANGE, (before, after))
            return Pending(through, seen, _added(pending.tallies, rows, -1))
        return Pending(through, seen, _summed(self._reader.execute(_COUNT_RANGE, (after, seen))))


@contextlib.contextmanager
def _storing(what: str) -> Iterator[None]:
    """A full disk or a failing one is the store's trouble (503), not a fault of the request."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"could not record {what}: {exc}") from exc


def _summed(rows: Rows) -> Tallies:
    return _added({}, rows, 1)


def _added(tallies: Tallies, rows: Rows, sign: int) -> Tallies:
    """A new ``Tallies`` with the rows' counts added (``sign`` 1) or taken away (-1); the
    comparisons they do not touch are shared with ``tallies``, which is left as it was."""
    result = dict(tallies)
    touched: dict[str, dict[str, Counts]] = {}
    for slug, tool, vote, count in rows:
        tools = touched.get(slug)
        if tools is None:
            tools = touched[slug] = dict(result.get(slug, {}))
        ship, skip = tools.get(tool, (0, 0))
        if vote == "ship":
            ship += sign * count
        else:
            skip += sign * count
        tools[tool] = (ship, skip)
    for slug, tools in touched.items():
        kept = {tool: counts for tool, counts in tools.items() if counts != (0, 0)}
        if kept:
            result[slug] = kept
        else:
            result.pop(slug, None)
    return result
