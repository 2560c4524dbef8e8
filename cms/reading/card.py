"""A comparison's card: what a list shows of it and what lists filter and sort it by.

The catalogue keeps a card for every published comparison and nothing more, so that the memory a
server needs does not grow with the size of the documents: a whole comparison is read only when
one is asked for. Shares are derived from the counts kept here, as the full view derives them.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from fractions import Fraction

from msgspec import Struct

from ..content.model import Comparison, Tool, panel_ship, panel_verdict


class CardTool(Struct, array_like=True, frozen=True):
    id: str
    name: str
    category: str
    tagline: str
    entry_price: str
    ships: int  # reviews that say ship
    reviews: int
    community_ship: int
    community_skip: int

    @property
    def panel_ship(self) -> Fraction:
        return Fraction(self.ships, self.reviews) if self.reviews else Fraction(0)


class Card(Struct, array_like=True, frozen=True):
    slug: str
    title: str
    summary: str
    published_at: datetime | None
    tools: list[CardTool]


class SearchText(Struct, frozen=True):
    """What search matches, in three widening parts: a query found in an earlier part ranks
    above one found only in a later (each part includes the ones before it)."""

    head: str  # the title and the tools' names, ids and categories
    lead: str  # and the summary and the taglines
    full: str  # and the descriptions, the reviewers' quotes and the body


def card_of(comparison: Comparison) -> Card:
    return Card(slug=comparison.slug, title=comparison.title, summary=comparison.summary,
                published_at=comparison.workflow.published_at,
                tools=[_card_tool(tool) for tool in comparison.tools])


def _card_tool(tool: Tool) -> CardTool:
    ships = sum(1 for review in tool.reviews if review.verdict == "ship")
    return CardTool(id=tool.id, name=tool.name, category=tool.category, tagline=tool.tagline,
                    entry_price=tool.entry_price, ships=ships, reviews=len(tool.reviews),
                    community_ship=tool.community.ship, community_skip=tool.community.skip)


def search_text(comparison: Comparison) -> SearchText:
    tools = comparison.tools
    head = [comparison.title, *(f"{t.name} {t.id} {t.category}" for t in tools)]
    lead = [*head, comparison.summary, *(tool.tagline for tool in tools)]
    quotes = [review.quote for tool in tools for review in tool.reviews]
    full = [*lead, *(tool.description for tool in tools), *quotes, comparison.body]
    return SearchText(head=_distinct(head), lead=_distinct(lead), full=_distinct(full))


def _distinct(texts: list[str]) -> str:
    """Each run of characters between spaces once: the index keeps which words a comparison
    has, not how often or where, so this is the same index for half the work. Every space is
    a separator to the index's tokenizer, so no word is cut or joined."""
    return " ".join(dict.fromkeys(" ".join(texts).split()))


class Keys(Struct, frozen=True):
    """A card's sort keys and filter values, as the catalogue's columns hold them."""

    published: str
    title: str
    panel_ship: float
    tools: list[tuple[str, str, str, str]]  # id, casefolded name and category, panel verdict


def keys_of(comparison: Comparison) -> Keys:
    when = comparison.workflow.published_at
    return Keys(
        published=published_key(when), title=comparison.title.casefold(),
        panel_ship=float(max(panel_ship(tool) for tool in comparison.tools)),
        tools=[(tool.id, tool.name.casefold(), tool.category.casefold(), panel_verdict(tool))
               for tool in comparison.tools])


def published_key(when: datetime | None) -> str:
    return when.isoformat() if when else ""


# Rows are numbered so that a larger number is a newer publication: search walks its matches
# from the largest number down and stops after a page, so newest-first costs nothing extra.
# The low bits spread comparisons published in the same second by a hash of the slug.
_SPREAD_BITS = 20


def row_number(slug: str, when: datetime | None) -> int:
    seconds = max(0, int(when.timestamp())) if when else 0
    spread = int.from_bytes(hashlib.sha1(slug.encode(), usedforsecurity=False).digest()[:4])
    return (seconds << _SPREAD_BITS) | (spread & ((1 << _SPREAD_BITS) - 1))
