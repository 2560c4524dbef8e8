"""Markdown to safe HTML.

Raw HTML in the source is escaped rather than passed through, and markdown-it's link validation
drops ``javascript:``, ``vbscript:``, ``file:`` and non-image ``data:`` URLs, so what an editor
writes cannot run script in a reader's browser.
"""

from __future__ import annotations

import sys

from markdown_it import MarkdownIt

from ..lru import WeighedCache

_md = MarkdownIt("commonmark", {"html": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)


def render_markdown(source: str) -> str:
    html: str = _md.render(source)
    return html


# Sized so that a full sync of 10,000 comparisons renders each body once, not once per sync;
# bounded in bytes, since one body may be a hundred times the size of another.
_rendered: WeighedCache[str, str] = WeighedCache(
    32 * 1024 * 1024, lambda key, html: sys.getsizeof(key) + sys.getsizeof(html) + 100)


def render_cached(blob_id: str, source: str) -> str:
    """Rendering costs far more than a lookup, and a blob id names its text for ever, so the
    HTML is kept under the id alone (keeping the source too would double what it weighs)."""
    html = _rendered.get(blob_id)
    if html is None:
        html = render_markdown(source)
        _rendered.put(blob_id, html)
    return html
