"""API tokens: each maps to a person and roles. Only a hash of the token is ever stored.

Tokens are 256 random bits, so a plain SHA-256 is enough to make a leaked store useless; a slow
password hash would only slow every request. The store is a JSON file under ``CMS_DATA``, never in
the content repository, rewritten atomically and re-read when another process changes it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
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
from .visible import EMAIL_PATTERN, NAME_PATTERN, first_hidden

TOKEN_PREFIX = "cms_"  # noqa: S105 - a marker, not a secret
# Both go into commit headers and trailers (cms/identity/visible.py says what they may hold).
Name = Annotated[str, Meta(min_length=1, max_length=100, pattern=NAME_PATTERN)]
Email = Annotated[str, Meta(max_length=254, pattern=EMAIL_PATTERN)]


class _Identity(Struct):
    name: Name
    email: Email


def _shown_as_written(field: str, text: str) -> None:
    hidden = first_hidden(text)
    if hidden is not None:
        raise InvalidContent(f"{field}: U+{ord(hidden):04X} is not shown as written; "
                             "use visible characters and plain spaces", field=field)


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
        # The file as last read, kept open: while it is, its inode cannot be given to another
        # file, so a different inode at the path is a change however fast changes follow.
        self._held: int | None = None
        self._held_inode: int | None = None
        self._mutex = threading.Lock()

    def __del__(self) -> None:
        held = getattr(self, "_held", None)
        if held is not None:
            os.close(held)

    def create(self, name: str, email: str, roles: list[str]) -> tuple[TokenRecord, str]:
        if not roles:
            raise InvalidContent("give at least one role", field="roles")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            _shown_as_written("name", name.strip())  # the clearer message, first
            _shown_as_written("email", email.strip())
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

    def roles_of(self, address: str) -> frozenset[str]:
        """Every role the active tokens of the person at ``address`` hold."""
        return frozenset(role for record in self.all()
                         if record.revoked_at is None and record.email.lower() == address
                         for role in record.roles)

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
        """Read the file again if it was replaced since (it is only ever replaced whole)."""
        try:
            inode = self.path.stat().st_ino
        except FileNotFoundError:
            inode = None
        if inode is not None and inode == self._held_inode:
            return
        with self._mutex:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                self._hold(None)
                self._records, self._by_hash = [], {}
                return
            try:
                with os.fdopen(os.dup(fd), "rb") as handle:
                    records = msgspec.json.decode(handle.read(), type=list[TokenRecord])
            except BaseException:
                os.close(fd)
                raise
            self._hold(fd)  # perhaps newer than the inode looked at above: its own is kept
            self._records = records
            self._by_hash = {record.hash: record for record in records}

    def _hold(self, fd: int | None) -> None:
        if self._held is not None:
            os.close(self._held)
        self._held = fd
        self._held_inode = None if fd is None else os.fstat(fd).st_ino

    def _load(self) -> list[TokenRecord]:
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=list[TokenRecord])
        except FileNotFoundError:
            return []

    def _save(self, records: list[TokenRecord]) -> None:
        replace_file(self.path, msgspec.json.format(msgspec.json.encode(records), indent=2))
        self._held_inode = None  # read it again, whatever inode it now has



def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
