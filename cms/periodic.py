"""A background thread that does one piece of upkeep every so often until it is stopped."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod

log = logging.getLogger("cms")


class Periodic(ABC):
    """Calls ``run_once`` every ``interval`` seconds (the first time after ``first``) on a
    daemon thread named ``name``; a failure is logged, and the next round tries again."""

    name = "upkeep"

    def __init__(self, interval: float, first: float | None = None) -> None:
        self.interval = interval
        # When the first round comes (the interval, unless said otherwise).
        self.first = interval if first is None else first
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def run_once(self) -> None:
        """One round of the upkeep."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        wait = self.first
        while not self._stop.wait(wait):
            wait = self.interval
            try:
                self.run_once()
            except Exception:
                log.exception("%s failed; it is tried again", self.name)
