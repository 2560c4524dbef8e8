"""API tokens: each maps to a person and roles. Only a hash of the token is ever stored.

Tokens are 256 random bits, so a plain SHA-256 is enough to make a leaked store useless; a slow
password hash would only slow every request. The store is a JSON file under ``CMS_DATA``, never in
the content repository, rewritten atomically and re-read when another process changes it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from ..errors import InvalidContent, NotFound
from ..statefiles import exclusive, replace_file
from .actors import Actor, Role

TOKEN_PREFIX = "cms_"  # noqa: S105 - a marker, not a secret
# Both go into commit headers and trailers: no angle brackets, no control characters (git
# refuses a NUL in a header, and a terminal runs an escape that `git log` prints), no marks
# that reorder or hide text when an auditor reads the log.
_UNSAFE = ("<>\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff")
Name = Annotated[str, Meta(min_length=1, max_length=100, pattern=f"^[^{_UNSAFE}]+\\Z")]
Email = Annotated[str, Meta(max_length=254,
                            pattern=f"^[^{_UNSAFE}\\s@]+@[^{_UNSAFE}\\s@]+\\Z")]


class _Identity(Struct):
    name: Name
    email: Email


class TokenRecord(Struct, kw_only=True):
    id: str
    # Checked when a token is made (``_Identity``); read back as stored, so that one record
    # made by an earlier version cannot make the whole file unreadable.
    name: str
    email: str
    roles: list[Role]
    hash: str
    created_at: datetime
    revoked_at: datetime | None = None

    def actor(self) -> Actor:
        return Actor(name=self.name, email=self.email, roles=frozenset(self.roles))


class TokenStore:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "tokens.json"
        self._lock_path = data_dir / "tokens.lock"
        self._records: list[TokenRecord] = []
        self._by_hash: dict[str, TokenRecord] = {}
        self._seen: tuple[int, ...] | None = None
        self._mutex = threading.Lock()

    def create(self, name: str, email: str, roles: list[str]) -> tuple[TokenRecord, str]:
        if not roles:
            raise InvalidContent("give at least one role", field="roles")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            msgspec.convert({"name": name.strip(), "email": email.strip()}, _Identity)
            record = msgspec.convert(
                {
                    "id": secrets.token_hex(6),
                    "name": name.strip(),
                    "email": email.strip(),
                    "roles": sorted(set(roles)),
                    "hash": _digest(token),
                    "created_at": datetime.now(UTC).replace(microsecond=0),
                },
                TokenRecord,
            )
        except msgspec.ValidationError as exc:
            message, _, where = str(exc).partition(" - at `$.")
            raise InvalidContent(message, field=where.rstrip("`") or None) from exc
        with exclusive(self._lock_path):
            records = self._load()
            records.append(record)
            self._save(records)
        return record, token

    def all(self) -> list[TokenRecord]:
        self._refresh()
        return list(self._records)

    def revoke(self, token_id: str) -> TokenRecord:
        with exclusive(self._lock_path):
            records = self._load()
            for record in records:
                if record.id == token_id and record.revoked_at is None:
                    record.revoked_at = datetime.now(UTC).replace(microsecond=0)
                    self._save(records)
                    return record
        raise NotFound(f"no active token with id `{token_id}`", field="id")

    def authenticate(self, token: str) -> Actor | None:
        if not token.startswith(TOKEN_PREFIX):
            return None
        self._refresh()
        record = self._by_hash.get(_digest(token))
        if record is None or record.revoked_at is not None:
            return None
        # The dict lookup already matched; compare again in constant time for good measure.
        if not hmac.compare_digest(record.hash, _digest(token)):
            return None
        return record.actor()

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._records, self._by_hash, self._seen = [], {}, None
            return
        # The file is replaced whole (a new inode) on every change: two changes within one tick
        # of the clock, of the same size, still differ by inode.
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)
        if seen != self._seen:
            with self._mutex:
                self._records = self._load()
                self._by_hash = {record.hash: record for record in self._records}
                self._seen = seen

    def _load(self) -> list[TokenRecord]:
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=list[TokenRecord])
        except FileNotFoundError:
            return []

    def _save(self, records: list[TokenRecord]) -> None:
        replace_file(self.path, msgspec.json.format(msgspec.json.encode(records), indent=2))
        self._seen = None



def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
