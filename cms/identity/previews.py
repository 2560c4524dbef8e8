"""Preview links: signed, expiring, revocable URLs that show one draft to people without an account.

A link carries the grant id, the slug and the expiry, signed with a key every instance shares
(``keys.py``); the grants, in the shared-state database, record revocations. A link names
exactly one comparison, so it can never be turned into a view of another draft.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import msgspec
from msgspec import Struct

from ..config import Settings
from ..errors import Gone, NotFound
from ..shared.database import Database, Row, Session
from .keys import sign, signing_key, unsign

MAX_SECONDS = 30 * 24 * 3600
_SCHEMA = """CREATE TABLE IF NOT EXISTS preview_grants (id TEXT PRIMARY KEY, slug TEXT NOT NULL,
    created_by TEXT NOT NULL, expires_at {real} NOT NULL, revoked_at {real})"""


class PreviewGone(Gone):
    code = "preview_gone"


class Grant(Struct, kw_only=True):
    id: str
    slug: str
    created_by: str
    expires_at: float
    revoked_at: float | None = None


class _Claims(Struct, frozen=True):
    i: str
    s: str
    e: int


class Previews:
    def __init__(self, database: Database, key: bytes, *, earlier: Path | None = None) -> None:
        """``earlier``: the grants file of an earlier version, taken over by a new database."""
        self._db = database
        self._key = key
        database.schema(_SCHEMA)
        if earlier is not None:
            # Only grants not expired yet: expired ones are pruned, and would come back.
            database.adopt_file(earlier, "preview_grants", lambda data: [
                grant for grant in msgspec.json.decode(data, type=list[Grant])
                if grant.expires_at > time.time()], self._insert)

    @classmethod
    def open(cls, settings: Settings) -> Previews:
        return cls(Database.for_store(settings, "previews"), signing_key(settings, "preview"),
                   earlier=settings.data / "previews.json")

    def close(self) -> None:
        self._db.close()

    def grant(self, slug: str, created_by: str, seconds: int) -> tuple[Grant, str]:
        expires = int(time.time()) + max(1, min(seconds, MAX_SECONDS))
        grant = Grant(id="pv_" + secrets.token_hex(8), slug=slug, created_by=created_by,
                      expires_at=expires)
        with self._db.transaction() as session:
            # Expired grants are of no more use; keep the table small.
            session.execute("DELETE FROM preview_grants WHERE expires_at <= ?", time.time())
            self._insert(session, grant)
        payload = msgspec.json.encode(_Claims(i=grant.id, s=slug, e=expires))
        return grant, sign(self._key, payload)

    def revoke(self, slug: str, grant_id: str) -> Grant:
        with self._db.transaction() as session:
            session.execute("UPDATE preview_grants SET revoked_at = ? WHERE id = ? AND slug = ?",
                            time.time(), grant_id, slug)
            rows = session.rows("SELECT * FROM preview_grants WHERE id = ? AND slug = ?",
                                grant_id, slug)
        if not rows:
            raise NotFound(f"no preview `{grant_id}` of `{slug}`", field="id")
        return _grant(rows[0])

    def check(self, token: str, now: float | None = None) -> str:
        """The slug a valid link shows; a forged link is not found, a stale one is gone."""
        try:
            claims = msgspec.json.decode(unsign(self._key, token), type=_Claims)
        except (ValueError, msgspec.DecodeError):
            raise NotFound("no such preview") from None
        if claims.e <= (time.time() if now is None else now):
            raise PreviewGone("this preview link has expired; ask for a new one")
        rows = self._db.rows("SELECT * FROM preview_grants WHERE id = ? AND slug = ?",
                             claims.i, claims.s)
        if not rows or rows[0]["revoked_at"] is not None:
            raise PreviewGone("this preview link was revoked")
        return claims.s

    @staticmethod
    def _insert(session: Session, grant: Grant) -> None:
        session.execute("INSERT INTO preview_grants (id, slug, created_by, expires_at, "
                        "revoked_at) VALUES (?, ?, ?, ?, ?)", grant.id, grant.slug,
                        grant.created_by, grant.expires_at, grant.revoked_at)


def _grant(row: Row) -> Grant:
    return Grant(id=row["id"], slug=row["slug"], created_by=row["created_by"],
                 expires_at=row["expires_at"], revoked_at=row["revoked_at"])
