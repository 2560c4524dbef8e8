"""Notes on a review branch: commits that record something about a draft — a comment, an
assignment — without changing it.

A note's commit has its parent's tree, so the revision an editor holds stays current; yet it is
in ``git log`` with its author and time, and reaches ``main`` with the revision when that is
published. What the API adds is a trailer of validated form; typed text only ever goes in the
body, where git reads no trailers.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import Conflict, NotFound
from ..identity.actors import Actor
from ..store.documents import REMOVALS, Documents, Revision
from ..store.messages import subject_line
from ..store.repository import Commit
from .pipeline import Change, CommitPipeline, RefMove


class ReviewBranch:
    def __init__(self, documents: Documents, pipeline: CommitPipeline) -> None:
        self.documents = documents
        self.pipeline = pipeline

    def draft(self, slug: str) -> Revision:
        """The work in progress of ``slug``: a 404 when there is no such comparison, a 409
        when it has no draft under review."""
        documents = self.documents
        draft = documents.work_in_progress(slug)
        if draft is None:
            if documents.current(slug) is None:
                raise NotFound(f"no comparison with slug `{slug}`", field="slug")
            raise Conflict(f"`{slug}` has no draft under review: this belongs to a revision "
                           "being worked on", field="slug")
        # A branch that holds a takedown (its head removes the file) is no revision under
        # review; nor is one that main merged already (a publish a crash cut short).
        if documents.repo.read_commit(draft.commit).message.first("Cms-Action") in REMOVALS \
                or documents.merged(draft, documents.main_head()):
            raise Conflict(f"`{slug}` has no draft under review: edit it to start one",
                           field="slug")
        return draft

    def note(self, draft: Revision, actor: Actor, action: str, verb: str, body: str,
             extra: tuple[tuple[str, str], ...]) -> Change:
        head = self.documents.repo.read_commit(draft.commit)
        return Change(
            action=action, subject=subject_line(verb, draft.comparison.title), comment=body,
            slugs=(draft.comparison.slug,), state=draft.comparison.workflow.state,
            author=actor.as_person, parents=(draft.commit,), base_tree=head.tree, files={},
            moves=(RefMove(ref=draft.ref, expected=draft.commit),), extra_trailers=extra,
        )

    def notes(self, draft: Revision, actions: tuple[str, ...]) -> Iterator[Commit]:
        """The branch's commits of these actions since it left ``main``, oldest first."""
        repo = self.documents.repo
        listed = repo.git("rev-list", "--first-parent", "--reverse", draft.commit,
                          f"^{self.documents.layout.main_ref}").split()
        for oid in listed:
            commit = repo.read_commit(oid)
            if commit.message.first("Cms-Action") in actions:
                yield commit
