"""Keeping the public vote honest: a rate limit per client and comparison, and client keys."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import threading
import time
from bisect import bisect_right
from collections import OrderedDict

from ..config import Settings
from ..errors import CmsError
from ..identity.keys import signing_key

WINDOW_SECONDS = 60.0
# Pairs of (client, comparison) tracked at most: a flood of distinct clients costs at most this
# many entries (a few hundred bytes each), and the pair forgotten first is the one heard from
# least recently, so a client that keeps trying stays limited.
MAX_TRACKED = 20_000


class TooManyVotes(CmsError):
    status = 429
    code = "too_many_votes"


def too_many(per_minute: int, wait: float) -> TooManyVotes:
    retry = max(1, math.ceil(wait))
    return TooManyVotes(f"at most {per_minute} votes a minute on one comparison; try again in "
                        f"{retry} s", retry_after=retry)


class RateLimit:
    """At most ``per_minute`` tries from one client on one comparison in any sixty seconds, in
    this process: a cheap first filter, so that a flood is turned away without touching the
    vote database. The vote store applies the same limit to the votes counted by every process
    (``VoteStore.record``)."""

    def __init__(self, per_minute: int, *, max_tracked: int = MAX_TRACKED) -> None:
        self.per_minute = per_minute
        self.max_tracked = max_tracked
        # The times of each pair's votes within the window, pairs ordered by their last try:
        # the pairs whose window has passed gather at the front.
        self._seen: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, client: str, slug: str) -> None:
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        with self._lock:
            self._forget_before(now - WINDOW_SECONDS)
            key = (client, slug)
            seen = self._seen.pop(key, [])
            self._seen[key] = seen  # now the most recent
            while len(self._seen) > self.max_tracked:
                self._seen.popitem(last=False)
            del seen[:bisect_right(seen, now - WINDOW_SECONDS)]
            if len(seen) >= self.per_minute:
                raise too_many(self.per_minute, seen[0] + WINDOW_SECONDS - now)
            seen.append(now)

    def _forget_before(self, cutoff: float) -> None:
        # Amortised: each pair is dropped once; the loop ends at the first pair still counting
        # (one behind it may have expired too: it goes later, or as the least recent at the cap).
        while self._seen:
            key, seen = next(iter(self._seen.items()))
            if seen and seen[-1] > cutoff:
                return
            del self._seen[key]


def vote_secret(settings: Settings) -> bytes:
    """The servers' secret for client keys, shared by every instance (made on first use)."""
    return signing_key(settings, "votes")


def client_key(secret: bytes, address: str) -> str:
    # Keyed, so that a stored key cannot be matched against every IPv4 address by anyone who
    # lacks the server's secret; enough to rate-limit and to count, not to identify a voter.
    return hmac.new(secret, _client_of(address).encode(), hashlib.sha256).hexdigest()[:32]


def _client_of(address: str) -> str:
    """One client per IPv4 address, and per /64 network for IPv6: a single subscriber is
    given a whole /64, and would otherwise vote from as many addresses as it likes."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)
