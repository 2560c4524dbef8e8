"""The thread that carries out schedules when they fall due.

It sleeps until the soonest pending schedule, or at most ``POLL_SECONDS``, since another server
may have scheduled something sooner; a schedule this process makes wakes it at once. What fell
due while no server ran is carried out when the server starts, before it serves. With
``leases``, one instance at a time runs the rounds: the others skip theirs while its lease runs.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from datetime import UTC, datetime

from ..errors import CmsError
from ..shared.leases import LEASE_SECONDS, Leases
from .release_schedules import ReleaseSchedules
from .schedules import RolesOf, Schedules

log = logging.getLogger("cms")

POLL_SECONDS = 5.0
LEASE = "scheduler"


# What a round meets when the disk or the database is not there for it, not a fault of its own.
_UNAVAILABLE = (CmsError, OSError, sqlite3.Error)


class Scheduler:
    def __init__(self, schedules: Schedules, releases: ReleaseSchedules | None,
                 roles_of: RolesOf, poll: float = POLL_SECONDS,
                 leases: Leases | None = None) -> None:
        self.schedules = schedules
        self.leases = leases
        self.releases = releases
        self.roles_of = roles_of
        self.poll = poll
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        schedules.changed.append(self._wake.set)
        if releases is not None:
            releases.changed.append(self._wake.set)

    def run_due(self) -> list[str]:
        """Carry out what is due now, if this instance holds the lease; the commits made."""
        made: list[str] = []
        try:
            if self.leases is not None and not self.leases.take(LEASE, self.poll + LEASE_SECONDS):
                return made  # another instance runs the rounds while it lives
            made += self.schedules.run_due(self.roles_of)
            if self.releases is not None:
                made += self.releases.run_due(self.roles_of)
        except _UNAVAILABLE as exc:
            # A full disk, a database that is down: said in a line every round, not a trace.
            log.error("carrying out schedules failed (%s); they are tried again", exc)
        except Exception:
            log.exception("carrying out schedules failed; they are tried again")
        return made

    def start(self) -> None:
        self.run_due()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.leases is not None:
            self.leases.give_up(LEASE)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._until_next())
            self._wake.clear()
            if not self._stop.is_set():
                self.run_due()

    def next_due(self, after: datetime | None = None) -> datetime | None:
        """When the soonest pending schedule falls due (of those due after ``after``, if
        given); None if there is none."""
        times = [schedule.at for schedule in self.schedules.pending()
                 if after is None or schedule.at > after][:1]
        if self.releases is not None:
            times += [schedule.at for schedule in self.releases.pending()
                      if after is None or schedule.at > after][:1]
        return min(times, default=None)

    def _until_next(self) -> float:
        try:
            soonest = self.next_due()
        except _UNAVAILABLE as exc:
            log.error("reading the schedules failed (%s); they are read again", exc)
            return self.poll
        except Exception:
            log.exception("reading the schedules failed; they are read again")
            return self.poll
        if soonest is None:
            return self.poll
        ahead = (soonest - datetime.now(UTC)).total_seconds()
        # Still due right after a run: it failed for now (a full disk, say); try again later.
        return min(self.poll, ahead) if ahead > 0 else self.poll
