"""Real HTTP receivers on 127.0.0.1 for webhook tests: they record requests and answer by script."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_FILL = b"x" * 65536


class Received:
    def __init__(self, headers: dict[str, str], body: bytes) -> None:
        self.headers = headers
        self.body = body


class Receiver:
    """Answers each request with the next status of ``answers`` (the last one repeats).

    Hostile variants: ``body_size`` answers with a body of that many bytes, written as fast as
    the client takes them (``sent`` counts what got out); ``trickle`` sends the whole answer one
    byte at a time, that many seconds apart. ``tls`` serves HTTPS with that context.
    """

    def __init__(self, answers: list[int] | None = None,
                 extra_headers: dict[str, str] | None = None, port: int = 0, *,
                 body_size: int = 0, trickle: float | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.answers = answers or [200]
        self.extra_headers = extra_headers or {}
        self.body_size = body_size
        self.trickle = trickle
        self.received: list[Received] = []
        self.connections = 0
        self.sent = 0
        self.finished = 0
        self.hold: threading.Event | None = None
        self.stopped = threading.Event()
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                super().setup()
                with receiver.arrived:
                    receiver.connections += 1
                    receiver.arrived.notify_all()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.arrived:
                    receiver.received.append(Received(dict(self.headers.items()), body))
                    status = receiver.answers[min(len(receiver.received), len(receiver.answers)) - 1]
                    receiver.arrived.notify_all()
                if receiver.hold is not None:
                    receiver.hold.wait(timeout=60)
                try:
                    if receiver.trickle is not None:
                        self._trickle(status, receiver.trickle)
                    elif receiver.body_size:
                        self._flood(status, receiver.body_size)
                    else:
                        self._answer(status, b"ok")
                except OSError:
                    self.close_connection = True  # the client hung up: what the tests provoke
                finally:
                    with receiver.arrived:
                        receiver.finished += 1
                        receiver.arrived.notify_all()

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                for key, value in receiver.extra_headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _flood(self, status: int, size: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                while receiver.sent < size and not receiver.stopped.is_set():
                    chunk = _FILL[:size - receiver.sent]
                    self.wfile.write(chunk)
                    receiver.sent += len(chunk)

            def _trickle(self, status: int, every: float) -> None:
                answer = f"HTTP/1.1 {status} OK\r\nContent-Length: 2\r\n\r\nok".encode()
                for byte in answer:
                    # The pace of the trickle, not a synchronisation: stopping ends it early.
                    if receiver.stopped.wait(every):
                        return
                    self.wfile.write(bytes([byte]))
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        scheme = "http"
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.port = self.server.server_address[1]
        self.url = f"{scheme}://127.0.0.1:{self.port}/hook"

    def wait_for(self, count: int, timeout: float = 30) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.received) >= count, timeout=timeout)

    def wait_finished(self, count: int, timeout: float = 30) -> bool:
        """Until ``count`` answers have ended, whole or cut off by the client."""
        with self.arrived:
            return self.arrived.wait_for(lambda: self.finished >= count, timeout=timeout)

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.received]


@contextmanager
def running(receiver: Receiver) -> Iterator[Receiver]:
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.stopped.set()
        if receiver.hold is not None:
            receiver.hold.set()
        receiver.server.shutdown()
        receiver.server.server_close()
        thread.join(timeout=10)


def dead_url() -> str:
    """A loopback port with nothing listening: every connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"
