"""Field-level differences between two versions of a comparison: what an auditor asks about.

Pure: two comparisons in, a list of changes out. Tools and reviewers are matched by id, not by
position, so reordering is not reported as a change.
"""

from __future__ import annotations

import difflib
from typing import Literal

from msgspec import Struct

from .model import Comparison, Tool, panel_ship, percent_label

ChangeKind = Literal["field", "verdict", "panel_ship", "quote", "community", "tool", "reviewer"]


class Change(Struct, kw_only=True, omit_defaults=True):
    kind: ChangeKind
    path: str
    before: str | float | int | None = None
    after: str | float | int | None = None
    tool: str | None = None
    reviewer: str | None = None
    before_label: str | None = None
    after_label: str | None = None


class Difference(Struct, kw_only=True):
    changes: list[Change]
    body_diff: str | None

    @property
    def verdict_changes(self) -> list[Change]:
        return [change for change in self.changes if change.kind in ("verdict", "panel_ship")]


_TOP_FIELDS = ("title", "summary")
_TOOL_FIELDS = ("name", "category", "tagline", "description", "entry_price")


def compare(before: Comparison | None, after: Comparison | None) -> Difference:
    """What changed from ``before`` to ``after``; None stands for "not there" on either side."""
    changes: list[Change] = []
    if before is not None and after is not None:
        for name in _TOP_FIELDS:
            if getattr(before, name) != getattr(after, name):
                changes.append(Change(kind="field", path=name, before=getattr(before, name),
                                      after=getattr(after, name)))
        changes += _panel(before, after)
    old_tools = {tool.id: tool for tool in before.tools} if before else {}
    new_tools = {tool.id: tool for tool in after.tools} if after else {}
    for tool_id in [*old_tools, *(t for t in new_tools if t not in old_tools)]:
        changes += _tool(tool_id, old_tools.get(tool_id), new_tools.get(tool_id))
    body_diff = None
    old_body = before.body if before else ""
    new_body = after.body if after else ""
    if old_body != new_body:
        body_diff = "".join(difflib.unified_diff(
            old_body.splitlines(keepends=True), new_body.splitlines(keepends=True),
            fromfile="before/body.md", tofile="after/body.md",
        ))
        changes.append(Change(kind="field", path="body"))
    return Difference(changes=changes, body_diff=body_diff)


def _panel(before: Comparison, after: Comparison) -> list[Change]:
    old = {reviewer.id: reviewer for reviewer in before.panel}
    new = {reviewer.id: reviewer for reviewer in after.panel}
    changes = []
    for reviewer_id in [*old, *(r for r in new if r not in old)]:
        a, b = old.get(reviewer_id), new.get(reviewer_id)
        if a != b:
            changes.append(Change(kind="reviewer", path=f"panel[{reviewer_id}]",
                                  reviewer=reviewer_id,
                                  before=a.name if a else None, after=b.name if b else None))
    return changes


def _tool(tool_id: str, before: Tool | None, after: Tool | None) -> list[Change]:
    path = f"tools[{tool_id}]"
    changes: list[Change] = []
    if before is None or after is None:
        changes.append(Change(kind="tool", path=path, tool=tool_id,
                              before=before.name if before else None,
                              after=after.name if after else None))
    else:
        for name in _TOOL_FIELDS:
            if getattr(before, name) != getattr(after, name):
                changes.append(Change(kind="field", path=f"{path}.{name}", tool=tool_id,
                                      before=getattr(before, name), after=getattr(after, name)))
        if before.community != after.community:
            changes.append(Change(
                kind="community", path=f"{path}.community", tool=tool_id,
                before=f"{before.community.ship} ship / {before.community.skip} skip",
                after=f"{after.community.ship} ship / {after.community.skip} skip",
            ))
    old_reviews = {review.reviewer: review for review in before.reviews} if before else {}
    new_reviews = {review.reviewer: review for review in after.reviews} if after else {}
    for reviewer in [*old_reviews, *(r for r in new_reviews if r not in old_reviews)]:
        a, b = old_reviews.get(reviewer), new_reviews.get(reviewer)
        where = f"{path}.reviews[{reviewer}]"
        if (a.verdict if a else None) != (b.verdict if b else None):
            changes.append(Change(kind="verdict", path=f"{where}.verdict", tool=tool_id,
                                  reviewer=reviewer, before=a.verdict if a else None,
                                  after=b.verdict if b else None))
        if (a.quote if a else None) != (b.quote if b else None):
            changes.append(Change(kind="quote", path=f"{where}.quote", tool=tool_id,
                                  reviewer=reviewer, before=a.quote if a else None,
                                  after=b.quote if b else None))
    old_share = panel_ship(before) if before else None
    new_share = panel_ship(after) if after else None
    if old_share != new_share:
        changes.append(Change(
            kind="panel_ship", path=f"{path}.panel_ship", tool=tool_id,
            before=None if old_share is None else round(float(old_share), 4),
            after=None if new_share is None else round(float(new_share), 4),
            before_label=None if old_share is None else percent_label(old_share),
            after_label=None if new_share is None else percent_label(new_share),
        ))
    return changes
