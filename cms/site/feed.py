"""The site's Atom feed: the latest publications, each linking to its page on the site.

Links are relative to the feed (Atom resolves them against the feed's own address), so the
site can be served from any address without being rebuilt; ``site_url`` makes them absolute
for readers that want that."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from xml.sax.saxutils import escape as _escape
from xml.sax.saxutils import quoteattr

from .pages import SITE_NAME, comparison_path
from .state import Card

LATEST = 30
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# What XML 1.0 may not hold at all, escaped or not (a title the CMS accepts may hold U+FFFE).
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def escape(text: str) -> str:
    return _escape(_NOT_XML.sub("", text))


def _stamp(moment: datetime | None) -> str:
    return (moment or _EPOCH).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def atom(cards: list[Card], origin: str, site_url: str = "") -> bytes:
    """``cards`` latest first. The feed's and its entries' ids are this site's own (Atom wants
    them unique across the world): made from its address, or else the API's (``origin``)."""
    base = site_url.rstrip("/") + "/" if site_url else ""
    site = hashlib.sha256((site_url or origin).encode()).hexdigest()[:16]
    latest = cards[:LATEST]
    updated = _stamp(latest[0].published_at if latest else None)
    entries = []
    for card in latest:
        link = base + comparison_path(card.slug).removesuffix("index.html")
        tools = "; ".join(f"{tool.name}: panel ship {tool.panel_ship_label}"
                          for tool in card.tools)
        entries.append(f"""<entry>
<title>{escape(card.title)}</title>
<id>urn:cms-site:{site}:{escape(card.slug)}:{_stamp(card.published_at)}</id>
<link rel="alternate" type="text/html" href={quoteattr(link)}/>
<updated>{_stamp(card.published_at)}</updated>
<summary>{escape(card.summary)} ({escape(tools)})</summary>
</entry>""")
    self_link = f'\n<link rel="self" href={quoteattr(base + "feed.atom")}/>' if base else ""
    return f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
<title>{escape(SITE_NAME)}</title>
<id>urn:cms-site:{site}</id>
<updated>{updated}</updated>
<author><name>{escape(SITE_NAME)}</name></author>
<link rel="alternate" type="text/html" href={quoteattr(base or "./")}/>{self_link}
{chr(10).join(entries)}
</feed>
""".encode()
