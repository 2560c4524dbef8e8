"""A shared cache of public responses, answered before the route handler runs.

Published reads are most of the traffic and each one is a few kilobytes that change only when
main moves or a vote is cast. Routes mark such responses with ``Cache-Control: public`` and an
ETag (see ``PUBLIC_CACHE``); this middleware keeps them by request line and, while the state
they were made from holds, answers the same request again (or its 304) without parsing
parameters, injecting services or encoding anything. When the state moves, the next request
goes through the handler and its response replaces the stored one.

Only anonymous GETs are served from it: a request with a token goes through authentication,
so a bad token is still refused.

A search is kept the second time its request line is seen, not the first: most searches are
asked once, and keeping each would cost every one of them the copy, and push out the pages
that are asked again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import cast

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Message,
    Receive,
    Scope,
    Send,
)

from .http import not_modified
from .services import Services

# Sync pages can be large; a response above this is served, not stored.
MAX_BODY_BYTES = 256 * 1024
# Unknown query parameters are ignored by the routes, so anyone can make new request lines:
# long ones are not stored, and the entries are bounded in number as well as in bytes.
MAX_KEY_BYTES = 512
MAX_ENTRIES = 20_000
# Search request lines seen once (see above), forgotten all at once past this many.
MAX_SEEN = 65_536
_ENTRY_OVERHEAD = 1024  # the messages, the key and the bookkeeping of one entry, roughly
_DROPPED_ON_304 = {b"content-length", b"content-type"}


class _Stored:
    """A response kept as the ASGI messages that send it, for 200 and for 304."""

    __slots__ = ("body", "cost", "etag", "not_modified", "start", "state")

    def __init__(self, state: Hashable, headers: list[tuple[bytes, bytes]], body: bytes,
                 etag: bytes, cost: int) -> None:
        self.state = state
        self.cost = cost
        self.etag = etag.decode("latin-1")
        self.start = HTTPResponseStartEvent(type="http.response.start", status=200, headers=headers)
        self.body = HTTPResponseBodyEvent(type="http.response.body", body=body, more_body=False)
        self.not_modified = HTTPResponseStartEvent(
            type="http.response.start", status=304,
            headers=[(k, v) for k, v in headers if k not in _DROPPED_ON_304])


def state_of(services: Services) -> Hashable:
    """What a public response is made from: main's commit and the votes' ledger (a new one
    whenever a vote is recorded or folded)."""
    services.index.refresh()
    return (services.index.head, services.votes.ledger())


class PublicResponseCache(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    def __init__(self, services: Services, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.services = services
        self.max_bytes = max_bytes
        self.size = 0
        self.hits = 0
        # Touched only on the event loop's thread, so they need no lock.
        self._stored: OrderedDict[bytes, _Stored] = OrderedDict()
        # Searches seen once, by their request line's hash: a collision only keeps a search
        # one sight early.
        self._seen: set[int] = set()

    def wrapping(self, app: ASGIApp) -> ASGIApp:
        """``app`` with this cache in front of it: the app's handler inside the framework
        (``create_app``), or the whole app as the server runs it, when a repeated public
        read does not enter the framework at all (``app.served``)."""
        async def cached(scope: Scope, receive: Receive, send: Send) -> None:
            await self.handle(scope, receive, send, app)

        return cached

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        request = _request(scope) if scope["type"] == ScopeType.HTTP else None
        if request is None:
            await next_app(scope, receive, send)
            return
        key, if_none_match = request
        stored = self._stored.get(key)
        if stored is None and _is_search(scope["query_string"]):
            sight = hash(key)
            if sight not in self._seen:
                if len(self._seen) >= MAX_SEEN:
                    self._seen.clear()
                self._seen.add(sight)
                await next_app(scope, receive, send)
                return
        try:
            state = state_of(self.services)
        except Exception:  # the handler reports it, in its own terms
            await next_app(scope, receive, send)
            return
        if stored is not None and stored.state == state:
            self._stored.move_to_end(key)
            self.hits += 1
            head, body = _replay(stored, if_none_match)
            await send(head)
            await send(body)
            return
        await next_app(scope, receive, self._recorder(key, state, send))

    def _recorder(self, key: bytes, state: Hashable, send: Send) -> Send:
        headers: list[tuple[bytes, bytes]] = []
        tag: list[bytes] = []  # set when the response is one to keep
        chunks: list[bytes] = []
        size = 0

        async def record(message: Message) -> None:
            nonlocal size
            if message["type"] == "http.response.start":
                headers.extend(message.get("headers", []))
                fields = dict(headers)
                public = fields.get(b"cache-control", b"").startswith(b"public")
                if message["status"] == 200 and public and b"etag" in fields:
                    tag.append(fields[b"etag"])
            elif message["type"] == "http.response.body" and tag:
                body = message.get("body", b"")
                size += len(body)
                if size > MAX_BODY_BYTES:
                    tag.clear()  # too big to keep: served, not stored
                else:
                    chunks.append(body)
                    if not message.get("more_body", False):
                        self._keep(key, state, headers, b"".join(chunks), tag[0])
            await send(message)

        return record

    def _keep(self, key: bytes, state: Hashable, headers: list[tuple[bytes, bytes]],
              body: bytes, tag: bytes) -> None:
        previous = self._stored.pop(key, None)
        if previous is not None:
            self.size -= previous.cost
        stored = _Stored(state, list(headers), body, tag, cost=_cost(key, headers, body))
        self._stored[key] = stored
        self.size += stored.cost
        while (self.size > self.max_bytes or len(self._stored) > MAX_ENTRIES) and self._stored:
            _, evicted = self._stored.popitem(last=False)
            self.size -= evicted.cost


def _is_search(query_string: bytes) -> bool:
    return query_string.startswith(b"q=") or b"&q=" in query_string


def _cost(key: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    return len(key) + len(body) + 2 * sum(len(k) + len(v) for k, v in headers) + _ENTRY_OVERHEAD


_ROUTED = frozenset({b"authorization", b"if-match"})
_EMPTY = HTTPResponseBodyEvent(type="http.response.body", body=b"", more_body=False)


def _request(scope: Scope) -> tuple[bytes, bytes | None] | None:
    """The key and the If-None-Match of a request this cache may answer; None for one the
    route must: not a GET, a token to check, two If-None-Match (which one counts is the
    route's to say), or a request line too long to keep."""
    if cast("HTTPScope", scope)["method"] != "GET":
        return None
    if_none_match: bytes | None = None
    for name, value in scope["headers"]:
        # A token is checked by the route; so is an If-Match, which it refuses on a read that
        # sends two of them.
        if name in _ROUTED:
            return None
        if name == b"if-none-match":
            if if_none_match is not None:
                return None
            if_none_match = value
    key = scope["raw_path"] + b"?" + scope["query_string"]
    return None if len(key) > MAX_KEY_BYTES else (key, if_none_match)


def _replay(stored: _Stored, if_none_match: bytes | None) -> tuple[Message, Message]:
    """The two messages that answer with a stored response, or with its 304."""
    if if_none_match is not None and not_modified(if_none_match.decode("latin-1"), stored.etag):
        return stored.not_modified, _EMPTY
    return stored.start, stored.body
