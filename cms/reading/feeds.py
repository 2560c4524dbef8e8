"""Feeds of the latest publications ("the next comparison in your inbox"): Atom and JSON Feed 1.1.

Items come from main's publication log: each publish commit is compared with what main held
before it, so an item says whether the comparison is new or which verdicts changed.
"""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime

import msgspec
from msgspec import Struct

from ..content.diff import Change, compare
from ..content.model import Comparison
from ..content.render import render_cached
from ..editing.events import from_commit
from ..store.documents import Documents
from ..store.repository import Commit
from .views import comparison_url

ATOM = "http://www.w3.org/2005/Atom"


class FeedItem(Struct, frozen=True, kw_only=True):
    id: str
    slug: str
    title: str
    url: str
    published: datetime
    summary: str
    content_html: str
    author: str
    new: bool


def _publications(documents: Documents, head: str, limit: int) -> Iterator[Commit]:
    """Main's newest ``limit`` publications, however many vote folds or other commits lie
    between them. Git's grep finds candidates fast, but it reads every line of a message: a
    comment can look like a trailer, so each is checked, and the search goes on past them."""
    found = skipped = 0
    while found < limit:
        shas = documents.repo.git(
            "log", "--first-parent", "--format=%H", f"-n{4 * limit}", f"--skip={skipped}",
            "--extended-regexp", "--grep=^Cms-Action: publish$", head).split()
        for sha in shas:
            commit = documents.repo.read_commit(sha)
            if commit.message.first("Cms-Action") == "publish" and commit.parents:
                found += 1
                yield commit
                if found == limit:
                    return
        if len(shas) < 4 * limit:
            return
        skipped += len(shas)


def latest(documents: Documents, base_url: str, limit: int = 30) -> list[FeedItem]:
    items: list[FeedItem] = []
    head = documents.main_head()
    if head is None:
        return items
    for commit in _publications(documents, head, limit):
        event = from_commit(commit, on_main=True)
        previous = documents.repo.read_commit(commit.parents[0]).tree
        # A release publishes several comparisons in one commit: an item each.
        for slug in event.slugs:
            after = documents.in_tree(commit.tree, slug)
            if after is None:
                continue
            before = documents.in_tree(previous, slug)
            changes = compare(before, after).verdict_changes if before else []
            summary = _summary(after, before is None, changes)
            url = comparison_url(base_url, slug)
            items.append(FeedItem(
                id=f"{url}#{event.commit}", slug=slug,
                title=after.title if before is None else f"{after.title}: verdicts updated"
                if changes else f"{after.title}: updated",
                url=url, published=event.at, summary=summary,
                content_html=f"<p>{html.escape(summary)}</p>\n"
                + render_cached(f"feed:{event.commit}:{slug}", after.body),
                author=event.actor.name, new=before is None,
            ))
    return items[:limit]


def _summary(comparison: Comparison, new: bool, changes: list[Change]) -> str:
    if new:
        return f"New comparison. {comparison.summary}"
    names = {tool.id: tool.name for tool in comparison.tools}
    panel = {reviewer.id: reviewer.name for reviewer in comparison.panel}
    parts = []
    for change in changes:
        tool = names.get(change.tool or "", change.tool or "")
        if change.kind == "verdict":
            who = panel.get(change.reviewer or "", change.reviewer or "")
            parts.append(f"{tool}: {who} now says {change.after} (was {change.before})")
        elif change.kind == "panel_ship":
            parts.append(f"{tool}: panel ship {change.before_label} → {change.after_label}")
    return "; ".join(parts) + "." if parts else comparison.summary


def atom(items: list[FeedItem], *, base_url: str, self_url: str) -> bytes:
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    ET.SubElement(feed, f"{{{ATOM}}}id").text = f"{base_url}/api/feed.atom"
    ET.SubElement(feed, f"{{{ATOM}}}title").text = "AI tool comparisons: latest verdicts"
    ET.SubElement(feed, f"{{{ATOM}}}updated").text = _when(items[0].published if items else None)
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="self", href=self_url)
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="alternate", href=f"{base_url}/api/comparisons")
    author = ET.SubElement(feed, f"{{{ATOM}}}author")
    ET.SubElement(author, f"{{{ATOM}}}name").text = "Comparisons CMS"
    for item in items:
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        ET.SubElement(entry, f"{{{ATOM}}}id").text = item.id
        ET.SubElement(entry, f"{{{ATOM}}}title").text = item.title
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = _when(item.published)
        ET.SubElement(entry, f"{{{ATOM}}}published").text = _when(item.published)
        ET.SubElement(entry, f"{{{ATOM}}}link", rel="alternate", href=item.url)
        entry_author = ET.SubElement(entry, f"{{{ATOM}}}author")
        ET.SubElement(entry_author, f"{{{ATOM}}}name").text = item.author
        ET.SubElement(entry, f"{{{ATOM}}}summary").text = item.summary
        ET.SubElement(entry, f"{{{ATOM}}}content", type="html").text = item.content_html
    document: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return document


class _JsonAuthor(Struct):
    name: str


class _JsonItem(Struct, kw_only=True):
    id: str
    url: str
    title: str
    summary: str
    content_html: str
    date_published: datetime
    authors: list[_JsonAuthor]
    tags: list[str]


class _JsonFeed(Struct, kw_only=True):
    version: str
    title: str
    home_page_url: str
    feed_url: str
    description: str
    items: list[_JsonItem]


def json_feed(items: list[FeedItem], *, base_url: str, self_url: str) -> bytes:
    feed = _JsonFeed(
        version="https://jsonfeed.org/version/1.1",
        title="AI tool comparisons: latest verdicts",
        home_page_url=f"{base_url}/api/comparisons", feed_url=self_url,
        description="New comparisons and changed panel verdicts, as they are published.",
        items=[
            _JsonItem(id=item.id, url=item.url, title=item.title, summary=item.summary,
                      content_html=item.content_html, date_published=item.published,
                      authors=[_JsonAuthor(item.author)],
                      tags=["new" if item.new else "updated"])
            for item in items
        ],
    )
    return msgspec.json.encode(feed)


def _when(moment: datetime | None) -> str:
    return (moment or datetime(1970, 1, 1, tzinfo=UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
