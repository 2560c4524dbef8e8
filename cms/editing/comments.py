"""Review threads kept in git: each comment, and each resolution, is a note on the comparison's
review branch (see ``review_branch``), merged into ``main`` with the revision it discussed.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from msgspec import Struct

from ..errors import Conflict, InvalidContent, NotFound
from ..identity.actors import Actor
from ..store.documents import Revision
from .pipeline import Change
from .review_branch import ReviewBranch

COMMENT_ID = r"^c_[0-9a-f]{12}\Z"
# A field of a comparison as error messages name it: `summary`, `tools[0].reviews[1].quote`.
FIELD_PATH = r"^[a-z_]{1,40}(?:\[[0-9]{1,3}\])?(?:\.[a-z_]{1,40}(?:\[[0-9]{1,3}\])?){0,4}\Z"
_ACTIONS = ("comment", "resolve")


class Comment(Struct, kw_only=True):
    id: str
    body: str
    author: str
    at: datetime
    revision: str  # the revision of the comparison it was written on
    commit: str
    field: str | None = None
    reply_to: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None


class Comments:
    def __init__(self, branch: ReviewBranch) -> None:
        self.branch = branch

    def add(self, slug: str, actor: Actor, body: str, field: str | None = None,
            reply_to: str | None = None) -> Comment:
        if not body.strip():
            raise InvalidContent("a comment needs some text", field="body")
        if field is not None and not re.match(FIELD_PATH, field):
            raise InvalidContent("name a field as errors do, e.g. `tools[0].reviews[1].quote`",
                                 field="field")
        comment_id = "c_" + secrets.token_hex(6)

        def plan() -> Change:
            draft = self.branch.draft(slug)
            if reply_to is not None and reply_to not in {c.id for c in self._read(draft)}:
                raise InvalidContent(f"no comment `{reply_to}` on this draft to reply to",
                                     field="reply_to")
            extra = [("Cms-Comment", comment_id), ("Cms-Revision", draft.revision)]
            extra += [("Cms-Field", field)] if field else []
            extra += [("Cms-Reply-To", reply_to)] if reply_to else []
            return self.branch.note(draft, actor, "comment", "Comment", body, tuple(extra))

        self.branch.pipeline.run(plan)
        return self._one(slug, comment_id)

    def resolve(self, slug: str, comment_id: str, actor: Actor) -> Comment:
        def plan() -> Change:
            draft = self.branch.draft(slug)
            found = next((c for c in self._read(draft) if c.id == comment_id), None)
            if found is None:
                raise NotFound(f"no comment `{comment_id}` on this draft", field="comment_id")
            if found.resolved_by is not None:
                raise Conflict(f"comment `{comment_id}` was resolved by {found.resolved_by}",
                               field="comment_id")
            return self.branch.note(draft, actor, "resolve", "Resolve", "",
                                    (("Cms-Comment", comment_id),))

        self.branch.pipeline.run(plan)
        return self._one(slug, comment_id)

    def thread(self, slug: str) -> list[Comment]:
        """The comments on the draft of ``slug``, oldest first, each with its resolution."""
        documents = self.branch.documents
        draft = documents.work_in_progress(slug)
        if draft is None:
            if documents.current(slug) is None:
                raise NotFound(f"no comparison with slug `{slug}`", field="slug")
            return []
        return self._read(draft)

    def _read(self, draft: Revision) -> list[Comment]:
        comments: dict[str, Comment] = {}
        for commit in self.branch.notes(draft, _ACTIONS):
            message = commit.message
            comment_id = message.first("Cms-Comment")
            if comment_id is None:
                continue
            who = f"{commit.author.name} <{commit.author.email}>"
            if message.first("Cms-Action") == "comment":
                comments[comment_id] = Comment(
                    id=comment_id, body=message.comment, author=who, at=commit.author.at,
                    revision=message.first("Cms-Revision") or "", commit=commit.oid,
                    field=message.first("Cms-Field"), reply_to=message.first("Cms-Reply-To"))
            elif comment_id in comments:
                comments[comment_id].resolved_by = who
                comments[comment_id].resolved_at = commit.author.at
        return list(comments.values())

    def _one(self, slug: str, comment_id: str) -> Comment:
        return next(c for c in self.thread(slug) if c.id == comment_id)
