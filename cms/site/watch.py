"""The webhook receiver that keeps the site up to date: `cms site watch`.

Each request is checked as Standard Webhooks says (the HMAC of ``id.timestamp.body`` under the
endpoint's secret, a timestamp within five minutes) before anything else happens; a refused one
changes nothing. The ids of the events handled are kept (beside the site's state), so a
redelivery is answered without a second rebuild. A rebuild runs in one thread of its own, after
the answer: events arriving while it runs, or within ``settle`` seconds of the first, make one
more rebuild between them, not one each. Every rebuild is incremental (the sync API), and one
runs at start, so an event whose rebuild a crash cut short is made good by the next start.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import hmac
import json
import logging
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import msgspec

from .build import BuildResult, build
from .source import Source, SourceError
from .state import write_atomically

log = logging.getLogger("cms.site")

TOLERANCE_SECONDS = 5 * 60
MAX_BODY = 1024 * 1024
KEPT_IDS = 10_000
MIN_KEY_BYTES = 16
MAX_CONNECTIONS = 64  # answered at once; more wait for none of them
REFUSAL_LOG_SECONDS = 10.0
_ID_LIMIT = 200
RETRY_SECONDS = (2.0, 5.0, 15.0, 60.0)


class Refused(Exception):
    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _key(secret: str) -> bytes:
    if not secret.startswith("whsec_"):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    if len(key) < MIN_KEY_BYTES:
        # An empty or tiny key would let anyone sign: the CMS's own secrets are 32 bytes.
        raise ValueError(f"a webhook secret holds at least {MIN_KEY_BYTES} bytes")
    return key


class Verifier:
    """Standard Webhooks signatures under one or more secrets (two while one is rotated)."""

    def __init__(self, secrets: list[str], tolerance: float = TOLERANCE_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        if not secrets:
            raise ValueError("at least one webhook secret is needed")
        self._keys = [_key(secret) for secret in secrets]
        self.tolerance = tolerance
        self.clock = clock

    def verify(self, headers: dict[str, str], body: bytes) -> str:
        """The event's id, or Refused (401) naming what is wrong."""
        message_id = headers.get("webhook-id", "")
        stamp = headers.get("webhook-timestamp", "")
        signatures = headers.get("webhook-signature", "")
        if not message_id or not stamp or not signatures:
            raise Refused(HTTPStatus.UNAUTHORIZED, "webhook-id, webhook-timestamp and "
                                                   "webhook-signature are required")
        if len(message_id) > _ID_LIMIT or not message_id.isascii() or not message_id.isprintable():
            raise Refused(HTTPStatus.UNAUTHORIZED, "webhook-id is not a valid id")
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
            raise Refused(HTTPStatus.UNAUTHORIZED, "webhook-timestamp is not a number of seconds")
        if abs(self.clock() - int(stamp)) > self.tolerance:
            raise Refused(HTTPStatus.UNAUTHORIZED, "webhook-timestamp is too old or too new")
        signed = f"{message_id}.{stamp}.".encode() + body
        expected = [base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
                    for key in self._keys]
        for candidate in signatures.split():
            version, _, value = candidate.partition(",")
            if version != "v1":
                continue
            given = value.encode("ascii", "replace")
            if any(hmac.compare_digest(given, digest) for digest in expected):
                return message_id
        raise Refused(HTTPStatus.UNAUTHORIZED, "webhook-signature does not match")


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


class Watcher:
    """Rebuilds on demand in one thread, coalescing what comes while it is busy."""

    def __init__(self, rebuild: Callable[[], BuildResult], *, settle: float = 0.2) -> None:
        self._rebuild = rebuild
        self.settle = settle
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._done = threading.Condition()
        self.builds = 0  # rebuilds finished, whether they succeeded
        self.requested = 0  # rebuilds asked for: one at start, one for each event handled
        # The requests the last successful rebuild answered: it began after the first
        # ``built_through`` of them, so what they announced is in the site.
        self.built_through = 0
        self.last: BuildResult | None = None
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="site-rebuild", daemon=True)

    def start(self) -> None:
        self.request()  # the start's own rebuild
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wanted.set()
        self._thread.join(timeout=60)

    def request(self) -> None:
        with self._done:
            self.requested += 1
        self._wanted.set()

    def wait_built(self, through: int, timeout: float) -> bool:
        """Whether the first ``through`` requests are in the site, waiting up to ``timeout``
        seconds for it."""
        with self._done:
            return self._done.wait_for(lambda: self.built_through >= through, timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            retry = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)] if failures else None
            if not self._wanted.wait(retry) and not failures:
                continue
            if self._stopping.is_set():
                return
            # A burst arrives together: its events wait for one rebuild.
            self._stopping.wait(self.settle)
            self._wanted.clear()
            with self._done:
                covering = self.requested
            try:
                result: BuildResult | None = self._rebuild()
                error = None
                failures = 0
            except (SourceError, OSError) as exc:
                result, error = None, str(exc)
                failures += 1
                log.warning("the site was not rebuilt (%s); trying again", exc)
            except Exception as exc:  # the thread must live on: said in a line, tried again
                result, error = None, f"{type(exc).__name__}: {exc}"
                failures += 1
                log.error("the site was not rebuilt (%s); trying again", error)
            with self._done:
                self.builds += 1
                if result is not None:
                    self.last = result
                    self.built_through = covering
                    log.info("site rebuilt: %d written, %d removed, %d published",
                             len(result.written), len(result.removed), result.comparisons)
                self.last_error = error
                self._done.notify_all()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a client that stops sending mid-request is dropped
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._answer(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length is required"})
            return
        if length < 0:
            self._answer(HTTPStatus.BAD_REQUEST, {"error": "Content-Length is negative"})
            return
        if length > MAX_BODY:
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                         {"error": f"the body is over {MAX_BODY} bytes"})
            return
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            message_id = self.server.verifier.verify(headers, body)
        except Refused as refused:
            self.server.refusals.note(refused.reason)
            self._answer(refused.status, {"error": refused.reason})
            return
        try:
            new = self.server.handled.first_time(message_id)
        except OSError as exc:
            log.warning("a webhook could not be recorded (%s); the sender will try again", exc)
            self._answer(HTTPStatus.SERVICE_UNAVAILABLE,
                         {"error": "the event could not be recorded; send it again"})
            return
        if not new:
            self._answer(HTTPStatus.OK, {"status": "duplicate", "webhook_id": message_id})
            return
        self.server.watcher.request()
        self._answer(HTTPStatus.ACCEPTED, {"status": "accepted", "webhook_id": message_id})

    def do_GET(self) -> None:
        """``/status``; with ``?through=N``, once the first N requests are in the site (or
        after ``timeout`` seconds, 30 at most): how a script waits for a rebuild."""
        path, _, query = self.path.partition("?")
        if path != "/status":
            self._answer(HTTPStatus.NOT_FOUND, {"error": "POST webhooks here; GET /status"})
            return
        asked = parse_qs(query)
        try:
            through = int(asked.get("through", ["0"])[0])
            timeout = min(30.0, max(0.0, float(asked.get("timeout", ["10"])[0])))
        except ValueError:
            self._answer(HTTPStatus.BAD_REQUEST,
                         {"error": "through is a whole number and timeout a number of seconds"})
            return
        watcher = self.server.watcher
        if through:
            watcher.wait_built(through, timeout)
        last = watcher.last
        self._answer(HTTPStatus.OK, {
            "builds": watcher.builds, "requested": watcher.requested,
            "built_through": watcher.built_through, "last_error": watcher.last_error,
            "last": None if last is None else msgspec.to_builtins(last)})

    def _answer(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
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
                 watcher: Watcher) -> None:
        self.verifier = verifier
        self.handled = handled
        self.watcher = watcher
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
                 tolerance: float = TOLERANCE_SECONDS) -> None:
        self.source = Source(api)
        self.watcher = Watcher(lambda: build(self.source, out, state_folder, site_url=site_url),
                               settle=settle)
        self.server = _Server((host, port), Verifier(secrets, tolerance),
                              HandledIds(state_folder / "webhook-ids.json"), self.watcher)
        self.port: int = self.server.server_address[1]

    def serve_forever(self) -> None:
        self.watcher.start()
        try:
            self.server.serve_forever()
        finally:
            self.close()

    def close(self) -> None:
        self.server.server_close()
        self.watcher.stop()
        self.source.close()
