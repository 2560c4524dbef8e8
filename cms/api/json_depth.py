"""Refuse JSON bodies nested too deeply to parse, before the routes see them.

A body of a few thousand nested brackets makes a recursive parser exhaust the stack; checked
here, on every route and before authentication, it is answered with a 400 instead, so anonymous
traffic cannot fill the log with tracebacks. (Scanning the bytes with a regular expression was
tried first: a hostile unterminated string made it quadratic.)
"""

from __future__ import annotations

import msgspec
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from .errors import error_body
from .http import MAX_REQUEST_BYTES


def too_deep(body: bytes) -> bool:
    """Whether ``body`` nests deeper than a parser can follow. msgspec's C parser does it in
    linear time and refuses such depth itself; any other fault of the body is the route's to
    report, in its own terms."""
    try:
        msgspec.json.decode(body)
    except RecursionError:
        return True
    except (msgspec.DecodeError, ValueError):
        return False
    return False


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
        if len(body) <= MAX_REQUEST_BYTES and (b"[" in body or b"{" in body) and too_deep(bytes(body)):
            await _refuse(send)
            return
        replay = iter(messages)

        async def replayed() -> ReceiveMessage:
            message = next(replay, None)
            return message if message is not None else await receive()

        await next_app(scope, replayed, send)


async def _refuse(send: Send) -> None:
    body = msgspec.json.encode(error_body(
        400, "too_deeply_nested", "the JSON body nests its arrays and objects too deeply"))
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
