"""Small HTTP helpers shared by the route modules: slugs, revisions, caching headers."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..content.model import SLUG_RE
from ..errors import BadParameter, BadRequest
from ..lru import WeighedCache

if TYPE_CHECKING:  # the framework is not imported by what answers before it is (starting.py)
    from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent

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


# The ETags the API gives out, as a write sends one back: quoted, weak or not, or the bare
# revision. A public read's ETag may add "+<name of the pending votes>" (hexadecimal); the
# revision is what precedes it.
IF_MATCH_PATTERN = r'^(?:(?:W/)?"[0-9a-f]{40}(?:\+[0-9a-f]{1,40})?"|[0-9a-f]{40})\Z'


def if_match_revision(header: str | None) -> str | None:
    if header is None:
        return None
    value = header.strip(" \t")
    if not re.match(IF_MATCH_PATTERN, value):
        # Not a revision at all: neither a stale one (412) nor a missing one (428).
        raise BadParameter('If-Match: send the ETag you read, a revision of 40 hexadecimal '
                           'digits in quotes, e.g. "5f0c…"; a list or `*` is not taken',
                           field="If-Match")
    return value.removeprefix("W/").strip('"').split("+", 1)[0]


def not_modified(if_none_match: str | None, tag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {value.strip().removeprefix("W/") for value in if_none_match.split(",")}
    return "*" in candidates or tag.removeprefix("W/") in candidates


def body_cache(max_bytes: int = 16 * 1024 * 1024) -> WeighedCache[str, bytes]:
    """Encoded response bodies by ETag: an ETag names exactly one representation, so a body
    made once serves every later request for it. Bounded in bytes, so that serving every
    comparison stays within the server's memory budget."""
    return WeighedCache(max_bytes, lambda tag, body: len(tag) + len(body) + 100)


# Big enough for any real comparison; a 10 MB body is refused before it is parsed.
MAX_REQUEST_BYTES = 1024 * 1024


async def send_json(send: Callable[[Any], Awaitable[None]], headers: dict[str, str],
                    body: bytes | None) -> None:
    """A JSON answer (``body``), or its 304 (None), sent as the ASGI messages the framework
    sends for the same response: what answers before routing uses this to send the same bytes."""
    start, sent = json_messages(headers, body)
    await send(start)
    await send(sent)


def json_messages(headers: dict[str, str],
                  body: bytes | None) -> tuple[HTTPResponseStartEvent, HTTPResponseBodyEvent]:
    """The two ASGI messages of ``send_json``."""
    fields = [(name.lower().encode("latin-1"), value.encode("latin-1"))
              for name, value in headers.items()]
    sent: HTTPResponseBodyEvent
    if body is None:
        start: HTTPResponseStartEvent = {"type": "http.response.start", "status": 304,
                                         "headers": fields}
        sent = {"type": "http.response.body", "body": b"", "more_body": False}
        return start, sent
    fields += [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode("latin-1"))]
    start = {"type": "http.response.start", "status": 200, "headers": fields}
    sent = {"type": "http.response.body", "body": body, "more_body": False}
    return start, sent
