"""Server-side signing keys, kept in the shared-state database and never in the content
repository, and the signed tokens made with them (sync tokens, preview links).

A key is made once, by whichever instance first needs it, and read back, so that every instance
signs and checks with the same one. A key an earlier version kept in a file under ``CMS_DATA``
(``<name>.key``) is taken over as it is: links and sync tokens already handed out stay valid.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from pathlib import Path

from .. import urlsafe
from ..config import Settings
from ..errors import StoreError
from ..shared.database import Database

_KEY_BYTES = 32
_SCHEMA = "CREATE TABLE IF NOT EXISTS keys (name TEXT PRIMARY KEY, value {blob} NOT NULL)"
_lock = threading.Lock()
_cache: dict[tuple[str, str], bytes] = {}


def signing_key(settings: Settings, name: str, *, make: bool = True) -> bytes:
    """The key called ``name`` (``sync``, ``preview``, ``votes``), made on first use; with
    ``make`` false (a read-only replica), only read, and StoreError if there is none yet."""
    where = (settings.database_url or str(settings.data), name)
    with _lock:
        key = _cache.get(where)
        if key is None:
            key = _cache[where] = _stored(settings, name, make=make)
        return key


def _stored(settings: Settings, name: str, *, make: bool) -> bytes:
    database = Database.for_store(settings, "keys")
    try:
        if make:
            database.schema(_SCHEMA)
        # No table yet: no instance that writes has started.
        key = database.value("SELECT value FROM keys WHERE name = ?", name) \
            if make or database.columns("keys") else None
        if key is None and not make:
            raise StoreError(f"the database holds no {name} key yet: start an instance that "
                             "writes (not --read-only) once first")
        if key is None:
            # Another instance may store one meanwhile: then theirs is kept, and read back.
            database.execute("INSERT INTO keys (name, value) VALUES (?, ?) "
                             "ON CONFLICT (name) DO NOTHING",
                             name, _earlier(settings.data / f"{name}.key") or
                             secrets.token_bytes(_KEY_BYTES))
            key = database.value("SELECT value FROM keys WHERE name = ?", name)
        return bytes(key)
    finally:
        database.close()


def _earlier(path: Path) -> bytes | None:
    """The key an earlier version kept in ``path``; None if there is none whole (one cut short
    by a crash would make signatures guessable)."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        return None
    return key if len(key) >= _KEY_BYTES else None

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
