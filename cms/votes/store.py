"""Community votes, recorded at once outside git and pending until a fold commits them.

A vote is one durable insert into the shared-state database, so the public can vote as fast as
they like without a commit each. The database is the truth that every server instance shares:
votes get increasing ids (inserts are serialised, so they become visible in the order of their
ids), and a fold commit names the newest id it holds, so the votes pending on top of a commit of
main are those with a higher id (see ``live.py``). Each process keeps those counts in memory for
reads, and brings them up to date when the ledger (the newest vote, and the oldest not yet
folded) has moved, whichever instance moved it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..config import Settings
from ..editing.events import Committed
from ..errors import StoreError
from ..shared.database import Database
from .limits import WINDOW_SECONDS, too_many

log = logging.getLogger("cms")
Vote = Literal["ship", "skip"]
# How often another instance's votes are looked for (the index looks at main as often): one
# small query at most this often, never one per read.
RECHECK_SECONDS = 0.05
RECHECK_AFTER_FAILURE_SECONDS = 5.0
Counts = tuple[int, int]  # ship, skip
Tallies = dict[str, dict[str, Counts]]  # slug -> tool -> counts
Rows = Iterable[tuple[str, str, str, int]]  # slug, tool, vote, how many

_SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (id {id}, slug TEXT NOT NULL, tool TEXT NOT NULL,
    vote TEXT NOT NULL, client TEXT NOT NULL, at {real} NOT NULL, folded_in TEXT);
CREATE INDEX IF NOT EXISTS pending ON votes (folded_in, id);
CREATE INDEX IF NOT EXISTS by_client ON votes (client, slug, at);
CREATE TABLE IF NOT EXISTS ledger (name TEXT PRIMARY KEY, value TEXT NOT NULL)
"""
# Ids are never reused and only ever grow, and the columns counted are never changed, so the
# votes of a range of ids count the same whenever they are read.
_COUNT_RANGE = ("SELECT slug, tool, vote, COUNT(*) FROM votes WHERE id > ? AND id <= ? "
                "GROUP BY slug, tool, vote")
# Votes are marked folded by id, oldest first, so the marked ones are exactly those below the
# oldest unmarked one (found through the index, however long the table). One statement: one
# state of the table for both.
_LEDGER = ("SELECT (SELECT COALESCE(MAX(id), 0) FROM votes), "
           "(SELECT MIN(id) FROM votes WHERE folded_in IS NULL)")


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
    def __init__(self, database: Database, *, earlier: Path | None = None) -> None:
        """``earlier``: the SQLite file of an earlier version, whose votes (and ledger, which
        its folds in git name) a new database takes over."""
        self._db = database
        database.schema(_SCHEMA)
        if earlier is not None:
            database.adopt(earlier, ("votes", "ledger"))
        database.execute("INSERT INTO ledger (name, value) VALUES ('id', ?) "
                         "ON CONFLICT (name) DO NOTHING", secrets.token_hex(8))
        # Names this database in the folds made from it, whose vote ids are its own.
        self.ledger_id: str = database.value("SELECT value FROM ledger WHERE name = 'id'")
        # Reads are counted in memory under this short lock; the database is asked only when
        # the ledger may have moved. An insert never holds it, so a read never waits for one.
        self._read_lock = threading.Lock()
        self._changed_here = False
        self._checked_at = float("-inf")
        with self._read_lock:
            ledger = self._ledger_now()
            # Start from what the ledger says is folded: usually exactly what main holds, so
            # the first read needs no correction.
            self._ledger = ledger
            self._pending = Pending(ledger.folded, ledger.seen, _summed(
                self._db.tuples(_COUNT_RANGE, ledger.folded, ledger.seen)))

    @classmethod
    def open(cls, settings: Settings) -> VoteStore:
        return cls(Database.for_store(settings, "votes"), earlier=settings.data / "votes.sqlite3")

    def close(self) -> None:
        self._db.close()

    def record(self, slug: str, tool: str, vote: Vote, client: str, *,
               per_minute: int = 0) -> None:
        """Count a vote. With ``per_minute``, refuse it (TooManyVotes) when the client already
        has that many counted on this comparison in the last minute, by whichever instance:
        the count and the insert are one transaction, serialised with every other write."""
        now = time.time()
        with self._db.transaction() as session:
            if per_minute > 0:
                recent = [at for (at,) in session.tuples(
                    "SELECT at FROM votes WHERE client = ? AND slug = ? AND at > ? "
                    "ORDER BY at DESC LIMIT ?", client, slug, now - WINDOW_SECONDS, per_minute)]
                if len(recent) >= per_minute:
                    raise too_many(per_minute, recent[-1] + WINDOW_SECONDS - now)
            session.execute("INSERT INTO votes (slug, tool, vote, client, at) "
                            "VALUES (?, ?, ?, ?, ?)", slug, tool, vote, client, now)
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
        # Not under the read lock: a fold runs in its own thread, and a long count here must
        # not hold up reads.
        rows = self._db.tuples(
            "SELECT slug, tool, vote, COUNT(*), MAX(id) FROM votes WHERE folded_in IS NULL "
            "GROUP BY slug, tool, vote")
        through = max((newest for *_, newest in rows), default=0)
        return through, _summed(row[:4] for row in rows)

    def on_committed(self, event: Committed) -> None:
        """A fold's bookkeeping: its votes are in git now (``reconcile`` repairs a crash here)."""
        if (event.action == "votes" and event.votes_through is not None
                and event.votes_ledger in (None, self.ledger_id)):
            self.mark_folded(event.votes_through, event.commit)

    def mark_folded(self, through: int, commit: str) -> None:
        self._db.execute("UPDATE votes SET folded_in = ? WHERE folded_in IS NULL AND id <= ?",
                         commit, through)
        self._changed_here = True

    # Keeping up with the database, under _read_lock

    def _catch_up(self) -> None:
        """Count the votes recorded since the last look, if the ledger moved.

        This process's own writes are looked for at once; other instances' at most every
        ``RECHECK_SECONDS``, since asking the database on every cached read would cost more
        than the read (a round trip, on PostgreSQL).
        """
        moment = time.monotonic()
        if not self._changed_here and moment - self._checked_at < RECHECK_SECONDS:
            return
        self._changed_here = False
        self._checked_at = moment
        # Read before the counts: a change made in between is then seen next time, not lost.
        try:
            ledger = self._ledger_now()
        except StoreError:
            # Reads go on with the counts as last seen; the next look waits a while, so that
            # a database that is down does not hold up every read.
            self._checked_at = moment + RECHECK_AFTER_FAILURE_SECONDS
            log.warning("could not look for new votes; counts as last seen are shown")
            return
        if ledger == self._ledger:
            return
        pending = self._pending
        low = max(pending.seen, pending.through)
        if ledger.seen > low:
            rows = self._db.tuples(_COUNT_RANGE, low, ledger.seen)
            pending = Pending(pending.through, ledger.seen, _added(pending.tallies, rows, 1))
        else:
            pending = Pending(pending.through, max(pending.seen, ledger.seen), pending.tallies)
        self._ledger, self._pending = ledger, pending

    def _ledger_now(self) -> Ledger:
        ((seen, oldest),) = self._db.tuples(_LEDGER)
        return Ledger(seen=seen, folded=seen if oldest is None else min(seen, oldest - 1))

    def _rebased(self, pending: Pending, through: int) -> Pending:
        """``pending`` counted from another vote on: subtract or add the difference, or count
        afresh, whichever reads fewer votes."""
        seen = pending.seen
        before, after = min(pending.through, seen), min(through, seen)
        if after == before:
            return Pending(through, seen, pending.tallies)
        if after < before:
            rows = self._db.tuples(_COUNT_RANGE, after, before)
            return Pending(through, seen, _added(pending.tallies, rows, 1))
        if after - before <= seen - after:
            rows = self._db.tuples(_COUNT_RANGE, before, after)
            return Pending(through, seen, _added(pending.tallies, rows, -1))
        return Pending(through, seen, _summed(self._db.tuples(_COUNT_RANGE, after, seen)))


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
