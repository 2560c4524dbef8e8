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
from ..identity.actors import ROLES, Actor

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


def load_workflow(path: Path) -> Workflow:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        workflow = msgspec.convert(data, Workflow)
    except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise InvalidContent(f"workflow {path.name}: {exc}", field="workflow") from exc
    _check_references(workflow, path.name)
    return workflow


def _check_references(workflow: Workflow, source: str) -> None:
    problems: list[str] = []
    states = workflow.states
    if workflow.initial_state not in states:
        problems.append(f"initial_state `{workflow.initial_state}` is not a state")
    for name in DOCUMENT_ACTIONS:
        if name not in workflow.actions:
            problems.append(f"action `{name}` is not defined")
    for name, state in states.items():
        if state.on_edit is not None and state.on_edit not in states:
            problems.append(f"state `{name}` edits into unknown state `{state.on_edit}`")
    everything: list[tuple[str, list[str], list[str]]] = [
        (name, t.roles, [*t.from_states, t.to]) for name, t in workflow.transitions.items()
    ]
    everything += [(name, a.roles, a.from_states or []) for name, a in workflow.actions.items()]
    for name, roles, used_states in everything:
        problems += [f"`{name}` names unknown role `{r}`" for r in roles if r not in ROLES]
        problems += [f"`{name}` names unknown state `{s}`" for s in used_states if s not in states]
    problems += [f"superuser_roles names unknown role `{r}`"
                 for r in workflow.superuser_roles if r not in ROLES]
    clashing = sorted(set(workflow.transitions) & set(DOCUMENT_ACTIONS))
    problems += [f"transition `{name}` reuses the name of a document action" for name in clashing]
    if workflow.approvals_required < 1:
        problems.append("approvals_required must be at least 1")
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
        return WorkflowRecord(state=workflow.initial_state, authors=[actor.person])
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
        if not workflow.allow_self_approval and actor.person in record.authors:
            raise Forbidden(
                "authors may not approve their own work: you edited this revision",
                field="action",
                rule="self_approval",
            )
        if actor.person in approved_by:
            raise Conflict("you have already approved this revision", field="action")
        approved_by.append(actor.person)
        if len(approved_by) < workflow.approvals_required:
            to = state
    if transition.clears_approvals:
        approved_by = []
    published_at = record.published_at
    if workflow.states[to].public and at is not None:
        published_at = at
    return WorkflowRecord(
        state=to, authors=list(record.authors), approved_by=approved_by, published_at=published_at
    )


def _edit(workflow: Workflow, record: WorkflowRecord, actor: Actor) -> WorkflowRecord:
    state = workflow.states.get(record.state)
    if state is None or not state.editable:
        raise _not_allowed(workflow, record, "edit")
    if state.on_edit is not None:
        return WorkflowRecord(state=state.on_edit, authors=[actor.person])
    authors = list(record.authors)
    if actor.person not in authors:
        authors.append(actor.person)
    return WorkflowRecord(state=record.state, authors=authors, approved_by=[])


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
