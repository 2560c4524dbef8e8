"""Routes for the review of a draft: its thread of comments, who is asked to review it, and what
awaits each person. Every change is a commit on the review branch."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post, put
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED
from msgspec import Meta, Struct

from ..editing.assignments import Assignment, Awaiting
from ..editing.comments import COMMENT_ID, FIELD_PATH, Comment
from ..identity.visible import EMAIL_PATTERN
from .auth import current_actor, requires_roles
from .http import check_slug
from .params import ServicesDep, SlugPath
from .schemas import Comment as CommentText

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


class AssigneesIn(Struct, forbid_unknown_fields=True):
    reviewers: Annotated[list[Annotated[str, Meta(max_length=254, pattern=EMAIL_PATTERN)]],
                         Meta(max_length=20, description="Addresses of people with a token")]


class AssignmentController(Controller):
    path = "/api/drafts/{slug:str}/assignees"
    tags = ["drafts"]
    guards = [requires_roles]

    @put("/", sync_to_thread=True, opt={"roles": ("editor", "reviewer", "chief", "admin")},
         summary="Ask these people to review the draft (a commit; the latest assignment stands)")
    def assign_reviewers(self, services: ServicesDep, request: Request[Any, Any, Any],
                         slug: SlugPath, data: JSONBody[AssigneesIn]) -> Assignment:
        known = {record.email.lower() for record in services.tokens.all()
                 if record.revoked_at is None}
        return services.assignments.assign(check_slug(slug), current_actor(request),
                                           data.reviewers, known)

    @get("/", sync_to_thread=True, opt={"roles": READ_ROLES},
         summary="Who is asked to review the draft")
    def read_assignees(self, services: ServicesDep, slug: SlugPath) -> Assignment:
        return services.assignments.of(services.assignments.branch.draft(check_slug(slug)))


@get("/api/me/reviews", sync_to_thread=True, guards=[requires_roles], tags=["drafts"],
     opt={"roles": READ_ROLES}, summary="What awaits the caller: drafts assigned to them, or "
                                        "open to their role now")
def my_reviews(services: ServicesDep, request: Request[Any, Any, Any]) -> list[Awaiting]:
    return services.assignments.awaiting(current_actor(request))
