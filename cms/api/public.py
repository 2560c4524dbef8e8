"""Routes for frontends: published comparisons only, public, cacheable, served from the index."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from fractions import Fraction
from itertools import repeat
from operator import attrgetter
from types import MappingProxyType
from typing import Annotated, Any, Literal, NamedTuple, cast

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED
from msgspec import Meta, Struct

from ..content.model import Community, percent_label
from ..errors import InvalidContent
from ..reading import views
from ..reading.index import Query, SortKey
from ..reading.listing import Listed, Page
from ..reading.views import ComparisonList, EncodedList, summary_view
from ..votes.limits import client_key, vote_secret
from ..votes.proxies import trusted_proxies
from ..votes.store import Counts, Pending
from .auth import requires_roles
from .http import PUBLIC_CACHE, check_slug, etag, not_modified
from .params import ServicesDep, SlugPath
from .published_read import (
    ATTEMPTS,
    comparison_url,
    live_community,
    live_pending,
    published,
    read_answer,
)
from .services import Services

# How long a list waits for the catalogue to be filled after start-up before answering 503:
# each waiting list holds a worker thread, and a long wait by many would stall other routes.
LIST_WAIT_SECONDS = 5.0


class PublishedController(Controller):
    path = "/api/comparisons"
    tags = ["published"]

    # In a thread: right after a start, a list waits until every comparison is decoded, and the
    # event loop must go on answering reads meanwhile.
    # The body is made once and kept encoded; the document still names what it is.
    @get("/", sync_to_thread=True, summary="List published comparisons",
         responses={200: ResponseSpec(ComparisonList, description="A page of comparisons",
                                          generate_examples=False)})
    def list_comparisons(
        self, services: ServicesDep,
        q: Annotated[str | None, QueryParameter(
            description="Words that must all appear in the title, tools, summary, quotes or "
                        "body; the last also matches longer words it begins (from three "
                        "letters, unless followed by a space). Results come by relevance unless "
                        "`sort` says otherwise: title and tools first, then summary, then the "
                        "rest, newest first within each",
            max_length=200)] = None,
        tool: Annotated[str | None, QueryParameter(description="Tool id, or part of its name")] = None,
        category: Annotated[str | None, QueryParameter(description="Either tool's category")] = None,
        verdict: Annotated[
            Literal["ship", "skip", "split"] | None,
            QueryParameter(description="Panel verdict of the matching tool (majority ship/skip)"),
        ] = None,
        sort: Annotated[SortKey | None, QueryParameter(
            description="Order of the list; by default `relevance` when `q` is given, else "
                        "`-published`")] = None,
        cursor: Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page")
                          ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        if_none_match: Annotated[str | None, HeaderParameter(name="If-None-Match")] = None,
    ) -> Response[Any]:
        query = Query(q=q, tool=tool, category=category, verdict=verdict, sort=sort, cursor=cursor,
                      limit=limit)
        answer = list_answer(services, query, if_none_match, wait=LIST_WAIT_SECONDS)
        if answer.body is None:
            return Response(content=None, status_code=304, headers=answer.headers)
        return Response(content=answer.body, headers=answer.headers, media_type=MediaType.JSON)

    @get("/{slug:str}", sync_to_thread=False, summary="Read one published comparison",
         responses={200: ResponseSpec(views.ComparisonView, description="The comparison",
                                          generate_examples=False)})
    def read_comparison(
        self, services: ServicesDep,
        slug: SlugPath,
        if_none_match: Annotated[str | None, HeaderParameter(name="If-None-Match")] = None,
    ) -> Response[Any]:
        answer = read_answer(services, check_slug(slug), if_none_match)
        if answer.body is None:
            return Response(content=None, status_code=304, headers=answer.headers)
        return Response(content=answer.body, headers=answer.headers, media_type=MediaType.JSON)


class ListAnswer(NamedTuple):
    headers: dict[str, str]
    body: bytes | None  # None: not modified


def list_answer(services: Services, query: Query, if_none_match: str | None, *,
                wait: float) -> ListAnswer:
    """A page of the list as the route answers it; waits ``wait`` seconds at most for the
    catalogue (see ``PublishedIndex.query``)."""
    index = services.index
    index.refresh()
    for attempt in range(1, ATTEMPTS + 1):
        head = index.head
        pending = live_pending(services, head)
        tag = list_tag(head, pending, query)
        headers = {"ETag": tag, "Cache-Control": PUBLIC_CACHE}
        if not_modified(if_none_match, tag):
            return ListAnswer(headers, None)
        # A search's page is never kept (see below): no look-up for it.
        encoded = None if query.q else services.bodies.get(tag)
        if encoded is not None:
            break
        encoded = list_body(services, index.query(query, wait=wait), pending)
        # Main moved while the page was made: its items may hold votes that ``pending`` adds
        # again, so make it anew (a page made on a moving main is served, not kept).
        if index.head == head:
            # Not a search: most are asked once, and would push out the pages asked again
            # (a search asked again is kept by the response cache in front).
            if not query.q:
                services.bodies.put(tag, encoded)
            break
        if attempt == ATTEMPTS:
            headers["Cache-Control"] = "no-store"
    return ListAnswer(headers, encoded)


def quick_list_answer(services: Services, query: Query,
                      if_none_match: str | None) -> tuple[str, bytes | None] | None:
    """``list_answer``'s ETag and body (None: not modified), when they are made without
    waiting, git or SQL search (for the event loop, see ``fast_lists``); else None, and a
    thread's ``list_answer`` makes them."""
    index = services.index
    index.refresh()
    head = index.head
    # No walk of git on the event loop: a head not seen yet is the thread's.
    pending = services.vote_folder.live.pending_known(head)
    if pending is None:
        return None
    tag = list_tag(head, pending, query)
    if not_modified(if_none_match, tag):
        return tag, None
    if not query.q:  # a list kept by its ETag, else the thread's (only searches are quick)
        encoded = services.bodies.get(tag)
        return None if encoded is None else (tag, encoded)
    page = index.quick_query(query, refresh=False)  # just refreshed
    if page is None:
        return None
    encoded = list_body(services, page, pending)
    if index.head != head:  # a thread moved main meanwhile: the thread's list makes it anew
        return None
    return tag, encoded


def list_tag(head: str | None, pending: Pending, query: Query) -> str:
    """The ETag of a page of the list: main's commit, exactly which votes are added to it
    (the list shows live tallies), and the query."""
    fingerprint = hashlib.sha1(msgspec.msgpack.encode(query),
                               usedforsecurity=False).hexdigest()[:16]
    return etag(f"{head or 'empty'}-{pending.through}-{pending.seen}-{fingerprint}", weak=True)


def list_body(services: Services, page: Page, pending: Pending) -> bytes:
    if not page.items and page.next_cursor is None and page.total == 0 and page.total_exact:
        return _NOTHING_FOUND  # most searches of words typed at random
    return msgspec.json.encode(EncodedList(
        items=_entries(services, page.items, pending),
        next_cursor=page.next_cursor,
        total=page.total,
        total_exact=page.total_exact,
    ))


_NO_VOTES: Mapping[str, Counts] = MappingProxyType({})
_NOTHING_FOUND = msgspec.json.encode(EncodedList(items=msgspec.Raw(b"[]"), next_cursor=None,
                                                 total=0, total_exact=True))


def _entries(services: Services, items: list[Listed], pending: Pending) -> msgspec.Raw:
    """A list's entries as one encoded array. Kept whole while no vote is pending for any
    comparison (what an entry shows then comes from its file alone): a search typed a letter
    at a time, or words that the same comparisons hold, show the same page again, which is
    then one look-up rather than twenty."""
    if pending.tallies:
        return _array(_summaries(services, items, pending))
    key = (*map(_BLOB, items), *map(_SLUG, items))
    entries = services.pages.get(key)
    if entries is None:
        entries = _array(_summaries(services, items, pending))
        services.pages.put(key, entries)
    return entries


def _array(encoded: list[msgspec.Raw]) -> msgspec.Raw:
    return msgspec.Raw(b"[" + b",".join(encoded) + b"]")


def _summaries(services: Services, items: list[Listed], pending: Pending) -> list[msgspec.Raw]:
    """A list's entries, each encoded once for as long as its file and its votes stay as they
    are."""
    kept = services.summaries
    tallies = pending.tallies
    slugs = list(map(_SLUG, items))
    # Looked up in C loops: a page of twenty entries is most of what a search shows.
    votes = repeat((), len(items)) if not tallies else \
        [tuple(sorted(tallies[slug].items())) if slug in tallies else () for slug in slugs]
    keys = list(zip(map(_BLOB, items), slugs, votes, strict=True))
    encoded = list(map(kept.get, keys))
    if not all(encoded):  # (no summary is empty: ``all`` finds a None without comparisons)
        for number, (item, key) in enumerate(zip(items, keys, strict=True)):
            if encoded[number] is None:
                slug = key[1]
                summary = msgspec.Raw(msgspec.json.encode(summary_view(
                    item.card, item.blob, comparison_url(services, slug),
                    tallies.get(slug, _NO_VOTES) if tallies else _NO_VOTES)))
                kept.put(key, summary)
                encoded[number] = summary
    return cast(list[msgspec.Raw], encoded)


_SLUG = attrgetter("card.slug")
_BLOB = attrgetter("blob")


class VoteIn(Struct, forbid_unknown_fields=True):
    tool: Annotated[str, Meta(min_length=1, max_length=120)]
    vote: Literal["ship", "skip"]


class VoteRecorded(Struct, kw_only=True):
    slug: str
    tool: str
    community: Community
    community_label: str


class VotesController(Controller):
    path = "/api/comparisons/{slug:str}/votes"
    tags = ["published"]

    @post("/", sync_to_thread=True, status_code=HTTP_202_ACCEPTED,
          summary="Cast a community vote; counted at once, folded into git in batches")
    def vote(self, services: ServicesDep, request: Request[Any, Any, Any], slug: SlugPath,
             data: JSONBody[VoteIn]) -> VoteRecorded:
        entry, head = published(services, check_slug(slug))
        tool = next((t for t in entry.comparison.tools if t.id == data.tool), None)
        if tool is None:
            ids = " or ".join(f"`{t.id}`" for t in entry.comparison.tools)
            raise InvalidContent(f"`{data.tool}` is not in this comparison; vote for {ids}",
                                 field="tool")
        client = client_key(vote_secret(services.settings), client_address(services, request))
        services.vote_limit.check(client, slug)
        services.votes.record(slug, tool.id, data.vote, client,
                              per_minute=services.settings.vote_rate)
        # Counted against the commit the tool was read from, after this vote was recorded.
        community = live_community(tool, live_pending(services, head).of(slug))
        return VoteRecorded(slug=slug, tool=tool.id, community=community,
                            community_label=percent_label(community_share_of(community)))


@post("/api/votes/fold", sync_to_thread=True, status_code=200, guards=[requires_roles],
      opt={"roles": ("admin",)}, tags=["admin"],
      summary="Fold pending community votes into git now, as one commit")
def fold_votes(services: ServicesDep) -> dict[str, str | None]:
    return {"commit": services.vote_folder.fold_now()}


def client_address(services: Services, request: Request[Any, Any, Any]) -> str:
    """The voter's address: the peer, or what trusted proxies say they heard from."""
    peer = request.client.host if request.client else "unknown"
    forwarded = [value.decode("latin-1") for name, value in request.scope["headers"]
                 if name == b"x-forwarded-for"]
    return trusted_proxies(services.settings.trusted_proxies).client(peer, forwarded)


def community_share_of(community: Community) -> Fraction | None:
    return None if community.votes == 0 else Fraction(community.ship, community.votes)


