"""Sending webhook deliveries: at least once, in order per endpoint, with backoff.

A dispatcher thread picks the head of each endpoint's queue when it is due and hands it to a
small pool, so a slow or dead receiver holds up only its own queue, never an editor or another
endpoint. Only a 2xx counts; a 410 disables the endpoint; anything else is retried on the backoff
schedule (with jitter, or later if the receiver sent ``Retry-After``) and then marked failed.

Receivers are hostile until proven otherwise. Each attempt resolves the host once, refuses it
unless every address it resolves to is allowed, and connects to one of those very addresses (a
second lookup could answer differently: DNS rebinding); the request still names the host, and
TLS checks the certificate against it. One deadline covers the whole attempt, and at most a
small excerpt of the answer is read.
"""

from __future__ import annotations

import email.utils
import functools
import ipaddress
import logging
import random
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import InvalidContent
from .signing import signed_headers
from .store import Attempt, DeliveryStatus, Due, WebhookStore

if TYPE_CHECKING:
    import httpcore
    from httpcore import NetworkBackend as _BackendBase
    from httpcore import NetworkStream as _StreamBase
else:
    # httpcore is imported on the first attempt, like httpx (it is most of the start-up of a
    # server with no endpoints); it calls its network interfaces by name, so at run time the
    # classes below need not inherit them, and the type checker still holds them to them.
    _BackendBase = _StreamBase = object

log = logging.getLogger("cms.webhooks")

DEFAULT_BACKOFF = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
_EXCERPT = 500  # characters of the answer kept in the delivery log
_READ_LIMIT = 64 * 1024  # bytes of the answer read at most; the rest is never received
_CHUNK = 16 * 1024  # bytes per socket read or write, so what is buffered stays small
_MAX_DELAY = 24 * 3600.0
_FIRST_PAUSE = 1.0  # seconds after a failed round; doubled while rounds keep failing
_MAX_PAUSE = 60.0
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


def resolve(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Every address of ``host`` from one lookup, refused if any is not public (unless private
    targets are allowed): webhooks must not reach inside. The caller connects only to these."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetRefused(f"cannot resolve {host}: {exc.strerror or exc}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise TargetRefused(f"{host} has no address")
    if not allow_private:
        for address in addresses:
            if not _public(address):
                raise TargetRefused(f"{host} resolves to {address}, a non-public address")
    return addresses


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback, whatever its notation
    return ip.is_global and not ip.is_multicast


class Dispatcher:
    def __init__(self, store: WebhookStore, *, backoff: Sequence[float], timeout: float,
                 allow_private: bool, workers: int = 8) -> None:
        self.store = store
        self.backoff = tuple(backoff)
        self.timeout = timeout
        self.allow_private = allow_private
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook")
        self._tls: ssl.SSLContext | None = None
        self._tls_lock = threading.Lock()
        self._busy: set[str] = set()
        # Endpoints whose last attempt failed unexpectedly: (until when, for how long) they rest.
        self._resting: dict[str, tuple[float, float]] = {}
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

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        pause = _FIRST_PAUSE
        while not self._stop.is_set():
            # Cleared before the round, not after the wait: a wake that comes during the round
            # then cuts the wait short instead of being lost.
            self._wake.clear()
            try:
                wake_at = self._round()
            except Exception as exc:
                # One failed round (the database busy, an endpoint deleted under it) must not
                # end deliveries for good. One line, without the message, which may quote data;
                # and a pause that only stop() cuts short, so that a lasting fault does not spin.
                log.error("webhook dispatch round failed (%s); next round in %g s",
                          _where(exc), pause)
                self._stop.wait(pause)
                pause = min(pause * 2, _MAX_PAUSE)
                continue
            pause = _FIRST_PAUSE
            wait = 60.0 if wake_at is None else max(0.0, min(60.0, wake_at - time.time()))
            self._wake.wait(wait)

    def _round(self) -> float | None:
        if self.before_round is not None:
            try:
                self.before_round()
            except Exception as exc:
                # What is already queued can still go out.
                log.error("could not read new publications (%s); retrying next round",
                          _where(exc))
        return self.dispatch()

    def dispatch(self) -> float | None:
        """Start every due delivery; return when the next one falls due."""
        busy, rested_at = self._unavailable()
        due, wake_at = self.store.next_due(time.time(), busy)
        for item in due:
            with self._busy_lock:
                self._busy.add(item.endpoint.id)
            try:
                future = self._pool.submit(self.attempt, item)
            except BaseException:
                with self._busy_lock:  # never started: the endpoint must not stay busy for ever
                    self._busy.discard(item.endpoint.id)
                raise
            future.add_done_callback(functools.partial(self._done, item.endpoint.id))
        if rested_at is not None:
            wake_at = rested_at if wake_at is None else min(wake_at, rested_at)
        return wake_at

    def _unavailable(self) -> tuple[set[str], float | None]:
        """The endpoints busy or resting now, and when the first rest ends."""
        now = time.time()
        with self._busy_lock:
            # A rest long over is forgotten; a recent one is kept to double the next.
            self._resting = {endpoint: rest for endpoint, rest in self._resting.items()
                             if rest[0] + _MAX_PAUSE > now}
            resting = {endpoint: until for endpoint, (until, _) in self._resting.items()
                       if until > now}
            return self._busy | resting.keys(), min(resting.values(), default=None)

    def _done(self, endpoint_id: str, future: Future[None]) -> None:
        failure = None if future.cancelled() else future.exception()
        with self._busy_lock:
            self._busy.discard(endpoint_id)
            rest = 0.0
            if failure is not None:
                # The attempt could not record its result, so its delivery is still due: sent
                # again at once, it would spin against the receiver. The endpoint rests, twice
                # as long each time this happens in a row.
                rest = min(self._resting.get(endpoint_id, (0.0, _FIRST_PAUSE / 2))[1] * 2,
                           _MAX_PAUSE)
                self._resting[endpoint_id] = (time.time() + rest, rest)
            else:
                self._resting.pop(endpoint_id, None)
        if failure is not None:
            log.error("webhook attempt for %s failed (%s); its endpoint rests %g s",
                      endpoint_id, _where(failure), rest)
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
        import httpcore

        started = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        at = datetime.now(UTC)
        status_code: int | None = None
        error: str | None = None
        excerpt = ""
        retry_after: float | None = None
        try:
            status_code, excerpt, retry_after = self._send(item, deadline)
        except TargetRefused as exc:
            error = str(exc)
        except httpcore.TimeoutException:
            error = f"no complete answer within {self.timeout:g} s"
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
            error = f"{type(exc).__name__}: {exc}"[:_EXCERPT]
        except Exception as exc:
            # Whatever went wrong, it is this attempt's failure: recorded, then retried later,
            # never a delivery stuck at the head of its queue.
            log.error("unexpected error delivering %s (%s)", item.delivery_id, _where(exc))
            error = f"{type(exc).__name__}: {exc}"[:_EXCERPT]
        attempt = Attempt(at=at, status_code=status_code,
                          duration_ms=round((time.perf_counter() - started) * 1000, 2),
                          error=error, response_excerpt=excerpt)
        status, next_at = self._outcome(item, status_code, retry_after)
        recorded = self.store.finish_attempt(item.delivery_id, attempt, status=status,
                                             next_attempt_at=next_at, coalesced=item.coalescible)
        if not recorded:
            log.info("delivery %s ended after its endpoint was deleted; nothing recorded",
                     item.delivery_id)
        elif status_code == 410:
            self.store.disable(item.endpoint.id, "the receiver answered 410 Gone")

    def _send(self, item: Due, deadline: float) -> tuple[int, str, float | None]:
        """POST the event; the status, the start of the answer and its ``Retry-After``."""
        import httpcore
        import httpx

        url = httpx.URL(item.endpoint.url)  # IDNA and percent-encoding, as check_url saw it
        body = item.event.payload
        if item.endpoint.kind == "build_hook":
            # A plain build trigger (static hosts' build hooks): no body to parse, still signed.
            body = b""
        headers = signed_headers(item.secrets, item.event.id, int(time.time()), body)
        headers |= {"Host": url.netloc.decode("ascii"), "User-Agent": USER_AGENT,
                    "Content-Type": "application/json"}
        target = httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port,
                              target=url.raw_path)
        # A connection per attempt: its network backend carries this attempt's deadline and
        # checked addresses, and no connection checked for one host name serves another.
        backend = _GuardedBackend(deadline, allow_private=self.allow_private)
        timeouts = dict.fromkeys(("connect", "read", "write", "pool"), self.timeout)
        with httpcore.ConnectionPool(ssl_context=self._ssl_context(), max_connections=1,
                                     network_backend=backend) as pool, \
                pool.stream("POST", target, headers=list(headers.items()), content=body,
                            extensions={"timeout": timeouts}) as response:
            answer = bytearray()
            for chunk in response.iter_stream():
                answer += chunk
                if len(answer) >= _READ_LIMIT:
                    break  # closing the response drops the connection with the rest unread
            retry_after = next((_retry_after(value.decode("latin-1"))
                                for name, value in response.headers
                                if name.lower() == b"retry-after"), None)
            text = bytes(answer[:_READ_LIMIT]).decode("utf-8", errors="replace")
            return response.status, text[:_EXCERPT], retry_after

    def _ssl_context(self) -> ssl.SSLContext:
        """One TLS context for every attempt, made on the first one (loading the CA bundle is
        slow); it honours SSL_CERT_FILE and SSL_CERT_DIR as httpx does."""
        with self._tls_lock:
            if self._tls is None:
                import httpx

                self._tls = httpx.create_ssl_context()
            return self._tls

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


class _GuardedBackend(_BackendBase):
    """httpcore's network backend for one attempt: connects only to addresses that ``resolve``
    checked, and holds every network operation to the attempt's deadline."""

    def __init__(self, deadline: float, *, allow_private: bool) -> None:
        import httpcore

        self._inner = httpcore.SyncBackend()
        self._deadline = deadline
        self._allow_private = allow_private

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                    ) -> httpcore.NetworkStream:
        import httpcore

        failure: httpcore.ConnectError | None = None
        for address in resolve(host, port, allow_private=self._allow_private):
            left = _left(self._deadline, httpcore.ConnectTimeout)
            try:
                stream = self._inner.connect_tcp(address, port, _within(timeout, left),
                                                 local_address, socket_options)
            except httpcore.ConnectError as exc:
                failure = exc  # the next checked address may answer
                continue
            return _DeadlineStream(stream, self._deadline)
        assert failure is not None  # resolve() returns at least one address
        raise failure

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                            ) -> httpcore.NetworkStream:
        import httpcore

        raise httpcore.UnsupportedProtocol("webhooks are sent over TCP only")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _DeadlineStream(_StreamBase):
    """A connection whose every read, write and TLS handshake gets only the time left before
    the deadline: httpcore's timeouts are per operation, so a receiver that trickles one byte at
    a time would otherwise hold an attempt for ever."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        import httpcore

        left = _left(self._deadline, httpcore.ReadTimeout)
        return self._inner.read(min(max_bytes, _CHUNK), _within(timeout, left))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        import httpcore

        for start in range(0, len(buffer), _CHUNK):
            left = _left(self._deadline, httpcore.WriteTimeout)
            self._inner.write(buffer[start:start + _CHUNK], _within(timeout, left))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        import httpcore

        # server_hostname is the URL's host name, not the address connected to: the
        # certificate is checked against the name the endpoint was registered with.
        left = _left(self._deadline, httpcore.ConnectTimeout)
        tls = self._inner.start_tls(ssl_context, server_hostname, _within(timeout, left))
        return _DeadlineStream(tls, self._deadline)

    def get_extra_info(self, info: str) -> object:
        return self._inner.get_extra_info(info)


def _left(deadline: float, timeout_error: type[Exception]) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise timeout_error("the attempt's deadline has passed")
    return left


def _within(timeout: float | None, left: float) -> float:
    return left if timeout is None else min(timeout, left)


def _where(exc: BaseException) -> str:
    """The exception's type and the line that raised it: enough to find the fault, without its
    message, which may quote a URL or a row, and without a multi-line traceback."""
    frames = traceback.extract_tb(exc.__traceback__, limit=-1)
    if not frames:
        return type(exc).__name__
    frame = frames[-1]
    return f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno} in {frame.name}"


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
