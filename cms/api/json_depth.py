"""Refuse JSON bodies nested too deeply, before the routes see them.

A body of a thousand nested brackets makes a recursive parser exhaust Python's stack, at a
depth that depends on how deep the stack already is; checked here, on every route and before
authentication, against a fixed limit far below that, such a body is a 400 whatever the
server's stack, and anonymous traffic cannot fill the log with tracebacks.

The scan is linear in the body however hostile it is, and runs in C but for one pass over the
brackets: strings are removed by a pattern that never backs off and that also takes an
unterminated string to the end of the body (searching for strings that must be terminated was
quadratic on a long unterminated string of escaped quotes), everything but brackets is dropped,
and the running depth is the sum of +1 and -1 over what is left. A large body is checked in a
worker thread, so that the event loop goes on serving others meanwhile.
"""

from __future__ import annotations

import re
from itertools import accumulate

import anyio.to_thread
import msgspec
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from .errors import error_body
from .http import MAX_REQUEST_BYTES

# Far deeper than any request body of the API (a comparison nests six levels), and far below
# the depth at which a recursive parser fails.
MAX_DEPTH = 64
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_SIGNS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes
_IN_A_THREAD_FROM = 64 * 1024


def too_deep(body: bytes) -> bool:
    """Whether ``body`` nests its arrays and objects deeper than MAX_DEPTH, brackets inside
    strings aside. Any other fault of the body is the route's to report, in its own terms."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return False
    signs = _STRING.sub(b"", body).translate(_SIGNS, _NOT_BRACKETS)
    return max(accumulate(memoryview(signs).cast("b")), default=0) > MAX_DEPTH


class JsonDepthLimit(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await next_app(scope, receive, send)
            return
        messages: list[ReceiveMessage] = []
        body = bytearray()
        while len(body) <= MAX_REQUEST_BYTES:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        # A body over the limit is not read further here: the app refuses it as too large.
        if len(body) <= MAX_REQUEST_BYTES and await _too_deep(bytes(body)):
            await _refuse(send)
            return
        replay = iter(messages)

        async def replayed() -> ReceiveMessage:
            message = next(replay, None)
            return message if message is not None else await receive()

        await next_app(scope, replayed, send)


async def _too_deep(body: bytes) -> bool:
    if len(body) < _IN_A_THREAD_FROM:
        return too_deep(body)
    return await anyio.to_thread.run_sync(too_deep, body)


async def _refuse(send: Send) -> None:
    body = msgspec.json.encode(error_body(
        400, "too_deeply_nested", "the JSON body nests its arrays and objects too deeply"))
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
