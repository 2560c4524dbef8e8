"""Routes for frontends: published comparisons only, public, cacheable, served from the index."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.params import FromQuery, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED
from msgspec import Meta, Struct

from ..content.model import Community, Comparison, Tool, percent_label
from ..errors import InvalidContent, NotFound
from ..reading.index import Entry, Query, SortKey
from ..reading.views import ComparisonList, comparison_view, summary_view
from ..votes.limits import client_key
from .auth import requires_roles
from .http import PUBLIC_CACHE, SlugPath, check_slug, etag, not_modified
from .services import Services, ServicesDep


def comparison_url(services: Services, slug: SlugPath) -> str:
    return f"{services.settings.base_url}/api/comparisons/{slug}"


class PublishedController(Controller):
    path = "/api/comparisons"
    tags = ["published"]

    # In a thread: right after a start, a list waits until every comparison is decoded, and the
    # event loop must go on answering reads meanwhile.
    @get("/", sync_to_thread=True, summary="List published comparisons")
    def list_comparisons(
        self, services: ServicesDep,
        q: Annotated[str | None, QueryParameter(
            description="Words that must all appear in the title, tools, quotes or body",
            max_length=200)] = None,
        tool: Annotated[str | None, QueryParameter(description="Tool id, or part of its name")] = None,
        category: Annotated[str | None, QueryParameter(description="Either tool's category")] = None,
        verdict: Annotated[
            Literal["ship", "skip", "split"] | None,
            QueryParameter(description="Panel verdict of the matching tool (majority ship/skip)"),
        ] = None,
        sort: FromQuery[SortKey] = "-published",
        cursor: Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page")
                          ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        if_none_match: Annotated[str | None, HeaderParameter(name="If-None-Match")] = None,
    ) -> Response[Any]:
        query = Query(q=q, tool=tool, category=category, verdict=verdict, sort=sort, cursor=cursor,
                      limit=limit)
        index = services.index
        index.refresh()
        fingerprint = hashlib.sha1(repr(query).encode(), usedforsecurity=False).hexdigest()[:16]
        # The list shows live tallies, so the pending votes' version is part of what it names.
        state = f"{index.head or 'empty'}-{services.votes.version}"
        tag = etag(f"{state}-{fingerprint}", weak=True)
        headers = {"ETag": tag, "Cache-Control": PUBLIC_CACHE}
        if not_modified(if_none_match, tag):
            return Response(content=None, status_code=304, headers=headers)
        encoded = services.bodies.get(tag)
        if encoded is None:
            page = index.query(query)
            body = ComparisonList(
                items=[summary_view(
                    Entry(comparison=with_live_tallies(services, entry.comparison)[0],
                          blob=entry.blob), comparison_url(services, entry.slug))
                    for entry in page.items],
                next_cursor=page.next_cursor,
                total=page.total,
            )
            encoded = msgspec.json.encode(body)
            services.bodies.put(tag, encoded)
        return Response(content=encoded, headers=headers, media_type=MediaType.JSON)

    @get("/{slug:str}", sync_to_thread=False, summary="Read one published comparison")
    def read_comparison(
        self, services: ServicesDep,
        slug: SlugPath,
        if_none_match: Annotated[str | None, HeaderParameter(name="If-None-Match")] = None,
    ) -> Response[Any]:
        entry = services.index.get(check_slug(slug))
        if entry is None:
            raise NotFound(f"no published comparison with slug `{slug}`", field="slug")
        comparison, pending = with_live_tallies(services, entry.comparison)
        # Votes not yet folded into git change what is shown, not the revision to edit.
        tag = etag(f"{entry.blob}+{pending}", weak=True) if pending else etag(entry.blob)
        headers = {"ETag": tag, "Cache-Control": PUBLIC_CACHE}
        if not_modified(if_none_match, tag):
            return Response(content=None, status_code=304, headers=headers)
        body = services.bodies.get(tag)
        if body is None:
            view = comparison_view(comparison, revision=entry.blob, html=entry.html(),
                                   url=comparison_url(services, slug))
            body = msgspec.json.encode(view)
            services.bodies.put(tag, body)
        return Response(content=body, headers=headers, media_type=MediaType.JSON)


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
        entry = services.index.get(check_slug(slug))
        if entry is None:
            raise NotFound(f"no published comparison with slug `{slug}`", field="slug")
        tool = next((t for t in entry.comparison.tools if t.id == data.tool), None)
        if tool is None:
            ids = " or ".join(f"`{t.id}`" for t in entry.comparison.tools)
            raise InvalidContent(f"`{data.tool}` is not in this comparison; vote for {ids}",
                                 field="tool")
        client = client_key(request.client.host if request.client else "unknown")
        services.vote_limit.check(client, slug)
        services.votes.record(slug, tool.id, data.vote, client)
        community = live_community(services, slug, tool)
        return VoteRecorded(slug=slug, tool=tool.id, community=community,
                            community_label=percent_label(community_share_of(community)))


@post("/api/votes/fold", sync_to_thread=True, status_code=200, guards=[requires_roles],
      opt={"roles": ("admin",)}, tags=["admin"],
      summary="Fold pending community votes into git now, as one commit")
def fold_votes(services: ServicesDep) -> dict[str, str | None]:
    return {"commit": services.vote_folder.fold_now()}


def live_community(services: Services, slug: str, tool: Tool) -> Community:
    """The tally in git plus the votes not folded into it yet."""
    ship, skip = services.votes.pending(slug).get(tool.id, [0, 0])
    return Community(ship=tool.community.ship + ship, skip=tool.community.skip + skip)


def community_share_of(community: Community) -> Fraction | None:
    return None if community.votes == 0 else Fraction(community.ship, community.votes)


def with_live_tallies(services: Services, comparison: Comparison) -> tuple[Comparison, int]:
    """The comparison with pending votes added to its tallies, and how many were pending."""
    pending = services.votes.pending(comparison.slug)
    if not pending:
        return comparison, 0
    tools = [msgspec.structs.replace(tool, community=live_community(services, comparison.slug, tool))
             for tool in comparison.tools]
    count = sum(sum(counts) for counts in pending.values())
    return msgspec.structs.replace(comparison, tools=tools), count
