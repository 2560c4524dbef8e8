"""Webhook targets: which URLs may receive deliveries, and one delivery's POST.

Receivers are hostile until proven otherwise. An attempt resolves the host once, refuses it
unless every address it resolves to is allowed, and connects to one of those very addresses (a
second lookup could answer differently: DNS rebinding); the request still names the host, and
TLS checks the certificate against it. One deadline covers the whole attempt, and at most a
small excerpt of the answer is read.
"""

from __future__ import annotations

import email.utils
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from msgspec import Struct

from ..errors import InvalidContent

if TYPE_CHECKING:
    import httpcore
    from httpcore import NetworkBackend as _BackendBase
    from httpcore import NetworkStream as _StreamBase
else:
    # httpcore is imported on the first attempt, like httpx (it is most of the start-up of a
    # server with no endpoints); it calls its network interfaces by name, so at run time the
    # classes below need not inherit them, and the type checker still holds them to them.
    _BackendBase = _StreamBase = object

READ_LIMIT = 64 * 1024  # bytes of the answer read at most; the rest is never received
_CHUNK = 16 * 1024  # bytes per socket read or write, so what is buffered stays small
USER_AGENT = "comparisons-cms-webhooks/1"


class Answer(Struct, frozen=True):
    status: int
    excerpt: str
    retry_after: float | None


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


def post(url: str, headers: dict[str, str], body: bytes, *, deadline: float, timeout: float,
         allow_private: bool) -> Answer:
    """POST ``body`` to ``url`` within ``deadline`` (a ``time.monotonic`` moment), connected
    only to an address that was checked; the status and the start of the answer."""
    import httpcore
    import httpx

    parsed = httpx.URL(url)  # IDNA and percent-encoding, as check_url saw it
    headers = headers | {"Host": parsed.netloc.decode("ascii"), "User-Agent": USER_AGENT,
                         "Content-Type": "application/json"}
    target = httpcore.URL(scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port,
                          target=parsed.raw_path)
    # A connection per attempt: its network backend carries this attempt's deadline and
    # checked addresses, and no connection checked for one host name serves another.
    backend = _GuardedBackend(deadline, allow_private=allow_private)
    timeouts = dict.fromkeys(("connect", "read", "write", "pool"), timeout)
    with httpcore.ConnectionPool(ssl_context=_ssl_context(), max_connections=1,
                                 network_backend=backend) as pool, \
            pool.stream("POST", target, headers=list(headers.items()), content=body,
                        extensions={"timeout": timeouts}) as response:
        answer = bytearray()
        for chunk in response.iter_stream():
            answer += chunk
            if len(answer) >= READ_LIMIT:
                break  # closing the response drops the connection with the rest unread
        retry_after = next((_retry_after(value.decode("latin-1"))
                            for name, value in response.headers
                            if name.lower() == b"retry-after"), None)
        text = bytes(answer[:READ_LIMIT]).decode("utf-8", errors="replace")
        return Answer(status=response.status, excerpt=text, retry_after=retry_after)


_tls: dict[tuple[str | None, str | None], ssl.SSLContext] = {}
_tls_lock = threading.Lock()


def _ssl_context() -> ssl.SSLContext:
    """A TLS context shared by the attempts (loading the CA bundle is slow), made anew when
    SSL_CERT_FILE or SSL_CERT_DIR changes: it honours them as httpx does."""
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _tls_lock:
        context = _tls.get(key)
        if context is None:
            import httpx

            context = _tls[key] = httpx.create_ssl_context()
        return context


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
