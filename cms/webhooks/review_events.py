"""Review notifications: what a team wires to chat.

Each step of a review is a commit on the comparison's review branch (a takedown's schedule is one
on main); the step's kind decides its event: an assignment or a submission into review asks for a
review, an approval reports one, a reviewer's step that voids approvals asks for changes; a
comment and a schedule have events of their own. They are recorded from this process's own
commits as they happen and, when a server starts, from git for whatever was committed but not
recorded (by a server that died in between), by time since the last look: an event's id is made
from its commit, so one recorded twice is stored once.
"""

from __future__ import annotations

import time

from msgspec import Struct

from ..editing.events import SCHEDULE, Committed, from_commit
from ..editing.workflows import Workflows
from ..store.documents import Documents
from ..store.layout import BRANCH_PREFIX, DISCARDED_PREFIX, RELEASES_PREFIX

REVIEW_REQUESTED = "review.requested"
REVIEW_APPROVED = "review.approved"
CHANGES_REQUESTED = "review.changes_requested"
COMMENT_CREATED = "comment.created"
SCHEDULED = "comparison.scheduled"
REVIEW_TYPES = (REVIEW_REQUESTED, REVIEW_APPROVED, CHANGES_REQUESTED, COMMENT_CREATED, SCHEDULED)
REVIEW_CURSOR = "reviews"
# Commits dated up to this long before the last look are read again at the next: a commit's time
# is its writer's clock, in whole seconds, and a writer may commit while the look runs.
_OVERLAP_SECONDS = 300


class CommentNote(Struct, kw_only=True, omit_defaults=True):
    id: str
    body: str
    field: str | None = None
    reply_to: str | None = None


class ScheduleNote(Struct, kw_only=True):
    action: str
    at: str


def review_kinds(workflows: Workflows) -> dict[str, str]:
    """The event each action of the review makes, over every workflow."""
    kinds = {"assign": REVIEW_REQUESTED, "comment": COMMENT_CREATED, SCHEDULE: SCHEDULED}
    for workflow in workflows.by_name.values():
        reviewed = {state for transition in workflow.transitions.values() if transition.approval
                    for state in transition.from_states}
        for name, transition in workflow.transitions.items():
            if transition.approval:
                kinds.setdefault(name, REVIEW_APPROVED)
            elif transition.clears_approvals and "editor" not in transition.roles:
                kinds.setdefault(name, CHANGES_REQUESTED)
            elif transition.to in reviewed:
                kinds.setdefault(name, REVIEW_REQUESTED)
    return kinds


def unrecorded(documents: Documents, since: int) -> list[Committed]:
    """Commits of review branches (live, published or discarded) and of releases dated after
    ``since`` less the overlap, oldest first."""
    repo = documents.repo
    listed = repo.git("rev-list", "--reverse", f"--since={since - _OVERLAP_SECONDS}",
                      f"--glob={BRANCH_PREFIX}*", f"--glob={DISCARDED_PREFIX}*",
                      f"--glob={RELEASES_PREFIX}*",
                      documents.layout.main_ref).split()
    return [from_commit(repo.read_commit(oid), on_main=False) for oid in listed]


def now_seconds() -> int:
    return int(time.time())
