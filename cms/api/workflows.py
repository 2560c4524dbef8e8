"""Routes for the workflow definitions in force, kept on main: read by anyone with a token,
changed by an admin (each change a commit, checked before it is made)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar import Controller, Request, get, put
from litestar.params import FromPath, JSONBody
from msgspec import Meta, Struct

from ..content.model import WORKFLOW_NAME_RE
from ..editing.workflow import Workflow
from ..errors import InvalidContent, NotFound
from .auth import current_actor, requires_roles
from .params import ServicesDep
from .schemas import Comment
from .services import Services

WORKFLOW_NAME = re.compile(WORKFLOW_NAME_RE)


def valid_name(name: str) -> bool:
    """A workflow's name names its file on main: ``a-z0-9-`` only."""
    return len(name) <= 40 and WORKFLOW_NAME.match(name) is not None


class TransitionView(Struct, kw_only=True):
    name: str
    label: str
    from_states: list[str]
    to: str
    roles: list[str]
    approval: bool
    approvals: int | None = None


class WorkflowView(Struct, kw_only=True):
    name: str
    default: bool
    initial_state: str
    states: list[str]
    public_states: list[str]
    transitions: list[TransitionView]
    approvals_to_publish: int
    definition: str  # the TOML file as it is in force


class WorkflowList(Struct, kw_only=True):
    items: list[WorkflowView]


class WorkflowIn(Struct, forbid_unknown_fields=True):
    definition: Annotated[str, Meta(min_length=1, max_length=65536,
                                    description="The TOML definition, as in workflows/*.toml")]
    comment: Comment = ""


def _view(workflow: Workflow, default: bool, source: bytes) -> WorkflowView:
    return WorkflowView(
        name=workflow.name, default=default, initial_state=workflow.initial_state,
        states=list(workflow.states),
        public_states=[name for name, state in workflow.states.items() if state.public],
        transitions=[TransitionView(name=name, label=t.label, from_states=t.from_states,
                                    to=t.to, roles=t.roles, approval=t.approval,
                                    approvals=t.approvals)
                     for name, t in workflow.transitions.items()],
        approvals_to_publish=workflow.approvals_to_publish,
        definition=source.decode("utf-8", "replace"))


class WorkflowsController(Controller):
    path = "/api/workflows"
    tags = ["workflows"]
    guards = [requires_roles]

    @get("/", sync_to_thread=True, summary="The workflow definitions in force")
    def list_workflows(self, services: ServicesDep) -> WorkflowList:
        current = services.workflows.in_force()
        return WorkflowList(items=[
            _view(workflow, workflow is current.default, current.sources.get(name, b""))
            for name, workflow in sorted(current.by_name.items())])

    @get("/{name:str}", sync_to_thread=True, summary="One workflow definition in force")
    def read_workflow(self, services: ServicesDep, name: FromPath[str]) -> WorkflowView:
        return _read(services, name)

    @put("/{name:str}", sync_to_thread=True, opt={"roles": ("admin",)},
         summary="Put a workflow definition in force (a commit on main)")
    def push_workflow(self, services: ServicesDep, request: Request[Any, Any, Any],
                      name: FromPath[str], data: JSONBody[WorkflowIn]) -> WorkflowView:
        if not valid_name(name):
            raise InvalidContent("a workflow's name is up to 40 lowercase letters, digits and "
                                 "single hyphens", field="name")
        services.workflows.push({f"{name}.toml": data.definition.encode("utf-8")},
                                current_actor(request), services.pipeline, data.comment)
        return _read(services, name)


def _read(services: Services, name: str) -> WorkflowView:
    current = services.workflows.in_force()
    found = current.by_name.get(name) if valid_name(name) else None
    if found is None:
        raise NotFound(f"no workflow named `{name}`", field="name")
    return _view(found, found is current.default, current.sources.get(name, b""))
