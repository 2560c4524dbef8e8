"""The one write path: every change to the content repository is a commit made here.

A command hands the pipeline a *plan*: a function that reads what it needs, checks its
precondition (the revision the client read, the workflow's rules) and describes one commit and the
refs to move. Under the write lock the pipeline runs the plan, writes the commit's objects as one
pack, moves the refs by compare-and-swap and emits one event. When a compare-and-swap fails
(another process moved a ref meanwhile), the refs already moved are put back and the plan runs
again on what is there now, so its precondition is checked afresh before any retry; when it no
longer holds, the plan raises and nothing is written.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from msgspec import Struct

from ..errors import StoreError
from ..identity.actors import Person
from ..store.layout import Layout
from ..store.messages import format_message
from ..store.refs import RefConflict
from ..store.repository import Repository, Signature
from .events import Committed, Listeners, now

log = logging.getLogger("cms")

RETRIES = 8
COMMIT = "{commit}"  # in a ref name, stands for the id of the commit being written


class RefMove(Struct, frozen=True, kw_only=True):
    """Point ``ref`` at the new commit (or delete it), provided it is still at ``expected``."""

    ref: str
    expected: str | None
    delete: bool = False
    # A move that may fail without undoing the write: dropping a branch that was just merged.
    required: bool = True


class Change(Struct, frozen=True, kw_only=True):
    action: str
    subject: str
    comment: str = ""
    slugs: tuple[str, ...]
    state: str
    author: Person
    approvers: tuple[str, ...] = ()
    votes_through: int | None = None
    parents: tuple[str, ...]
    base_tree: str | None
    files: dict[str, bytes | None]
    moves: tuple[RefMove, ...]


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
            for _ in range(RETRIES):
                change = plan()
                if change is None:
                    return None
                at = now()
                commit = self.repo.commit(
                    parents=list(change.parents), base_tree=change.base_tree,
                    changes=change.files,
                    author=Signature(name=change.author.name, email=change.author.email, at=at),
                    committer=Signature(name=self.committer.name, email=self.committer.email,
                                        at=at),
                    message=message(change),
                )
                moved = self._move(change.moves, commit)
                if moved is None:
                    continue
                event = Committed(
                    action=change.action, slugs=change.slugs, state=change.state, commit=commit,
                    previous=change.parents[0] if change.parents else None,
                    main_moved=self.layout.main_ref in moved, actor=change.author,
                    approvers=change.approvers, at=at, votes_through=change.votes_through,
                )
                self.listeners.emit(event)
                return event
        raise StoreError("the content repository kept changing during the write; try again")

    def _move(self, moves: tuple[RefMove, ...], commit: str) -> list[str] | None:
        """Apply the moves in order; the refs that now point at ``commit``, or None (and every
        move undone) when a required one found its ref elsewhere."""
        done: list[RefMove] = []
        for move in moves:
            ref = move.ref.replace(COMMIT, commit)
            try:
                if move.delete:
                    assert move.expected is not None
                    self.repo.refs.delete(ref, move.expected)
                else:
                    self.repo.refs.update(ref, commit, move.expected)
            except RefConflict:
                if not move.required:
                    continue  # e.g. someone wrote to a branch just merged: their work stays
                for earlier in reversed(done):
                    self._undo(earlier, commit)
                return None
            done.append(move)
        return [move.ref.replace(COMMIT, commit) for move in done if not move.delete]

    def _undo(self, move: RefMove, commit: str) -> None:
        ref = move.ref.replace(COMMIT, commit)
        with contextlib.suppress(RefConflict):
            if move.delete:
                assert move.expected is not None
                self.repo.refs.update(ref, move.expected, None)
            elif move.expected is None:
                self.repo.refs.delete(ref, commit)
            else:
                self.repo.refs.update(ref, move.expected, commit)


def message(change: Change) -> str:
    """A subject for people, the comment as the body, trailers for machines."""
    trailers = [("Cms-Action", change.action), ("Cms-State", change.state)]
    trailers += [("Cms-Document", Layout.document(slug)) for slug in change.slugs]
    trailers += [("Approved-by", person) for person in change.approvers]
    if change.votes_through is not None:
        trailers.append(("Cms-Votes-Through", str(change.votes_through)))
    return format_message(change.subject, change.comment, trailers)
