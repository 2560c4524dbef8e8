"""Rebuilds on demand, one at a time in a thread of their own: what is asked while one runs,
or within ``settle`` seconds of the first ask, waits for one more, not one each. A rebuild that
fails is tried again after 2, 5, 15, then every 60 seconds; with ``refresh``, the site is also
rebuilt that often when nothing asks (what no webhook announces, such as a fold of community
votes, shows up then)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .build import BuildResult
from .source import SourceError

log = logging.getLogger("cms.site")

RETRY_SECONDS = (2.0, 5.0, 15.0, 60.0)


class Rebuilder:
    """The rebuilding thread, and what it has done."""

    def __init__(self, rebuild: Callable[[], BuildResult], *, settle: float = 0.2,
                 refresh: float | None = None) -> None:
        self._rebuild = rebuild
        self.settle = settle
        self.refresh = refresh
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._done = threading.Condition()
        self.builds = 0  # rebuilds finished, whether they succeeded
        self.requested = 0  # rebuilds asked for: one at start, one for each event handled
        # The requests the last successful rebuild answered: it began after the first
        # ``built_through`` of them, so what they announced is in the site.
        self.built_through = 0
        self.last: BuildResult | None = None
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="site-rebuild", daemon=True)

    def start(self) -> None:
        self.request()  # the start's own rebuild
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wanted.set()
        self._thread.join(timeout=60)

    def request(self) -> None:
        with self._done:
            self.requested += 1
        self._wanted.set()

    def wait_built(self, through: int, timeout: float) -> bool:
        """Whether the first ``through`` requests are in the site, waiting up to ``timeout``
        seconds for it."""
        with self._done:
            return self._done.wait_for(lambda: self.built_through >= through, timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            wait = (RETRY_SECONDS[min(failures - 1, len(RETRY_SECONDS) - 1)] if failures
                    else self.refresh)
            asked = self._wanted.wait(wait)
            if asked:
                self._stopping.wait(self.settle)  # a burst arrives together: one rebuild
            if self._stopping.is_set():
                return
            self._wanted.clear()
            with self._done:
                covering = self.requested
            try:
                result: BuildResult | None = self._rebuild()
                error = None
                failures = 0
            except (SourceError, OSError) as exc:
                result, error = None, str(exc)
                failures += 1
                log.warning("the site was not rebuilt (%s); trying again", exc)
            except Exception as exc:  # the thread must live on: said in a line, tried again
                result, error = None, f"{type(exc).__name__}: {exc}"
                failures += 1
                log.error("the site was not rebuilt (%s); trying again", error)
            with self._done:
                self.builds += 1
                if result is not None:
                    self.last = result
                    self.built_through = covering
                    log.info("site rebuilt: %d written, %d removed, %d published",
                             len(result.written), len(result.removed), result.comparisons)
                self.last_error = error
                self._done.notify_all()
