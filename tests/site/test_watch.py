"""The webhook receiver of `cms site watch`: signatures, redeliveries and bursts, over real HTTP
on 127.0.0.1 (the rebuild itself is counted here; the whole loop is in test_loop.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook

from cms.site.build import BuildResult
from cms.site.handled import HandledIds
from cms.site.rebuilds import Rebuilder
from cms.site.signatures import Refused, Verifier
from cms.site.source import SourceError
from cms.site.watch import _Server
from cms.webhooks.signing import new_secret, signed_headers

BODY = b'{"type": "comparison.published", "data": {"slug": "a-b"}}'


class Rebuilds:
    """Counts rebuilds; each waits for ``gate`` when one is set, as a slow build would; the
    first ``failing`` of them fail as an unreachable API does."""

    def __init__(self, failing: int = 0) -> None:
        self.count = 0
        self.failing = failing
        self.gate: threading.Event | None = None
        self.started = threading.Event()
        self.third = threading.Event()

    def __call__(self) -> BuildResult:
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(30)
        self.count += 1
        if self.count >= 3:
            self.third.set()
        if self.count <= self.failing:
            raise SourceError("the API at http://127.0.0.1:1 could not be reached")
        return BuildResult(written=[], removed=[], comparisons=0, full=False)


class Running:
    def __init__(self, tmp_path: Path, secret: str) -> None:
        self.rebuilds = Rebuilds()
        self.rebuilder = Rebuilder(self.rebuilds, settle=0.0)
        self.handled = HandledIds(tmp_path / "webhook-ids.json")
        self.server = _Server(("127.0.0.1", 0), Verifier([secret]), self.handled, self.rebuilder)
        host, port = self.server.server_address[:2]
        self.url = f"http://{host}:{port}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(self.url, content=body, headers=headers, timeout=30)


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
def running(tmp_path: Path, secret: str) -> Iterator[Running]:
    receiver = Running(tmp_path, secret)
    receiver.rebuilder.start()
    receiver.thread.start()
    assert receiver.rebuilder.wait_built(1, 30)  # the start's own rebuild
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
        receiver.rebuilder.stop()


def signed(secret: str, message_id: str, body: bytes = BODY,
           at: int | None = None) -> dict[str, str]:
    return {**signed_headers([secret], message_id, at or int(time.time()), body),
            "Content-Type": "application/json"}


def test_a_signed_event_rebuilds_once_and_its_redelivery_not_again(
        running: Running, secret: str) -> None:
    first = running.post(BODY, signed(secret, "msg_1"))
    assert first.status_code == 202
    assert first.json() == {"status": "accepted", "webhook_id": "msg_1"}
    assert running.rebuilder.wait_built(2, 30)
    again = running.post(BODY, signed(secret, "msg_1"))  # a redelivery: a new timestamp
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert running.rebuilder.requested == 2
    assert running.rebuilds.count == 2


@pytest.mark.parametrize("forgery", ["wrong-secret", "tampered-body", "old", "future",
                                     "no-signature", "not-v1", "bad-timestamp"])
def test_a_forged_or_stale_event_is_refused_and_nothing_is_rebuilt(
        running: Running, secret: str, forgery: str) -> None:
    body, headers = BODY, signed(secret, "msg_forged")
    if forgery == "wrong-secret":
        headers = signed(new_secret(), "msg_forged")
    elif forgery == "tampered-body":
        body = BODY.replace(b"a-b", b"c-d")
    elif forgery == "old":
        headers = signed(secret, "msg_forged", at=int(time.time()) - 600)
    elif forgery == "future":
        headers = signed(secret, "msg_forged", at=int(time.time()) + 600)
    elif forgery == "no-signature":
        del headers["webhook-signature"]
    elif forgery == "not-v1":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v2,")
    else:
        headers["webhook-timestamp"] = "12e3"
    answer = running.post(body, headers)
    assert answer.status_code == 401
    assert "error" in answer.json()
    assert running.rebuilder.requested == 1
    # The id of a refused request is not kept: the real event with that id still counts.
    assert running.post(BODY, signed(secret, "msg_forged")).status_code == 202


def test_what_a_standard_webhooks_library_signs_is_accepted(running: Running,
                                                            secret: str) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    signature = Webhook(secret).sign("msg_lib", now, BODY.decode())
    headers = {"webhook-id": "msg_lib", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": signature}
    assert running.post(BODY, headers).status_code == 202


def test_either_secret_of_a_rotation_is_accepted(tmp_path: Path) -> None:
    old, new = new_secret(), new_secret()
    verifier = Verifier([new])
    both = signed_headers([old, new], "msg_rot", int(time.time()), BODY)
    assert verifier.verify(both, BODY) == "msg_rot"
    with pytest.raises(Refused):
        verifier.verify(signed_headers([old], "msg_rot", int(time.time()), BODY), BODY)


def test_an_oversized_or_unsized_body_is_refused(running: Running, secret: str) -> None:
    big = b"x" * (1024 * 1024 + 1)
    assert running.post(big, signed(secret, "msg_big", big)).status_code == 413
    assert running.rebuilder.requested == 1


def test_a_burst_during_a_rebuild_makes_one_more_rebuild(running: Running,
                                                         secret: str) -> None:
    running.rebuilds.gate = gate = threading.Event()
    running.rebuilds.started.clear()
    assert running.post(BODY, signed(secret, "msg_a")).status_code == 202
    assert running.rebuilds.started.wait(30)  # the first rebuild is under way
    for number in range(5):
        assert running.post(BODY, signed(secret, f"msg_b{number}")).status_code == 202
    gate.set()
    assert running.rebuilder.wait_built(7, 30)
    assert running.rebuilds.count == 3  # the start's, msg_a's, and one for the five


def test_handled_ids_outlive_the_receiver(tmp_path: Path) -> None:
    ids = HandledIds(tmp_path / "ids.json")
    assert ids.first_time("msg_1")
    assert not ids.first_time("msg_1")
    assert not HandledIds(tmp_path / "ids.json").first_time("msg_1")
    (tmp_path / "ids.json").write_text("[broken")
    assert HandledIds(tmp_path / "ids.json").first_time("msg_1")  # unreadable: starts afresh


def test_a_secret_that_is_not_one_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        Verifier(["not-a-secret"])
    with pytest.raises(ValueError, match="base64"):
        Verifier(["whsec_***"])
    for weak in ("whsec_", "whsec_AA=="):  # anyone could sign with an empty or tiny key
        with pytest.raises(ValueError, match="at least 16 bytes"):
            Verifier([weak])


def test_a_timestamp_of_other_digits_is_refused(running: Running, secret: str) -> None:
    headers = signed(secret, "msg_digits")
    headers["webhook-timestamp"] = "\u00b9\u00b2\u00b3"  # digits to str.isdigit, not to int()
    answer = httpx.post(running.url, content=BODY, timeout=30,
                        headers={key: value.encode() for key, value in headers.items()})
    assert answer.status_code == 401


def test_an_event_that_cannot_be_recorded_is_refused_for_now_and_taken_later(
        running: Running, secret: str, tmp_path: Path) -> None:
    obstacle = tmp_path / ".webhook-ids.json.cms-site.tmp"
    obstacle.mkdir()  # as a full disk would: the save fails
    failed = running.post(BODY, signed(secret, "msg_kept"))
    assert failed.status_code == 503
    assert running.rebuilder.requested == 1
    obstacle.rmdir()
    assert running.post(BODY, signed(secret, "msg_kept")).status_code == 202
    assert running.rebuilder.requested == 2


def test_watchers_of_one_site_share_what_they_handled(tmp_path: Path) -> None:
    one, two = HandledIds(tmp_path / "ids.json"), HandledIds(tmp_path / "ids.json")
    assert one.first_time("msg_one")
    assert two.first_time("msg_two")
    assert not two.first_time("msg_one")
    assert not HandledIds(tmp_path / "ids.json").first_time("msg_two")


def test_a_negative_length_is_a_bad_request(running: Running, secret: str) -> None:
    with socket.create_connection(("127.0.0.1", running.server.server_address[1]),
                                  timeout=30) as client:
        client.sendall(b"POST /hooks HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
        assert client.recv(100).startswith(b"HTTP/1.1 400")


def test_connections_past_the_limit_are_turned_away(tmp_path: Path, secret: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from cms.site import watch

    monkeypatch.setattr(watch, "MAX_CONNECTIONS", 1)
    receiver = Running(tmp_path, secret)
    receiver.thread.start()
    port = receiver.server.server_address[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as idle:
            idle.sendall(b"POST /hooks HTTP/1.1\r\n")  # and then nothing: it holds its thread
            with socket.create_connection(("127.0.0.1", port), timeout=30) as turned_away:
                assert turned_away.recv(100) == b""  # closed at once
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


def test_a_failed_rebuild_is_tried_again_without_being_asked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from cms.site import rebuilds

    # The first retry comes after the first delay, the second after the second.
    monkeypatch.setattr(rebuilds, "RETRY_SECONDS", (0.0, 0.0, 600.0))
    failing = Rebuilds(failing=2)
    rebuilder = Rebuilder(failing, settle=0.0)
    rebuilder.start()
    try:
        assert rebuilder.wait_built(1, 30)  # the start's own request, on the third try
        assert failing.count == 3
        assert rebuilder.requested == 1
        assert rebuilder.last_error is None
    finally:
        rebuilder.stop()


def test_the_site_is_refreshed_when_nothing_asks() -> None:
    counted = Rebuilds()
    rebuilder = Rebuilder(counted, settle=0.0, refresh=0.001)
    rebuilder.start()
    try:
        assert counted.third.wait(30)
        assert rebuilder.requested == 1  # only the start asked
    finally:
        rebuilder.stop()


def test_stopping_while_a_burst_gathers_starts_no_rebuild() -> None:
    counted = Rebuilds()
    rebuilder = Rebuilder(counted, settle=600.0)
    rebuilder.start()  # its own request now waits out the settle time
    rebuilder.stop()
    assert counted.count == 0


def test_a_body_refused_unread_closes_the_connection(running: Running) -> None:
    smuggled = b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", running.server.server_address[1]),
                                  timeout=30) as client:
        client.sendall(b"POST /hooks HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n"
                       + smuggled)
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413")
    assert answer.count(b"HTTP/1.1") == 1  # the body was never read as a request
