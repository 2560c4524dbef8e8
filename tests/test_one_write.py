"""What a connection is sent in a turn of the event loop goes out in one write: a response's
head with its body, and the answers made in the same turn; a head that nothing follows at once
still goes out at the end of the turn, and before the connection closes. A client that
half-closes after whole requests gets every answer.

A real uvicorn server on 127.0.0.1 with the protocol ``cms serve`` uses (on httptools, and on
h11 as where httptools cannot be installed), and a plain socket for a client: on loopback a
write is in the peer's receive queue when the system call returns, so what the client can peek
at while the application is between its two sends is exact.
"""

from __future__ import annotations

import asyncio
import select
import socket
import threading
from array import array
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cms import one_write
from cms.one_write import OneWrite, OneWriteProtocol, _TurnHeld

Peeked = list[bytes]
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def peek(client: socket.socket) -> bytes:
    """What the client has received and not read yet; never waits."""
    readable, _, _ = select.select([client], [], [], 0)
    return client.recv(65536, socket.MSG_PEEK) if readable else b""


def read_all(client: socket.socket) -> bytes:
    chunks = []
    while chunk := client.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


async def send_path(scope: dict[str, Any], send: Any) -> None:
    """Answers a request with its own path."""
    body = scope["path"].encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class _OnH11(OneWrite, H11Protocol):  # type: ignore[misc]
    """The protocol as built where httptools is missing."""


# By the parser under it: httptools takes every request sent at once, h11 one at a time.
PROTOCOLS: dict[str, type[asyncio.Protocol]] = {"httptools": OneWriteProtocol, "h11": _OnH11}


def test_the_server_s_protocol_is_on_httptools_here() -> None:
    assert issubclass(OneWriteProtocol, HttpToolsProtocol)


@pytest.fixture(params=sorted(PROTOCOLS))
def parser(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["uvloop", "asyncio"])
def loop(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def serve(parser: str, loop: str) -> Iterator[Callable[[App], socket.socket]]:
    """Serves an ASGI app with the CMS's protocol; a connected client socket to it."""
    running: list[tuple[uvicorn.Server, threading.Thread, socket.socket, socket.socket]] = []

    def start(app: App) -> socket.socket:
        listener = socket.create_server(("127.0.0.1", 0))
        # Kept-alive connections are not closed by the server's idle timer within a test (the
        # client gives up first): a test that reads until the server closes sees the
        # protocol's own close.
        config = uvicorn.Config(app, http=PROTOCOLS[parser], loop=loop, lifespan="off",
                                log_level="warning", access_log=False, timeout_keep_alive=60,
                                timeout_graceful_shutdown=10)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
        thread.start()
        # Connected at once: the listener queues it until the server takes it.
        client = socket.create_connection(listener.getsockname()[:2], timeout=30)
        running.append((server, thread, listener, client))
        return client

    yield start
    for server, thread, listener, client in running:
        client.close()
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()
        assert not thread.is_alive()


def request(path: str = "/", *, close: bool = True) -> bytes:
    connection = b"connection: close\r\n" if close else b""
    return f"GET {path} HTTP/1.1\r\nhost: x\r\n".encode() + connection + b"\r\n"


def test_the_head_waits_for_the_body_and_both_arrive_together(
        serve: Callable[[App], socket.socket]) -> None:
    seen_between: Peeked = []
    clients: list[socket.socket] = []
    peeked = threading.Event()  # the client reads only once the app has looked

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"5")]})
        seen_between.append(peek(clients[0]))  # the head alone, were it written at once
        peeked.set()
        await send({"type": "http.response.body", "body": b"hello"})

    clients.append(serve(app))
    clients[0].sendall(request())
    assert peeked.wait(timeout=30)
    answer = read_all(clients[0])
    assert seen_between == [b""]
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\nhello")


def test_a_head_nothing_follows_at_once_goes_out_at_the_end_of_the_turn(
        serve: Callable[[App], socket.socket]) -> None:
    clients: list[socket.socket] = []
    turns: list[int] = []
    peeked = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for turn in range(1, 4):  # a stream's first event may come much later
            await asyncio.sleep(0)
            if peek(clients[0]).endswith(b"\r\n\r\n"):
                turns.append(turn)
                break
        peeked.set()
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    clients.append(serve(app))
    clients[0].sendall(request())
    assert peeked.wait(timeout=30)
    answer = read_all(clients[0])
    assert turns == [1]
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"data: 1\n\n" in answer


def test_a_head_is_written_before_the_connection_closes(
        serve: Callable[[App], socket.socket]) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"5")]})
        raise RuntimeError("the body never comes")

    client = serve(app)
    client.sendall(request())
    answer = read_all(client)  # until the server closes it
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\n")


def test_answers_on_a_kept_connection_follow_each_other_whole(
        serve: Callable[[App], socket.socket]) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send_path(scope, send)

    client = serve(app)
    client.sendall(request("/first", close=False) + request("/second"))
    answer = read_all(client)
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert answer.index(b"/first") < answer.index(b"/second")
    assert answer.endswith(b"\r\n\r\n/second")


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_head_request_from_a_client_that_half_closes_is_answered(loop: str) -> None:
    """No body follows the head of a HEAD answer, and the client's FIN makes the transport
    close itself: the head must be out before that."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})

    listener = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=OneWriteProtocol, loop=loop, lifespan="off",
                            log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    thread.start()
    try:
        answers = []
        for _ in range(10):
            with socket.create_connection(listener.getsockname()[:2], timeout=30) as client:
                client.sendall(b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n")  # kept alive
                client.shutdown(socket.SHUT_WR)  # nothing more to send; still reading
                answers.append(read_all(client))
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()
    assert not thread.is_alive()
    assert all(answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\n")
               for answer in answers), answers


class _EndSeen:
    """Added to the protocol: tells the application when the client's end of stream has
    come."""

    ends: asyncio.Event | None = None

    def eof_received(self) -> bool | None:
        answer = super().eof_received()  # type: ignore[misc]
        assert _EndSeen.ends is not None
        _EndSeen.ends.set()
        return answer  # type: ignore[no-any-return]


def test_a_client_that_half_closes_gets_an_answer_made_after_its_end_of_stream(
        serve: Callable[[App], socket.socket], parser: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        _EndSeen.ends = asyncio.Event()  # made on the server's loop
        await asyncio.wait_for(_EndSeen.ends.wait(), timeout=30)  # as a slow answer would
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})

    monkeypatch.setattr(_EndSeen, "ends", None)
    monkeypatch.setitem(PROTOCOLS, parser, type("EndSeen", (_EndSeen, PROTOCOLS[parser]), {}))
    client = serve(app)
    client.sendall(request(close=False))
    client.shutdown(socket.SHUT_WR)
    answer = read_all(client)  # the server closes it after the answer
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\nhello")
    if parser == "httptools":  # the answer marked the last (h11 closes after its own turn)
        assert b"connection: close\r\n" in answer


def test_every_request_sent_before_a_half_close_is_answered_then_the_connection_closes(
        serve: Callable[[App], socket.socket], parser: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """h11 takes one request at a time: the ones after the first wait in its buffer when the
    end of stream comes, and were dropped once the first was answered."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["method"] == "POST":
            await receive()  # reading lets the end of stream in while this is answered
            assert _EndSeen.ends is not None
            await asyncio.wait_for(_EndSeen.ends.wait(), timeout=30)
        await send_path(scope, send)

    monkeypatch.setattr(_EndSeen, "ends", asyncio.Event())  # bound to the loop that waits
    monkeypatch.setitem(PROTOCOLS, parser, type("EndSeen", (_EndSeen, PROTOCOLS[parser]), {}))
    client = serve(app)
    client.sendall(b"POST /first HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}" +
                   request("/second", close=False) + request("/third", close=False))
    client.shutdown(socket.SHUT_WR)
    answer = read_all(client)  # returns once the server closes
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 3, answer
    assert answer.index(b"/first") < answer.index(b"/second") < answer.index(b"/third")
    assert answer.endswith(b"\r\n\r\n/third")


def test_a_request_cut_short_by_the_client_s_end_of_stream_is_closed_at_once(
        serve: Callable[[App], socket.socket]) -> None:
    bodies: list[bytes] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        while message.get("more_body"):
            message = await receive()
        bodies.append(message.get("body", b""))

    client = serve(app)
    client.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc")
    client.shutdown(socket.SHUT_WR)
    assert read_all(client) == b""  # closed, not left waiting for the seven bytes to come


def test_a_large_body_goes_out_as_it_is_sent_not_at_the_end_of_the_turn(
        serve: Callable[[App], socket.socket]) -> None:
    clients: list[socket.socket] = []
    seen: Peeked = []
    peeked = threading.Event()
    chunk = b"x" * 40_000

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(4 * len(chunk)).encode())]})
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        seen.append(peek(clients[0]))  # under the bound: held
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        seen.append(peek(clients[0]))  # past it: written, so flow control sees it
        peeked.set()
        for _ in range(2):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    clients.append(serve(app))
    clients[0].sendall(request())
    assert peeked.wait(timeout=30)
    answer = read_all(clients[0])
    assert seen[0] == b""
    assert seen[1].startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\n" + chunk * 4)


def test_a_whole_answer_waits_for_the_end_of_the_turn_then_goes_at_once(
        serve: Callable[[App], socket.socket]) -> None:
    clients: list[socket.socket] = []
    seen: Peeked = []
    peeked = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})
        seen.append(peek(clients[0]))  # answers of this turn's other requests may join it
        await asyncio.sleep(0)  # one turn
        seen.append(peek(clients[0]))
        peeked.set()

    clients.append(serve(app))
    clients[0].sendall(request(close=False))
    assert peeked.wait(timeout=30)
    assert seen[0] == b""
    assert seen[1].startswith(b"HTTP/1.1 200 OK\r\n")
    assert seen[1].endswith(b"\r\n\r\nhello")


def test_what_a_writer_changes_after_writing_is_sent_as_it_was_written() -> None:
    class Recorded:
        def __init__(self) -> None:
            self.sent: list[bytes] = []

        def writelines(self, lines: list[bytes]) -> None:
            self.sent.append(b"".join(lines))

        def is_closing(self) -> bool:
            return False

    async def written() -> bytes:
        recorded = Recorded()
        held = _TurnHeld(recorded, asyncio.get_running_loop())  # type: ignore[arg-type]
        buffer = bytearray(b"first")
        held.write(buffer)
        held.write(memoryview(buffer))
        buffer[:] = b"later"
        await asyncio.sleep(0)  # the turn ends
        return recorded.sent[0]

    assert asyncio.run(written()) == b"firstfirst"


def test_the_bound_counts_bytes_not_the_items_of_a_view() -> None:
    class Recorded:
        def __init__(self) -> None:
            self.sent = 0

        def writelines(self, lines: list[bytes]) -> None:
            self.sent += sum(map(len, lines))

        def is_closing(self) -> bool:
            return False

    async def sent_at_once() -> int:
        recorded = Recorded()
        held = _TurnHeld(recorded, asyncio.get_running_loop())  # type: ignore[arg-type]
        held.write(memoryview(array("q", range(10_000))))  # 80,000 bytes in 10,000 items
        return recorded.sent

    assert asyncio.run(sent_at_once()) == 80_000


class _EndsCounted(_EndSeen):
    """Added to the protocol: counts the ends of stream it is told of, and tells the
    application of the first."""

    told = 0

    def eof_received(self) -> bool | None:
        _EndsCounted.told += 1
        return super().eof_received()


def test_the_end_of_stream_is_taken_once_while_the_answers_go_out(
        serve: Callable[[App], socket.socket], parser: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Uvicorn resumes reading when an answer completes; at the end of stream that would
    deliver it again (on uvloop, a read past it)."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/first":  # answered after the end of stream came
            assert _EndSeen.ends is not None
            await asyncio.wait_for(_EndSeen.ends.wait(), timeout=30)
        await send_path(scope, send)

    monkeypatch.setattr(_EndSeen, "ends", asyncio.Event())
    monkeypatch.setattr(_EndsCounted, "told", 0)
    monkeypatch.setitem(PROTOCOLS, parser,
                        type("EndsCounted", (_EndsCounted, PROTOCOLS[parser]), {}))
    client = serve(app)
    client.sendall(request("/first", close=False) + request("/second", close=False))
    client.shutdown(socket.SHUT_WR)
    answer = read_all(client)
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert _EndsCounted.told == 1


def test_an_answer_not_made_a_while_after_the_end_of_stream_is_given_up(
        serve: Callable[[App], socket.socket], monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that closed altogether looks like one that half-closed: an application that
    waits for the disconnect hears of it once the connection is given up."""
    heard: list[str] = []
    disconnected = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()  # the request
        message = await receive()  # what comes next: only a disconnect can
        heard.append(message["type"])
        disconnected.set()

    monkeypatch.setattr(one_write, "_AFTER_END_SECONDS", 0.05)
    client = serve(app)
    client.sendall(request(close=False))
    client.shutdown(socket.SHUT_WR)
    assert read_all(client) == b""  # closed, unanswered
    assert disconnected.wait(timeout=30)
    assert heard == ["http.disconnect"]
