"""Routes for releases: comparisons published together, in one commit on main."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED
from msgspec import Meta, Struct

from ..content.model import Slug
from ..editing.releases import MAX_SLUGS, Release
from .auth import current_actor, requires_roles
from .schemas import Comment
from .services import ServicesDep

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
          summary="Publish every comparison of the release in one commit, or none")
    def publish_release(self, services: ServicesDep, request: Request[Any, Any, Any],
                        release_id: FromPath[str],
                        data: JSONBody[ReleasePublishIn | None] = None) -> Release:
        return services.releases.publish(release_id, current_actor(request),
                                         (data or ReleasePublishIn()).comment)
