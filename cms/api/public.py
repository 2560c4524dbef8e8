"""Routes for frontends: published comparisons only, public, cacheable, served from the index."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from litestar import Controller, Response, get
from litestar.params import FromQuery, HeaderParameter, QueryParameter

from ..errors import NotFound
from ..index import Query, SortKey
from .http import PUBLIC_CACHE, SlugPath, check_slug, etag, not_modified
from .schemas import ComparisonList, comparison_view, summary_view
from .services import Services, ServicesDep


def comparison_url(services: Services, slug: SlugPath) -> str:
    return f"{services.settings.base_url}/api/comparisons/{slug}"


class PublishedController(Controller):
    path = "/api/comparisons"
    tags = ["published"]

    @get("/", sync_to_thread=False, summary="List published comparisons")
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
        tag = etag(f"{index.head or 'empty'}-{fingerprint}", weak=True)
        headers = {"ETag": tag, "Cache-Control": PUBLIC_CACHE}
        if not_modified(if_none_match, tag):
            return Response(content=None, status_code=304, headers=headers)
        page = index.query(query)
        body = ComparisonList(
            items=[summary_view(entry, comparison_url(services, entry.slug))
                   for entry in page.items],
            next_cursor=page.next_cursor,
            total=page.total,
        )
        return Response(content=body, headers=headers)

    @get("/{slug:str}", sync_to_thread=False, summary="Read one published comparison")
    def read_comparison(
        self, services: ServicesDep,
        slug: SlugPath,
        if_none_match: Annotated[str | None, HeaderParameter(name="If-None-Match")] = None,
    ) -> Response[Any]:
        entry = services.index.get(check_slug(slug))
        if entry is None:
            raise NotFound(f"no published comparison with slug `{slug}`", field="slug")
        tag = etag(entry.blob)
        headers = {"ETag": tag, "Cache-Control": PUBLIC_CACHE}
        if not_modified(if_none_match, tag):
            return Response(content=None, status_code=304, headers=headers)
        view = comparison_view(entry.comparison, revision=entry.blob, html=entry.html(),
                               url=comparison_url(services, slug))
        return Response(content=view, headers=headers)
