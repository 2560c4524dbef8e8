"""Routes for review threads: comments on a draft and their resolution, each a commit."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED
from msgspec import Meta, Struct

from ..editing.comments import COMMENT_ID, FIELD_PATH, Comment
from .auth import current_actor, requires_roles
from .http import SlugPath, check_slug
from .schemas import Comment as CommentText
from .services import ServicesDep

# Everyone who takes part in a review; auditors read the thread.
WRITE_ROLES = ("editor", "reviewer", "chief", "publisher", "admin")
READ_ROLES = (*WRITE_ROLES, "auditor")


class CommentIn(Struct, forbid_unknown_fields=True):
    body: Annotated[CommentText, Meta(min_length=1)]
    field: Annotated[str, Meta(pattern=FIELD_PATH, description=(
        "The field it is about, as errors name fields: `tools[0].reviews[1].quote`"))] | None = None
    reply_to: Annotated[str, Meta(pattern=COMMENT_ID,
                                  description="The comment it answers")] | None = None


class CommentList(Struct, kw_only=True):
    items: list[Comment]
    open: int  # not yet resolved


class CommentsController(Controller):
    path = "/api/drafts/{slug:str}/comments"
    tags = ["drafts"]
    guards = [requires_roles]

    @get("/", sync_to_thread=True, opt={"roles": READ_ROLES},
         summary="The review thread of a draft, oldest first")
    def list_comments(self, services: ServicesDep, slug: SlugPath) -> CommentList:
        items = services.comments.thread(check_slug(slug))
        return CommentList(items=items, open=sum(c.resolved_by is None for c in items))

    @post("/", sync_to_thread=True, status_code=HTTP_201_CREATED, opt={"roles": WRITE_ROLES},
          summary="Comment on the draft's current revision (a commit; the revision stays)")
    def create_comment(self, services: ServicesDep, request: Request[Any, Any, Any],
                       slug: SlugPath, data: JSONBody[CommentIn]) -> Comment:
        return services.comments.add(check_slug(slug), current_actor(request), data.body,
                                     data.field, data.reply_to)

    @post("/{comment_id:str}/resolve", sync_to_thread=True, status_code=200,
          opt={"roles": WRITE_ROLES}, summary="Mark a comment resolved (a commit)")
    def resolve_comment(self, services: ServicesDep, request: Request[Any, Any, Any],
                        slug: SlugPath, comment_id: FromPath[str]) -> Comment:
        return services.comments.resolve(check_slug(slug), comment_id, current_actor(request))
