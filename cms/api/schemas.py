"""Request and response bodies.

A read document carries the stored fields plus read-only ones (derived panel shares, rendered
HTML, revision, state). The write bodies accept those read-only fields and ignore them, so a
document read from the API can be sent back unchanged; any other unknown field is an error, so a
misspelt optional field is reported instead of silently dropped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from ..content import codec
from ..content.model import (
    Body,
    Community,
    Comparison,
    Description,
    Review,
    Reviewer,
    ShortText,
    Slug,
    Tool,
    WorkflowRecord,
    canonical_body,
    community_share,
    panel_ship,
    panel_verdict,
    percent_label,
)
from ..identity.actors import Role
from ..reading.index import Entry, share

Ignored = Any  # accepted on write so that reads round-trip, and otherwise ignored
Comment = Annotated[str, Meta(max_length=5000)]


class ToolIn(Struct, forbid_unknown_fields=True, kw_only=True):
    id: Slug
    name: ShortText
    category: ShortText
    tagline: ShortText
    description: Description
    entry_price: ShortText
    reviews: list[Review]
    community: Community = msgspec.field(default_factory=Community)
    panel_ship: Ignored = UNSET
    panel_ship_label: Ignored = UNSET
    panel_verdict: Ignored = UNSET
    community_share: Ignored = UNSET
    community_label: Ignored = UNSET


class ComparisonIn(Struct, forbid_unknown_fields=True, kw_only=True):
    """A comparison as an editor writes it; ``workflow`` and the derived fields are ignored."""

    title: ShortText
    slug: Slug
    summary: Description
    panel: list[Reviewer]
    tools: list[ToolIn]
    body: Body = ""
    comment: Comment = ""
    html: Ignored = UNSET
    revision: Ignored = UNSET
    state: Ignored = UNSET
    workflow: Ignored = UNSET
    url: Ignored = UNSET
    allowed_actions: Ignored = UNSET

    def to_comparison(self) -> Comparison:
        tools = [
            {
                "id": tool.id, "name": tool.name, "category": tool.category,
                "tagline": tool.tagline, "description": tool.description,
                "entry_price": tool.entry_price,
                "reviews": [msgspec.structs.asdict(review) for review in tool.reviews],
                "community": msgspec.to_builtins(tool.community),
            }
            for tool in self.tools
        ]
        return codec.from_builtins({
            "title": self.title, "slug": self.slug, "summary": self.summary,
            "panel": msgspec.to_builtins(self.panel), "tools": tools,
            "body": canonical_body(self.body),
        })


class RevertIn(Struct, forbid_unknown_fields=True):
    to: Annotated[str, Meta(min_length=4, max_length=40, description="The commit to go back to")]
    comment: Comment = ""


class PreviewIn(Struct, forbid_unknown_fields=True):
    expires_in: Annotated[int, Meta(ge=60, le=30 * 24 * 3600)] = 7 * 24 * 3600


class PreviewLink(Struct, kw_only=True):
    id: str
    url: str
    expires_at: datetime


class TransitionIn(Struct, forbid_unknown_fields=True):
    action: Annotated[str, Meta(min_length=1, max_length=40)]
    comment: Comment = ""


class ToolView(Struct, kw_only=True):
    id: str
    name: str
    category: str
    tagline: str
    description: str
    entry_price: str
    reviews: list[Any]
    community: Community
    panel_ship: float
    panel_ship_label: str
    panel_verdict: str
    community_share: float | None
    community_label: str


class ToolSummary(Struct, kw_only=True):
    id: str
    name: str
    category: str
    tagline: str
    entry_price: str
    panel_ship: float
    panel_ship_label: str
    panel_verdict: str
    community_label: str


class ComparisonView(Struct, kw_only=True):
    title: str
    slug: str
    summary: str
    panel: list[Reviewer]
    tools: list[ToolView]
    body: str
    html: str
    revision: str
    state: str
    workflow: WorkflowRecord
    url: str
    allowed_actions: list[str] | UnsetType = UNSET


class ComparisonSummary(Struct, kw_only=True):
    slug: str
    title: str
    summary: str
    url: str
    revision: str
    published_at: datetime | None
    tools: list[ToolSummary]


class ComparisonList(Struct, kw_only=True):
    items: list[ComparisonSummary]
    next_cursor: str | None
    total: int


class DraftSummary(Struct, kw_only=True):
    slug: str
    title: str
    state: str
    revision: str
    authors: list[str]
    approved_by: list[str]
    url: str


class DraftList(Struct, kw_only=True):
    items: list[DraftSummary]


class TokenIn(Struct, forbid_unknown_fields=True):
    name: str
    email: str
    roles: Annotated[list[Role], Meta(min_length=1)]


class TokenView(Struct, kw_only=True):
    id: str
    name: str
    email: str
    roles: list[str]
    created_at: datetime
    revoked_at: datetime | None = None


class TokenCreated(TokenView, kw_only=True):
    token: str


def tool_view(tool: Tool) -> ToolView:
    ship = panel_ship(tool)
    community = community_share(tool)
    return ToolView(
        id=tool.id, name=tool.name, category=tool.category, tagline=tool.tagline,
        description=tool.description, entry_price=tool.entry_price, reviews=tool.reviews,
        community=tool.community, panel_ship=share(ship), panel_ship_label=percent_label(ship),
        panel_verdict=panel_verdict(tool),
        community_share=None if community is None else share(community),
        community_label=percent_label(community),
    )


def comparison_view(
    comparison: Comparison, *, revision: str, html: str, url: str,
    allowed_actions: list[str] | UnsetType = UNSET,
) -> ComparisonView:
    return ComparisonView(
        title=comparison.title, slug=comparison.slug, summary=comparison.summary,
        panel=comparison.panel, tools=[tool_view(tool) for tool in comparison.tools],
        body=comparison.body, html=html, revision=revision, state=comparison.workflow.state,
        workflow=comparison.workflow, url=url, allowed_actions=allowed_actions,
    )


def summary_view(entry: Entry, url: str) -> ComparisonSummary:
    comparison = entry.comparison
    tools = []
    for tool in comparison.tools:
        ship = panel_ship(tool)
        tools.append(ToolSummary(
            id=tool.id, name=tool.name, category=tool.category, tagline=tool.tagline,
            entry_price=tool.entry_price, panel_ship=share(ship),
            panel_ship_label=percent_label(ship), panel_verdict=panel_verdict(tool),
            community_label=percent_label(community_share(tool)),
        ))
    return ComparisonSummary(
        slug=comparison.slug, title=comparison.title, summary=comparison.summary, url=url,
        revision=entry.blob, published_at=comparison.workflow.published_at, tools=tools,
    )
