"""What a connection is sent in one turn of the event loop goes out in one write.

The HTTP server writes a response's status line and headers as soon as the application starts
the response, and its body when the application sends it: two system calls, two TCP segments,
and, for a client waiting on the socket, two wake-ups where one would do. On loopback a
segment is delivered within the sender's own system call, waking the client included, so for a
small JSON answer those writes cost more than finding it (a third of a search's time under
load, most of it waking a client that was idle). Here what a connection is sent is held until
the end of the event loop's turn and then written at once: a response's head with its body,
and the answers to the requests that came in the same turn, to a client that then wakes once.
From ``_HELD_MOST`` bytes on it goes out at once, so that a large body meets the transport's
flow control as before; it also goes out on close and when the client's end of stream arrives.

A client that half-closes after whole requests (a health check run with `nc -N`) gets every
answer, then the connection closes; uvicorn's own protocols close it at once, unanswered. The
server cannot tell a half-close from a full one, so an answer still being made
``_AFTER_END_SECONDS`` after the end of stream is not waited for: the connection closes, and
the application hears of the disconnect. Nothing is read after the end of stream, so a reset
that follows it is heard only when an answer is written or that time runs out: an
application that waits for the disconnect instead of answering holds the connection until
then (no route of the CMS does).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

_HELD_MOST = 64 * 1024
_AFTER_END_SECONDS = 60.0


class _TurnHeld:
    """A transport that holds what is written to it until the end of the event loop's turn,
    or until it holds ``_HELD_MOST`` bytes."""

    __slots__ = ("_ended", "_held", "_loop", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._size = 0
        self._ended = False  # the client's end of stream came

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return  # the empty last body of an answer of known length
        if not self._held:
            self._loop.call_soon(self.flush)
        # A bytearray, or a view of one, may be changed by its writer after this returns: held
        # as it is now. (Bytes, as Litestar sends, are held as they are.)
        held = data if isinstance(data, bytes) else bytes(data)
        self._held.append(held)
        self._size += len(held)  # bytes, where a view's length counts its items
        if self._size >= _HELD_MOST:
            self.flush()

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        held = self._held
        if held:
            self._held = []
            self._size = 0
            if not self._transport.is_closing():
                self._transport.writelines(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = []
        self._size = 0
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def end_of_stream(self) -> None:
        """The client sent all it will: nothing more is read (uvicorn resumes reading when an
        answer completes, which would deliver the end of stream again)."""
        self._ended = True
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._ended:
            self._transport.resume_reading()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._size + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        # Pausing reads, addresses, buffer limits: the transport's own.
        return getattr(self._transport, name)


# The mixin goes over either of two protocols of uvicorn's, chosen at import: to the type
# checker its base is anything.
_Protocol: Any = object


class OneWrite(_Protocol):  # type: ignore[misc]
    """What a connection is sent in a turn goes out at once; a client that half-closes is
    answered. Added to an HTTP protocol of uvicorn's, httptools' or h11's."""

    # h11: the client's end of stream came while a request was answered, so the connection
    # closes once no whole request is left to answer.
    _close_when_answered = False
    _given_up: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        self._held = _TurnHeld(transport, loop)  # type: ignore[arg-type]
        super().connection_made(self._held)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._given_up is not None:
            self._given_up.cancel()
        super().connection_lost(exc)

    def eof_received(self) -> bool | None:
        # The client sent all it will, and may still be waiting for its answers. What is held
        # (a HEAD answer, which is a head alone) goes out now, since the transport closes
        # itself unless this says otherwise.
        self._held.flush()
        cycle = self.cycle
        if cycle is None or cycle.response_complete or cycle.more_body:
            # Nothing being answered, or a request cut short: closed at once, as before.
            return super().eof_received()  # type: ignore[no-any-return]
        # A whole request is being answered: the connection stays open for the answers, for
        # a while (a client that closed altogether looks the same, and an application that
        # waits for its disconnect would wait for ever).
        self._held.end_of_stream()
        if self._given_up is None:  # one limit, whatever delivers the end of stream again
            self._given_up = asyncio.get_running_loop().call_later(
                _AFTER_END_SECONDS, self._held.close)
        # Not imported to ask (a twentieth of a start's imports): an h11 connection means
        # h11's protocol was imported by whoever made it.
        h11 = sys.modules.get("uvicorn.protocols.http.h11_impl")
        if h11 is not None and isinstance(self, h11.H11Protocol):
            # h11 takes one request at a time, and those sent after it wait in its buffer:
            # the connection closes once none is left (``on_response_complete``).
            self._close_when_answered = True
        else:
            # httptools took every request sent: this one is the last, and closes after.
            cycle.keep_alive = False
        return True

    def on_response_complete(self) -> None:
        super().on_response_complete()  # h11: the next request waiting, if whole, starts
        if self._close_when_answered:
            cycle = self.cycle
            if cycle.response_complete or cycle.more_body:  # none started, or cut short
                self._held.close()


class OneWriteProtocol(OneWrite, AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """The server's HTTP protocol, writing what a turn of the event loop sends a connection at
    once."""
