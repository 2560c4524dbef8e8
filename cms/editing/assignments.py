"""Who is asked to review a draft, and what awaits each person.

An assignment is a note on the review branch (``Cms-Action: assign``, one ``Cms-Assignee`` trailer
per reviewer): the latest one stands. What awaits a person is every draft assigned to them, and
every draft on which their roles allow a step of the review (not an editor's own steps) now.
"""

from __future__ import annotations

from datetime import datetime

from msgspec import Struct

from ..errors import InvalidContent
from ..identity.actors import Actor
from ..store.documents import Revision
from .pipeline import Change
from .review_branch import ReviewBranch
from .workflow import allowed_actions
from .workflows import Workflows

MAX_REVIEWERS = 20


class Assignment(Struct, kw_only=True):
    reviewers: list[str]  # addresses
    by: str | None = None
    at: datetime | None = None


class Awaiting(Struct, kw_only=True):
    slug: str
    title: str
    state: str
    workflow: str
    revision: str
    assigned: bool  # to the caller; else open to their role
    actions: list[str]  # the review steps they may take now


class Assignments:
    def __init__(self, branch: ReviewBranch, workflows: Workflows) -> None:
        self.branch = branch
        self.workflows = workflows

    def assign(self, slug: str, actor: Actor, reviewers: list[str],
               known: set[str]) -> Assignment:
        """Ask ``reviewers`` (addresses of people with a token, ``known``) to review."""
        wanted = list(dict.fromkeys(address.strip().lower() for address in reviewers))
        if len(wanted) > MAX_REVIEWERS:
            raise InvalidContent(f"at most {MAX_REVIEWERS} reviewers", field="reviewers")
        unknown = [address for address in wanted if address not in known]
        if unknown:
            raise InvalidContent(f"nobody with an active token has the address "
                                 f"{unknown[0]}", field="reviewers")

        def plan() -> Change | None:
            draft = self.branch.draft(slug)
            if self.of(draft).reviewers == wanted:
                return None  # asked already: the same request again writes nothing
            note = ", ".join(wanted) if wanted else "nobody"
            return self.branch.note(draft, actor, "assign", "Assign",
                                    f"Review asked of: {note}.",
                                    tuple(("Cms-Assignee", address) for address in wanted))

        self.branch.pipeline.run(plan)
        return self.of(self.branch.draft(slug))

    def of(self, draft: Revision) -> Assignment:
        latest = None
        for commit in self.branch.notes(draft, ("assign",)):
            latest = commit
        if latest is None:
            return Assignment(reviewers=[])
        return Assignment(reviewers=latest.message.values("Cms-Assignee"),
                          by=f"{latest.author.name} <{latest.author.email}>",
                          at=latest.author.at)

    def awaiting(self, actor: Actor) -> list[Awaiting]:
        found: list[Awaiting] = []
        for draft in self.branch.documents.drafts():
            record = draft.comparison.workflow
            workflow = self.workflows.of(record)
            if workflow.at_rest(record.state):
                continue  # taken down, not under review
            steps = [action for action in allowed_actions(workflow, record, actor)
                     if action in workflow.transitions
                     and "editor" not in workflow.transitions[action].roles]
            assigned = actor.email.lower() in self.of(draft).reviewers
            if assigned or steps:
                found.append(Awaiting(
                    slug=draft.comparison.slug, title=draft.comparison.title,
                    state=record.state, workflow=workflow.name, revision=draft.revision,
                    assigned=assigned, actions=steps))
        return sorted(found, key=lambda item: (not item.assigned, item.slug))
