"""Public routes for building frontends: incremental sync and feeds."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.params import FromPath, HeaderParameter, QueryParameter
from msgspec import Struct

from ..content.render import render_cached
from ..errors import NotFound
from ..reading.feeds import atom, json_feed, latest
from ..reading.views import ComparisonView, comparison_view
from .http import PUBLIC_CACHE, etag, not_modified
from .params import ServicesDep
from .published_read import comparison_url
from .services import Services

IfNoneMatch = Annotated[str | None, HeaderParameter(name="If-None-Match")]


class SyncResponse(Struct, kw_only=True):
    items: list[ComparisonView]
    deleted: list[str]
    next_sync: str | None
    next_page: str | None
    commit: str | None


@get("/api/sync", sync_to_thread=True, tags=["published"],
     summary="Everything published, or only what changed since a sync token")
def sync_published(
    services: ServicesDep,
    token: Annotated[str | None, QueryParameter(
        description="`next_sync` of an earlier sync: only what changed since")] = None,
    page: Annotated[str | None, QueryParameter(
        description="`next_page` of the previous page of this sync")] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
) -> Response[SyncResponse]:
    result = services.sync.page(token=token, page=page, limit=limit,
                  decode=services.index.comparison)
    items = [
        comparison_view(comparison, revision=blob, html=render_cached(blob, comparison.body),
                        url=comparison_url(services, comparison.slug))
        for comparison, blob in result.items
    ]
    body = SyncResponse(items=items, deleted=result.deleted, next_sync=result.next_sync,
                        next_page=result.next_page, commit=result.commit)
    return Response(body, headers={"Cache-Control": "no-cache"})


def _feed(services: Services, request: Request[Any, Any, Any], if_none_match: str | None,
          kind: str) -> Response[bytes]:
    services.index.refresh()
    tag = etag(f"{kind}-{services.index.head or 'empty'}", weak=True)
    headers = {"ETag": tag, "Cache-Control": PUBLIC_CACHE}
    if not_modified(if_none_match, tag):
        return Response(b"", status_code=304, headers=headers)
    base = services.settings.base_url
    items = latest(services.documents, services.settings.base_url)
    if kind == "atom":
        return Response(atom(items, base_url=base, self_url=f"{base}/api/feed.atom"),
                        media_type="application/atom+xml; charset=utf-8", headers=headers)
    return Response(json_feed(items, base_url=base, self_url=f"{base}/api/feed.json"),
                    media_type="application/feed+json; charset=utf-8", headers=headers)


@get("/api/feed.atom", sync_to_thread=True, tags=["published"],
     summary="Atom feed of the latest publications")
def feed_atom(services: ServicesDep, request: Request[Any, Any, Any],
              if_none_match: IfNoneMatch = None) -> Response[bytes]:
    return _feed(services, request, if_none_match, "atom")


@get("/api/feed.json", sync_to_thread=True, tags=["published"],
     summary="JSON Feed 1.1 of the latest publications")
def feed_json(services: ServicesDep, request: Request[Any, Any, Any],
              if_none_match: IfNoneMatch = None) -> Response[bytes]:
    return _feed(services, request, if_none_match, "json")


@get("/api/preview/{token:str}", sync_to_thread=True, tags=["published"],
     summary="A draft shown through a preview link, exactly as the published read would show it")
def read_preview(services: ServicesDep, token: FromPath[str]) -> Response[ComparisonView]:
    slug = services.previews.check(token)
    revision = services.documents.current(slug)
    if revision is None:
        raise NotFound("the comparison of this preview no longer exists")
    view = comparison_view(revision.comparison, revision=revision.revision,
                           html=render_cached(revision.revision, revision.comparison.body),
                           url=comparison_url(services, slug))
    return Response(view, headers={"Cache-Control": "private, no-store",
                                   "X-Robots-Tag": "noindex"})
