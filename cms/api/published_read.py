"""Reading one published comparison: the answer to ``GET /api/comparisons/{slug}``, made
without the framework, so that the route and what serves reads while the app is still being
built (``starting``) give the same bytes."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import msgspec

from ..content.model import Community, Comparison, Tool
from ..errors import NotFound
from ..reading import views
from ..reading.index import Entry
from ..reading.views import comparison_view
from ..votes.store import Counts, Pending
from .http import PUBLIC_CACHE, etag, not_modified
from .services import Services

# Tries at reading a comparison and main's commit together while main moves.
ATTEMPTS = 3


class ReadAnswer(NamedTuple):
    headers: dict[str, str]
    body: bytes | None  # None: not modified


def read_answer(services: Services, slug: str, if_none_match: str | None) -> ReadAnswer:
    """The published comparison's encoded view and its caching headers (``slug`` is checked;
    raises NotFound)."""
    entry, head = published(services, slug)
    comparison, added = with_live_tallies(entry.comparison, live_pending(services, head))
    # Votes not yet folded into git change what is shown, not the revision to edit.
    tag = etag(f"{entry.blob}+{added}", weak=True) if added else etag(entry.blob)
    headers = {"ETag": tag, "Cache-Control": PUBLIC_CACHE}
    if not_modified(if_none_match, tag):
        return ReadAnswer(headers, None)
    body = services.bodies.get(tag)
    if body is None:
        view = comparison_view(comparison, revision=entry.blob, html=entry.html(),
                               url=comparison_url(services, slug))
        body = msgspec.json.encode(view)
        services.bodies.put(tag, body)
    return ReadAnswer(headers, body)


def published(services: Services, slug: str) -> tuple[Entry, str | None]:
    """A published comparison and main's commit it was read from, so that the votes added to
    its tallies are exactly those that commit does not hold."""
    index = services.index
    head = index.head
    for attempt in range(1, ATTEMPTS + 1):  # another try only when main moved in between
        entry = index.get(slug)
        if entry is None:
            raise NotFound(f"no published comparison with slug `{slug}`", field="slug")
        if index.head == head or attempt == ATTEMPTS:
            return entry, head
        head = index.head
    raise AssertionError("unreachable")


def live_pending(services: Services, head: str | None) -> Pending:
    """The votes to add to the tallies of main at ``head``, recorded by any process."""
    return services.vote_folder.live.pending(head)


def live_community(tool: Tool, pending: dict[str, Counts]) -> Community:
    """The tally in git plus the votes not folded into it yet."""
    ship, skip = pending.get(tool.id, (0, 0))
    return Community(ship=tool.community.ship + ship, skip=tool.community.skip + skip)


def with_live_tallies(comparison: Comparison, pending: Pending) -> tuple[Comparison, str]:
    """The comparison with pending votes added to its tallies, and a name for what was added
    ("" when nothing was): two different sets of pending votes never share a name."""
    added = pending.of(comparison.slug)
    if not added:
        return comparison, ""
    tools = [msgspec.structs.replace(tool, community=live_community(tool, added))
             for tool in comparison.tools]
    name = hashlib.sha1(repr(sorted(added.items())).encode(), usedforsecurity=False)
    return msgspec.structs.replace(comparison, tools=tools), name.hexdigest()[:16]


def comparison_url(services: Services, slug: str) -> str:
    return views.comparison_url(services.settings.base_url, slug)
