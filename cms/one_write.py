"""A response's head and its first body bytes go out in one write, not two.

The HTTP server writes a response's status line and headers as soon as the application starts
the response, and its body when the application sends it: two system calls, two TCP segments,
and, for a client waiting on the socket, two wake-ups where one would do. On loopback a
segment is delivered within the sender's own system call, wake-up included, so for a small
JSON answer those writes cost more than finding it (measured at a third of a search's time
under load). Here the head is held back until the next write on the connection and both go to
the socket together; what nothing follows in the same turn of the event loop (a stream, an
answer that fails before its body) is written at the end of that turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol


class _HeadHeld:
    """A transport that holds back a response head until the next write, or the end of the
    event loop's turn, whichever comes first."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif data[:5] == b"HTTP/" and data[-4:] == b"\r\n\r\n" and isinstance(data, bytes):
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def writelines(self, lines: Any) -> None:
        self.flush()
        self._transport.writelines(lines)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        # Reading flow, addresses, buffer sizes: the transport's own.
        return getattr(self._transport, name)


class OneWriteProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """The server's HTTP protocol, writing each response's head with what follows it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        self._held = _HeadHeld(transport, loop)  # type: ignore[arg-type]
        super().connection_made(self._held)

    def eof_received(self) -> bool | None:
        # The client sent all it will, and may still be waiting for an answer (a health check
        # run with `nc -N`). A head nothing follows (a HEAD request's) goes out now, since the
        # transport closes itself unless this says otherwise.
        self._held.flush()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.more_body:
            # A whole request is being answered: the connection stays open for the answer and
            # closes after it. A request cut short still closes at once, as before.
            cycle.keep_alive = False
            return True
        return super().eof_received()  # type: ignore[no-any-return]
