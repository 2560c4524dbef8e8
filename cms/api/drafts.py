"""Routes for editors and reviewers: work in progress and the transitions of the workflow.

Every write names the revision it read in ``If-Match``; the store refuses it when that revision is
no longer current, so two editors can never overwrite each other unknowingly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, cast

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from ..content.render import render_cached
from ..editing.scheduled import CANCEL
from ..editing.schedules import Schedule
from ..editing.workflow import allowed_actions
from ..errors import InvalidContent, NotFound
from ..identity.actors import ROLES
from ..reading.views import ComparisonView, comparison_view
from ..store.documents import Revision
from .auth import current_actor, requires_roles
from .http import PRIVATE_CACHE, check_slug, etag, if_match_revision
from .params import ServicesDep, SlugPath
from .schemas import (
    ComparisonIn,
    DraftList,
    DraftSummary,
    PreviewIn,
    PreviewLink,
    RevertIn,
    TransitionIn,
)
from .services import Services

IfMatch = Annotated[str | None, HeaderParameter(name="If-Match",
                                          description="The revision (ETag) you read")]
# Actions that allowed_actions lists but that have routes of their own.
OTHER_ROUTES = {"create": "create a comparison with POST /api/drafts",
                "edit": "edit with PUT /api/drafts/{slug}",
                "discard": "discard with DELETE /api/drafts/{slug}"}
ANY_ROLE = ROLES  # any token


def draft_url(services: Services, slug: SlugPath) -> str:
    return f"{services.settings.base_url}/api/drafts/{slug}"


def workflow_named(given: Any) -> str | None:
    """The workflow a body names: `"two-step"`, or the `name` of a record it read back."""
    if isinstance(given, dict):
        given = given.get("name")
    return given if isinstance(given, str) else None


def _respond(
    services: Services, request: Request[Any, Any, Any], revision: Revision,
    status_code: int = 200,
) -> Response[ComparisonView]:
    actor = current_actor(request)
    comparison = revision.comparison
    view = comparison_view(
        comparison,
        revision=revision.revision,
        html=render_cached(revision.revision, comparison.body),
        url=draft_url(services, comparison.slug),
        allowed_actions=allowed_actions(services.workflows.of(comparison.workflow),
                                        comparison.workflow, actor),
    )
    headers = {"ETag": etag(revision.revision), "Cache-Control": PRIVATE_CACHE}
    return Response(content=view, status_code=status_code, headers=headers)


class DraftsController(Controller):
    path = "/api/drafts"
    tags = ["drafts"]
    guards = [requires_roles]
    opt = {"roles": ANY_ROLE}

    @get("/", sync_to_thread=True, summary="List work in progress")
    def list_drafts(
        self, services: ServicesDep,
        in_state: Annotated[
            str | None, QueryParameter(name="state", description="Only drafts in this state")
        ] = None,
    ) -> Response[DraftList]:
        items = [
            DraftSummary(
                slug=revision.comparison.slug, title=revision.comparison.title,
                state=revision.state, revision=revision.revision,
                authors=revision.comparison.workflow.authors,
                approved_by=revision.comparison.workflow.approved_by,
                url=draft_url(services, revision.comparison.slug),
            )
            for revision in services.documents.drafts()
            if in_state is None or revision.state == in_state
        ]
        return Response(DraftList(items=items), headers={"Cache-Control": PRIVATE_CACHE})

    @get("/{slug:str}", sync_to_thread=True, summary="Read the current revision of a comparison")
    def read_draft(self, services: ServicesDep, request: Request[Any, Any, Any], slug: SlugPath
                   ) -> Response[ComparisonView]:
        revision = services.documents.current(check_slug(slug))
        if revision is None:
            raise NotFound(f"no comparison with slug `{slug}`", field="slug")
        return _respond(services, request, revision)

    @post("/", sync_to_thread=True, summary="Create a comparison as a new draft",
          status_code=HTTP_201_CREATED, opt={"action": "create"})
    def create_draft(self, services: ServicesDep, request: Request[Any, Any, Any],
                     data: JSONBody[ComparisonIn]) -> Response[ComparisonView]:
        comparison = data.to_comparison()
        revision = services.editor.create(comparison, current_actor(request), data.comment,
                                          workflow_named(data.workflow))
        response = _respond(services, request, revision, HTTP_201_CREATED)
        response.headers["Location"] = draft_url(services, comparison.slug)
        return response

    @put("/{slug:str}", sync_to_thread=True, summary="Replace the draft (or start a new revision)",
         opt={"action": "edit"})
    def update_draft(self, services: ServicesDep, request: Request[Any, Any, Any], slug: SlugPath,
                     data: JSONBody[ComparisonIn], if_match: IfMatch = None) -> Response[ComparisonView]:
        check_slug(slug)
        comparison = data.to_comparison()
        if comparison.slug != slug:
            raise InvalidContent(
                f"the body's slug `{comparison.slug}` differs from the URL's; "
                "renaming is not supported",
                field="slug",
            )
        revision = services.editor.save(
            slug, comparison, current_actor(request), if_match_revision(if_match), data.comment,
            workflow_named(data.workflow),
        )
        return _respond(services, request, revision)

    @post("/{slug:str}/transitions", sync_to_thread=True, status_code=200,
          summary="Take a workflow action (submit, approve, publish…), now or at a set time",
          description=("With `at`, a publication or a takedown is scheduled instead (202, the "
                       "schedule); `cancel_schedule` cancels what is scheduled for the "
                       "comparison."),
          responses={HTTP_202_ACCEPTED: ResponseSpec(
              Schedule, description="Scheduled: it will be taken at `at`",
              generate_examples=False)})
    def transition(self, services: ServicesDep, request: Request[Any, Any, Any], slug: SlugPath,
                   data: JSONBody[TransitionIn], if_match: IfMatch = None) -> Response[ComparisonView]:
        if data.action in OTHER_ROUTES:
            raise InvalidContent(f"`{data.action}` is not a transition: "
                                 f"{OTHER_ROUTES[data.action]}", field="action")
        actor = current_actor(request)
        check_slug(slug)
        if data.action == CANCEL:
            if data.at is not None:
                raise InvalidContent("a cancellation takes effect now: leave `at` out",
                                     field="at")
            services.schedules.cancel(slug, actor, if_match_revision(if_match), data.comment)
            found = services.documents.current(slug)
            if found is None:
                raise NotFound(f"no comparison with slug `{slug}`", field="slug")
            return _respond(services, request, found)
        if data.at is not None:
            schedule = services.schedules.schedule(
                slug, data.action, data.at, actor, if_match_revision(if_match), data.comment)
            # The 202 carries the schedule, as the operation's responses say.
            return cast(Response[ComparisonView], Response(
                schedule, status_code=HTTP_202_ACCEPTED,
                headers={"Cache-Control": PRIVATE_CACHE,
                         "Location": f"{services.settings.base_url}/api/schedule"}))
        revision = services.editor.transition(
            slug, data.action, actor, if_match_revision(if_match), data.comment)
        return _respond(services, request, revision)

    @post("/{slug:str}/revert", sync_to_thread=True, status_code=200, opt={"action": "edit"},
          summary="Start a new draft revision with the content of an earlier commit")
    def revert(self, services: ServicesDep, request: Request[Any, Any, Any], slug: SlugPath,
               data: JSONBody[RevertIn], if_match: IfMatch = None) -> Response[ComparisonView]:
        revision = services.editor.revert(
            check_slug(slug), data.to, current_actor(request), if_match_revision(if_match),
            data.comment,
        )
        return _respond(services, request, revision)

    @post("/{slug:str}/preview", sync_to_thread=True, status_code=HTTP_201_CREATED,
          opt={"roles": ("editor", "reviewer", "admin")},
          summary="A signed link that shows this draft to people without an account")
    def create_preview(self, services: ServicesDep, request: Request[Any, Any, Any],
                       slug: SlugPath, data: JSONBody[PreviewIn | None] = None) -> PreviewLink:
        if services.documents.current(check_slug(slug)) is None:
            raise NotFound(f"no comparison with slug `{slug}`", field="slug")
        seconds = (data or PreviewIn()).expires_in
        grant, token = services.previews.grant(slug, current_actor(request).person, seconds)
        return PreviewLink(id=grant.id, url=f"{services.settings.base_url}/api/preview/{token}",
                           expires_at=datetime.fromtimestamp(grant.expires_at, UTC))

    @delete("/{slug:str}/preview/{preview_id:str}", sync_to_thread=True,
            status_code=HTTP_204_NO_CONTENT, opt={"roles": ("editor", "reviewer", "admin")},
            summary="Revoke a preview link")
    def revoke_preview(self, services: ServicesDep, slug: SlugPath,
                       preview_id: FromPath[str]) -> None:
        services.previews.revoke(check_slug(slug), preview_id)

    @delete("/{slug:str}", sync_to_thread=True, status_code=HTTP_204_NO_CONTENT,
            summary="Discard the work in progress", opt={"action": "discard"})
    def discard_draft(self, services: ServicesDep, request: Request[Any, Any, Any], slug: SlugPath,
                      if_match: IfMatch = None) -> None:
        services.editor.discard(check_slug(slug), current_actor(request),
                                   if_match_revision(if_match))
