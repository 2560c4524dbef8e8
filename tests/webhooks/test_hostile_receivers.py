"""Webhook targets that lie about their address, answer without end or trickle (issue item 14).

Every receiver is real and listens on 127.0.0.1; names are resolved by a patched
``socket.getaddrinfo``, and a connection to the one public address used is refused before it
leaves the machine.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..receivers import Receiver, running
from .support import serve
from .test_webhooks import deliveries, drain, publish_new, subscribe

HOST = "hooks.example.test"
PUBLIC = "93.184.215.14"  # a global address; never dialled for real (see refuse_public)

AddrInfo = list[tuple[Any, ...]]


def answer_for(host: str, answers: Callable[[], str],
               monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Resolve ``host`` to ``answers()``, afresh on every lookup; returns the answers given."""
    real = socket.getaddrinfo
    given: list[str] = []

    def getaddrinfo(name: Any, port: Any, *args: Any, **kwargs: Any) -> AddrInfo:
        if name != host:
            return real(name, port, *args, **kwargs)
        given.append(answers())
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (given[-1], port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return given


def refuse_public(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every host dialled; refuse PUBLIC, so that no test reaches beyond loopback."""
    real = socket.create_connection
    dialled: list[str] = []

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        dialled.append(address[0])
        if address[0] == PUBLIC:
            raise ConnectionRefusedError(111, "refused by the test")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return dialled


def test_the_address_checked_is_the_address_connected_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name answers a public address to the check, then loopback."""
    with serve(tmp_path, webhook_allow_private=False, webhook_backoff=(0.0,)) as (
            client, tokens, _), running(Receiver()) as receiver:
        created = subscribe(client, tokens["admin"], f"http://{HOST}:{receiver.port}/hook")
        lookups = iter([PUBLIC, "127.0.0.1", "127.0.0.1", "127.0.0.1"])
        answers = answer_for(HOST, lambda: next(lookups), monkeypatch)
        dialled = refuse_public(monkeypatch)
        publish_new(client, tokens, "rebound")
        drain(client)
        assert receiver.connections == 0
        log = deliveries(client, tokens["admin"], created["endpoint"]["id"])
    # One lookup per attempt, and only the checked address dialled: the first attempt went to
    # the public address (refused here); the second was refused by the policy.
    assert answers == [PUBLIC, "127.0.0.1"]
    assert dialled == [PUBLIC]
    first, second = log[0]["attempt_log"]
    assert first["error"].startswith("ConnectError")
    assert second["error"] == f"{HOST} resolves to 127.0.0.1, a non-public address"
    assert log[0]["status"] == "failed"


def test_a_name_is_refused_if_any_of_its_addresses_is_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = socket.getaddrinfo

    def both(name: Any, port: Any, *args: Any, **kwargs: Any) -> AddrInfo:
        if name != HOST:
            return real(name, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))
                for address in (PUBLIC, "127.0.0.1")]

    monkeypatch.setattr(socket, "getaddrinfo", both)
    dialled = refuse_public(monkeypatch)
    with serve(tmp_path, webhook_allow_private=False, webhook_backoff=()) as (
            client, tokens, _), running(Receiver()) as receiver:
        created = subscribe(client, tokens["admin"], f"http://{HOST}:{receiver.port}/hook")
        publish_new(client, tokens, "half-private")
        drain(client)
        assert receiver.connections == 0
        log = deliveries(client, tokens["admin"], created["endpoint"]["id"])
    assert dialled == []
    assert "non-public address" in log[0]["attempt_log"][0]["error"]


def test_the_host_header_names_the_host_not_the_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer_for(HOST, lambda: "127.0.0.1", monkeypatch)
    with serve(tmp_path) as (client, tokens, _), running(Receiver()) as receiver:
        subscribe(client, tokens["admin"], f"http://{HOST}:{receiver.port}/hook")
        publish_new(client, tokens, "host-header")
        drain(client)
        assert len(receiver.received) == 1
    assert receiver.received[0].headers["Host"] == f"{HOST}:{receiver.port}"


def test_an_endless_answer_is_read_only_in_part(tmp_path: Path) -> None:
    size = 64 * 1024 * 1024  # far more than loopback's socket buffers can hold
    with serve(tmp_path) as (client, tokens, _), \
            running(Receiver(body_size=size)) as flood:
        created = subscribe(client, tokens["admin"], flood.url)
        publish_new(client, tokens, "flooded")
        drain(client)
        assert flood.wait_finished(1)  # the receiver's write failed once the client hung up
        log = deliveries(client, tokens["admin"], created["endpoint"]["id"])
    assert flood.sent < size
    assert log[0]["status"] == "delivered"
    attempt = log[0]["attempt_log"][0]
    assert (attempt["status_code"], attempt["error"]) == (200, None)
    assert attempt["response_excerpt"] == "x" * 500


def test_a_trickling_receiver_is_cut_at_the_deadline(tmp_path: Path) -> None:
    # The whole answer takes two seconds, a byte at a time, each byte well within any per-read
    # timeout; the attempt's deadline is half a second.
    with serve(tmp_path, webhook_timeout=0.5, webhook_backoff=(0.0,)) as (client, tokens, _), \
            running(Receiver(trickle=0.05)) as trickler:
        created = subscribe(client, tokens["admin"], trickler.url)
        publish_new(client, tokens, "trickled-one")
        publish_new(client, tokens, "trickled-two")
        drain(client)
        # Both events, each tried twice, in order: the dispatcher moved on every time.
        assert len(trickler.received) == 4
        log = deliveries(client, tokens["admin"], created["endpoint"]["id"])
    assert [d["slug"] for d in log] == ["trickled-two", "trickled-one"]
    for delivery in log:
        assert delivery["status"] == "failed"
        assert [(a["status_code"], a["error"]) for a in delivery["attempt_log"]] == [
            (None, "no complete answer within 0.5 s")] * 2


def make_certificate(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for ``name`` signed by it: (ca, certificate, key)."""
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, request = folder / "leaf.pem", folder / "leaf.key", folder / "leaf.csr"
    extensions = folder / "leaf.ext"
    extensions.write_text(f"subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\n"
                          "extendedKeyUsage=serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in (
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=Test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", *ec, "-keyout", key, "-out", request, "-subj", f"/CN={name}"],
        ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", extensions],
    ):
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    return ca, cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.parametrize(("certified", "delivered"), [(HOST, True), ("other.example.test", False)])
def test_https_checks_the_certificate_against_the_host_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certified: str, delivered: bool
) -> None:
    """Connected to a checked address, TLS still names the host (SNI) and verifies its
    certificate against that name, not against the address."""
    ca, cert, key = make_certificate(tmp_path, certified)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # the dispatcher's trust store, as for httpx
    answer_for(HOST, lambda: "127.0.0.1", monkeypatch)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_tls.sni_callback = lambda _socket, name, _context: names.append(name)
    with serve(tmp_path, webhook_backoff=()) as (client, tokens, _), \
            running(Receiver(tls=server_tls)) as receiver:
        created = subscribe(client, tokens["admin"], f"https://{HOST}:{receiver.port}/hook")
        publish_new(client, tokens, f"tls-{delivered}".lower())
        drain(client)
        log = deliveries(client, tokens["admin"], created["endpoint"]["id"])
    assert names == [HOST]
    attempt = log[0]["attempt_log"][0]
    if delivered:
        assert (log[0]["status"], attempt["status_code"]) == ("delivered", 200)
        assert receiver.received[0].headers["Host"] == f"{HOST}:{receiver.port}"
    else:
        assert receiver.received == []
        assert "CERTIFICATE_VERIFY_FAILED" in attempt["error"]
