"""A build of the site: what changed since the last one, pulled through the sync API, and only
the files whose bytes change are written.

A comparison's two pages are made when it appears in the sync; the list pages, the page of
recent verdict changes and the feed when any comparison came or went. Pages of comparisons no
longer published are removed, and so are list pages the catalogue no longer fills. With nothing
new, a build writes nothing (not even its state)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from msgspec import Struct

from ..content.model import SLUG_RE
from . import pages
from .feed import atom
from .source import ONE_BY_ONE, Source
from .state import TEMPORARY, Card, SiteState, building, card, load, save, write_atomically

log = logging.getLogger("cms.site")

PER_PAGE = 50


class BuildResult(Struct, kw_only=True):
    written: list[str]
    removed: list[str]
    comparisons: int  # published now
    full: bool


class _Site:
    """The output folder: writes that change something, and removals, counted."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.written: list[str] = []
        self.removed: list[str] = []

    def put(self, path: str, data: bytes) -> None:
        target = self.out / path
        try:
            if target.read_bytes() == data:
                return
        except FileNotFoundError:
            pass
        write_atomically(target, data)
        self.written.append(path)

    def drop_comparison(self, slug: str) -> None:
        """A comparison's folder, whole: its pages and anything else in it."""
        if not re.match(SLUG_RE, slug):
            return  # a folder the site never made
        folder = (self.out / pages.comparison_path(slug)).parent
        if not folder.is_dir():
            return
        for path in sorted(folder.rglob("*"), reverse=True):
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()
                if not path.name.endswith(TEMPORARY):
                    self.removed.append(str(path.relative_to(self.out)))
        folder.rmdir()

    def drop(self, path: str) -> None:
        target = self.out / path
        try:
            target.unlink()
        except FileNotFoundError:
            return
        self.removed.append(path)
        folder = target.parent
        while folder != self.out:  # the folders the page was alone in
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent


def build(source: Source, out: Path, state_folder: Path, *, site_url: str = "") -> BuildResult:
    with building(state_folder, out) as interrupted:
        state = SiteState(api=source.api) if interrupted else load(state_folder, source.api)
        synced = source.sync(state.sync)
        site = _Site(out)
        cards = {} if synced.full else dict(state.cards)
        records = source.every_change() if len(synced.items) > ONE_BY_ONE else None
        for item in synced.items:
            changes = (records.get(item.slug, []) if records is not None
                       else source.verdict_changes(item.slug))
            site.put(pages.comparison_path(item.slug), pages.comparison_page(item, changes))
            site.put(pages.history_path(item.slug), pages.history_page(item, changes))
            cards[item.slug] = card(item)
        present = {item.slug for item in synced.items}
        gone = set(synced.deleted) - present
        if synced.full:  # what a lost state knew of is on the disk
            gone |= (set(state.cards) | _folders(out / "comparisons")) - present
        for slug in sorted(gone):
            cards.pop(slug, None)
            site.drop_comparison(slug)
        lists = state.lists
        if synced.items or gone or state.sync is None:
            ordered = sorted(cards.values(), key=_latest_first)
            lists = _lists(site, ordered)
            known = set(state.lists)
            if synced.full:
                known |= {str(path.relative_to(out)) for folder in ("page", "category")
                          for path in (out / folder).rglob("index.html")}
            for path in sorted(known - set(lists)):
                site.drop(path)
            site.put("verdicts.html", pages.recent_changes_page(source.recent_changes(), cards))
            site.put(pages.FEED, atom(ordered, source.api, site_url))
        site.put(pages.STYLESHEET, stylesheet())
        after = SiteState(api=source.api, sync=synced.next_sync, cards=cards, lists=lists)
        if after != state:
            save(state_folder, after)
        return BuildResult(written=site.written, removed=site.removed, comparisons=len(cards),
                           full=synced.full)


def _folders(folder: Path) -> set[str]:
    try:
        return {path.name for path in folder.iterdir() if path.is_dir()}
    except FileNotFoundError:
        return set()


def _latest_first(card: Card) -> tuple[float, str]:
    return (-(card.published_at.timestamp() if card.published_at else 0.0), card.slug)


def stylesheet() -> bytes:
    return resources.files(__package__).joinpath(pages.STYLESHEET).read_bytes()


def _lists(site: _Site, ordered: list[Card]) -> list[str]:
    """The index, in pages, and each category's; the paths written, relative to the site."""
    by_category: dict[str, list[Card]] = {}
    names: dict[str, str] = {}
    for entry in ordered:
        for slug, name in sorted({(pages.category_slug(tool.category), tool.category)
                                  for tool in entry.tools}):
            by_category.setdefault(slug, []).append(entry)
            names.setdefault(slug, name)
    categories = sorted((pages.Category(slug=slug, name=names[slug], count=len(found))
                         for slug, found in by_category.items()),
                        key=lambda category: (category.name.casefold(), category.slug))
    items = {entry.slug: pages.card_item(entry) for entry in ordered}
    paths = _paged(site, [items[entry.slug] for entry in ordered], heading=pages.SITE_NAME,
                   intro="Two AI tools side by side: the panel's verdicts, the pricing, the "
                         "reviewers' split and the community's vote.",
                   categories=categories, current=None,
                   page_path=lambda n: "index.html" if n == 1 else f"page/{n}/index.html")
    for category in categories:
        paths += _paged(site, [items[entry.slug] for entry in by_category[category.slug]],
                        heading=category.name, intro=f"Comparisons with a tool in "
                                                     f"{category.name}.",
                        categories=categories, current=category.slug,
                        page_path=_category_page(category.slug))
    return paths


def _category_page(slug: str) -> Callable[[int], str]:
    return lambda n: (f"category/{slug}/index.html" if n == 1
                      else f"category/{slug}/page/{n}/index.html")


def _paged(site: _Site, cards: list[str], *, heading: str, intro: str,
           categories: list[pages.Category], current: str | None,
           page_path: Callable[[int], str]) -> list[str]:
    count = max(1, -(-len(cards) // PER_PAGE))
    written = []
    for number in range(1, count + 1):
        path = page_path(number)
        site.put(path, pages.list_page(
            cards=cards[(number - 1) * PER_PAGE : number * PER_PAGE], heading=heading,
            intro=intro, categories=categories, current_category=current, number=number,
            pages=count, page_path=page_path))
        written.append(path)
    return written
