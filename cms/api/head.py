"""HEAD on every route that answers GET: the GET's status and headers, without its body; and
OPTIONS says so.

HTTP requires it of every GET route (a cache or a link checker asks HEAD first), and the
framework routes HEAD only to handlers written for it; so the request is answered as the GET it
stands for, and the body dropped on the way out. The headers, Content-Length and ETag included,
are exactly the GET's.
"""

from __future__ import annotations

from typing import cast

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp, methods: dict[str, set[str]]) -> None:
        self.app = app
        # Each route's methods, by its path as the router names it: the framework's own OPTIONS
        # answer can miss some of a path's methods when they come from several handlers.
        self.methods = methods

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope.get("method") not in ("HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        if scope.get("method") == "OPTIONS":
            await self.app(scope, receive, self._allowing(scope, send))
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        as_get = cast(Scope, {**scope, "method": "GET"})
        await self.app(as_get, receive, without_body)


    def _allowing(self, scope: Scope, send: Send) -> Send:
        """OPTIONS names every method the route answers, HEAD among them wherever GET is."""

        async def sending(message: Message) -> None:
            methods = self.methods.get(str(scope.get("path_template", "")))
            if message["type"] == "http.response.start" and methods:
                allowed = {*methods, *(("HEAD",) if "GET" in methods else ())}
                headers = [(name, value) for name, value in message.get("headers", [])
                           if name.lower() != b"allow"]
                headers.append((b"allow", ", ".join(sorted(allowed)).encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        return sending
