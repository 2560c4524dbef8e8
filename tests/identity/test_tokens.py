"""Tokens shared by every server instance and the command line through one database."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec

from cms.config import Settings
from cms.identity.tokens import TokenRecord, TokenStore, _digest


def test_a_token_made_or_revoked_by_one_instance_counts_at_once_in_another(
        shared_settings: Settings) -> None:
    server, cli = TokenStore.open(shared_settings), TokenStore.open(shared_settings)
    made = [cli.create(f"Person {n:02d}", f"p{n:02d}@example.com", ["editor"]) for n in range(5)]
    for record, token in made:
        actor = server.authenticate(token)
        assert actor is not None
        assert (actor.name, actor.roles) == (record.name, frozenset({"editor"}))
    for record, token in made:
        assert cli.revoke(record.id).revoked_at is not None
        assert server.authenticate(token) is None, record.id
    assert {record.id for record in server.all() if record.revoked_at} == {
        record.id for record, _ in made}
    for store in (server, cli):
        store.close()


def test_only_a_hash_is_stored_and_a_near_miss_is_refused(shared_settings: Settings) -> None:
    store = TokenStore.open(shared_settings)
    record, token = store.create("Ada Editor", "Ada@Example.com", ["editor", "reviewer"])
    assert token not in json.dumps([msgspec.to_builtins(r) for r in store.all()])
    assert store.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.authenticate(token.removeprefix("cms_")) is None
    assert store.roles_of("ada@example.com") == {"editor", "reviewer"}
    store.revoke(record.id)
    assert store.roles_of("ada@example.com") == frozenset()
    store.close()


def test_the_tokens_of_an_earlier_version_are_taken_over_once(shared_settings: Settings) -> None:
    """Tokens an earlier version kept in CMS_DATA/tokens.json still sign in and revoked ones
    stay revoked; the file is read only while the database has no token."""
    kept_token, gone_token = "cms_" + "k" * 43, "cms_" + "g" * 43
    made = datetime(2024, 5, 1, tzinfo=UTC)
    earlier = [TokenRecord(id="kept", name="Kept Token", email="kept@example.com",
                           roles=["editor"], hash=_digest(kept_token), created_at=made),
               TokenRecord(id="gone", name="Gone Token", email="gone@example.com",
                           roles=["admin"], hash=_digest(gone_token),
                           created_at=made.replace(day=2), revoked_at=made.replace(day=3))]
    shared_settings.data.mkdir(parents=True)
    (shared_settings.data / "tokens.json").write_bytes(msgspec.json.encode(earlier))
    store = TokenStore.open(shared_settings)
    actor = store.authenticate(kept_token)
    assert actor is not None
    assert actor.email == "kept@example.com"
    assert store.authenticate(gone_token) is None
    assert store.all() == earlier
    later = msgspec.structs.replace(earlier[0], id="later", hash=_digest("cms_" + "l" * 43))
    (shared_settings.data / "tokens.json").write_bytes(msgspec.json.encode([later]))
    again = TokenStore.open(shared_settings)
    assert [record.id for record in again.all()] == ["kept", "gone"]
    for one in (store, again):
        one.close()
