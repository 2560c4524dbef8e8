"""The review workflow: a definition loaded from TOML and a pure state machine over it.

``decide`` takes a workflow, a document's workflow record, an action and an actor, and returns the
record after the action or raises. It does no I/O, so it can be tested over every state, action and
set of roles.
"""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path

import msgspec
from msgspec import Struct

from ..content.model import WorkflowRecord
from ..errors import Conflict, Forbidden, InvalidContent, TransitionNotAllowed
from ..identity.actors import Actor

DOCUMENT_ACTIONS = ("create", "edit", "discard")


class StateDef(Struct, forbid_unknown_fields=True):
    label: str
    editable: bool = False
    on_edit: str | None = None
    public: bool = False


class ActionDef(Struct, forbid_unknown_fields=True, rename={"from_states": "from"}):
    roles: list[str]
    from_states: list[str] | None = None


class TransitionDef(Struct, forbid_unknown_fields=True, rename={"from_states": "from"}):
    label: str
    from_states: list[str]
    to: str
    roles: list[str]
    clears_approvals: bool = False
    approval: bool = False
    # At an approval: how many distinct people approve at this stage (else approvals_required).
    # Approval transitions are stages in the order they are written; the author never counts.
    approvals: int | None = None


class Workflow(Struct, forbid_unknown_fields=True):
    name: str
    initial_state: str
    states: dict[str, StateDef]
    transitions: dict[str, TransitionDef]
    actions: dict[str, ActionDef]
    approvals_required: int = 1
    allow_self_approval: bool = False
    superuser_roles: list[str] = msgspec.field(default_factory=lambda: ["admin"])

    @property
    def action_names(self) -> list[str]:
        return [*DOCUMENT_ACTIONS, *self.transitions]

    def approvals_through(self, action: str) -> int:
        """The approvals a revision holds once the stage of approval ``action`` is complete:
        its own and those of every stage before it."""
        total = 0
        for name, transition in self.transitions.items():
            if transition.approval:
                total += transition.approvals or self.approvals_required
            if name == action:
                break
        return total

    @property
    def approvals_to_publish(self) -> int:
        """Every stage's approvals: what a publication carries."""
        stages = [name for name, t in self.transitions.items() if t.approval]
        return self.approvals_through(stages[-1]) if stages else 0

    def at_rest(self, state: str) -> bool:
        """Whether content in ``state`` is not work in progress (published, or taken down):
        an edit there starts a new revision, by new authors."""
        known = self.states.get(state)
        if known is None:
            return False  # a state these rules do not have: nothing to say it is at rest
        if known.public:
            return True
        return any(t.to == state and all(self.states[s].public for s in t.from_states)
                   for t in self.transitions.values())


def load_workflow(path: Path) -> Workflow:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise InvalidContent(f"workflow {path.name}: {exc.strerror}", field="workflow") from exc
    return parse_workflow(text, path.name)


def parse_workflow(text: bytes, source: str) -> Workflow:
    """A definition from its file's text; errors name ``source``, the key and the reason."""
    try:
        data = tomllib.loads(text.decode("utf-8"))
        workflow = msgspec.convert(data, Workflow)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise InvalidContent(f"workflow {source}: {exc}", field="workflow") from exc
    _check_references(workflow, source)
    return workflow


def _check_references(workflow: Workflow, source: str) -> None:
    from .workflow_checks import problems_of  # the checks import this module's definitions

    problems = problems_of(workflow)
    if problems:
        raise InvalidContent(f"workflow {source}: " + "; ".join(problems), field="workflow")


def permitted_roles(workflow: Workflow, action: str) -> set[str]:
    spec = workflow.transitions.get(action) or workflow.actions.get(action)
    roles = set(spec.roles) if spec else set()
    return roles | set(workflow.superuser_roles)


def available_transitions(workflow: Workflow, state: str) -> list[str]:
    return [name for name, t in workflow.transitions.items() if state in t.from_states]


def allowed_actions(workflow: Workflow, record: WorkflowRecord, actor: Actor) -> list[str]:
    """What this actor could do next; the API shows it so clients need not guess."""
    allowed = []
    for action in workflow.action_names:
        if action == "create":
            continue
        try:
            decide(workflow, record, action, actor, at=None)
        except (Forbidden, Conflict):
            continue
        allowed.append(action)
    return allowed


def decide(
    workflow: Workflow,
    record: WorkflowRecord | None,
    action: str,
    actor: Actor,
    *,
    at: datetime | None,
) -> WorkflowRecord:
    """The record after ``actor`` takes ``action``; ``record`` is None for a new document."""
    if action not in workflow.action_names:
        known = ", ".join(workflow.action_names)
        raise InvalidContent(f"unknown action `{action}`; known actions: {known}", field="action")
    if not actor.has_any(permitted_roles(workflow, action)):
        needed = " or ".join(sorted(permitted_roles(workflow, action)))
        raise Forbidden(f"`{action}` needs the {needed} role", field="action")
    if action == "create":
        if record is not None:
            raise Conflict("the comparison already exists", field="slug")
        return WorkflowRecord(name=workflow.name, state=workflow.initial_state,
                              authors=[actor.person])
    if record is None:
        raise Conflict(f"cannot {action} a comparison that does not exist", field="slug")
    state = record.state
    if action == "edit":
        return _edit(workflow, record, actor)
    if action == "discard":
        allowed_from = workflow.actions["discard"].from_states
        if allowed_from is not None and state not in allowed_from:
            raise _not_allowed(workflow, record, action)
        return msgspec.structs.replace(record, state="discarded")
    transition = workflow.transitions[action]
    if state not in transition.from_states:
        raise _not_allowed(workflow, record, action)
    approved_by = list(record.approved_by)
    to = transition.to
    if transition.approval:
        if not workflow.allow_self_approval and _same_person(actor.person, record.authors):
            raise Forbidden(
                "authors may not approve their own work: you edited this revision",
                field="action",
                rule="self_approval",
            )
        if _same_person(actor.person, approved_by):
            raise Conflict("you have already approved this revision", field="action")
        approved_by.append(actor.person)
        if len(approved_by) < workflow.approvals_through(action):
            to = state
    if transition.clears_approvals:
        approved_by = []
    if workflow.states[to].public and not workflow.states[state].public \
            and not workflow.at_rest(state):
        required = workflow.approvals_to_publish
        if len({address_of(person) for person in approved_by}) < required:
            raise Conflict(f"`{action}` needs {required} approval(s) of this revision by different "
                           f"people; it has {len(approved_by)}", field="action",
                           rule="approvals_required")
    published_at = record.published_at
    if workflow.states[to].public and at is not None:
        published_at = at
    return WorkflowRecord(
        name=record.name, state=to, authors=list(record.authors), approved_by=approved_by,
        published_at=published_at,
    )


def _edit(workflow: Workflow, record: WorkflowRecord, actor: Actor) -> WorkflowRecord:
    state = workflow.states.get(record.state)
    if state is None or not state.editable:
        raise _not_allowed(workflow, record, "edit")
    if state.on_edit is not None and workflow.at_rest(record.state):
        return WorkflowRecord(name=record.name, state=state.on_edit, authors=[actor.person])
    authors = list(record.authors)
    if not _same_person(actor.person, authors):
        authors.append(actor.person)
    # Approvals were given to the content as it was: an edit voids them, and review starts again.
    return WorkflowRecord(name=record.name, state=state.on_edit or record.state,
                          authors=authors, approved_by=[])


def address_of(person: str) -> str:
    """The address in ``Name <address>``, lower-cased: one person, whatever name a token gives."""
    return person.rsplit("<", 1)[-1].rstrip(">").strip().lower()


def _same_person(person: str, people: list[str]) -> bool:
    return address_of(person) in {address_of(other) for other in people}


def _not_allowed(workflow: Workflow, record: WorkflowRecord, action: str) -> TransitionNotAllowed:
    possible = available_transitions(workflow, record.state)
    discard_from = workflow.actions["discard"].from_states
    if discard_from is None or record.state in discard_from:
        possible.insert(0, "discard")
    state = workflow.states.get(record.state)
    if state is not None and state.editable:
        possible.insert(0, "edit")
    listed = ", ".join(possible) or "none"
    return TransitionNotAllowed(
        f"cannot {action} a comparison that is {record.state}; allowed from {record.state}: {listed}",
        field="action",
        state=record.state,
        allowed=possible,
    )
