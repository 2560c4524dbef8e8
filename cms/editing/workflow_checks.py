"""What makes a workflow definition one the engine can run: every name it uses defined, every
state reachable, and no way to public content that passes no approval.

Each problem names the key in the file (``transitions.approve.roles``) and why, so that
``cms workflows check`` and a server refusing to start say exactly what to change.
"""

from __future__ import annotations

from collections import deque

from ..identity.actors import ROLES
from .workflow import DOCUMENT_ACTIONS, Workflow

# The Cms-Action of commits that are no transition: a transition of the same name would be read
# back (history, webhooks, threads) as one of these.
RESERVED_ACTIONS = (*DOCUMENT_ACTIONS, "revert", "seed", "votes", "comment", "resolve", "assign",
                    "schedule", "cancel_schedule", "release")


def problems_of(workflow: Workflow) -> list[str]:
    problems = _names(workflow)
    if problems:
        return problems  # the graph checks below assume every name resolves
    return _approvals(workflow) + _reachable(workflow) + _every_stage_before_public(workflow)


def _names(workflow: Workflow) -> list[str]:
    problems: list[str] = []
    states = workflow.states
    if workflow.initial_state not in states:
        problems.append(f"initial_state: `{workflow.initial_state}` is not a state")
    problems += [f"actions.{name}: missing; every workflow defines it"
                 for name in DOCUMENT_ACTIONS if name not in workflow.actions]
    for name, state in states.items():
        if state.on_edit is not None and state.on_edit not in states:
            problems.append(f"states.{name}.on_edit: `{state.on_edit}` is not a state")
    for kind, table in (("transitions", workflow.transitions), ("actions", workflow.actions)):
        for name, spec in table.items():
            problems += [f"{kind}.{name}.roles: `{role}` is not a role ({', '.join(ROLES)})"
                         for role in spec.roles if role not in ROLES]
            problems += [f"{kind}.{name}.from: `{state}` is not a state"
                         for state in spec.from_states or [] if state not in states]
    for name, transition in workflow.transitions.items():
        if transition.to not in states:
            problems.append(f"transitions.{name}.to: `{transition.to}` is not a state")
        if not transition.from_states:
            problems.append(f"transitions.{name}.from: no state; it could never be taken")
    problems += [f"superuser_roles: `{role}` is not a role"
                 for role in workflow.superuser_roles if role not in ROLES]
    problems += [f"transitions.{name}: reuses the name of an action the CMS commits itself"
                 for name in sorted(set(workflow.transitions) & set(RESERVED_ACTIONS))]
    return problems


def _approvals(workflow: Workflow) -> list[str]:
    problems: list[str] = []
    if workflow.approvals_required < 1:
        problems.append("approvals_required: must be at least 1")
    if workflow.allow_self_approval:
        problems.append("allow_self_approval: anyone who edited a revision never approves it; "
                        "remove the key")
    for name, transition in workflow.transitions.items():
        if transition.approvals is not None and not transition.approval:
            problems.append(f"transitions.{name}.approvals: set on a transition that is not an "
                            "approval (add `approval = true`)")
        elif transition.approvals is not None and transition.approvals < 1:
            problems.append(f"transitions.{name}.approvals: must be at least 1")
    return problems


def _edges(workflow: Workflow, *, approvals: bool) -> dict[str, list[tuple[str, str]]]:
    """State to (the key that leads on, next state): transitions and edits."""
    edges: dict[str, list[tuple[str, str]]] = {name: [] for name in workflow.states}
    for name, transition in workflow.transitions.items():
        if transition.approval and not approvals:
            continue
        for state in transition.from_states:
            edges[state].append((f"transitions.{name}", transition.to))
    for name, definition in workflow.states.items():
        if definition.editable and definition.on_edit is not None:
            edges[name].append((f"states.{name}.on_edit", definition.on_edit))
    return edges


def _paths(workflow: Workflow, *, approvals: bool) -> dict[str, list[str]]:
    """Every state reached from the initial one, with the keys followed to reach it."""
    edges = _edges(workflow, approvals=approvals)
    reached = {workflow.initial_state: [workflow.initial_state]}
    pending = deque([workflow.initial_state])
    while pending:
        state = pending.popleft()
        for key, following in edges[state]:
            if following not in reached:
                reached[following] = [*reached[state], f"{key} → {following}"]
                pending.append(following)
    return reached


def _reachable(workflow: Workflow) -> list[str]:
    reached = _paths(workflow, approvals=True)
    return [f"states.{name}: unreachable from initial_state `{workflow.initial_state}`"
            for name in workflow.states if name not in reached]


def _every_stage_before_public(workflow: Workflow) -> list[str]:
    """From every state where a revision holds no approval (the start, where an edit lands, where
    approvals are cleared), each way to a public state passes every approval stage."""
    stages = sum(1 for t in workflow.transitions.values() if t.approval)
    starts = {workflow.initial_state}
    starts |= {s.on_edit for s in workflow.states.values() if s.editable and s.on_edit}
    starts |= {name for name, s in workflow.states.items() if s.editable and not s.on_edit}
    starts |= {t.to for t in workflow.transitions.values() if t.clears_approvals}
    problems: list[str] = []
    for start in sorted(starts):
        fewest = _fewest_approvals(workflow, start)
        for name, state in workflow.states.items():
            if state.public and name in fewest and fewest[name][0] < stages:
                count, path = fewest[name]
                problems.append(f"states.{name}: public, yet reached from `{start}` with {count} "
                                f"of {stages} approval stage(s) ({' '.join(path)})")
    return list(dict.fromkeys(problems))


def _fewest_approvals(workflow: Workflow, start: str) -> dict[str, tuple[int, list[str]]]:
    """Each state reached from ``start``: the fewest approval transitions on the way, and the
    keys followed (public states are where a walk ends: past them, approvals were given)."""
    edges = _edges(workflow, approvals=True)
    best: dict[str, tuple[int, list[str]]] = {start: (0, [start])}
    pending: deque[str] = deque([start])
    while pending:
        state = pending.popleft()
        if workflow.states[state].public and state != start:
            continue
        count, path = best[state]
        for key, following in edges[state]:
            step = 1 if key.startswith("transitions.") and \
                workflow.transitions[key.split(".", 1)[1]].approval else 0
            if following not in best or best[following][0] > count + step:
                best[following] = (count + step, [*path, f"{key} → {following}"])
                if step:
                    pending.append(following)
                else:
                    pending.appendleft(following)
    return best
