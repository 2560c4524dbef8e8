"""The one write path: every change to the content repository is a commit made here.

A command hands the pipeline a *plan*: a function that reads what it needs, checks its
precondition (the revision the client read, the workflow's rules) and describes one commit and the
refs to move. Under the write lock the pipeline runs the plan, writes the commit's objects as one
pack, moves the refs by compare-and-swap (all of them locked and checked before the first one
moves) and emits one event. When a compare-and-swap fails (another process moved a ref
meanwhile), nothing has moved: the plan runs again on what is there now, so its precondition is
checked afresh before any retry; when it no longer holds, the plan raises and nothing is written.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from msgspec import Struct

from ..errors import CmsError, StoreError
from ..identity.actors import Person
from ..store.layout import Layout
from ..store.messages import format_message, parse_message
from ..store.refs import Move, RefConflict
from ..store.repository import Repository, Signature
from .events import Committed, Listeners, now, trailers

log = logging.getLogger("cms")

RETRIES = 8
# Refusals that a clone behind the upstream may give wrongly: not found, conflict, stale.
_STALE_REFUSALS = (404, 409, 412)
NEW_COMMIT = "{commit}"  # in a ref name, stands for the id of the commit being written


class RefMove(Struct, frozen=True, kw_only=True):
    """Point ``ref`` at the new commit (or delete it), provided it is still at ``expected``.
    The moves of one change are made together or not at all, in the order given."""

    ref: str
    expected: str | None
    delete: bool = False
    # Only check that ``ref`` is still at ``expected`` (locked with the others), and leave it.
    verify: bool = False


class Change(Struct, frozen=True, kw_only=True):
    action: str
    subject: str
    comment: str = ""
    slugs: tuple[str, ...]
    state: str
    author: Person
    approvers: tuple[str, ...] = ()
    votes_through: int | None = None
    votes_ledger: str | None = None
    parents: tuple[str, ...]
    base_tree: str | None
    files: dict[str, bytes | None]
    moves: tuple[RefMove, ...]
    # Trailers of the change's own, after the standard ones (a comment's id, say): their values
    # are made by the CMS, of validated form, never typed text.
    extra_trailers: tuple[tuple[str, str], ...] = ()
    # The commit is dated at least a second after this: a new branch after a discard must not
    # be the very commit that was discarded (same parent, content, author and second), which
    # recovery would take for the discard's branch still to be dropped.
    after: datetime | None = None


Plan = Callable[[], Change | None]


class CommitPipeline:
    def __init__(self, repo: Repository, layout: Layout, committer: Person,
                 listeners: Listeners) -> None:
        self.repo = repo
        self.layout = layout
        self.committer = committer
        self.listeners = listeners
        self._lock = threading.Lock()

    def run(self, plan: Plan) -> Committed | None:
        """Commit what ``plan`` describes; None when the plan found nothing to write."""
        with self._lock:
            fetched = False
            for _ in range(RETRIES):
                try:
                    change = plan()
                except CmsError as exc:
                    # Refused on what this clone holds, which may be behind the upstream (the
                    # client read another instance's write): checked again on what is there.
                    if exc.status in _STALE_REFUSALS and not fetched and self.caught_up():
                        fetched = True
                        continue
                    raise
                if change is None:
                    return None
                at = now()
                if change.after is not None and at <= change.after:
                    at = change.after + timedelta(seconds=1)
                commit, pack = self.repo.write_commit(
                    parents=list(change.parents), base_tree=change.base_tree,
                    changes=change.files,
                    author=Signature(name=change.author.name, email=change.author.email, at=at),
                    committer=Signature(name=self.committer.name, email=self.committer.email,
                                        at=at),
                    message=message(change),
                )
                moved = self._move(change.moves, commit, pack)
                if moved is None:
                    continue
                event = Committed(
                    action=change.action, slugs=change.slugs, state=change.state, commit=commit,
                    previous=change.parents[0] if change.parents else None,
                    main_moved=self.layout.main_ref in moved, actor=change.author,
                    approvers=change.approvers, at=at, votes_through=change.votes_through,
                    votes_ledger=change.votes_ledger, note=kept_comment(change.comment),
                    extra=change.extra_trailers,
                )
                self.listeners.emit(event)
                return event
        raise StoreError("the content repository kept changing during the write; try again")

    def caught_up(self) -> bool:
        """Whether a fetch from the upstream (if there is one) brought anything new: what a
        refusal found on this clone, which may be behind, is then looked at again."""
        if self.repo.upstream is None:
            return False
        before = self.repo.local_refs()
        try:
            self.repo.fetch()
        except CmsError:
            return False  # the refusal stands as it was found
        return self.repo.local_refs() != before

    def _move(self, moves: tuple[RefMove, ...], commit: str, pack: bytes) -> list[str] | None:
        """Move every ref at once (on the upstream first, if there is one); the refs now
        pointing at ``commit``, or None (and nothing moved) when one of them is not where the
        plan read it."""
        try:
            self.repo.move([
                Move(move.ref.replace(NEW_COMMIT, commit),
                     move.expected if move.verify else None if move.delete else commit,
                     move.expected)
                for move in moves], pack)
        except RefConflict:
            return None
        return [move.ref.replace(NEW_COMMIT, commit) for move in moves
                if not move.delete and not move.verify]


def kept_comment(comment: str) -> str:
    """A comment as the commit keeps it, and as it is read back from git."""
    # With a trailer after it, as every CMS commit has: a last paragraph of the comment that
    # looks like trailers is still the comment.
    return parse_message(format_message("-", comment, [("Cms-Action", "-")])).comment


def message(change: Change) -> str:
    """A subject for people, the comment as the body, trailers for machines."""
    return format_message(change.subject, change.comment, [*trailers(
        action=change.action, state=change.state, slugs=change.slugs,
        approvers=change.approvers, votes_through=change.votes_through,
        votes_ledger=change.votes_ledger), *change.extra_trailers])
