"""Lists and search for anonymous readers, answered before the framework's routing runs.

A search with a new query every time is what no response cache absorbs, and in the framework a
page of the list spent more on routing, parameters and injection than the catalogue spent
finding it. A request here is one the list route would take exactly as it is: the route's own
parameters, each once and valid as the route types it, and no token. It is answered on the
event loop when the search bitmaps answer it (``public.quick_list_answer``, see
``reading.search_bits``), else in a worker thread by the route's own code
(``public.list_answer``), since a list reads SQLite at length; the two make the ETag and the
body alike (``list_tag``, ``list_body``). Anything else, and anything that does not answer at
once (the catalogue still being filled, a bad cursor, an error), goes on to the route, which
answers it in its own terms.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl

import anyio.to_thread
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

from ..errors import CmsError
from ..reading.catalogue import CatalogueError
from ..reading.index import SORT_KEYS, Query
from .http import PUBLIC_CACHE, json_messages
from .public import ListAnswer, list_answer, quick_list_answer
from .services import Services

log = logging.getLogger("cms")

PATH = "/api/comparisons"
# The route's parameters and how it types them (public.PublishedController.list_comparisons).
_TEXT = frozenset({"q", "tool", "category", "cursor"})
_CHOICES = {"verdict": frozenset({"ship", "skip", "split"}), "sort": frozenset(SORT_KEYS)}
_LIMIT = re.compile(r"[1-9][0-9]{0,2}")
_LIMIT_MAX = 100
_Q_LENGTH = 200
_ROUTED_HEADERS = frozenset({b"authorization", b"if-match"})


# The shape a search box's request comes in: read at once, where the walk over the fields
# (which reads the same from it) takes twice as long.
_SEARCH = re.compile(r"(?:limit=([1-9][0-9]{0,2})&)?q=([^&%]+)")


def query_of(query_string: bytes) -> Query | None:
    """The list query a query string asks for, when the route would take it as it is."""
    text = query_string.decode("latin-1")
    search = _SEARCH.fullmatch(text)
    if search is None:
        return _fields_query(text)
    limit, q = search.groups()
    q = q.replace("+", " ")
    if q == "null" or len(q) > _Q_LENGTH or (limit is not None and int(limit) > _LIMIT_MAX):
        return None
    return Query(q=q) if limit is None else Query(q=q, limit=int(limit))


def _fields_query(text: str) -> Query | None:
    # Parsed as the framework parses it, so that both read the same values.
    given: dict[str, str | int] = {}
    for name, value in _pairs(text):
        # Twice, empty or "null" (which the framework takes for absent): the route's to refuse
        # or to read.
        if name in given or not value or value == "null":
            return None
        if name in _TEXT:
            if name == "q" and len(value) > _Q_LENGTH:
                return None
            given[name] = value
        elif name == "limit":
            if not _LIMIT.fullmatch(value) or int(value) > _LIMIT_MAX:
                return None
            given[name] = int(value)
        elif value in _CHOICES.get(name, ()):
            given[name] = value
        else:
            return None  # not the route's (ignored there, but not guessed at here), or not valid
    # Every value is checked above as the struct types it: no conversion to check it again.
    return Query(**given)  # type: ignore[arg-type]


def _pairs(text: str) -> list[tuple[str, str]]:
    """``parse_qsl(text, keep_blank_values=True, separator="&")``, which without a percent sign
    comes down to splitting."""
    if "%" in text:
        return parse_qsl(text, keep_blank_values=True, separator="&")
    # (name, "=", value)[::2]: a name without a value has the empty one.
    return [field.partition("=")[::2]
            for field in text.replace("+", " ").split("&") if field]


class FastLists:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.answered = 0  # lists answered here
        self.routed = 0  # lists taken here that went on to the route after all
        self.quick = 0  # of those answered, how many on the event loop (from the bitmaps)
        self.quick_failed = 0

    def wrapping(self, app: ASGIApp) -> ASGIApp:
        # One coroutine for the whole of it, the rest plain calls: a search answered here
        # costs a few microseconds less than with an awaited call for each step.
        async def fast(scope: Scope, receive: Receive, send: Send) -> None:
            taken = self.taken(scope)
            if taken is not None:
                answer = self.quick_answer(*taken)
                quick = answer is not None
                if answer is None:
                    answer = await self.thread_answer(*taken)
                if answer is not None:
                    await send(answer[0])
                    await send(answer[1])
                    self.answered += 1
                    self.quick += quick
                    return
            await app(scope, receive, send)

        return fast

    def taken(self, scope: Scope) -> tuple[Query, str | None] | None:
        """The list query and If-None-Match of a request this layer takes; None for the
        route's."""
        if scope["type"] != ScopeType.HTTP or scope["method"] != "GET" or \
                scope["path"] != PATH or not self.services.index.ready:
            return None
        if_none_match: bytes | None = None
        for name, value in scope["headers"]:
            # A token is checked by the route; so are headers the route takes one of.
            if name in _ROUTED_HEADERS or (name == b"if-none-match" and if_none_match is not None):
                return None
            if name == b"if-none-match":
                if_none_match = value
        query = query_of(scope["query_string"])
        if query is None:
            return None
        return query, None if if_none_match is None else if_none_match.decode("latin-1")

    def quick_answer(self, query: Query, if_none_match: str | None) -> _Messages | None:
        """The answer when the event loop makes it at once (see ``quick_list_answer``)."""
        try:
            # A search the bitmaps answer costs tens of microseconds: less than a thread's.
            quick = quick_list_answer(self.services, query, if_none_match)
        except (CmsError, CatalogueError):
            return None  # the thread's attempt meets it again, and tells the route
        except Exception:
            self.quick_failed += 1
            if self.quick_failed == 1:  # a fault of this layer: once in the log, not per request
                log.warning("a quick list failed; lists go to a thread", exc_info=True)
            return None
        return None if quick is None else _messages(*quick)

    async def thread_answer(self, query: Query, if_none_match: str | None) -> _Messages | None:
        """The answer a worker thread makes; None when the route is to answer after all."""
        try:
            # In a worker thread, as the route's handler runs, and under the same limit.
            answer = await anyio.to_thread.run_sync(self._answer, query, if_none_match)
        except (CmsError, CatalogueError):
            # A bad cursor, a catalogue another thread is filling: the route answers it again,
            # in its own terms (a 400 naming the field; a wait, or a 503).
            self.routed += 1
            return None
        except Exception as exc:  # a fault of this layer: the route still answers
            self.routed += 1
            log.warning("a list went to the route after %s: %s", type(exc).__name__, exc)
            return None
        return json_messages(answer.headers, answer.body)

    def _answer(self, query: Query, if_none_match: str | None) -> ListAnswer:
        # No wait for the catalogue's writer: while another thread holds it (a fill, a
        # catch-up), the route is the one to wait.
        return list_answer(self.services, query, if_none_match, wait=0.0)


_PUBLIC = (b"cache-control", PUBLIC_CACHE.encode("latin-1"))
_JSON = (b"content-type", b"application/json")
_EMPTY_BODY = HTTPResponseBodyEvent(type="http.response.body", body=b"", more_body=False)


_Messages = tuple[HTTPResponseStartEvent, HTTPResponseBodyEvent]


def _messages(tag: str, body: bytes | None) -> _Messages:
    """What ``json_messages`` makes of a list's headers, made here without their dict."""
    etag = (b"etag", tag.encode("latin-1"))
    if body is None:
        return HTTPResponseStartEvent(type="http.response.start", status=304,
                                      headers=[etag, _PUBLIC]), _EMPTY_BODY
    return (HTTPResponseStartEvent(type="http.response.start", status=200, headers=[
                etag, _PUBLIC, _JSON, (b"content-length", b"%d" % len(body))]),
            HTTPResponseBodyEvent(type="http.response.body", body=body, more_body=False))
