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
        # One fetch at a time: hook calls arriving together wait for each other.
        self._fetching = threading.Lock()

    def fetch(self) -> dict[str, str]:
        """Fetch now; the upstream's refs (raises UpstreamUnavailable)."""
        with self._fetching:
            return self.repo.fetch()

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
