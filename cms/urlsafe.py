"""Base64url without padding: how opaque values (cursors, signed tokens) travel in URLs."""

from __future__ import annotations

import base64
import binascii

# Base64's two characters that a URL would have to escape, and their base64url stand-ins.
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def encode(data: bytes) -> str:
    # ``base64.urlsafe_b64encode`` in C calls alone: a search's cursor is made on the event
    # loop, for every page.
    return binascii.b2a_base64(data, newline=False).translate(_URL_SAFE).rstrip(b"=").decode()


def decode(text: str) -> bytes:
    """Raises ValueError when ``text`` is not base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
