"""What the site reads from the public API, decoded at the boundary. Fields the site does not
show are not named, so that the API may grow without breaking a build."""

from __future__ import annotations

from datetime import datetime

import msgspec
from msgspec import Struct

# Slugs name the site's folders: one that is not a slug fails the decoding, never a path.
from ..content.model import Slug


class Reviewer(Struct, frozen=True):
    id: str
    name: str
    lens: str


class Review(Struct, frozen=True):
    reviewer: str
    verdict: str
    quote: str


class Tool(Struct, frozen=True):
    name: str
    category: str
    tagline: str
    description: str
    entry_price: str
    reviews: list[Review]
    panel_ship_label: str
    community_label: str


class Workflow(Struct, frozen=True):
    approved_by: list[str] = msgspec.field(default_factory=list)
    published_at: datetime | None = None


class Comparison(Struct, frozen=True):
    slug: Slug
    title: str
    summary: str
    panel: list[Reviewer]
    tools: list[Tool]
    body: str
    workflow: Workflow = msgspec.field(default_factory=Workflow)


class SyncPage(Struct, frozen=True):
    items: list[Comparison]
    deleted: list[Slug]
    next_sync: str | None = None
    next_page: str | None = None


class VerdictChange(Struct, frozen=True):
    time: datetime
    slug: Slug
    title: str
    tool: str
    tool_name: str
    reviewer: str | None
    kind: str
    before: str | float | None
    after: str | float | None
    before_label: str | None
    after_label: str | None
    approved_by: list[str] = msgspec.field(default_factory=list)


class VerdictChanges(Struct, frozen=True):
    items: list[VerdictChange]
    next_cursor: str | None = None
