"""Markdown to safe HTML.

Raw HTML in the source is escaped rather than passed through, and markdown-it's link validation
drops ``javascript:``, ``vbscript:``, ``file:`` and non-image ``data:`` URLs, so what an editor
writes cannot run script in a reader's browser.
"""

from __future__ import annotations

from functools import lru_cache

from markdown_it import MarkdownIt

_md = MarkdownIt("commonmark", {"html": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)


def render_markdown(source: str) -> str:
    html: str = _md.render(source)
    return html


@lru_cache(maxsize=16384)
def render_cached(blob_id: str, source: str) -> str:
    """Rendering costs far more than a lookup; a blob id names its text for ever. Sized so that
    a full sync of 10,000 comparisons renders each body once, not once per sync."""
    return render_markdown(source)
