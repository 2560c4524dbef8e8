"""Keeping the public vote honest: a rate limit per client and comparison, and client keys."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict, deque

from ..errors import CmsError


class TooManyVotes(CmsError):
    status = 429
    code = "too_many_votes"


class RateLimit:
    """At most ``per_minute`` votes from one client on one comparison in any sixty seconds."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: defaultdict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def check(self, client: str, slug: str) -> None:
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        with self._lock:
            seen = self._seen[(client, slug)]
            while seen and seen[0] <= now - 60:
                seen.popleft()
            if len(seen) >= self.per_minute:
                retry = int(61 - (now - seen[0]))
                raise TooManyVotes(f"at most {self.per_minute} votes a minute on one comparison; "
                                   f"try again in {retry} s", retry_after=retry)
            seen.append(now)


def client_key(host: str) -> str:
    # Only a digest of the address is stored: enough to rate-limit, not to identify a voter.
    return hashlib.sha256(host.encode()).hexdigest()[:16]
