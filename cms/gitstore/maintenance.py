"""Keeping the repository fast: pack loose objects once enough have piled up.

Every commit writes a few loose objects. Thousands of them make every git command that walks
history (the audit's `git log`, an auditor's own) open and inflate a file per object; packing
them makes the same walk about ten times faster. git's own `gc --auto` waits for 6,700 loose
objects, so the CMS packs on its own threshold, in the background, one run at a time. Repacking
alongside writers is safe: git never deletes a loose object before it is in a pack.
"""

from __future__ import annotations

import logging
import threading

from .repository import Repository

log = logging.getLogger("cms")

DEFAULT_THRESHOLD = 1000


class Maintenance:
    def __init__(self, repo: Repository, *, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.repo = repo
        self.threshold = threshold
        self._since_last = 0
        self._lock = threading.Lock()
        self._running = threading.Lock()

    def loose_objects(self) -> int:
        for line in self.repo.git("count-objects", "-v").splitlines():
            key, _, value = line.partition(": ")
            if key == "count":
                return int(value)
        return 0

    def note_commit(self, _commit: str = "") -> None:
        """Called after each commit; starts a background pack when the threshold is passed."""
        with self._lock:
            self._since_last += 1
            due = self._since_last * 4 >= self.threshold  # a commit writes about four objects
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
            if not force and self.loose_objects() < self.threshold:
                return False
            self.repo.git("repack", "-d", "-q")
            self.repo.git("prune-packed", "-q")
            return True
        except Exception:
            log.exception("packing the content repository failed; it will be tried again")
            return False
        finally:
            self._running.release()
