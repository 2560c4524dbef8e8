"""Following the upstream: fetching what other instances wrote, on an interval and on demand
(a forge's push webhook), so that this instance's reads catch up with theirs.

What reads the clone (the published index, feeds, sync, the webhook outbox's catch-up) already
notices refs that move under it, as they do when another process writes to the same repository;
a fetch is one more such writer, and each of them reads only what changed.
"""

from __future__ import annotations

import logging
import threading

from ..periodic import Periodic
from .repository import Repository
from .upstream import UpstreamUnavailable

log = logging.getLogger("cms")


class Follower(Periodic):
    name = "follower"

    def __init__(self, repo: Repository, interval: float) -> None:
        super().__init__(interval)
        self.repo = repo
        self._failing = False
        # One fetch at a time. Calls that arrive while one runs (a forge calls every instance,
        # and again for each push) share the next one: it starts after they arrived, so it
        # sees what made them call.
        self._fetching = threading.Lock()
        self._started = 0
        self._last: tuple[int, dict[str, str]] = (0, {})

    def fetch(self) -> dict[str, str]:
        """Fetch now, or take a fetch that started since this call; the upstream's refs
        (raises UpstreamUnavailable)."""
        arrived = self._started
        with self._fetching:
            started, refs = self._last
            if started > arrived:
                return refs
            self._started += 1
            refs = self.repo.fetch()
            self._last = (self._started, refs)
            return refs

    def run_once(self) -> None:
        try:
            self.fetch()
        except UpstreamUnavailable as exc:
            if not self._failing:  # once per outage, not twice a second
                log.warning("cannot follow the upstream: %s", exc.detail or exc.message)
            self._failing = True
            return
        if self._failing:
            log.warning("following the upstream again")
            self._failing = False
