"""Review threads kept in git: each comment is a commit on the comparison's review branch.

A comment changes nothing in the comparison (the commit's tree is its parent's), so the revision
an editor read stays current and no write of theirs is refused for it; yet the conversation is in
``git log``, merged into ``main`` with the revision it discussed. The text is the commit's body,
where nothing typed can become a trailer; what the API adds (the comment's id, the field, the
comment it answers, the revision it was written on) is a trailer of validated form.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from msgspec import Struct

from ..errors import Conflict, InvalidContent, NotFound
from ..identity.actors import Actor
from ..store.documents import Documents, Revision
from ..store.messages import subject_line
from .pipeline import Change, CommitPipeline, RefMove

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
    def __init__(self, documents: Documents, pipeline: CommitPipeline) -> None:
        self.documents = documents
        self.pipeline = pipeline

    def add(self, slug: str, actor: Actor, body: str, field: str | None = None,
            reply_to: str | None = None) -> Comment:
        if not body.strip():
            raise InvalidContent("a comment needs some text", field="body")
        if field is not None and not re.match(FIELD_PATH, field):
            raise InvalidContent("name a field as errors do, e.g. `tools[0].reviews[1].quote`",
                                 field="field")
        comment_id = "c_" + secrets.token_hex(6)

        def plan() -> Change:
            draft = self._draft(slug)
            if reply_to is not None and reply_to not in {c.id for c in self._read(draft)}:
                raise InvalidContent(f"no comment `{reply_to}` on this draft to reply to",
                                     field="reply_to")
            extra = [("Cms-Comment", comment_id), ("Cms-Revision", draft.revision)]
            extra += [("Cms-Field", field)] if field else []
            extra += [("Cms-Reply-To", reply_to)] if reply_to else []
            return self._note(draft, actor, "comment", "Comment", body, tuple(extra))

        self.pipeline.run(plan)
        return self._one(slug, comment_id)

    def resolve(self, slug: str, comment_id: str, actor: Actor) -> Comment:
        def plan() -> Change:
            draft = self._draft(slug)
            found = next((c for c in self._read(draft) if c.id == comment_id), None)
            if found is None:
                raise NotFound(f"no comment `{comment_id}` on this draft", field="comment_id")
            if found.resolved_by is not None:
                raise Conflict(f"comment `{comment_id}` was resolved by {found.resolved_by}",
                               field="comment_id")
            return self._note(draft, actor, "resolve", "Resolve", "",
                              (("Cms-Comment", comment_id),))

        self.pipeline.run(plan)
        return self._one(slug, comment_id)

    def thread(self, slug: str) -> list[Comment]:
        """The comments on the draft of ``slug``, oldest first, each with its resolution."""
        draft = self.documents.work_in_progress(slug)
        if draft is None:
            if self.documents.current(slug) is None:
                raise NotFound(f"no comparison with slug `{slug}`", field="slug")
            return []
        return self._read(draft)

    # Reading and writing

    def _draft(self, slug: str) -> Revision:
        draft = self.documents.work_in_progress(slug)
        if draft is None:
            if self.documents.current(slug) is None:
                raise NotFound(f"no comparison with slug `{slug}`", field="slug")
            raise Conflict(f"`{slug}` has no draft under review: comments belong to a revision "
                           "being worked on", field="slug")
        return draft

    def _note(self, draft: Revision, actor: Actor, action: str, verb: str, body: str,
              extra: tuple[tuple[str, str], ...]) -> Change:
        head = self.documents.repo.read_commit(draft.commit)
        return Change(
            action=action, subject=subject_line(verb, draft.comparison.title), comment=body,
            slugs=(draft.comparison.slug,), state=draft.comparison.workflow.state,
            author=actor.as_person, parents=(draft.commit,), base_tree=head.tree, files={},
            moves=(RefMove(ref=draft.ref, expected=draft.commit),), extra_trailers=extra,
        )

    def _read(self, draft: Revision) -> list[Comment]:
        repo = self.documents.repo
        listed = repo.git("rev-list", "--first-parent", "--reverse", draft.commit,
                          f"^{self.documents.layout.main_ref}").split()
        comments: dict[str, Comment] = {}
        for oid in listed:
            commit = repo.read_commit(oid)
            message = commit.message
            action = message.first("Cms-Action")
            comment_id = message.first("Cms-Comment")
            if action not in _ACTIONS or comment_id is None:
                continue
            who = f"{commit.author.name} <{commit.author.email}>"
            if action == "comment":
                comments[comment_id] = Comment(
                    id=comment_id, body=message.comment, author=who, at=commit.author.at,
                    revision=message.first("Cms-Revision") or "", commit=oid,
                    field=message.first("Cms-Field"), reply_to=message.first("Cms-Reply-To"))
            elif comment_id in comments:
                comments[comment_id].resolved_by = who
                comments[comment_id].resolved_at = commit.author.at
        return list(comments.values())

    def _one(self, slug: str, comment_id: str) -> Comment:
        return next(c for c in self.thread(slug) if c.id == comment_id)
