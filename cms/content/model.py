"""The content model: a comparison of two AI tools, judged by a fixed panel.

These structs are the single definition of a valid comparison. Cross-field rules (one review per
reviewer per tool, distinct ids) live in ``__post_init__`` so that msgspec reports them with the
path of the offending value, exactly like a type error.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from fractions import Fraction
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

# `\Z`, not `$`: msgspec searches, and `$` would also match before a trailing newline.
SLUG_RE = r"^[a-z0-9]+(?:-[a-z0-9]+)*\Z"
PERSON_RE = r"^[^<>\n]+ <[^<>\s]+@[^<>\s]+>\Z"

Slug = Annotated[str, Meta(pattern=SLUG_RE, min_length=3, max_length=120)]
ReviewerId = Annotated[str, Meta(pattern=SLUG_RE, min_length=1, max_length=40)]
ShortText = Annotated[str, Meta(min_length=1, max_length=200)]
Description = Annotated[str, Meta(min_length=1, max_length=4000)]
QuoteText = Annotated[str, Meta(min_length=1, max_length=8000)]
Body = Annotated[str, Meta(max_length=200_000)]
PersonLine = Annotated[str, Meta(pattern=PERSON_RE, max_length=320)]  # "Name <email>"
StateName = Annotated[str, Meta(pattern=r"^[a-z][a-z_]*\Z", max_length=40)]
WORKFLOW_NAME_RE = r"^[a-z0-9]+(?:-[a-z0-9]+)*\Z"
WorkflowName = Annotated[str, Meta(pattern=WORKFLOW_NAME_RE, max_length=40)]
Moment = Annotated[datetime, Meta(tz=True)]
Tally = Annotated[int, Meta(ge=0, le=10**12)]
Verdict = Literal["ship", "skip"]

# Control characters cannot survive a round trip through YAML and a terminal unharmed; tab and
# newline are the only ones with a meaning in prose.
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufeff\u2028\u2029]")


def _check_text(field: str, value: str) -> None:
    match = _FORBIDDEN_CHARS.search(value)
    if match:
        raise ValueError(
            f"`{field}` contains the control character U+{ord(match.group()):04X}, which is not allowed"
        )


class Reviewer(Struct, forbid_unknown_fields=True):
    id: ReviewerId
    name: ShortText
    lens: ShortText

    def __post_init__(self) -> None:
        _check_text("name", self.name)
        _check_text("lens", self.lens)


class Review(Struct, forbid_unknown_fields=True):
    reviewer: ReviewerId
    verdict: Verdict
    quote: QuoteText

    def __post_init__(self) -> None:
        _check_text("quote", self.quote)


class Community(Struct, forbid_unknown_fields=True):
    ship: Tally = 0
    skip: Tally = 0

    @property
    def votes(self) -> int:
        return self.ship + self.skip


class Tool(Struct, forbid_unknown_fields=True):
    id: Slug
    name: ShortText
    category: ShortText
    tagline: ShortText
    description: Description
    entry_price: ShortText
    reviews: list[Review]
    community: Community = msgspec.field(default_factory=Community)

    def __post_init__(self) -> None:
        for name in ("name", "category", "tagline", "description", "entry_price"):
            _check_text(name, getattr(self, name))
        seen: set[str] = set()
        for review in self.reviews:
            if review.reviewer in seen:
                raise ValueError(f"`reviews` has two reviews by reviewer `{review.reviewer}`")
            seen.add(review.reviewer)


class WorkflowRecord(Struct, forbid_unknown_fields=True):
    """Where the document stands in the review workflow, kept in the file so it travels with it."""

    # The workflow it follows, chosen when it was created (none: the one named `default`).
    name: WorkflowName | None = None
    state: StateName = "draft"
    authors: list[PersonLine] = msgspec.field(default_factory=list)
    approved_by: list[PersonLine] = msgspec.field(default_factory=list)
    published_at: Moment | None = None

    def __post_init__(self) -> None:
        # Stored in UTC: offsets finer than a minute would not survive the file's notation.
        if self.published_at is not None:
            self.published_at = self.published_at.astimezone(UTC)


class Comparison(Struct, forbid_unknown_fields=True):
    title: ShortText
    slug: Slug
    summary: Description
    panel: Annotated[list[Reviewer], Meta(min_length=1, max_length=12)]
    tools: Annotated[list[Tool], Meta(min_length=2, max_length=2)]
    body: Body = ""
    workflow: WorkflowRecord = msgspec.field(default_factory=WorkflowRecord)

    def __post_init__(self) -> None:
        _check_text("title", self.title)
        _check_text("summary", self.summary)
        _check_text("body", self.body)
        panel_ids = [reviewer.id for reviewer in self.panel]
        if len(set(panel_ids)) != len(panel_ids):
            raise ValueError("`panel` lists the same reviewer id twice")
        if self.tools[0].id == self.tools[1].id:
            raise ValueError("`tools` must name two different tools")
        expected = set(panel_ids)
        for index, tool in enumerate(self.tools):
            reviewed = {review.reviewer for review in tool.reviews}
            if unknown := sorted(reviewed - expected):
                raise ValueError(
                    f"`tools[{index}].reviews` names `{unknown[0]}`, who is not on the panel"
                )
            if missing := sorted(expected - reviewed):
                raise ValueError(
                    f"`tools[{index}].reviews` has no review from panel reviewer `{missing[0]}`"
                )


def panel_ship(tool: Tool) -> Fraction:
    """The share of the panel that says ship: derived, so it can never disagree with the verdicts."""
    if not tool.reviews:
        return Fraction(0)
    ships = sum(1 for review in tool.reviews if review.verdict == "ship")
    return Fraction(ships, len(tool.reviews))


def panel_verdict(tool: Tool) -> Literal["ship", "skip", "split"]:
    return verdict_of(panel_ship(tool))


def verdict_of(share: Fraction) -> Literal["ship", "skip", "split"]:
    """The panel's verdict for a share of ship verdicts: a majority either way, else split."""
    if share > Fraction(1, 2):
        return "ship"
    if share < Fraction(1, 2):
        return "skip"
    return "split"


def community_share(tool: Tool) -> Fraction | None:
    """The community's ship share, or None when nobody has voted yet (shown as "—")."""
    if tool.community.votes == 0:
        return None
    return Fraction(tool.community.ship, tool.community.votes)


def percent_label(share: Fraction | None) -> str:
    return "—" if share is None else f"{round(share * 100)}%"


def canonical_body(body: str) -> str:
    """Normalise line endings and trailing blank lines, so equal prose makes equal files."""
    text = body.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    return f"{text}\n" if text.strip() else ""
