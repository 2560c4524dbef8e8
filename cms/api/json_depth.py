"""Refuse JSON bodies nested deeper than any comparison is, before anything parses them.

A body of a few thousand nested brackets makes a recursive parser exhaust the stack; a fixed
limit, checked on the raw bytes, answers it with a 400 instead, on every route and before
authentication, so anonymous traffic cannot fill the log with tracebacks.
"""

from __future__ import annotations

import re
from itertools import accumulate

import msgspec
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from .errors import error_body
from .http import MAX_REQUEST_BYTES

MAX_DEPTH = 32  # a comparison nests five levels deep
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_OTHERS = bytes(set(range(256)) - set(b"[{]}"))


def nesting(body: bytes) -> int:
    """How deep the arrays and objects of ``body`` nest (strings left out)."""
    marks = _STRINGS.sub(b"", body).translate(_BRACKETS, _OTHERS)
    if not marks:
        return 0
    return max(accumulate(1 if mark == 1 else -1 for mark in marks))


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
        if len(body) <= MAX_REQUEST_BYTES and nesting(bytes(body)) > MAX_DEPTH:
            await _refuse(send)
            return
        replay = iter(messages)

        async def replayed() -> ReceiveMessage:
            message = next(replay, None)
            return message if message is not None else await receive()

        await next_app(scope, replayed, send)


async def _refuse(send: Send) -> None:
    body = msgspec.json.encode(error_body(
        400, "too_deeply_nested", f"the JSON body nests deeper than {MAX_DEPTH} levels"))
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
