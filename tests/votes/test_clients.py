"""Who a voter is: trusted proxies only, a keyed digest of the address, and a bounded limiter."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import msgspec
import pytest
from litestar.testing import TestClient

from cms.api.app import create_app
from cms.config import Settings, load_settings
from cms.votes import limits
from cms.votes.limits import MAX_TRACKED, RateLimit, TooManyVotes, client_key
from cms.votes.proxies import TrustedProxies

from ..conftest import HAIKU
from ..test_e2e import start
from .test_votes import HAIKU_TOOL, vote

Client = TestClient  # type: ignore[type-arg]
VOTES = f"/api/comparisons/{HAIKU}/votes"
BALLOT = {"tool": HAIKU_TOOL, "vote": "ship"}


# Trusted proxies (CMS_TRUSTED_PROXIES)

@pytest.mark.parametrize(("peer", "forwarded", "client"), [
    ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # not a trusted proxy: header ignored
    ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
    ("10.0.0.2", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # the left is the client's say
    ("10.0.0.2", ["198.51.100.1, 10.0.0.7"], "198.51.100.1"),  # through two of ours
    ("10.0.0.2", ["198.51.100.1", "10.0.0.7"], "198.51.100.1"),  # two headers, in order
    ("10.0.0.2", ["garbage, 198.51.100.1"], "198.51.100.1"),  # garbage the client wrote
    ("10.0.0.2", ["198.51.100.1, garbage"], "10.0.0.2"),  # garbled where it matters: the peer
    ("10.0.0.2", ["198.51.100.1,,10.0.0.7"], "10.0.0.2"),
    ("10.0.0.2", [""], "10.0.0.2"),
    ("10.0.0.2", [], "10.0.0.2"),
    ("10.0.0.2", [", ".join(["198.51.100.1"] * 40)], "10.0.0.2"),  # absurdly long
    ("10.0.0.2", ["10.0.0.9, 10.0.0.7"], "10.0.0.9"),  # all ours: the furthest back
    ("::ffff:10.0.0.2", ["2001:db8::1"], "2001:db8::1"),  # a dual-stack socket's peer
    ("::1", ["2001:db8::1"], "2001:db8::1"),
    ("testclient", ["198.51.100.1"], "testclient"),
])
def test_the_client_behind_trusted_proxies(peer: str, forwarded: list[str], client: str) -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "::1"])
    assert proxies.client(peer, forwarded) == client


def test_no_proxy_is_trusted_unless_configured() -> None:
    assert load_settings({}).trusted_proxies == ()
    assert TrustedProxies(()).client("127.0.0.1", ["198.51.100.1"]) == "127.0.0.1"
    settings = load_settings({"CMS_TRUSTED_PROXIES": " 127.0.0.1, 10.0.0.0/8 ,,fd00::/8"})
    assert settings.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "fd00::/8")
    with pytest.raises(SystemExit, match="CMS_TRUSTED_PROXIES"):
        load_settings({"CMS_TRUSTED_PROXIES": "127.0.0.1,localhost"})


def statuses(settings: Settings, peer: str, headers: list[dict[str, str]]) -> list[int]:
    """The answers to one vote per header set, from a connection whose peer is ``peer``."""
    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=create_app(settings), client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://cms.test") as http:
            return [(await http.post(VOTES, json=BALLOT, headers=h)).status_code for h in headers]
    return asyncio.run(run())


def test_forwarded_for_counts_only_from_a_trusted_proxy(settings: Settings,
                                                        repo_path: Path) -> None:
    forged = [{"X-Forwarded-For": f"198.51.100.{n}"} for n in range(40)]
    assert statuses(settings, "127.0.0.1", forged) == [202] * 30 + [429] * 10

    behind = msgspec.structs.replace(settings, data=settings.data.parent / "behind",
                                     trusted_proxies=("127.0.0.1",))
    spoofing = [{"X-Forwarded-For": f"198.51.100.{n}, 203.0.113.5"} for n in range(31)]
    others = [{"X-Forwarded-For": "203.0.113.6"}, {"X-Forwarded-For": "nonsense"}]
    assert statuses(behind, "127.0.0.1", spoofing + others) == [202] * 30 + [429, 202, 202]


def test_a_live_server_does_not_believe_forwarded_for_by_default(tmp_path: Path) -> None:
    env = {**os.environ, "CMS_REPO": str(tmp_path / "content"), "CMS_DATA": str(tmp_path / "var"),
           "CMS_PORT": "0"}
    env.pop("CMS_TRUSTED_PROXIES", None)
    env.pop("FORWARDED_ALLOW_IPS", None)
    subprocess.run([sys.executable, "-m", "cms", "init"], env=env, check=True,
                   capture_output=True, timeout=60)
    with start(env) as (_, url), httpx.Client(base_url=url, timeout=30) as http:
        answers = [http.post(VOTES, json=BALLOT,
                             headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code
                   for n in range(40)]
    assert answers == [202] * 30 + [429] * 10


# Client keys

def test_the_stored_client_key_is_keyed_by_a_server_secret(client: Client,
                                                           settings: Settings) -> None:
    assert vote(client, HAIKU_TOOL, "ship").status_code == 202
    with sqlite3.connect(settings.data / "votes.sqlite3") as db:
        (stored,), = db.execute("SELECT client FROM votes").fetchall()
    keys = settings.data / "state.sqlite3"
    with contextlib.closing(sqlite3.connect(keys)) as db:
        (secret,), = db.execute("SELECT value FROM keys WHERE name = 'votes'").fetchall()
    assert len(secret) >= 32
    assert keys.stat().st_mode & 0o077 == 0
    assert stored == hmac.new(secret, b"testclient", hashlib.sha256).hexdigest()[:32]
    assert hashlib.sha256(b"testclient").hexdigest()[:16] not in stored
    # Another server, with its own CMS_DATA and so its own secret, keys the address otherwise.
    other = msgspec.structs.replace(settings, data=settings.data.parent / "other")
    assert limits.client_key(limits.vote_secret(other), "testclient") != stored


# The limiter's own state

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_the_limiter_stays_bounded_under_a_flood_and_still_limits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(limits, "time", SimpleNamespace(monotonic=clock.monotonic))
    limit = RateLimit(30)
    persistent: list[bool] = []
    for number in range(3 * MAX_TRACKED):  # distinct clients, all within one minute
        clock.now += 0.0001
        limit.check(f"client-{number}", HAIKU)
        if number % 100 == 0:
            try:
                limit.check("persistent", HAIKU)
                persistent.append(True)
            except TooManyVotes:
                persistent.append(False)
        assert len(limit) <= MAX_TRACKED
    assert persistent == [True] * 30 + [False] * (len(persistent) - 30)
    clock.now += 61  # every window has passed
    limit.check("late", HAIKU)
    assert len(limit) == 1


def test_an_ipv6_network_is_one_client() -> None:
    secret = b"k" * 32
    assert client_key(secret, "2001:db8:1:2::1") == client_key(secret, "2001:db8:1:2:ffff::9")
    assert client_key(secret, "2001:db8:1:3::1") != client_key(secret, "2001:db8:1:2::1")
    assert client_key(secret, "::ffff:198.51.100.7") == client_key(secret, "198.51.100.7")
    assert client_key(secret, "198.51.100.7") != client_key(secret, "198.51.100.8")
