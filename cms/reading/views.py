"""What a reader sees: a comparison with its derived shares, and an entry of a list.

Shared by the API and the export, so that both show a comparison the same way; feeds and
webhooks link to it with ``comparison_url``. Shares are derived from the verdicts and the
tallies here, never stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from fractions import Fraction
from typing import Any

import msgspec
from msgspec import UNSET, Struct, UnsetType

from ..content.model import (
    Community,
    Comparison,
    Reviewer,
    Tool,
    WorkflowRecord,
    community_share,
    panel_ship,
    panel_verdict,
    percent_label,
    verdict_of,
)
from .card import Card


def comparison_url(base_url: str, slug: str) -> str:
    """Where the public reads a comparison."""
    return f"{base_url}/api/comparisons/{slug}"


def share(value: Fraction) -> float:
    return round(float(value), 4)


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
    # Every match of a list; of a search, at most 1,000, with `total_exact` false when more
    # matched (counting them all would cost what listing them all does).
    total: int
    total_exact: bool = True


class EncodedList(Struct, kw_only=True):
    """A ``ComparisonList`` whose entries are encoded already, as one array: the same bytes,
    for less work."""

    items: msgspec.Raw
    next_cursor: str | None
    total: int
    total_exact: bool = True


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


def summary_view(card: Card, blob: str, url: str,
                 added: Mapping[str, tuple[int, int]] | None = None) -> ComparisonSummary:
    """A list's entry for a card; ``added`` holds votes (tool id -> ship, skip) not in git yet."""
    tools = []
    for tool in card.tools:
        ship, skip = (added or {}).get(tool.id, (0, 0))
        community = Community(ship=tool.community_ship + ship, skip=tool.community_skip + skip)
        panel = tool.panel_ship
        tools.append(ToolSummary(
            id=tool.id, name=tool.name, category=tool.category, tagline=tool.tagline,
            entry_price=tool.entry_price, panel_ship=share(panel),
            panel_ship_label=percent_label(panel), panel_verdict=verdict_of(panel),
            community_label=percent_label(
                None if community.votes == 0 else Fraction(community.ship, community.votes)),
        ))
    return ComparisonSummary(
        slug=card.slug, title=card.title, summary=card.summary, url=url,
        revision=blob, published_at=card.published_at, tools=tools,
    )
