"""Server-side signing keys, kept under ``CMS_DATA`` and never in the content repository, and
the signed tokens made with them (sync tokens, preview links)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from pathlib import Path

from .. import urlsafe
from ..errors import StoreError
from ..statefiles import fsync_dir, write_temporary

_KEY_BYTES = 32
_lock = threading.Lock()
_cache: dict[Path, bytes] = {}


def signing_key(path: Path) -> bytes:
    """The key stored at ``path``, made on first use. Written whole or not at all: a key cut
    short by a crash or a full disk would make signatures guessable, so it is replaced."""
    with _lock:
        key = _cache.get(path)
        if key is not None:
            return key
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            key = b""
        if len(key) < _KEY_BYTES:
            try:
                key = _create(path)
            except OSError as exc:
                raise StoreError(f"could not store a new key in {path.name}: {exc.strerror}"
                                 ) from exc
        _cache[path] = key
        return key


def _create(path: Path) -> bytes:
    key = secrets.token_bytes(_KEY_BYTES)
    temp = write_temporary(path, key)
    try:
        os.link(temp, path)  # another process may have made one meanwhile: keep theirs
    except FileExistsError:
        existing = path.read_bytes()
        if len(existing) >= _KEY_BYTES:
            key = existing
        else:
            os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return key

class ForgedToken(ValueError):
    """A token whose signature is not this server's."""


def sign(key: bytes, payload: bytes, *, size: int = 32) -> str:
    """``payload`` and its HMAC-SHA256 (cut to ``size`` bytes), as ``<payload>.<signature>``."""
    signature = hmac.new(key, payload, hashlib.sha256).digest()[:size]
    return f"{urlsafe.encode(payload)}.{urlsafe.encode(signature)}"


def unsign(key: bytes, token: str, *, size: int = 32) -> bytes:
    """The payload of a token made by ``sign``; ValueError when it is not one, ForgedToken when
    its signature does not match."""
    payload_part, _, signature_part = token.partition(".")
    payload = urlsafe.decode(payload_part)
    signature = urlsafe.decode(signature_part)
    expected = hmac.new(key, payload, hashlib.sha256).digest()[:size]
    if not hmac.compare_digest(signature, expected):
        raise ForgedToken("the signature does not match")
    return payload
