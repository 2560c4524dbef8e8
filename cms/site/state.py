"""What the builder keeps between builds, beside the site (never in it, so that the folder a
web server serves holds the pages alone): the sync token it continues from, a card of each
published comparison (what list pages and the feed show), and the list pages it wrote.

A state that is missing, unreadable or from another API is no state: the next build is a full
one, which writes only the files whose bytes differ, so starting over costs time, never pages.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Iterator
from datetime import datetime
from importlib import resources
from pathlib import Path

import msgspec
from msgspec import Struct

from ..content.model import Slug
from .model import Comparison

log = logging.getLogger("cms.site")

_VERSION = 2


def _rendering() -> str:
    """What makes the pages: a site built by other code is built again in full, so that every
    page takes the new markup, not only the pages of comparisons that change."""
    digest = hashlib.sha256()
    for name in ("pages.py", "feed.py", "style.css"):
        digest.update(resources.files(__package__).joinpath(name).read_bytes())
    return digest.hexdigest()[:16]


RENDERING = _rendering()


class CardTool(Struct, frozen=True):
    name: str
    category: str
    panel_ship_label: str
    community_label: str


class Card(Struct, frozen=True):
    slug: Slug  # checked when a state is read back, as it names a folder
    title: str
    summary: str
    published_at: datetime | None
    tools: list[CardTool]
    reviewers: dict[str, str]  # id -> name, for the page of verdict changes


class SiteState(Struct):
    version: int = _VERSION
    api: str = ""
    rendering: str = RENDERING
    sync: str | None = None
    cards: dict[str, Card] = msgspec.field(default_factory=dict)
    # The list pages (index, categories, their further pages) of the last build, relative to
    # the site: those the next build no longer makes are removed.
    lists: list[str] = msgspec.field(default_factory=list)


def card(comparison: Comparison) -> Card:
    return Card(
        slug=comparison.slug, title=comparison.title, summary=comparison.summary,
        published_at=comparison.workflow.published_at,
        tools=[CardTool(name=tool.name, category=tool.category,
                        panel_ship_label=tool.panel_ship_label,
                        community_label=tool.community_label) for tool in comparison.tools],
        reviewers={reviewer.id: reviewer.name for reviewer in comparison.panel})


def load(folder: Path, api: str) -> SiteState:
    try:
        state = msgspec.json.decode((folder / "site.json").read_bytes(), type=SiteState)
    except FileNotFoundError:
        return SiteState(api=api)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("the site's state could not be read (%s): building in full", exc)
        return SiteState(api=api)
    if state.version != _VERSION or state.api != api or state.rendering != RENDERING:
        return SiteState(api=api)
    return state


def save(folder: Path, state: SiteState) -> None:
    write_atomically(folder / "site.json", msgspec.json.encode(state))


TEMPORARY = ".cms-site.tmp"


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old bytes or the new, never part of them. One writer at a time per
    path (the build lock, or the ids' lock); a temporary file a kill left behind is swept by
    the next build."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}{TEMPORARY}")
    temp.write_bytes(data)
    os.replace(temp, path)


@contextlib.contextmanager
def building(folder: Path, out: Path) -> Iterator[bool]:
    """One build at a time on one site, whichever process runs it; whether the last one was
    cut short. Such a build (killed, or stopped by an error) leaves its mark: the site may hold
    pages its state does not know of, so the next build is a full one, and it sweeps the
    temporary files that may be left."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "build.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        mark = folder / "building"
        interrupted = mark.exists()
        if interrupted and out.is_dir():
            for left in out.rglob(f"*{TEMPORARY}"):
                left.unlink(missing_ok=True)
        mark.touch()
        yield interrupted
        mark.unlink()
