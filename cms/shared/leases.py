"""Leases: one instance at a time runs a background job (the vote fold, the scheduler's rounds),
and when the instance holding a lease dies, another takes the job over once the lease runs out.

A lease is a row (name, holder, until) in the shared-state database, taken in a write
transaction when it is free, run out, or already this holder's; the holder renews it before each
round. Its times are the instances' own clocks, as with the outbox's delivery claims: they must
agree to well within ``LEASE_SECONDS`` (NTP does).

The jobs stay correct without their lease (commits move main by compare-and-swap, and folds and
schedules are recognised once made); the lease keeps instances from doing each round once each.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

from ..config import Settings
from ..errors import StoreError
from .database import Database

log = logging.getLogger("cms")

# How long a lease outlives its holder's last renewal: a holder that dies leaves its job undone
# at most this long after its next round was due.
LEASE_SECONDS = 60.0

_SCHEMA = """CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL,
    until {real} NOT NULL)"""


def instance_name(settings: Settings) -> str:
    """Who holds a lease: the machine and its CMS_DATA. The same after a restart, so that an
    instance that crashed takes its own leases back at once (what fell due while it was down is
    carried out before it serves); processes sharing one CMS_DATA share its leases, and agree
    through git as they always have."""
    return f"{socket.gethostname()}:{settings.data.resolve()}"


class Leases:
    def __init__(self, database: Database, holder: str,
                 able: Callable[[], bool] = lambda: True) -> None:
        self._db = database
        self.holder = holder
        # Whether this instance can do the leased work now (reach the upstream, say): when it
        # cannot, it lets its leases go, so that another instance does the work meanwhile.
        self.able = able
        database.schema(_SCHEMA)

    @classmethod
    def open(cls, settings: Settings, able: Callable[[], bool] = lambda: True) -> Leases:
        return cls(Database.for_store(settings, "leases"), instance_name(settings), able)

    def close(self) -> None:
        self._db.close()

    def take(self, name: str, seconds: float = LEASE_SECONDS, *, now: float | None = None) -> bool:
        """Hold (or keep holding) lease ``name`` for ``seconds`` from now; False while another
        holder's lease runs, or while this instance is not able to do the work (it then lets
        the lease go, if it held it)."""
        if not self.able():
            self.release(name)
            return False
        now = time.time() if now is None else now
        with self._db.transaction() as session:
            if session.execute("UPDATE leases SET holder = ?, until = ? WHERE name = ? AND "
                               "(until <= ? OR holder = ?)", self.holder, now + seconds, name,
                               now, self.holder):
                return True
            return session.execute("INSERT INTO leases (name, holder, until) VALUES (?, ?, ?) "
                                   "ON CONFLICT (name) DO NOTHING", name, self.holder,
                                   now + seconds) == 1

    def release(self, name: str) -> None:
        """Give the lease up (a clean stop): another instance may take it at once."""
        self._db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", name, self.holder)

    def give_up(self, name: str) -> None:
        """On a clean stop: release ``name`` and close. If the database cannot be reached, the
        lease runs out by itself."""
        try:
            self.release(name)
        except StoreError:
            log.warning("could not release the %s lease; it runs out by itself", name)
        self.close()

    def holder_of(self, name: str, *, now: float | None = None) -> str | None:
        now = time.time() if now is None else now
        return self._db.value("SELECT holder FROM leases WHERE name = ? AND until > ?", name, now)  # type: ignore[no-any-return]
