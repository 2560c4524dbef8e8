"""API tokens: each maps to a person and roles. Only a hash of the token is ever stored.

Tokens are 256 random bits, so a plain SHA-256 is enough to make a leaked store useless; a slow
password hash would only slow every request. The store is a table of the shared-state database,
never the content repository: a token made or revoked by one instance (or by the command line)
counts at the next request to any other, since each request looks its token up by hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from ..config import Settings
from ..errors import InvalidContent, NotFound
from ..shared.database import Database, Row, Session
from .actors import Actor, Role
from .visible import EMAIL_PATTERN, NAME_PATTERN, first_hidden

TOKEN_PREFIX = "cms_"  # noqa: S105 - a marker, not a secret
# Both go into commit headers and trailers (cms/identity/visible.py says what they may hold).
Name = Annotated[str, Meta(min_length=1, max_length=100, pattern=NAME_PATTERN)]
Email = Annotated[str, Meta(max_length=254, pattern=EMAIL_PATTERN)]
_SCHEMA = """CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL, email TEXT NOT NULL, roles TEXT NOT NULL, created_at {real} NOT NULL,
    revoked_at {real})"""


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
    # made by an earlier version cannot make the others unreadable.
    name: str
    email: str
    roles: list[Role]
    hash: str
    created_at: datetime
    revoked_at: datetime | None = None

    def actor(self) -> Actor:
        return Actor(name=self.name, email=self.email, roles=frozenset(self.roles))


class TokenStore:
    def __init__(self, database: Database, *, earlier: Path | None = None) -> None:
        """``earlier``: the tokens file of an earlier version, taken over by a new database."""
        self._db = database
        database.schema(_SCHEMA)
        if earlier is not None:  # tokens are never deleted, so that happens once
            database.adopt_file(earlier, "tokens", lambda data: msgspec.json.decode(
                data, type=list[TokenRecord]), _insert)

    @classmethod
    def open(cls, settings: Settings) -> TokenStore:
        return cls(Database.for_store(settings, "tokens"), earlier=settings.data / "tokens.json")

    def close(self) -> None:
        self._db.close()

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
        with self._db.transaction() as session:
            _insert(session, record)
        return record, token

    def all(self) -> list[TokenRecord]:
        return [_record(row) for row in self._db.rows("SELECT * FROM tokens ORDER BY created_at, id")]

    def revoke(self, token_id: str) -> TokenRecord:
        with self._db.transaction() as session:
            revoked = session.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND "
                                      "revoked_at IS NULL",
                                      datetime.now(UTC).replace(microsecond=0).timestamp(),
                                      token_id)
            rows = session.rows("SELECT * FROM tokens WHERE id = ?", token_id)
        if not revoked:
            raise NotFound(f"no active token with id `{token_id}`", field="id")
        return _record(rows[0])

    def roles_of(self, address: str) -> frozenset[str]:
        """Every role the active tokens of the person at ``address`` hold."""
        return frozenset(role for record in self.all()
                         if record.revoked_at is None and record.email.lower() == address
                         for role in record.roles)

    def authenticate(self, token: str) -> Actor | None:
        if not token.startswith(TOKEN_PREFIX):
            return None
        rows = self._db.rows("SELECT * FROM tokens WHERE hash = ?", _digest(token))
        if not rows or rows[0]["revoked_at"] is not None:
            return None
        record = _record(rows[0])
        # The lookup already matched; compare again in constant time for good measure.
        if not hmac.compare_digest(record.hash, _digest(token)):
            return None
        return record.actor()


def _insert(session: Session, record: TokenRecord) -> None:
    session.execute(
        "INSERT INTO tokens (id, hash, name, email, roles, created_at, revoked_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)", record.id, record.hash, record.name, record.email,
        json.dumps(record.roles), record.created_at.timestamp(),
        None if record.revoked_at is None else record.revoked_at.timestamp())


def _record(row: Row) -> TokenRecord:
    # Read back as stored (not checked again), so that one record made by an earlier version
    # cannot make the others unreadable.
    return TokenRecord(
        id=row["id"], hash=row["hash"], name=row["name"], email=row["email"],
        roles=json.loads(row["roles"]), created_at=datetime.fromtimestamp(row["created_at"], UTC),
        revoked_at=None if row["revoked_at"] is None else datetime.fromtimestamp(
            row["revoked_at"], UTC))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
