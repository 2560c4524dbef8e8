"""The thread that carries out schedules when they fall due.

It sleeps until the soonest pending schedule, or at most ``POLL_SECONDS``, since another server
may have scheduled something sooner; a schedule this process makes wakes it at once. What fell
due while no server ran is carried out when the server starts, before it serves.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from .schedules import RolesOf, Schedules

log = logging.getLogger("cms")

POLL_SECONDS = 5.0


class Scheduler:
    def __init__(self, schedules: Schedules, roles_of: RolesOf,
                 poll: float = POLL_SECONDS) -> None:
        self.schedules = schedules
        self.roles_of = roles_of
        self.poll = poll
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        schedules.changed.append(self._wake.set)

    def run_due(self) -> list[str]:
        """Carry out what is due now; the commits made."""
        try:
            return self.schedules.run_due(self.roles_of)
        except Exception:
            log.exception("carrying out schedules failed; they are tried again")
            return []

    def start(self) -> None:
        self.run_due()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._until_next())
            self._wake.clear()
            if not self._stop.is_set():
                self.run_due()

    def _until_next(self) -> float:
        try:
            pending = self.schedules.pending()
        except Exception:
            log.exception("reading the schedules failed; they are read again")
            return self.poll
        if not pending:
            return self.poll
        ahead = (pending[0].at - datetime.now(UTC)).total_seconds()
        # Still due right after a run: it failed for now (a full disk, say); try again later.
        return min(self.poll, ahead) if ahead > 0 else self.poll
