"""The ids of the webhook events a site has handled, so that a redelivery rebuilds nothing."""

from __future__ import annotations

import fcntl
import logging
import threading
from collections import deque
from pathlib import Path

import msgspec

from .state import write_atomically

log = logging.getLogger("cms.site")

KEPT_IDS = 10_000


class HandledIds:
    """The ids of the events handled, the latest ``KEPT_IDS``, kept on disk. An id counts as
    handled only once it is saved (a failed save answers 503, and the sender tries again);
    watchers that share a site share the file, under a lock, each adding to what the other
    saved."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._lock_path = path.with_name(f"{path.name}.lock")
        self._order = self._read()

    def _read(self) -> deque[str]:
        order: deque[str] = deque(maxlen=KEPT_IDS)
        try:
            order.extend(msgspec.json.decode(self.path.read_bytes(), type=list[str]))
        except FileNotFoundError:
            pass
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("the handled webhook ids could not be read (%s): starting afresh", exc)
        return order

    def first_time(self, message_id: str) -> bool:
        """Record ``message_id``; whether it is new. OSError when it could not be saved."""
        with self._lock:
            if message_id in self._order:
                return False
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._lock_path, "a+b") as turn:
                fcntl.flock(turn, fcntl.LOCK_EX)
                order = self._read()  # what another watcher of this site saved meanwhile
                if message_id in order:
                    self._order = order
                    return False
                order.append(message_id)
                write_atomically(self.path, msgspec.json.encode(list(order)))
            self._order = order
            return True
