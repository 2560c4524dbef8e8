"""Signing keys and preview grants shared by every instance through the shared-state database,
taken over from the files an earlier version kept under CMS_DATA."""

from __future__ import annotations

import time

import msgspec
import pytest

from cms.config import Settings
from cms.identity import keys
from cms.identity.previews import Grant, PreviewGone, Previews


@pytest.fixture(autouse=True)
def no_cached_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each instance below reads its keys from the database, as a new process would."""
    monkeypatch.setattr(keys, "_cache", {})


def second_instance(settings: Settings) -> Settings:
    """Another instance: on PostgreSQL one with a CMS_DATA of its own; on SQLite, sharing the
    data folder is what shares the state."""
    if not settings.database_url:
        return settings
    return msgspec.structs.replace(settings, data=settings.data.parent / "second-data")


def test_a_key_is_made_once_and_every_instance_signs_with_it(shared_settings: Settings) -> None:
    made = keys.signing_key(shared_settings, "sync")
    keys._cache.clear()
    assert keys.signing_key(second_instance(shared_settings), "sync") == made
    assert keys.signing_key(shared_settings, "preview") != made
    assert len(made) == 32


def test_a_key_an_earlier_version_kept_in_a_file_is_kept(shared_settings: Settings) -> None:
    """The same bytes, so that the preview links and sync tokens already out stay valid; a file
    cut short by a crash is not a key."""
    shared_settings.data.mkdir(parents=True)
    (shared_settings.data / "preview.key").write_bytes(b"k" * 32)
    (shared_settings.data / "sync.key").write_bytes(b"s" * 7)
    assert keys.signing_key(shared_settings, "preview") == b"k" * 32
    assert keys.signing_key(shared_settings, "sync") not in (b"s" * 7, b"")
    (shared_settings.data / "preview.key").write_bytes(b"n" * 32)
    keys._cache.clear()
    assert keys.signing_key(shared_settings, "preview") == b"k" * 32  # taken over once


def test_a_link_granted_by_one_instance_is_checked_and_revoked_by_another(
        shared_settings: Settings) -> None:
    one, two = Previews.open(shared_settings), Previews.open(second_instance(shared_settings))
    grant, link = one.grant("a-vs-b", "ada@example.com", 3600)
    assert two.check(link) == "a-vs-b"
    assert two.revoke("a-vs-b", grant.id).revoked_at is not None
    with pytest.raises(PreviewGone, match="revoked"):
        one.check(link)
    for previews in (one, two):
        previews.close()


def test_the_grants_of_an_earlier_version_are_taken_over(shared_settings: Settings) -> None:
    """A link handed out before the upgrade still opens its draft; a revoked one stays closed
    and an expired one is left behind."""
    key = b"p" * 32
    shared_settings.data.mkdir(parents=True)
    (shared_settings.data / "preview.key").write_bytes(key)
    later = time.time() + 3600
    earlier = [Grant(id="pv_open", slug="a-vs-b", created_by="ada", expires_at=later),
               Grant(id="pv_shut", slug="a-vs-b", created_by="ada", expires_at=later,
                     revoked_at=time.time()),
               Grant(id="pv_old", slug="a-vs-b", created_by="ada", expires_at=time.time() - 1)]
    (shared_settings.data / "previews.json").write_bytes(msgspec.json.encode(earlier))
    previews = Previews.open(shared_settings)

    def link(grant_id: str) -> str:
        claims = msgspec.json.encode({"i": grant_id, "s": "a-vs-b", "e": int(later)})
        return keys.sign(key, claims)

    assert previews.check(link("pv_open")) == "a-vs-b"
    with pytest.raises(PreviewGone, match="revoked"):
        previews.check(link("pv_shut"))
    with pytest.raises(PreviewGone, match="revoked"):  # no such grant any more
        previews.check(link("pv_old"))
    previews.close()
