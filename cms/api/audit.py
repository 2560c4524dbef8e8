"""Routes for auditors: history, any revision, field-level diffs, verdict changes, verification."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from litestar import Controller, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, QueryParameter
from msgspec import Struct

from .. import urlsafe
from ..audit.history import HistoryEntry, HistoryFilter, history, publications
from ..audit.verdicts import VerdictChange
from ..audit.verify import Verification, verify
from ..content.diff import Change, compare
from ..content.render import render_cached
from ..errors import BadRequest, Conflict, NotFound
from ..identity.actors import ROLES
from ..reading.views import ComparisonView, comparison_url, comparison_view
from .auth import requires_roles
from .http import PRIVATE_CACHE, check_slug
from .params import ServicesDep, SlugPath
from .services import Services

AUDIT_ROLES = ("auditor", "admin")
ANY_ROLE = ROLES  # any token
# A date and a time, to the second or finer, with an optional offset: written out, so that
# neither a bare number (taken for a Unix time) nor a lone date passes for one.
_MOMENT = (r"^[1-9][0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
           r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
           r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?\Z")
Moment = Annotated[str | None, QueryParameter(
    pattern=_MOMENT, max_length=40,
    description="ISO 8601 time, e.g. 2026-11-01T00:00:00Z (UTC when no offset is given)")]


def _utc(moment: str | None, field: str) -> datetime | None:
    if moment is None:
        return None
    try:
        when = datetime.fromisoformat(moment)
    except ValueError:
        raise BadRequest(f"`{moment}` is not a time of day on a calendar date",
                         field=field) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


class History(Struct, kw_only=True):
    slug: str
    entries: list[HistoryEntry]
    total: int
    next_cursor: str | None


class Diff(Struct, kw_only=True):
    slug: str
    from_commit: str
    to_commit: str
    changes: list[Change]
    body_diff: str | None


class VerdictChanges(Struct, kw_only=True):
    items: list[VerdictChange]
    head: str | None


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return int(urlsafe.decode(cursor).decode())
    except ValueError as exc:
        raise BadRequest("the cursor is not one this API gave out", field="cursor") from exc


def _cursor(offset: int) -> str:
    return urlsafe.encode(str(offset).encode())


def _view(services: Services, slug: str, commit: str) -> ComparisonView:
    revision = services.documents.at(slug, services.documents.resolve(commit))
    return comparison_view(
        revision.comparison, revision=revision.revision,
        html=render_cached(revision.revision, revision.comparison.body),
        url=f"{comparison_url(services.settings.base_url, slug)}/revisions/{revision.commit}",
    )


class ComparisonAuditController(Controller):
    path = "/api/comparisons/{slug:str}"
    tags = ["audit"]
    guards = [requires_roles]

    @get("/history", sync_to_thread=True, opt={"roles": AUDIT_ROLES},
         summary="Every commit that changed it, newest first")
    def read_history(
        self, services: ServicesDep, slug: SlugPath,
        action: Annotated[list[str] | None, QueryParameter(
            description="Only these actions, e.g. publish (repeatable)")] = None,
        since: Moment = None, until: Moment = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, QueryParameter(description="The previous `next_cursor`")] = None,
    ) -> Response[History]:
        only = HistoryFilter(actions=frozenset(action or ()), since=_utc(since, "since"),
                             until=_utc(until, "until"))
        entries = history(services.documents, check_slug(slug), only)
        if not entries and not history(services.documents, slug):
            raise NotFound(f"no comparison with slug `{slug}` has ever existed", field="slug")
        start = _offset(cursor)
        page = entries[start : start + limit]
        more = start + limit < len(entries)
        body = History(slug=slug, entries=page, total=len(entries),
                       next_cursor=_cursor(start + limit) if more else None)
        return Response(body, headers={"Cache-Control": PRIVATE_CACHE})

    @get("/revisions/{commit:str}", sync_to_thread=True, opt={"roles": ANY_ROLE},
         summary="The comparison exactly as it was at a commit")
    def read_revision(self, services: ServicesDep, slug: SlugPath, commit: FromPath[str]
                      ) -> Response[ComparisonView]:
        view = _view(services, check_slug(slug), commit)
        # A commit never changes, so neither does what it held.
        return Response(view, headers={"Cache-Control": "private, max-age=31536000, immutable",
                                       "ETag": f'"{view.revision}"'})

    @get("/diff", sync_to_thread=True, opt={"roles": ANY_ROLE},
         summary="Field-level changes between two commits (default: the last two publications)")
    def read_diff(
        self, services: ServicesDep, slug: SlugPath,
        from_commit: Annotated[str | None, QueryParameter(name="from")] = None,
        to_commit: Annotated[str | None, QueryParameter(name="to")] = None,
    ) -> Diff:
        documents = services.documents
        check_slug(slug)
        if from_commit is None or to_commit is None:
            published = [entry.sha for entry in publications(documents, slug)]
            if to_commit is None:
                if not published:
                    raise NotFound(f"`{slug}` has never been published", field="slug")
                to_commit = published[0]
            if from_commit is None:
                later = published[published.index(to_commit) + 1:] if to_commit in published \
                    else published
                if not later:
                    raise Conflict(f"`{slug}` has only one publication; name `from` to compare",
                                   field="from")
                from_commit = later[0]
        before = documents.at(slug, documents.resolve(from_commit, "from"))
        after = documents.at(slug, documents.resolve(to_commit, "to"))
        difference = compare(before.comparison, after.comparison)
        return Diff(slug=slug, from_commit=before.commit, to_commit=after.commit,
                    changes=difference.changes, body_diff=difference.body_diff)


class RepositoryAuditController(Controller):
    path = "/api/audit"
    tags = ["audit"]
    guards = [requires_roles]
    opt = {"roles": AUDIT_ROLES}

    @get("/verdict-changes", sync_to_thread=True,
         responses={200: ResponseSpec(VerdictChanges, description="The changes, oldest first",
                                          generate_examples=False)},
         summary="Every published change of a verdict or panel share (JSON or CSV)")
    def verdict_changes(
        self, services: ServicesDep, since: Moment = None, until: Moment = None,
        tool: Annotated[str | None, QueryParameter(description="Tool id or part of its name")] = None,
        slug: Annotated[str | None, QueryParameter(description="One comparison")] = None,
        output: Annotated[Literal["json", "csv"], QueryParameter(name="format")] = "json",
    ) -> Response[Any]:
        items = services.verdicts.changes(since=_utc(since, "since"), until=_utc(until, "until"),
                                          tool=tool, slug=slug)
        if output == "csv":
            return Response(_csv(items), media_type="text/csv",  # the framework adds the charset
                            headers={"Content-Disposition": 'attachment; filename="verdict-changes.csv"',
                                     "Cache-Control": PRIVATE_CACHE})
        return Response(VerdictChanges(items=items, head=services.verdicts.head),
                        headers={"Cache-Control": PRIVATE_CACHE})

    @get("/verify", sync_to_thread=True,
         summary="Check main's history: CMS-made publications with the required approvals")
    def verify_main(self, services: ServicesDep) -> Verification:
        return verify(services.documents, services.workflows, services.pipeline.committer)


_CSV_COLUMNS = ("time", "commit", "slug", "title", "tool", "tool_name", "reviewer", "kind",
                "before", "after", "before_label", "after_label", "actor", "approvers")


def _csv(items: list[VerdictChange]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_CSV_COLUMNS)
    for item in items:
        writer.writerow([_cell(value) for value in (
            item.time.isoformat(), item.commit, item.slug, item.title, item.tool, item.tool_name,
            item.reviewer, item.kind, item.before, item.after, item.before_label,
            item.after_label, f"{item.actor.name} <{item.actor.email}>",
            "; ".join(item.approvers),
        )])
    return out.getvalue()


def _cell(value: str | float | None) -> str:
    text = "" if value is None else str(value)
    # A cell starting with = + - @ is a formula in a spreadsheet: never let content run there.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
