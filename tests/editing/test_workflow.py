"""The workflow engine, exhaustively, against the real ``workflows/default.toml``.

The expectations below are written by hand from the meaning of the TOML file, not computed by the
engine: who may take each action, from which states, and where it leads. Every state, every action
and every non-empty set of the five roles is checked against them.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cms.bundled import default_workflow
from cms.content.model import WorkflowRecord
from cms.editing.workflow import (
    Workflow,
    allowed_actions,
    available_transitions,
    decide,
    load_workflow,
    permitted_roles,
)
from cms.errors import CmsError, Conflict, Forbidden, InvalidContent, TransitionNotAllowed
from cms.identity.actors import ROLES, Actor

DEFAULT_PATH = default_workflow()
WORKFLOW = load_workflow(DEFAULT_PATH)

# --- The expectation table, written from default.toml -------------------------------------------

ALL_ROLES = ("editor", "reviewer", "chief", "publisher", "admin", "auditor")
STATES = ("draft", "in_review", "changes_requested", "approved", "published", "unpublished")
ACTIONS = (
    "create", "edit", "discard", "submit", "request_changes", "approve", "withdraw", "publish",
    "unpublish",
)
# The one role named for each action; admin (the superuser) may additionally do all of them.
ROLE_FOR = {
    "create": "editor",
    "edit": "editor",
    "discard": "editor",
    "submit": "editor",
    "request_changes": "reviewer",
    "approve": "reviewer",
    "withdraw": "editor",
    "publish": "publisher",
    "unpublish": "publisher",
}
# Where each action leads, by the state it is taken from. A state missing here refuses the action.
# ``create`` has no entry: it applies only to a document that does not exist yet.
MOVES: dict[str, dict[str, str]] = {
    "edit": {
        "draft": "draft",
        "changes_requested": "changes_requested",
        "published": "draft",
        "unpublished": "draft",
    },
    "discard": {s: "discarded" for s in ("draft", "in_review", "changes_requested", "approved")},
    "submit": {"draft": "in_review", "changes_requested": "in_review"},
    "request_changes": {"in_review": "changes_requested", "approved": "changes_requested"},
    "approve": {"in_review": "approved"},
    "withdraw": {s: "draft" for s in ("in_review", "changes_requested", "approved")},
    "publish": {"approved": "published", "unpublished": "published"},
    "unpublish": {"published": "unpublished"},
}
TRANSITIONS = ("submit", "request_changes", "approve", "withdraw", "publish", "unpublish")
ROLE_SETS: list[frozenset[str]] = [
    frozenset(combo)
    for size in range(1, len(ALL_ROLES) + 1)
    for combo in itertools.combinations(ALL_ROLES, size)
]

AUTHOR = "Ann Author <ann@example.com>"
RITA = "Rita Reviewer <rita@example.com>"
T0 = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def actor(roles: frozenset[str] | set[str] | tuple[str, ...], name: str = "Tess Tester",
          email: str = "tess@example.com") -> Actor:
    return Actor(name=name, email=email, roles=frozenset(roles))


def realistic_record(state: str) -> WorkflowRecord:
    """A record as the workflow would leave it in ``state`` with one author and one approval."""
    approved = [RITA] if state in ("approved", "published", "unpublished") else []
    published_at = T0 if state in ("published", "unpublished") else None
    return WorkflowRecord(state=state, authors=[AUTHOR], approved_by=approved,
                          published_at=published_at)


def expected_success(action: str, record: WorkflowRecord, who: Actor) -> WorkflowRecord:
    """The record the table says ``action`` yields, assuming it is permitted and possible."""
    to = MOVES[action][record.state]
    authors = list(record.authors)
    approved = list(record.approved_by)
    published_at = record.published_at
    if action == "edit":
        if record.state in ("published", "unpublished"):
            return WorkflowRecord(state="draft", authors=[who.person])
        if who.person not in authors:
            authors.append(who.person)
        approved = []
    elif action in ("request_changes", "withdraw"):
        approved = []
    elif action == "approve":
        approved.append(who.person)
    elif action == "publish":
        published_at = AT
    return WorkflowRecord(state=to, authors=authors, approved_by=approved, published_at=published_at)


def outcome(record: WorkflowRecord | None, action: str, who: Actor,
            workflow: Workflow = WORKFLOW) -> WorkflowRecord | type[CmsError]:
    try:
        return decide(workflow, record, action, who, at=AT)
    except CmsError as exc:
        return type(exc)


def with_approvals(n: int) -> Workflow:
    return msgspec.structs.replace(WORKFLOW, approvals_required=n)


# --- The definition itself ------------------------------------------------------------------------


def test_default_workflow_matches_the_table() -> None:
    assert WORKFLOW.initial_state == "draft"
    assert tuple(WORKFLOW.states) == STATES
    assert tuple(WORKFLOW.action_names) == ACTIONS
    assert WORKFLOW.approvals_required == 1
    assert WORKFLOW.allow_self_approval is False
    assert WORKFLOW.superuser_roles == ["admin"]
    assert set(ALL_ROLES) == set(ROLES)


@pytest.mark.parametrize("action", ACTIONS)
def test_permitted_roles(action: str) -> None:
    assert permitted_roles(WORKFLOW, action) == {ROLE_FOR[action], "admin"}


def test_permitted_roles_of_an_unknown_action_is_only_the_superuser() -> None:
    assert permitted_roles(WORKFLOW, "teleport") == {"admin"}


@pytest.mark.parametrize("state", STATES)
def test_available_transitions(state: str) -> None:
    expected = [t for t in TRANSITIONS if state in MOVES[t]]
    assert available_transitions(WORKFLOW, state) == expected


def test_available_transitions_of_an_unknown_state_is_empty() -> None:
    assert available_transitions(WORKFLOW, "limbo") == []


# --- Every state x action x role set ----------------------------------------------------------------


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("state", STATES)
def test_every_state_action_and_role_set(state: str, action: str) -> None:
    record = realistic_record(state)
    mismatches: list[str] = []
    for roles in ROLE_SETS:
        who = actor(roles)
        try:
            result: WorkflowRecord | CmsError = decide(WORKFLOW, record, action, who, at=AT)
        except CmsError as exc:
            result = exc
        may = bool(roles & {ROLE_FOR[action], "admin"})
        label = f"{state} --{action}--> as {sorted(roles)}"
        if not may:
            if not isinstance(result, Forbidden):
                mismatches.append(f"{label}: expected Forbidden, got {result!r}")
            elif result.status != 403:
                mismatches.append(f"{label}: Forbidden with status {result.status}")
        elif action == "create":
            # The document exists: a plain Conflict, not a workflow transition error.
            if type(result) is not Conflict or result.status != 409:
                mismatches.append(f"{label}: expected Conflict, got {result!r}")
        elif state not in MOVES[action]:
            if not isinstance(result, TransitionNotAllowed):
                mismatches.append(f"{label}: expected TransitionNotAllowed, got {result!r}")
                continue
            allowed = result.details.get("allowed")
            if result.status != 409 or result.details.get("state") != state:
                mismatches.append(f"{label}: wrong status/state in {result.details}")
            if not isinstance(allowed, list) or action in allowed:
                mismatches.append(f"{label}: `allowed` {allowed!r} should be a list without it")
            elif not set(allowed) <= {a for a in ACTIONS if state in MOVES.get(a, {})}:
                mismatches.append(f"{label}: `allowed` {allowed!r} names impossible actions")
        else:
            expected = expected_success(action, record, who)
            if result != expected:
                mismatches.append(f"{label}: expected {expected!r}, got {result!r}")
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize("action", ACTIONS)
def test_actions_on_a_missing_document(action: str) -> None:
    for roles in ROLE_SETS:
        who = actor(roles)
        got = outcome(None, action, who)
        if not roles & {ROLE_FOR[action], "admin"}:
            assert got is Forbidden, (action, roles)
        elif action == "create":
            assert got == WorkflowRecord(name="default", state="draft", authors=[who.person]), roles
        else:
            assert got is Conflict, (action, roles)


@pytest.mark.parametrize("action", ["teleport", "", "Approve", "approve ", "discarded", "draft"])
@pytest.mark.parametrize("roles", [frozenset({"auditor"}), frozenset(ALL_ROLES)])
def test_unknown_action_is_invalid_content(action: str, roles: frozenset[str]) -> None:
    # Unknown actions are reported as such before any role check, even to someone with no roles.
    for record in (None, realistic_record("draft")):
        with pytest.raises(InvalidContent) as caught:
            decide(WORKFLOW, record, action, actor(roles), at=AT)
        assert caught.value.status == 422
        assert caught.value.field == "action"
        assert "submit" in caught.value.message


def test_role_check_comes_before_state_check() -> None:
    # publish from draft is impossible, but a mere editor hears that they lack the role.
    with pytest.raises(Forbidden) as caught:
        decide(WORKFLOW, realistic_record("draft"), "publish", actor({"editor"}), at=AT)
    assert "publisher" in caught.value.message
    with pytest.raises(TransitionNotAllowed):
        decide(WORKFLOW, realistic_record("draft"), "publish", actor({"publisher"}), at=AT)


@pytest.mark.parametrize(("state", "action"), [
    (s, a) for a in ACTIONS if a != "create" for s in STATES if s not in MOVES[a]
])
def test_transition_not_allowed_details(state: str, action: str) -> None:
    with pytest.raises(TransitionNotAllowed) as caught:
        decide(WORKFLOW, realistic_record(state), action, actor({"admin"}), at=AT)
    error = caught.value
    assert isinstance(error, Conflict)
    assert error.code == "transition_not_allowed"
    assert error.field == "action"
    assert error.details["state"] == state
    # Every transition and ``edit`` the state allows is listed, in the file's order.
    expected = [t for t in TRANSITIONS if state in MOVES[t]]
    if state in MOVES["edit"]:
        expected.insert(0, "edit")
    assert [a for a in error.details["allowed"] if a != "discard"] == expected
    assert state in error.message
    assert action in error.message


def test_transition_not_allowed_lists_discard_too() -> None:
    with pytest.raises(TransitionNotAllowed) as caught:
        decide(WORKFLOW, realistic_record("draft"), "approve", actor({"admin"}), at=AT)
    assert caught.value.details["allowed"] == ["edit", "discard", "submit"]


# --- Self-approval ----------------------------------------------------------------------------------

APPROVER_ROLE_SETS = [roles for roles in ROLE_SETS if roles & {"reviewer", "admin"}]


@pytest.mark.parametrize("roles", APPROVER_ROLE_SETS, ids=lambda r: "+".join(sorted(r)))
def test_an_author_can_never_approve(roles: frozenset[str]) -> None:
    author = actor(roles, "Ann Author", "ann@example.com")
    assert author.person == AUTHOR
    for authors in ([AUTHOR], [RITA, AUTHOR], [AUTHOR, "Eve Editor <eve@example.com>"]):
        for workflow in (WORKFLOW, with_approvals(2)):
            record = WorkflowRecord(state="in_review", authors=authors)
            with pytest.raises(Forbidden) as caught:
                decide(workflow, record, "approve", author, at=AT)
            assert caught.value.details.get("rule") == "self_approval"
            assert "approve" not in allowed_actions(workflow, record, author)


@pytest.mark.parametrize("roles", APPROVER_ROLE_SETS, ids=lambda r: "+".join(sorted(r)))
def test_a_different_approver_can_approve(roles: frozenset[str]) -> None:
    record = WorkflowRecord(state="in_review", authors=[AUTHOR])
    who = actor(roles)
    assert decide(WORKFLOW, record, "approve", who, at=AT) == WorkflowRecord(
        state="approved", authors=[AUTHOR], approved_by=[who.person])
    assert "approve" in allowed_actions(WORKFLOW, record, who)


def test_same_name_different_email_is_a_different_person() -> None:
    record = WorkflowRecord(state="in_review", authors=[AUTHOR])
    other = actor({"reviewer"}, "Ann Author", "ann.other@example.com")
    assert decide(WORKFLOW, record, "approve", other, at=AT).state == "approved"


def test_editing_makes_you_an_author_who_cannot_approve() -> None:
    both = actor({"editor", "reviewer"}, "Bo Both", "bo@example.com")
    record = decide(WORKFLOW, WorkflowRecord(state="draft", authors=[AUTHOR]), "edit", both, at=AT)
    assert record.authors == [AUTHOR, both.person]
    record = decide(WORKFLOW, record, "submit", both, at=AT)
    with pytest.raises(Forbidden):
        decide(WORKFLOW, record, "approve", both, at=AT)
    rita = actor({"reviewer"}, "Rita Reviewer", "rita@example.com")
    assert decide(WORKFLOW, record, "approve", rita, at=AT).approved_by == [RITA]


def test_self_approval_allowed_when_the_workflow_says_so() -> None:
    workflow = msgspec.structs.replace(WORKFLOW, allow_self_approval=True)
    author = actor({"reviewer"}, "Ann Author", "ann@example.com")
    record = WorkflowRecord(state="in_review", authors=[AUTHOR])
    assert decide(workflow, record, "approve", author, at=AT).approved_by == [AUTHOR]


def test_approving_twice_is_a_conflict() -> None:
    workflow = with_approvals(2)
    rita = actor({"reviewer"}, "Rita Reviewer", "rita@example.com")
    once = decide(workflow, WorkflowRecord(state="in_review", authors=[AUTHOR]), "approve", rita, at=AT)
    assert once == WorkflowRecord(state="in_review", authors=[AUTHOR], approved_by=[RITA])
    with pytest.raises(Conflict) as caught:
        decide(workflow, once, "approve", rita, at=AT)
    assert not isinstance(caught.value, TransitionNotAllowed)
    assert caught.value.status == 409
    assert "approve" not in allowed_actions(workflow, once, rita)


def test_an_existing_approval_is_a_conflict_even_with_one_required() -> None:
    record = WorkflowRecord(state="in_review", authors=[AUTHOR], approved_by=[RITA])
    with pytest.raises(Conflict):
        decide(WORKFLOW, record, "approve", actor({"reviewer"}, "Rita Reviewer", "rita@example.com"),
               at=AT)


# --- approvals_required > 1 ---------------------------------------------------------------------


def reviewers(n: int) -> list[Actor]:
    return [actor({"reviewer"}, f"Reviewer {i}", f"r{i}@example.com") for i in range(n)]


@pytest.mark.parametrize("required", [2, 3, 5])
def test_state_stays_in_review_until_enough_distinct_approvals(required: int) -> None:
    workflow = with_approvals(required)
    record = WorkflowRecord(state="in_review", authors=[AUTHOR])
    panel = reviewers(required)
    for count, reviewer in enumerate(panel, start=1):
        record = decide(workflow, record, "approve", reviewer, at=AT)
        assert record.approved_by == [r.person for r in panel[:count]]
        assert record.state == ("approved" if count == required else "in_review")
        if count < required:
            assert "publish" not in allowed_actions(workflow, record, actor({"publisher"}))
    assert record.authors == [AUTHOR]


@pytest.mark.parametrize("action", ["request_changes", "withdraw"])
def test_request_changes_and_withdraw_clear_partial_approvals(action: str) -> None:
    workflow = with_approvals(3)
    record = WorkflowRecord(state="in_review", authors=[AUTHOR])
    for reviewer in reviewers(2):
        record = decide(workflow, record, "approve", reviewer, at=AT)
    assert len(record.approved_by) == 2
    after = decide(workflow, record, action, actor({"admin"}), at=AT)
    assert after.approved_by == []
    assert after.state == MOVES[action]["in_review"]
    # After resubmission the earlier approvers must approve afresh: they count again from zero.
    after = decide(workflow, after, "submit", actor({"editor"}), at=AT)
    again = decide(workflow, after, "approve", reviewers(1)[0], at=AT)
    assert again.state == "in_review"
    assert again.approved_by == [reviewers(1)[0].person]


@pytest.mark.parametrize("action", ["request_changes", "withdraw"])
def test_request_changes_and_withdraw_clear_full_approvals(action: str) -> None:
    workflow = with_approvals(2)
    record = WorkflowRecord(state="in_review", authors=[AUTHOR])
    for reviewer in reviewers(2):
        record = decide(workflow, record, "approve", reviewer, at=AT)
    assert record.state == "approved"
    after = decide(workflow, record, action, actor({"admin"}), at=AT)
    assert after.approved_by == []


# --- edit ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
def test_edit_only_in_editable_states(state: str) -> None:
    editor = actor({"editor"})
    record = realistic_record(state)
    if state in ("in_review", "approved"):
        with pytest.raises(TransitionNotAllowed):
            decide(WORKFLOW, record, "edit", editor, at=AT)
    else:
        assert decide(WORKFLOW, record, "edit", editor, at=AT).state in ("draft", "changes_requested")


@pytest.mark.parametrize("state", ["published", "unpublished"])
@pytest.mark.parametrize("who", [actor({"editor"}), actor({"admin"}, "Ann Author", "ann@example.com")])
def test_editing_published_content_starts_a_new_draft(state: str, who: Actor) -> None:
    record = WorkflowRecord(state=state, authors=[AUTHOR, "Eve Editor <eve@example.com>"],
                            approved_by=[RITA], published_at=T0)
    new = decide(WORKFLOW, record, "edit", who, at=AT)
    assert new.state == "draft"
    assert new.authors == [who.person]
    assert new.approved_by == []
    assert new.published_at is None


@pytest.mark.parametrize("state", ["draft", "changes_requested"])
def test_editing_a_draft_adds_the_editor_to_authors_once(state: str) -> None:
    eve = actor({"editor"}, "Eve Editor", "eve@example.com")
    record = WorkflowRecord(state=state, authors=[AUTHOR])
    once = decide(WORKFLOW, record, "edit", eve, at=AT)
    assert once == WorkflowRecord(state=state, authors=[AUTHOR, eve.person])
    twice = decide(WORKFLOW, once, "edit", eve, at=AT)
    assert twice == once
    by_author = decide(WORKFLOW, record, "edit", actor({"editor"}, "Ann Author", "ann@example.com"),
                       at=AT)
    assert by_author.authors == [AUTHOR]


# --- create ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("roles", [r for r in ROLE_SETS if r & {"editor", "admin"}],
                         ids=lambda r: "+".join(sorted(r)))
def test_create_only_when_the_document_does_not_exist(roles: frozenset[str]) -> None:
    who = actor(roles)
    created = decide(WORKFLOW, None, "create", who, at=AT)
    assert created == WorkflowRecord(name="default", state=WORKFLOW.initial_state,
                                     authors=[who.person])
    assert created.approved_by == []
    assert created.published_at is None
    for state in STATES:
        with pytest.raises(Conflict) as caught:
            decide(WORKFLOW, realistic_record(state), "create", who, at=AT)
        assert caught.value.field == "slug"


def test_create_uses_the_workflows_initial_state() -> None:
    workflow = msgspec.structs.replace(WORKFLOW, initial_state="changes_requested")
    assert decide(workflow, None, "create", actor({"editor"}), at=AT).state == "changes_requested"


def test_create_is_not_offered_by_allowed_actions() -> None:
    for state in STATES:
        assert "create" not in allowed_actions(WORKFLOW, realistic_record(state), actor(ALL_ROLES))


# --- publish and purity -----------------------------------------------------------------------------


@given(at=st.datetimes(timezones=st.just(UTC)) | st.datetimes(
    timezones=st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-720, 720))))
@settings(max_examples=50, deadline=None)
def test_publish_sets_published_at_to_at(at: datetime) -> None:
    publisher = actor({"publisher"})
    for state in ("approved", "unpublished"):
        published = decide(WORKFLOW, realistic_record(state), "publish", publisher, at=at)
        assert published.state == "published"
        assert published.published_at == at
        unpublished = decide(WORKFLOW, published, "unpublish", publisher, at=AT)
        assert unpublished.published_at == at


def test_no_other_action_touches_published_at() -> None:
    for state, action in itertools.product(STATES, ACTIONS):
        if action in ("create", "publish", "edit") or state not in MOVES[action]:
            continue
        result = decide(WORKFLOW, realistic_record(state), action, actor({"admin"}), at=AT)
        assert result.published_at == realistic_record(state).published_at, (state, action)


people = st.sampled_from([AUTHOR, RITA, "Eve Editor <eve@example.com>", "Tess Tester <tess@example.com>"])
records = st.builds(
    WorkflowRecord,
    state=st.sampled_from(STATES),
    authors=st.lists(people, unique=True, max_size=3),
    approved_by=st.lists(people, unique=True, max_size=3),
    published_at=st.none() | st.just(T0),
)
actors = st.builds(
    Actor,
    name=st.sampled_from(["Ann Author", "Rita Reviewer", "Tess Tester"]),
    email=st.sampled_from(["ann@example.com", "rita@example.com", "tess@example.com"]),
    roles=st.sampled_from(ROLE_SETS),
)


@given(record=records, action=st.sampled_from(ACTIONS), who=actors, required=st.integers(1, 3))
@settings(max_examples=300, deadline=None)
def test_decide_never_mutates_its_input(record: WorkflowRecord, action: str, who: Actor,
                                        required: int) -> None:
    workflow = with_approvals(required)
    before = copy.deepcopy(record)
    workflow_before = copy.deepcopy(workflow)
    result = outcome(record, action, who, workflow)
    assert record == before
    assert workflow == workflow_before
    if isinstance(result, WorkflowRecord):
        assert result is not record
    allowed_actions(workflow, record, who)
    assert record == before


# --- allowed_actions --------------------------------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
def test_allowed_actions_is_exactly_what_decide_permits(state: str) -> None:
    for roles in ROLE_SETS:
        for who in (actor(roles), actor(roles, "Ann Author", "ann@example.com")):
            record = realistic_record(state)
            succeeding = [a for a in ACTIONS
                          if isinstance(outcome(record, a, who), WorkflowRecord)]
            # And independently, from the table:
            expected = [
                a for a in ACTIONS
                if a != "create" and state in MOVES[a] and roles & {ROLE_FOR[a], "admin"}
                and not (a == "approve" and who.person in record.authors)
            ]
            got = allowed_actions(WORKFLOW, record, who)
            assert got == succeeding == expected, (state, sorted(roles), who.person)


@given(record=records, who=actors, required=st.integers(1, 3))
@settings(max_examples=200, deadline=None)
def test_allowed_actions_agrees_with_decide_on_any_record(record: WorkflowRecord, who: Actor,
                                                          required: int) -> None:
    workflow = with_approvals(required)
    succeeding = [a for a in workflow.action_names
                  if a != "create" and isinstance(outcome(record, a, who, workflow), WorkflowRecord)]
    assert allowed_actions(workflow, record, who) == succeeding


# --- Random walks: invariants hold whatever happens ---------------------------------------------

CAST = [
    actor({"editor"}, "Ada Editor", "ada@example.com"),
    actor({"editor"}, "Eve Editor", "eve@example.com"),
    actor({"reviewer"}, "Rita Reviewer", "rita@example.com"),
    actor({"reviewer"}, "Rob Reviewer", "rob@example.com"),
    actor({"editor", "reviewer"}, "Bo Both", "bo@example.com"),
    actor({"publisher"}, "Paul Publisher", "paul@example.com"),
    actor({"admin"}, "Ann Admin", "ann@example.com"),
    actor({"auditor"}, "Aud Auditor", "aud@example.com"),
]


def walk(workflow: Workflow, steps: list[tuple[str, int]]) -> Iterator[WorkflowRecord]:
    record = decide(workflow, None, "create", CAST[0], at=AT)
    yield record
    for number, (action, who) in enumerate(steps):
        try:
            record = decide(workflow, record, action, CAST[who], at=AT + timedelta(days=number))
        except (Forbidden, Conflict):
            continue
        yield record
        if record.state == "discarded":
            return


@given(steps=st.lists(st.tuples(st.sampled_from(ACTIONS[1:]), st.integers(0, len(CAST) - 1)),
                      max_size=40),
       required=st.integers(1, 3))
@settings(max_examples=150, deadline=None)
def test_random_walks_keep_the_invariants(steps: list[tuple[str, int]], required: int) -> None:
    workflow = with_approvals(required)
    for record in walk(workflow, steps):
        assert record.state in (*STATES, "discarded")
        assert record.authors, record
        assert len(set(record.authors)) == len(record.authors)
        assert len(set(record.approved_by)) == len(record.approved_by)
        assert not set(record.authors) & set(record.approved_by), record
        if record.state == "in_review":
            assert len(record.approved_by) < required
        if record.state in ("approved", "published", "unpublished"):
            assert len(record.approved_by) >= required
        if record.state in ("draft", "changes_requested"):
            assert record.approved_by == []
        if record.state in ("published", "unpublished"):
            assert record.published_at is not None


# --- load_workflow -------------------------------------------------------------------------------

VALID = """\
name = "tiny"
initial_state = "draft"
superuser_roles = ["admin"]

[states.draft]
label = "Draft"
editable = true

[states.ready]
label = "Ready"

[states.live]
label = "Live"
public = true
editable = true
on_edit = "draft"

[actions.create]
roles = ["editor"]

[actions.edit]
roles = ["editor"]

[actions.discard]
roles = ["editor"]
from = ["draft"]

[transitions.approve]
label = "Approve"
from = ["draft"]
to = "ready"
roles = ["reviewer"]
approval = true

[transitions.go_live]
label = "Go live"
from = ["ready"]
to = "live"
roles = ["publisher"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "broken.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> InvalidContent:
    with pytest.raises(InvalidContent) as caught:
        load_workflow(write(tmp_path, text))
    error = caught.value
    assert error.status == 422
    assert error.field == "workflow"
    assert "broken.toml" in error.message
    return error


def test_a_valid_small_workflow_loads(tmp_path: Path) -> None:
    workflow = load_workflow(write(tmp_path, VALID))
    assert workflow.action_names == ["create", "edit", "discard", "approve", "go_live"]
    assert workflow.approvals_required == 1
    editor = actor({"editor"})
    record = decide(workflow, None, "create", editor, at=AT)
    reviewer = Actor(name="Rita Reviewer", email="rita@example.com", roles=frozenset({"reviewer"}))
    ready = decide(workflow, record, "approve", reviewer, at=AT)
    live = decide(workflow, ready, "go_live", actor({"publisher"}), at=AT)
    assert live.state == "live"
    assert live.published_at == AT


@pytest.mark.parametrize(("old", "new", "problem"), [
    ('to = "live"', 'to = "limbo"', "transitions.go_live.to: `limbo` is not a state"),
    ('from = ["ready"]', 'from = ["nowhere"]', "transitions.go_live.from: `nowhere` is not a state"),
    ('roles = ["publisher"]', 'roles = ["wizard"]', "transitions.go_live.roles: `wizard` is not a role"),
    ('[actions.edit]\nroles = ["editor"]', '[actions.edit]\nroles = ["editr"]',
     "actions.edit.roles: `editr` is not a role"),
    ('from = ["draft"]\n\n[trans', 'from = ["gone"]\n\n[trans',
     "actions.discard.from: `gone` is not a state"),
    ('initial_state = "draft"', 'initial_state = "start"', "initial_state: `start` is not a state"),
    ('on_edit = "draft"', 'on_edit = "redraft"', "states.live.on_edit: `redraft` is not a state"),
    ('[actions.discard]\nroles = ["editor"]\nfrom = ["draft"]\n', "", "actions.discard: missing"),
    ('name = "tiny"', 'name = "tiny"\napprovals_required = 0', "approvals_required: must be at least 1"),
    # A state nothing leads to.
    ('[states.ready]', '[states.limbo]\nlabel = "Limbo"\n\n[states.ready]',
     "states.limbo: unreachable from initial_state `draft`"),
    # Public content that no approval stands before.
    ('from = ["ready"]', 'from = ["draft", "ready"]',
     "states.live: public, yet reached from `draft` with 0 of 1 approval stage(s) "
     "(draft transitions.go_live → live)"),
    ('roles = ["publisher"]', 'roles = ["publisher"]\napprovals = 2',
     "transitions.go_live.approvals: set on a transition that is not an approval"),
    # A transition named as a commit the CMS makes itself (a comment on a draft).
    ('[transitions.go_live]', '[transitions.comment]\nlabel = "C"\nfrom = ["ready"]\nto = "ready"\n'
     'roles = ["editor"]\n\n[transitions.go_live]',
     "transitions.comment: reuses the name of an action the CMS commits itself"),
])
def test_load_workflow_names_the_broken_reference(tmp_path: Path, old: str, new: str,
                                                  problem: str) -> None:
    assert old in VALID
    error = load_error(tmp_path, VALID.replace(old, new, 1))
    assert problem in error.message


@pytest.mark.parametrize(("old", "new", "problem"), [
    ('initial_state = "draft"\n', "", "initial_state"),
    ('label = "Go live"\n', "", "label"),
    ('label = "Draft"', 'label = "Draft"\ncolour = "red"', "colour"),
    ('name = "tiny"', 'name = 42', "name"),
    ('roles = ["publisher"]', 'roles = "publisher"', "roles"),
])
def test_load_workflow_rejects_malformed_fields(tmp_path: Path, old: str, new: str,
                                                problem: str) -> None:
    assert old in VALID
    error = load_error(tmp_path, VALID.replace(old, new, 1))
    assert problem in error.message
    assert isinstance(error.__cause__, msgspec.ValidationError)


@pytest.mark.parametrize("text", [
    VALID.replace('name = "tiny"', 'name = "tiny'),
    VALID + "\n[states.draft]\nlabel = 'again'\n",
    "this is = = not toml",
    VALID.replace("[actions.edit]", "[actions.edit"),
])
def test_load_workflow_rejects_invalid_toml(tmp_path: Path, text: str) -> None:
    error = load_error(tmp_path, text)
    assert error.__cause__ is not None
    assert "broken.toml" in error.message


def test_load_workflow_rejects_an_empty_file(tmp_path: Path) -> None:
    error = load_error(tmp_path, "")
    assert "name" in error.message


def test_load_workflow_reports_all_problems_at_once(tmp_path: Path) -> None:
    text = VALID.replace('to = "live"', 'to = "limbo"').replace('roles = ["publisher"]',
                                                               'roles = ["wizard"]')
    error = load_error(tmp_path, text)
    assert "transitions.go_live.to: `limbo` is not a state" in error.message
    assert "transitions.go_live.roles: `wizard` is not a role" in error.message
    assert "; " in error.message


def test_load_workflow_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidContent) as caught:
        load_workflow(tmp_path / "absent.toml")
    assert "absent.toml" in caught.value.message
    assert isinstance(caught.value.__cause__, OSError)


def test_load_workflow_rejects_an_unknown_superuser_role(tmp_path: Path) -> None:
    error = load_error(tmp_path, VALID.replace('superuser_roles = ["admin"]',
                                               'superuser_roles = ["admn"]'))
    assert "admn" in error.message


@pytest.mark.parametrize(("old", "new", "problem"), [
    # Editing published content lands where approvals would have been given.
    ('on_edit = "draft"', 'on_edit = "ready"',
     "states.live: public, yet reached from `ready` with 0 of 1"),
    # An editable state past the approval: an edit there voids the approval and stays.
    ('[states.ready]\nlabel = "Ready"', '[states.ready]\nlabel = "Ready"\neditable = true',
     "states.live: public, yet reached from `ready` with 0 of 1"),
    ('name = "tiny"', 'name = "tiny"\nallow_self_approval = true', "allow_self_approval:"),
])
def test_no_definition_lets_content_out_past_an_approval_stage(
        tmp_path: Path, old: str, new: str, problem: str) -> None:
    assert old in VALID
    error = load_error(tmp_path, VALID.replace(old, new, 1))
    assert problem in error.message


def test_a_shortcut_past_a_stage_is_refused(tmp_path: Path) -> None:
    two_stages = VALID.replace('[transitions.go_live]', '''[transitions.second]
label = "Second"
from = ["ready"]
to = "checked"
roles = ["reviewer"]
approval = true

[transitions.go_live]''').replace('from = ["ready"]\nto = "live"', 'from = ["checked", "ready"]\nto = "live"')
    two_stages = two_stages.replace('[states.live]', '[states.checked]\nlabel = "Checked"\n\n[states.live]')
    error = load_error(tmp_path, two_stages)
    assert "with 1 of 2 approval stage(s)" in error.message


def test_publication_needs_every_approval_even_from_a_definition_that_slipped_through() -> None:
    """Checked when the action is taken, too: a definition built in code, unchecked."""
    loose = msgspec.structs.replace(WORKFLOW, states={
        **WORKFLOW.states, "approved": msgspec.structs.replace(WORKFLOW.states["approved"],
                                                               editable=True)})
    editor, reviewer = actor({"editor"}), Actor(name="Rita Reviewer", email="rita@example.com",
                                                roles=frozenset({"reviewer"}))
    record = decide(loose, None, "create", editor, at=AT)
    record = decide(loose, record, "submit", editor, at=AT)
    record = decide(loose, record, "approve", reviewer, at=AT)
    assert record.state == "approved"
    record = decide(loose, record, "edit", editor, at=AT)
    assert (record.state, record.approved_by) == ("approved", [])
    with pytest.raises(Conflict) as refused:
        decide(loose, record, "publish", actor({"publisher"}), at=AT)
    assert refused.value.details["rule"] == "approvals_required"
