"""Sending webhook deliveries: at least once, in order per endpoint, with backoff.

A dispatcher thread picks the head of each endpoint's queue when it is due and hands it to a
small pool, so a slow or dead receiver holds up only its own queue, never an editor or another
endpoint. Only a 2xx counts; a 410 disables the endpoint; anything else is retried on the backoff
schedule (with jitter, or later if the receiver sent ``Retry-After``) and then marked failed.
"""

from __future__ import annotations

import email.utils
import functools
import ipaddress
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import InvalidContent
from .signing import signed_headers
from .store import Attempt, DeliveryStatus, Due, WebhookStore

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("cms.webhooks")

DEFAULT_BACKOFF = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
_EXCERPT = 500
_MAX_DELAY = 24 * 3600.0
USER_AGENT = "comparisons-cms-webhooks/1"


class TargetRefused(Exception):
    pass


def check_url(url: str) -> str:
    import httpx  # on first use: it is most of the start-up of a server with no endpoints

    try:
        parts = urlsplit(url)
        port = parts.port
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise InvalidContent(f"the URL is not valid: {exc}", field="url") from exc
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidContent("the URL must be http:// or https:// with a host", field="url")
    if port == 0:
        raise InvalidContent("the URL's port must be between 1 and 65535", field="url")
    if parts.username or parts.password:
        raise InvalidContent("credentials in the URL would be stored in clear; use a header-free "
                             "URL and verify signatures instead", field="url")
    return url


def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse loopback, private and other internal addresses: webhooks must not reach inside."""
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetRefused(f"cannot resolve {host}: {exc.strerror or exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise TargetRefused(f"{host} resolves to {address}, a non-public address")


class Dispatcher:
    def __init__(self, store: WebhookStore, *, backoff: Sequence[float], timeout: float,
                 allow_private: bool, workers: int = 8) -> None:
        self.store = store
        self.backoff = tuple(backoff)
        self.timeout = timeout
        self.allow_private = allow_private
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook")
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self.before_round: Callable[[], None] | None = None

    # Running

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="webhook-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._client is not None:
            self._client.close()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.before_round is not None:
                try:
                    self.before_round()
                except Exception:
                    log.exception("could not read new publications; retrying next round")
            wake_at = self.dispatch()
            wait = 60.0 if wake_at is None else max(0.0, min(60.0, wake_at - time.time()))
            self._wake.wait(wait)
            self._wake.clear()

    def dispatch(self) -> float | None:
        """Start every due delivery; return when the next one falls due."""
        with self._busy_lock:
            busy = set(self._busy)
        due, wake_at = self.store.next_due(time.time(), busy)
        for item in due:
            with self._busy_lock:
                self._busy.add(item.endpoint.id)
            future = self._pool.submit(self.attempt, item)
            future.add_done_callback(functools.partial(self._done, item.endpoint.id))
        return wake_at

    def _done(self, endpoint_id: str, future: Future[None]) -> None:
        with self._busy_lock:
            self._busy.discard(endpoint_id)
        if future.exception() is not None:
            log.error("webhook attempt failed unexpectedly", exc_info=future.exception())
        with self._idle:
            self._idle.notify_all()
        self._wake.set()

    def drain(self, max_rounds: int = 1000, at: float | None = None) -> None:
        """Deliver, in this thread, everything due now (or at time ``at``): for tools and tests."""
        for _ in range(max_rounds):
            with self._busy_lock:
                busy = set(self._busy)
            due, _ = self.store.next_due(time.time() if at is None else at, busy)
            if not due and not busy:
                return
            for item in due:
                with self._busy_lock:
                    self._busy.add(item.endpoint.id)
                try:
                    self.attempt(item)
                finally:
                    with self._busy_lock:
                        self._busy.discard(item.endpoint.id)
            if not due:
                with self._idle:
                    self._idle.wait(timeout=1.0)

    # One attempt

    def attempt(self, item: Due) -> None:
        import httpx

        started = time.perf_counter()
        at = datetime.now(UTC)
        status_code: int | None = None
        error: str | None = None
        excerpt = ""
        retry_after: float | None = None
        try:
            check_target(item.endpoint.url, allow_private=self.allow_private)
            response = self._send(item)
            status_code = response.status_code
            excerpt = response.text[:_EXCERPT]
            retry_after = _retry_after(response.headers.get("retry-after"))
        except TargetRefused as exc:
            error = str(exc)
        except httpx.TimeoutException:
            error = f"no answer within {self.timeout:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:_EXCERPT]
        except Exception as exc:
            # Whatever went wrong, it is this attempt's failure: recorded, then retried later,
            # never a delivery stuck at the head of its queue.
            log.exception("unexpected error delivering %s", item.delivery_id)
            error = f"{type(exc).__name__}: {exc}"[:_EXCERPT]
        attempt = Attempt(at=at, status_code=status_code,
                          duration_ms=round((time.perf_counter() - started) * 1000, 2),
                          error=error, response_excerpt=excerpt)
        status, next_at = self._outcome(item, status_code, retry_after)
        self.store.finish_attempt(item.delivery_id, attempt, status=status,
                                  next_attempt_at=next_at, coalesced=item.coalescible)
        if status_code == 410:
            self.store.disable(item.endpoint.id, "the receiver answered 410 Gone")

    def _send(self, item: Due) -> httpx.Response:
        body = item.event.payload
        if item.endpoint.kind == "build_hook":
            # A plain build trigger (static hosts' build hooks): no body to parse, still signed.
            body = b""
        headers = signed_headers(item.secrets, item.event.id, int(time.time()), body)
        headers["Content-Type"] = "application/json"
        return self.client().post(item.endpoint.url, content=body, headers=headers)

    def client(self) -> httpx.Client:
        """One connection pool for every attempt, made on the first one."""
        with self._client_lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(follow_redirects=False, timeout=self.timeout,
                                            headers={"User-Agent": USER_AGENT})
            return self._client

    def _outcome(self, item: Due, status_code: int | None,
                 retry_after: float | None) -> tuple[DeliveryStatus, float | None]:
        if status_code is not None and 200 <= status_code < 300:
            return "delivered", None
        if status_code == 410:
            return "failed", None
        done = item.attempts + 1
        if done > len(self.backoff):
            return "failed", None
        delay = self.backoff[done - 1] * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not secrecy
        if retry_after is not None:
            delay = max(delay, retry_after)
        return "pending", time.time() + min(delay, _MAX_DELAY)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
