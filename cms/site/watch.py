"""The webhook receiver that keeps the site up to date: `cms site watch`.

Each request is checked (signatures.py) before anything else happens; a refused one changes
nothing. The ids of the events handled are kept (handled.py), so a redelivery is answered
without a second rebuild. The rebuild runs after the answer, in the rebuilding thread
(rebuilds.py). Every rebuild is incremental (the sync API), and one runs at start, so an event
whose rebuild a crash cut short is made good by the next start.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import msgspec
from msgspec import Struct

from .build import BuildResult, build
from .handled import HandledIds
from .rebuilds import Rebuilder
from .signatures import TOLERANCE_SECONDS, Refused, Verifier
from .source import Source

log = logging.getLogger("cms.site")

MAX_BODY = 1024 * 1024
MAX_CONNECTIONS = 64  # answered at once; more are closed at once
REFUSAL_LOG_SECONDS = 10.0


class Answer(Struct, kw_only=True, omit_defaults=True):
    status: str | None = None
    webhook_id: str | None = None
    error: str | None = None


class Status(Struct, kw_only=True):
    builds: int
    requested: int
    built_through: int
    last_error: str | None
    last: BuildResult | None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a client that stops sending mid-request is dropped
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
            return
        if length < 0:
            self._refuse(HTTPStatus.BAD_REQUEST, "Content-Length is negative")
            return
        if length > MAX_BODY:
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is over {MAX_BODY} bytes")
            return
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            message_id = self.server.verifier.verify(headers, body)
        except Refused as refused:
            self.server.refusals.note(refused.reason)
            self._answer(refused.status, Answer(error=refused.reason))
            return
        try:
            new = self.server.handled.first_time(message_id)
        except OSError as exc:
            log.warning("a webhook could not be recorded (%s); the sender will try again", exc)
            self._answer(HTTPStatus.SERVICE_UNAVAILABLE,
                         Answer(error="the event could not be recorded; send it again"))
            return
        if not new:
            self._answer(HTTPStatus.OK, Answer(status="duplicate", webhook_id=message_id))
            return
        self.server.rebuilder.request()
        self._answer(HTTPStatus.ACCEPTED, Answer(status="accepted", webhook_id=message_id))

    def do_GET(self) -> None:
        """``/status``; with ``?through=N``, once the first N requests are in the site (or
        after ``timeout`` seconds, 30 at most): how a script waits for a rebuild."""
        path, _, query = self.path.partition("?")
        if path != "/status":
            self._answer(HTTPStatus.NOT_FOUND, Answer(error="POST webhooks here; GET /status"))
            return
        asked = parse_qs(query)
        try:
            through = int(asked.get("through", ["0"])[0])
            timeout = min(30.0, max(0.0, float(asked.get("timeout", ["10"])[0])))
        except ValueError:
            self._answer(HTTPStatus.BAD_REQUEST, Answer(
                error="through is a whole number and timeout a number of seconds"))
            return
        rebuilder = self.server.rebuilder
        if through:
            rebuilder.wait_built(through, timeout)
        self._answer(HTTPStatus.OK, Status(
            builds=rebuilder.builds, requested=rebuilder.requested,
            built_through=rebuilder.built_through, last_error=rebuilder.last_error,
            last=rebuilder.last))

    def _refuse(self, status: HTTPStatus, reason: str) -> None:
        """Refused before its body was read: the connection closes, so that the unread body is
        never taken for the next request."""
        self.close_connection = True
        self._answer(status, Answer(error=reason))

    def _answer(self, status: HTTPStatus, body: Answer | Status) -> None:
        data = msgspec.json.encode(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Refusals:
    """Refused requests, logged once in a while with their count: anyone can send them, and
    the log must not be theirs to fill."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._last = 0.0

    def note(self, reason: str) -> None:
        with self._lock:
            self._count += 1
            now = time.monotonic()
            if now - self._last < REFUSAL_LOG_SECONDS:
                return
            count, self._count, self._last = self._count, 0, now
        log.warning("%d webhook request(s) refused; the latest: %s", count, reason)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], verifier: Verifier, handled: HandledIds,
                 rebuilder: Rebuilder) -> None:
        self.verifier = verifier
        self.handled = handled
        self.rebuilder = rebuilder
        self.refusals = _Refusals()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Slow clients each hold a thread: past MAX_CONNECTIONS, new ones are turned away.
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Said in a line, never a traceback: a client gone mid-answer, or a failure of ours.
        error = sys.exc_info()[1]
        log.warning("a webhook connection from %s ended badly: %s", client_address[0],
                    f"{type(error).__name__}: {error}")


class Receiver:
    """The watcher, its HTTP server and its rebuilding thread, started and stopped together."""

    def __init__(self, *, api: str, out: Path, state_folder: Path, secrets: list[str],
                 host: str, port: int, site_url: str = "", settle: float = 0.2,
                 refresh: float | None = None, tolerance: float = TOLERANCE_SECONDS) -> None:
        self.source = Source(api)
        self.rebuilder = Rebuilder(
            lambda: build(self.source, out, state_folder, site_url=site_url),
            settle=settle, refresh=refresh)
        self.server = _Server((host, port), Verifier(secrets, tolerance),
                              HandledIds(state_folder / "webhook-ids.json"), self.rebuilder)
        self.port: int = self.server.server_address[1]

    def serve_forever(self) -> None:
        self.rebuilder.start()
        try:
            self.server.serve_forever()
        finally:
            self.close()

    def close(self) -> None:
        self.server.server_close()
        self.rebuilder.stop()
        self.source.close()
