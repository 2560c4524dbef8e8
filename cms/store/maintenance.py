"""Keeping the repository fast: merge the small packs that commits leave, pack loose objects.

Each commit the CMS writes is a small pack. Many packs, like many loose objects (written by
plain git), slow every lookup and every git command that walks history (the audit's `git log`,
an auditor's own): with a thousand loose objects it was about ten times slower than packed.
git's own `gc --auto` waits for 50 packs or 6,700 loose objects and then repacks everything; the
CMS repacks geometrically on its own thresholds, in the background, one run at a time. Repacking
alongside writers is safe: git never deletes an object before it is in a pack. Only one process
repacks a repository at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from .repository import Repository

log = logging.getLogger("cms")

DEFAULT_THRESHOLD = 1000
# Each commit is a small pack; more than this many and lookups slow down.
PACK_LIMIT = 50


class Maintenance:
    def __init__(self, repo: Repository, *, threshold: int = DEFAULT_THRESHOLD,
                 pack_limit: int = PACK_LIMIT) -> None:
        self.repo = repo
        self.threshold = threshold
        self.pack_limit = pack_limit
        self._since_last = 0
        self._lock = threading.Lock()
        self._running = threading.Lock()

    def counts(self) -> tuple[int, int]:
        """Loose objects and packs."""
        found = {}
        for line in self.repo.git("count-objects", "-v").splitlines():
            key, _, value = line.partition(": ")
            found[key] = value
        return int(found.get("count", 0)), int(found.get("packs", 0))

    def loose_objects(self) -> int:
        return self.counts()[0]

    def note_commit(self, _commit: str = "") -> None:
        """Called after each commit; starts a background pack when the threshold is passed."""
        with self._lock:
            self._since_last += 1
            due = self._since_last >= self.pack_limit
            if due:
                self._since_last = 0
        if due:
            self.start()

    def start(self) -> threading.Thread | None:
        if self._running.locked():
            return None
        thread = threading.Thread(target=self.run, name="git-maintenance", daemon=True)
        thread.start()
        return thread

    def run(self, *, force: bool = False) -> bool:
        """Pack loose objects if there are enough of them (or ``force``); True if it packed."""
        if not self._running.acquire(blocking=False):
            return False
        try:
            with _exclusive(self.repo.git_dir / "cms-maintenance.lock") as mine:
                return mine and self._pack(force)
        except Exception:
            log.exception("packing the content repository failed; it will be tried again")
            return False
        finally:
            self._running.release()

    def _pack(self, force: bool) -> bool:
        loose, packs = self.counts()
        if not force and loose < self.threshold and packs < self.pack_limit:
            return False
        # Geometric repacking merges the small packs of recent commits and leaves the big one
        # alone, so its cost follows what was written since, not the repository.
        self.repo.git("repack", "-d", "-q", "--geometric=2")
        self.repo.git("prune-packed", "-q")
        self.repo.release_deleted_packs()
        return True


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[bool]:
    """Whether this process may repack now: one process at a time on a repository, since two
    repacks deleting each other's packs both fail. The other one skips its turn."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
