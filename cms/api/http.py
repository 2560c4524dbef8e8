"""Small HTTP helpers shared by the route modules: slugs, revisions, caching headers."""

from __future__ import annotations

import re
from typing import Annotated

from litestar.params import PathParameter

from ..content.model import SLUG_RE
from ..errors import BadRequest
from ..lru import WeighedCache

_SLUG = re.compile(SLUG_RE)

# A response marked public is kept by the shared response cache until main moves or a vote is
# cast, so it must be made from nothing else (no token, no clock, no per-client state).
PUBLIC_CACHE = "public, max-age=0, must-revalidate"
PRIVATE_CACHE = "private, no-store"


def check_slug(slug: str) -> str:
    """Slugs name files in the repository, so anything but ``a-z0-9-`` is refused outright."""
    if not (3 <= len(slug) <= 120) or not _SLUG.match(slug):
        raise BadRequest(
            "a slug is 3-120 lowercase letters, digits and single hyphens", field="slug"
        )
    return slug


def etag(revision: str, *, weak: bool = False) -> str:
    return f'W/"{revision}"' if weak else f'"{revision}"'


def if_match_revision(header: str | None) -> str | None:
    if header is None:
        return None
    value = header.strip()
    if value.startswith("W/"):
        value = value[2:]
    # A public read's ETag may add "+<pending votes>"; the revision is what precedes it.
    return value.strip('"').split("+", 1)[0] or None


def not_modified(if_none_match: str | None, tag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {value.strip().removeprefix("W/") for value in if_none_match.split(",")}
    return "*" in candidates or tag.removeprefix("W/") in candidates


SlugPath = Annotated[str, PathParameter(description="The comparison's slug, e.g. `cursor-vs-windsurf`")]


def body_cache(max_bytes: int = 16 * 1024 * 1024) -> WeighedCache[str, bytes]:
    """Encoded response bodies by ETag: an ETag names exactly one representation, so a body
    made once serves every later request for it. Bounded in bytes, so that serving every
    comparison stays within the server's memory budget."""
    return WeighedCache(max_bytes, lambda tag, body: len(tag) + len(body) + 100)


# Big enough for any real comparison; a 10 MB body is refused before it is parsed.
MAX_REQUEST_BYTES = 1024 * 1024
