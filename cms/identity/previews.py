"""Preview links: signed, expiring, revocable URLs that show one draft to people without an account.

A link carries the grant id, the slug and the expiry, signed with a key kept under ``CMS_DATA``;
the grant list records revocations. A link names exactly one comparison, so it can never be
turned into a view of another draft.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import msgspec
from msgspec import Struct

from ..errors import Gone, NotFound
from ..statefiles import exclusive, replace_file
from .keys import sign, signing_key, unsign

MAX_SECONDS = 30 * 24 * 3600


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
    def __init__(self, data_dir: Path) -> None:
        self._key_path = data_dir / "preview.key"
        self._grants_path = data_dir / "previews.json"
        self._lock_path = data_dir / "previews.lock"

    def grant(self, slug: str, created_by: str, seconds: int) -> tuple[Grant, str]:
        expires = int(time.time()) + max(1, min(seconds, MAX_SECONDS))
        grant = Grant(id="pv_" + secrets.token_hex(8), slug=slug, created_by=created_by,
                      expires_at=expires)
        with exclusive(self._lock_path):
            grants = self._load()
            # Expired grants are of no more use; keep the file small.
            grants = [g for g in grants if g.expires_at > time.time()]
            grants.append(grant)
            self._save(grants)
        payload = msgspec.json.encode(_Claims(i=grant.id, s=slug, e=expires))
        token = sign(self._signing_key(), payload)
        return grant, token

    def revoke(self, slug: str, grant_id: str) -> Grant:
        with exclusive(self._lock_path):
            grants = self._load()
            for grant in grants:
                if grant.id == grant_id and grant.slug == slug:
                    grant.revoked_at = time.time()
                    self._save(grants)
                    return grant
        raise NotFound(f"no preview `{grant_id}` of `{slug}`", field="id")

    def check(self, token: str, now: float | None = None) -> str:
        """The slug a valid link shows; a forged link is not found, a stale one is gone."""
        try:
            claims = msgspec.json.decode(unsign(self._signing_key(), token), type=_Claims)
        except (ValueError, msgspec.DecodeError):
            raise NotFound("no such preview") from None
        if claims.e <= (time.time() if now is None else now):
            raise PreviewGone("this preview link has expired; ask for a new one")
        grant = next((g for g in self._load() if g.id == claims.i and g.slug == claims.s), None)
        if grant is None or grant.revoked_at is not None:
            raise PreviewGone("this preview link was revoked")
        return claims.s

    def _signing_key(self) -> bytes:
        return signing_key(self._key_path)

    def _load(self) -> list[Grant]:
        try:
            return msgspec.json.decode(self._grants_path.read_bytes(), type=list[Grant])
        except FileNotFoundError:
            return []

    def _save(self, grants: list[Grant]) -> None:
        replace_file(self._grants_path, msgspec.json.encode(grants))
