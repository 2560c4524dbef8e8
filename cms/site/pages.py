"""The site's pages as HTML text: plain, readable without JavaScript or images, one stylesheet.

Everything from the API is escaped here; the long-form body is rendered again from its Markdown
by the CMS's own safe renderer rather than taken as HTML, so that the site stays safe even if
what it reads is not. Pages carry no build time or anything else that varies between builds of
the same content, so that an unchanged comparison makes the same bytes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from html import escape

from msgspec import Struct

from ..content.render import render_markdown
from .model import Comparison, Tool, VerdictChange
from .state import Card

SITE_NAME = "AI tool comparisons"
STYLESHEET = "style.css"
FEED = "feed.atom"


class Category(Struct, frozen=True):
    slug: str
    name: str
    count: int


def category_slug(name: str) -> str:
    """A folder name for a category: its words, lower-cased and joined by hyphens; a name with
    anything else in it ("C++", "Données") gets a short digest of itself too, so that two
    names never share a folder."""
    folded = name.casefold().strip()
    words = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")
    if re.fullmatch(r"[a-z0-9]+(?: [a-z0-9]+)*", folded):
        return words
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:6]
    return f"{words or 'category'}-{digest}"


def comparison_path(slug: str) -> str:
    return f"comparisons/{slug}/index.html"


def history_path(slug: str) -> str:
    return f"comparisons/{slug}/verdicts.html"


def root_of(path: str) -> str:
    """What leads from the page at ``path`` to the site's top."""
    return "../" * path.count("/")


def _href(root: str, path: str) -> str:
    """A link from a page ``root`` deep to a site path; folders are linked by their index."""
    target = path.removesuffix("index.html")
    return f"{root}{target}" if target else (root or "./")


def _date(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return (f'<time datetime="{moment.strftime("%Y-%m-%dT%H:%M:%SZ")}">'
            f'{moment.day} {moment.strftime("%B %Y")}</time>')


def _names(lines: Iterable[str]) -> str:
    """``Name <address>`` lines as names: the site shows who, not how to reach them."""
    return ", ".join(escape(line.split("<", 1)[0].strip()) for line in lines)


def _verdict(verdict: str) -> str:
    word = {"ship": "Ship", "skip": "Skip", "split": "Split"}.get(verdict, verdict)
    return f'<strong class="verdict verdict-{escape(verdict)}">{escape(word)}</strong>'


def page(*, title: str, root: str, body: str, description: str = "",
         current: str = "") -> bytes:
    """A whole page: ``root`` leads from it to the site's top ("", "../", …)."""
    def nav_link(path: str, label: str) -> str:
        here = ' aria-current="page"' if path == current else ""
        return f'<li><a href="{_href(root, path)}"{here}>{label}</a></li>'

    meta = (f'\n<meta name="description" content="{escape(description)}">'
            if description else "")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>{meta}
<link rel="stylesheet" href="{root}{STYLESHEET}">
<link rel="alternate" type="application/atom+xml" title="{SITE_NAME}: latest publications" \
href="{root}{FEED}">
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="site">
<p class="brand"><a href="{_href(root, "index.html")}">{SITE_NAME}</a></p>
<nav aria-label="Site">
<ul>
{nav_link("index.html", "All comparisons")}
{nav_link("verdicts.html", "Verdict changes")}
<li><a href="{root}{FEED}">Atom feed</a></li>
</ul>
</nav>
</header>
<main id="main">
{body}
</main>
<footer class="site">
<p>Published comparisons, read from the CMS's public API. \
<a href="{root}{FEED}">Follow new publications (Atom)</a>.</p>
</footer>
</body>
</html>
""".encode()


# A comparison


def comparison_page(comparison: Comparison, changes: list[VerdictChange]) -> bytes:
    root = root_of(comparison_path(comparison.slug))
    tools = "\n".join(_tool(tool, number) for number, tool in enumerate(comparison.tools))
    scorecard = "\n".join(
        _scorecard_row(reviewer.id, reviewer.name, reviewer.lens, comparison.tools)
        for reviewer in comparison.panel)
    meta = []
    if comparison.workflow.published_at is not None:
        meta.append(f"Published {_date(comparison.workflow.published_at)}")
    if comparison.workflow.approved_by:
        meta.append(f"approved by {_names(comparison.workflow.approved_by)}")
    changed = (f"{len(changes)} verdict change{'s' if len(changes) != 1 else ''}" if changes
               else "no verdict changes yet")
    meta.append(f'<a href="verdicts.html">History of verdict changes</a> ({changed})')
    body = f"""<article class="comparison">
<p class="kicker">AI tool comparison</p>
<h1>{escape(comparison.title)}</h1>
<p class="summary">{escape(comparison.summary)}</p>
<p class="meta">{" · ".join(meta)}</p>
<section class="tools" aria-labelledby="tools-heading">
<h2 id="tools-heading">Side by side</h2>
<div class="pair">
{tools}
</div>
</section>
<section class="scorecard" aria-labelledby="scorecard-heading">
<h2 id="scorecard-heading">Reviewer scorecard</h2>
{scorecard}
</section>
<section class="body" aria-labelledby="body-heading">
<h2 id="body-heading">The analysis</h2>
<div class="prose">
{_body(comparison.body)}
</div>
</section>
</article>"""
    return page(title=f"{comparison.title} · {SITE_NAME}", root=root, body=body,
                description=comparison.summary)


def _tool(tool: Tool, number: int) -> str:
    return f"""<section class="tool" aria-labelledby="tool-{number}">
<h3 id="tool-{number}">{escape(tool.name)}</h3>
<p class="category">{escape(tool.category)}</p>
<p class="tagline">{escape(tool.tagline)}</p>
<dl class="figures">
<div><dt>Panel ship</dt><dd>{escape(tool.panel_ship_label)}</dd></div>
<div><dt>Community</dt><dd>{escape(tool.community_label)}</dd></div>
<div><dt>Entry</dt><dd>{escape(tool.entry_price)}</dd></div>
</dl>
<p class="description">{escape(tool.description)}</p>
</section>"""


def _scorecard_row(reviewer: str, name: str, lens: str, tools: list[Tool]) -> str:
    quotes = []
    for tool in tools:
        review = next((review for review in tool.reviews if review.reviewer == reviewer), None)
        if review is None:
            quotes.append(f'<div class="quote"><p class="on">{escape(tool.name)}: '
                          f"no review</p></div>")
            continue
        quotes.append(f"""<figure class="quote">
<figcaption class="on">{escape(tool.name)}: {_verdict(review.verdict)}</figcaption>
<blockquote><p>{escape(review.quote)}</p></blockquote>
</figure>""")
    joined = "\n".join(quotes)
    return f"""<section class="reviewer" aria-label="{escape(name)}">
<h3>{escape(name)}</h3>
<p class="lens">{escape(lens)}</p>
<div class="pair">
{joined}
</div>
</section>"""


def _body(markdown: str) -> str:
    """The body's headings sit below the section it is in (an h2): its own h2 become h3.
    Code blocks and tables scroll sideways on a phone, so they take the keyboard's focus too
    (or a keyboard could not scroll them)."""
    html = re.sub(r"<(/?)h([1-6])>",
                  lambda found: f"<{found.group(1)}h{min(6, int(found.group(2)) + 1)}>",
                  render_markdown(markdown))
    return html.replace("<pre>", '<pre tabindex="0">').replace("<table>", '<table tabindex="0">')


# Verdict changes


def _change(change: VerdictChange, reviewers: dict[str, str], root: str, *,
            with_title: bool) -> str:
    before = escape(_shown(change.before_label, change.before))
    after = escape(_shown(change.after_label, change.after))
    if change.kind == "verdict":
        who = reviewers.get(change.reviewer or "", change.reviewer or "a reviewer")
        what = (f"<bdi>{escape(who)}</bdi> on <bdi>{escape(change.tool_name)}</bdi>: "
                f"<del>{before}</del> → <ins>{after}</ins>")
    else:
        what = (f"Panel ship for <bdi>{escape(change.tool_name)}</bdi>: "
                f"<del>{before}</del> → <ins>{after}</ins>")
    title = (f' <a href="{_href(root, comparison_path(change.slug))}">'
             f"<bdi>{escape(change.title)}</bdi></a>" if with_title else "")
    approved = f" Approved by {_names(change.approved_by)}." if change.approved_by else ""
    return f"<li><p>{_date(change.time)}{title}</p><p>{what}.{approved}</p></li>"


def _shown(label: str | None, value: str | float | None) -> str:
    if label:
        return label
    return "nothing" if value is None else str(value)


def history_page(comparison: Comparison, changes: list[VerdictChange]) -> bytes:
    root = root_of(history_path(comparison.slug))
    reviewers = {reviewer.id: reviewer.name for reviewer in comparison.panel}
    items = "\n".join(_change(change, reviewers, root, with_title=False) for change in changes)
    listing = (f'<ol class="changes">\n{items}\n</ol>' if changes else
               "<p>No verdict has changed since it was first published.</p>")
    body = f"""<h1>Verdict changes: {escape(comparison.title)}</h1>
<p>Each re-publication that changed a reviewer's verdict or the panel's ship share, newest
first. <a href="./">Back to the comparison</a>.</p>
{listing}"""
    return page(title=f"Verdict changes: {comparison.title} · {SITE_NAME}", root=root,
                body=body)


def recent_changes_page(changes: list[VerdictChange], cards: dict[str, Card]) -> bytes:
    items = []
    for change in changes:
        card = cards.get(change.slug)
        if card is not None:
            items.append(_change(change, card.reviewers, "", with_title=True))
    listing = ("<ol class=\"changes\">\n" + "\n".join(items) + "\n</ol>" if items else
               "<p>No verdict has changed yet.</p>")
    body = f"""<h1>Recent verdict changes</h1>
<p>The latest re-publications that changed a reviewer's verdict or a panel's ship share.</p>
{listing}"""
    return page(title=f"Recent verdict changes · {SITE_NAME}", root="", body=body,
                current="verdicts.html")


# Lists


def list_page(*, cards: list[str], heading: str, intro: str, categories: list[Category],
              current_category: str | None, number: int, pages: int,
              page_path: Callable[[int], str]) -> bytes:
    """Page ``number`` of a list of comparisons, latest first (``cards`` as ``card_item``
    made them), with the categories to filter by; ``page_path(n)`` is where the list's page
    ``n`` is, relative to the site."""
    path = page_path(number)
    root = root_of(path)
    entries = "\n".join(cards).replace(_ROOT, root) or "<li>Nothing published yet.</li>"
    everything = ' aria-current="page"' if current_category is None else ""
    choices = [f'<li><a href="{_href(root, "index.html")}"{everything}>All</a></li>']
    for category in categories:
        here = ' aria-current="page"' if category.slug == current_category else ""
        choices.append(
            f'<li><a href="{_href(root, f"category/{category.slug}/index.html")}"{here}>'
            f"<bdi>{escape(category.name)}</bdi> <span class=\"count\">({category.count})"
            "</span></a></li>")
    pager = _pager(root, number, pages, page_path)
    body = f"""<h1>{escape(heading)}</h1>
<p>{escape(intro)}</p>
<nav class="categories" aria-label="Categories">
<h2>Categories</h2>
<ul>
{chr(10).join(choices)}
</ul>
</nav>
<section aria-labelledby="list-heading">
<h2 id="list-heading">Latest first{f", page {number} of {pages}" if pages > 1 else ""}</h2>
<ul class="cards">
{entries}
</ul>
{pager}
</section>"""
    title = heading if number == 1 else f"{heading}, page {number}"
    return page(title=f"{title} · {SITE_NAME}" if heading != SITE_NAME else title, root=root,
                body=body, current=path if current_category is None and number == 1 else "")


# Where a card's links start: each list page puts its own way to the top there. A card is made
# once a build and shown on several pages at different depths.
_ROOT = "\x00"


def card_item(card: Card) -> str:
    tools = "".join(
        f"<li><bdi>{escape(tool.name)}</bdi> <span class=\"category\">"
        f"(<bdi>{escape(tool.category)}</bdi>)</span>: "
        f"panel ship {escape(tool.panel_ship_label)}, community "
        f"{escape(tool.community_label)}</li>" for tool in card.tools)
    published = f'<p class="meta">Published {_date(card.published_at)}</p>' \
        if card.published_at else ""
    return f"""<li class="card">
<h3><a href="{_ROOT}{comparison_path(card.slug).removesuffix("index.html")}">\
{escape(card.title)}</a></h3>
{published}
<p>{escape(card.summary)}</p>
<ul class="tool-lines">{tools}</ul>
</li>"""


def _pager(root: str, number: int, pages: int, page_path: Callable[[int], str]) -> str:
    if pages <= 1:
        return ""
    links = []
    if number > 1:
        links.append(f'<li><a rel="prev" href="{_href(root, page_path(number - 1))}">'
                     f"Newer</a></li>")
    if number < pages:
        links.append(f'<li><a rel="next" href="{_href(root, page_path(number + 1))}">'
                     f"Older</a></li>")
    return f'<nav class="pager" aria-label="Pages">\n<ul>{"".join(links)}</ul>\n</nav>'
