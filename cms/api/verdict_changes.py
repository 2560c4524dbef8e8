"""Public routes: how the published verdicts of the comparisons now published changed, one
re-publication at a time, for frontends to show a comparison's record (a first publication
sets verdicts rather than changing them, and is not listed). Who acted appears by name
only (the audit routes, for auditors, carry addresses), and a comparison taken down takes its
record with it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Response, get
from litestar.params import HeaderParameter, QueryParameter
from msgspec import Struct

from ..audit.verdicts import VerdictChange
from ..errors import NotFound
from .http import PUBLIC_CACHE, check_slug, etag, not_modified
from .params import ServicesDep, SlugPath
from .services import Services


class PublishedVerdictChange(Struct, kw_only=True):
    time: datetime
    commit: str
    slug: str
    title: str
    tool: str
    tool_name: str
    reviewer: str | None
    kind: str  # "verdict" (a reviewer's ship/skip) or "panel_ship" (the panel's share)
    before: str | float | None
    after: str | float | None
    before_label: str | None
    after_label: str | None
    published_by: str
    approved_by: list[str]


class PublishedVerdictChanges(Struct, kw_only=True):
    items: list[PublishedVerdictChange]
    head: str | None
    # The next (older) page of the latest changes, if there is one.
    next_cursor: str | None = None


def _public(change: VerdictChange) -> PublishedVerdictChange:
    return PublishedVerdictChange(
        time=change.time, commit=change.commit, slug=change.slug, title=change.title,
        tool=change.tool, tool_name=change.tool_name, reviewer=change.reviewer, kind=change.kind,
        before=change.before, after=change.after, before_label=change.before_label,
        after_label=change.after_label, published_by=change.actor.name,
        approved_by=[_name(line) for line in change.approvers])


def _name(line: str) -> str:
    """``Name <address>`` without the address."""
    return line.split("<", 1)[0].strip()


def _answer(services: Services, newest_first: list[VerdictChange], if_none_match: str | None,
            next_cursor: str | None = None) -> Response[Any]:
    head = services.verdicts.head
    tag = etag(f"{head or 'empty'}-{len(newest_first)}-{next_cursor}", weak=True)
    headers = {"ETag": tag, "Cache-Control": PUBLIC_CACHE}
    if not_modified(if_none_match, tag):
        return Response(content=None, status_code=304, headers=headers)
    body = PublishedVerdictChanges(items=[_public(item) for item in newest_first], head=head,
                                   next_cursor=next_cursor)
    return Response(body, headers=headers)


class PublishedVerdictsController(Controller):
    tags = ["published"]

    @get("/api/comparisons/{slug:str}/verdict-changes", sync_to_thread=True,
         summary="How a published comparison's verdicts changed, newest first")
    def comparison_verdict_changes(
        self, services: ServicesDep, slug: SlugPath,
        if_none_match: Annotated[str | None, HeaderParameter(name="If-None-Match")] = None,
    ) -> Response[PublishedVerdictChanges]:
        check_slug(slug)
        services.index.refresh()
        if services.index.get(slug) is None:
            raise NotFound(f"no published comparison with slug `{slug}`", field="slug")
        changes = [change for change in services.verdicts.changes(slug=slug) if not change.first]
        return _answer(services, changes[::-1], if_none_match)

    @get("/api/verdict-changes", sync_to_thread=True,
         summary="The latest verdict changes of the comparisons now published, newest first")
    def recent_verdict_changes(
        self, services: ServicesDep,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
        cursor: Annotated[str | None, QueryParameter(
            description="`next_cursor` of the previous page", pattern=r"^[0-9]{1,12}\Z")] = None,
        if_none_match: Annotated[str | None, HeaderParameter(name="If-None-Match")] = None,
    ) -> Response[PublishedVerdictChanges]:
        services.index.refresh()
        index = services.index
        log = services.verdicts.changes()  # oldest first, and only ever added to
        # A cursor is a place in the log, counted from its start: pages stay put while newer
        # changes arrive.
        place = len(log) if cursor is None else min(int(cursor), len(log))
        items: list[VerdictChange] = []
        while place > 0 and len(items) < limit:
            place -= 1
            if not log[place].first and index.get(log[place].slug) is not None:
                items.append(log[place])
        return _answer(services, items, if_none_match, str(place) if place else None)
