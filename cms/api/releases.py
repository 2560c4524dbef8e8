"""Routes for releases: comparisons published together, in one commit on main."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED
from msgspec import Meta, Struct

from ..content.model import Slug
from ..editing.releases import MAX_SLUGS, Release
from .auth import current_actor, requires_roles
from .params import ServicesDep
from .schemas import Comment

_TEXT = "\\x00-\\x20\\x7f-\\xa0\\u2028\\u2029\\u200b\\u2060\\ufeff"
TITLE = rf"^[^{_TEXT}](?:[^\x00-\x1f\x7f-\x9f\u2028\u2029]*[^{_TEXT}])?\Z"
# Who gathers a release, and who may publish one (each comparison's workflow decides too).
WRITE_ROLES = ("editor", "publisher", "chief", "admin")
PUBLISH_ROLES = ("publisher", "chief", "admin")
READ_ROLES = ("editor", "reviewer", "chief", "publisher", "admin", "auditor")


class ReleaseIn(Struct, forbid_unknown_fields=True):
    # One line of text that starts and ends with something visible: no control characters,
    # no line or paragraph separators.
    title: Annotated[str, Meta(min_length=1, max_length=200, pattern=TITLE)]
    slugs: Annotated[list[Slug], Meta(min_length=1, max_length=MAX_SLUGS)]


class ReleasePublishIn(Struct, forbid_unknown_fields=True):
    comment: Comment = ""
    at: Annotated[datetime, Meta(tz=True, description=(
        "Publish it then (RFC 3339, with its offset) instead of now: the answer is 202 and "
        "the release, with `scheduled_at`"))] | None = None


class ReleaseList(Struct, kw_only=True):
    items: list[Release]


class ReleasesController(Controller):
    path = "/api/releases"
    tags = ["releases"]
    guards = [requires_roles]

    @get("/", sync_to_thread=True, opt={"roles": READ_ROLES},
         summary="Releases, newest first")
    def list_releases(self, services: ServicesDep) -> ReleaseList:
        return ReleaseList(items=services.releases.all())

    @post("/", sync_to_thread=True, status_code=HTTP_201_CREATED, opt={"roles": WRITE_ROLES},
          summary="Gather comparisons to publish together")
    def create_release(self, services: ServicesDep, request: Request[Any, Any, Any],
                       data: JSONBody[ReleaseIn]) -> Release:
        return services.releases.create(data.title, data.slugs, current_actor(request))

    @get("/{release_id:str}", sync_to_thread=True, opt={"roles": READ_ROLES},
         summary="A release")
    def read_release(self, services: ServicesDep, release_id: FromPath[str]) -> Release:
        return services.releases.get(release_id)

    @post("/{release_id:str}/publish", sync_to_thread=True, status_code=200,
          opt={"roles": PUBLISH_ROLES},
          summary="Publish every comparison of the release in one commit, or none; now or at "
                  "a set time",
          responses={HTTP_202_ACCEPTED: ResponseSpec(
              Release, description="Scheduled: it will be published at `scheduled_at`",
              generate_examples=False)})
    def publish_release(self, services: ServicesDep, request: Request[Any, Any, Any],
                        release_id: FromPath[str],
                        data: JSONBody[ReleasePublishIn | None] = None) -> Response[Release]:
        given = data or ReleasePublishIn()
        actor = current_actor(request)
        if given.at is not None:
            services.release_schedules.schedule(release_id, given.at, actor, given.comment)
            return Response(services.releases.get(release_id), status_code=HTTP_202_ACCEPTED)
        return Response(services.releases.publish(release_id, actor, given.comment))

    @delete("/{release_id:str}/schedule", sync_to_thread=True, status_code=200,
            opt={"roles": PUBLISH_ROLES}, summary="Cancel the scheduled publication of a release")
    def cancel_release_schedule(self, services: ServicesDep, request: Request[Any, Any, Any],
                                release_id: FromPath[str]) -> Release:
        return services.release_schedules.cancel(release_id, current_actor(request))
