"""HEAD on every route that answers GET: the GET's status and headers, without its body.

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
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        as_get = cast(Scope, {**scope, "method": "GET"})
        await self.app(as_get, receive, without_body)
