"""Base64url without padding: how opaque values (cursors, signed tokens) travel in URLs."""

from __future__ import annotations

import base64


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def decode(text: str) -> bytes:
    """Raises ValueError when ``text`` is not base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
