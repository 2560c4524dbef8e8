"""Bad input of every kind gets a clear 4xx naming the field, and the repository is unchanged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from cms.config import Settings
from cms.identity.tokens import TokenStore
from cms.shared.database import Database

from ..conftest import HAIKU, fsck, git
from ..helpers import Headers, new_document


def refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


@pytest.fixture
def unchanged(repo_path: Path) -> Iterator[None]:
    before = refs(repo_path)
    objects_before = git(repo_path, "count-objects", "-v")
    yield
    assert refs(repo_path) == before
    assert git(repo_path, "count-objects", "-v") == objects_before


@pytest.fixture
def published(client: TestClient) -> dict[str, Any]:  # type: ignore[type-arg]
    return client.get(f"/api/comparisons/{HAIKU}").json()  # type: ignore[no-any-return]


def post_draft(client: TestClient, body: Any, who: Headers) -> Any:  # type: ignore[type-arg]
    return client.post("/api/drafts", json=body, headers=who)


def assert_error(response: Any, status: int, field: str | None = None, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()
    assert error["status"] == status
    assert error["code"]
    assert error["message"]
    if field is not None:
        assert error.get("field") == field, error
    for word in words:
        assert word in error["message"], error
    assert "Traceback" not in response.text


CASES: list[tuple[str, Any, str | None, tuple[str, ...]]] = [
    ("missing title", lambda d: d.pop("title"), None, ("title",)),
    ("unknown verdict", lambda d: d["tools"][0]["reviews"][0].update(verdict="maybe"),
     "tools[0].reviews[0].verdict", ("ship",)),
    ("wrong type", lambda d: d.update(title=42), "title", ("str",)),
    ("empty name", lambda d: d["tools"][1].update(name=""), "tools[1].name", ("length",)),
    ("unknown field", lambda d: d.update(tilte="typo"), None, ("tilte",)),
    ("third tool", lambda d: d["tools"].append(d["tools"][0]), "tools", ("length",)),
    ("traversal slug", lambda d: d.update(slug="../etc/passwd"), "slug", ()),
    ("uppercase slug", lambda d: d.update(slug="Cursor-VS"), "slug", ()),
    ("review by stranger", lambda d: d["tools"][0]["reviews"][0].update(reviewer="nobody"),
     None, ("nobody",)),
    ("missing review", lambda d: d["tools"][0]["reviews"].pop(), None, ("no review",)),
    ("control character", lambda d: d["tools"][0]["reviews"][0].update(quote="bad\x00"),
     None, ("control character",)),
    ("negative tally", lambda d: d["tools"][0]["community"].update(ship=-1),
     "tools[0].community.ship", ()),
    ("same tool twice", lambda d: d["tools"][1].update(id=d["tools"][0]["id"]), None,
     ("two different",)),
    ("huge body", lambda d: d.update(body="x" * 300_000), "body", ("length",)),
    ("NUL in comment", lambda d: d.update(comment="fine\x00then not"), "comment", ()),
    ("escape in comment", lambda d: d.update(comment="\x1b[31mred"), "comment", ()),
]


@pytest.mark.parametrize(("name", "mutate", "field", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_document_is_refused_and_nothing_is_written(
    client: TestClient, tokens: dict[str, Headers], published: dict[str, Any],  # type: ignore[type-arg]
    unchanged: None, name: str, mutate: Any, field: str | None, words: tuple[str, ...],
) -> None:
    document = new_document(published, "brand-new-comparison", "Brand new")
    mutate(document)
    response = post_draft(client, document, tokens["editor"])
    assert_error(response, 422, field, *words)


def test_ten_megabyte_body_is_refused(client: TestClient, tokens: dict[str, Headers],  # type: ignore[type-arg]
                                      published: dict[str, Any], unchanged: None) -> None:
    document = new_document(published, "brand-new-comparison", "Brand new")
    document["body"] = "x" * (10 * 1024 * 1024)
    assert_error(post_draft(client, document, tokens["editor"]), 413)


def test_malformed_json_is_refused(client: TestClient, tokens: dict[str, Headers],  # type: ignore[type-arg]
                                   unchanged: None) -> None:
    response = client.post("/api/drafts", content=b"{not json",
                           headers={**tokens["editor"], "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"


@pytest.mark.parametrize("slug", ["..%2F..%2Fetc", "UPPER-case", "a", "x" * 200, "with.dot",
                                  "%2e%2e"])
def test_bad_slugs_in_paths(client: TestClient, tokens: dict[str, Headers],  # type: ignore[type-arg]
                            unchanged: None, slug: str) -> None:
    for response in (
        client.get(f"/api/comparisons/{slug}"),
        client.get(f"/api/drafts/{slug}", headers=tokens["editor"]),
        client.put(f"/api/drafts/{slug}", json={}, headers={**tokens["editor"], "If-Match": '"x"'}),
    ):
        assert response.status_code in (400, 404, 422), response.text
        assert "Traceback" not in response.text


def test_stale_and_missing_if_match(client: TestClient, tokens: dict[str, Headers],  # type: ignore[type-arg]
                                    published: dict[str, Any], repo_path: Path) -> None:
    etag = client.get(f"/api/comparisons/{HAIKU}").headers["etag"]
    first = dict(published, summary="First editor's summary.")
    second = dict(published, summary="Second editor's summary.")

    before = refs(repo_path)
    missing = client.put(f"/api/drafts/{HAIKU}", json=first, headers=tokens["editor"])
    assert_error(missing, 428, "If-Match")
    assert refs(repo_path) == before

    ok = client.put(f"/api/drafts/{HAIKU}", json=first, headers={**tokens["editor"], "If-Match": etag})
    assert ok.status_code == 200
    after_first = refs(repo_path)
    stale = client.put(f"/api/drafts/{HAIKU}", json=second,
                       headers={**tokens["editor2"], "If-Match": etag})
    assert_error(stale, 412, "If-Match", "not current")
    assert stale.json()["current"] == ok.json()["revision"]
    assert refs(repo_path) == after_first
    draft = client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"]).json()
    assert draft["summary"] == "First editor's summary."

    stale_transition = client.post(f"/api/drafts/{HAIKU}/transitions", json={"action": "submit"},
                                   headers={**tokens["editor"], "If-Match": etag})
    assert_error(stale_transition, 412)
    stale_delete = client.delete(f"/api/drafts/{HAIKU}", headers={**tokens["editor"], "If-Match": etag})
    assert_error(stale_delete, 412)
    assert refs(repo_path) == after_first


def test_wrong_role_and_unknown_action(client: TestClient, tokens: dict[str, Headers],  # type: ignore[type-arg]
                                       unchanged: None) -> None:
    etag = client.get(f"/api/comparisons/{HAIKU}").headers["etag"]
    wrong = client.post(f"/api/drafts/{HAIKU}/transitions", json={"action": "unpublish"},
                        headers={**tokens["editor"], "If-Match": etag})
    assert_error(wrong, 403, "action", "publisher")
    unknown = client.post(f"/api/drafts/{HAIKU}/transitions", json={"action": "explode"},
                          headers={**tokens["publisher"], "If-Match": etag})
    assert_error(unknown, 422, "action", "explode")
    for action, route in [("edit", "PUT"), ("discard", "DELETE"), ("create", "POST")]:
        other = client.post(f"/api/drafts/{HAIKU}/transitions", json={"action": action},
                            headers={**tokens["editor"], "If-Match": etag})
        assert_error(other, 422, "action", route)
    auditor = client.put(f"/api/drafts/{HAIKU}", json=client.get(f"/api/comparisons/{HAIKU}").json(),
                         headers={**tokens["auditor"], "If-Match": etag})
    assert_error(auditor, 403)


def test_create_existing_slug_and_renaming_are_conflicts(
    client: TestClient, tokens: dict[str, Headers], published: dict[str, Any],  # type: ignore[type-arg]
    unchanged: None,
) -> None:
    assert_error(post_draft(client, published, tokens["editor"]), 409, "slug", "already exists")
    etag = client.get(f"/api/comparisons/{HAIKU}").headers["etag"]
    renamed = dict(published, slug="a-different-slug")
    response = client.put(f"/api/drafts/{HAIKU}", json=renamed,
                          headers={**tokens["editor"], "If-Match": etag})
    assert_error(response, 422, "slug", "renaming")


def test_not_found_and_bad_query(client: TestClient, tokens: dict[str, Headers]) -> None:  # type: ignore[type-arg]
    assert_error(client.get("/api/comparisons/no-such-thing"), 404, "slug")
    assert_error(client.get("/api/drafts/no-such-thing", headers=tokens["editor"]), 404, "slug")
    assert_error(client.get("/api/comparisons?limit=0"), 400, "limit")
    assert_error(client.get("/api/comparisons?sort=sideways"), 400, "sort")
    assert_error(client.get("/api/comparisons?cursor=garbage!"), 400, "cursor")


INVISIBLE = ["\u061c", "\u00ad", "\u180e", "\u034f", "\U000e0041", "\ufe0f", "\u3164",
             "\ufff9", "\u17b4", "\U0001d173", "\u00a0", "\u3000", "\ue000"]


@pytest.mark.parametrize("name", ["Eve\ncommitter Mallory <m@example.com> 0 +0000", "Eve\x00",
                                  "Eve <eve@example.com>", "Eve\x0b", "Eve\u2028x", "Eve\x85",
                                  "Eve\x9b", "\ufeffEve", *(f"E{char}ve" for char in INVISIBLE)])
def test_a_token_name_cannot_reach_a_commit_header(client: TestClient, tokens: dict[str, Headers],  # type: ignore[type-arg]
                                                   name: str) -> None:
    response = client.post("/api/tokens", headers=tokens["admin"],
                           json={"name": name, "email": "eve@example.com", "roles": ["editor"]})
    assert_error(response, 422, "name")


@pytest.mark.parametrize("email", ["a\x00b@example.com", "eve\x07@example.com",
                                   "eve\x1b[31m@example.com", "eve\u202e@example.com",
                                   "eve@exa\u200bmple.com", "eve@example.com\n",
                                   *(f"eve{char}@example.com" for char in INVISIBLE)])
def test_a_token_email_cannot_reach_a_commit_header(client: TestClient, tokens: dict[str, Headers],  # type: ignore[type-arg]
                                                    email: str) -> None:
    response = client.post("/api/tokens", headers=tokens["admin"],
                           json={"name": "Eve", "email": email, "roles": ["editor"]})
    assert_error(response, 422, "email")


def test_a_stored_token_with_a_header_breaking_email_writes_nothing(
        client: TestClient, settings: Settings, repo_path: Path,  # type: ignore[type-arg]
        unchanged: None) -> None:
    """A token made before emails were checked as they are now: it still signs in, and its
    writes are refused as unwritable rather than committed with a NUL in the header."""
    record, token = TokenStore.open(settings).create("Old Token", "old@example.com", ["editor"])
    database = Database.for_store(settings, "tokens")
    database.execute("UPDATE tokens SET email = ? WHERE id = ?", "old\x00@example.com", record.id)
    database.close()
    draft = client.get(f"/api/drafts/{HAIKU}", headers={"Authorization": f"Bearer {token}"})
    assert draft.status_code == 200, draft.text
    response = client.put(f"/api/drafts/{HAIKU}", json=draft.json(),
                          headers={"Authorization": f"Bearer {token}",
                                   "If-Match": draft.headers["etag"]})
    assert_error(response, 422, "author")
    fsck(repo_path)


@pytest.mark.parametrize("path", [f"/api/comparisons/{HAIKU}/votes", "/api/drafts",
                                  f"/api/drafts/{HAIKU}/transitions"])
def test_deeply_nested_json_is_refused_without_a_traceback(
        client: TestClient, tokens: dict[str, Headers], path: str,  # type: ignore[type-arg]
        caplog: pytest.LogCaptureFixture, unchanged: None) -> None:
    deep = '{"tool": ' + "[" * 5000 + "]" * 5000 + "}"
    headers = {"Content-Type": "application/json", **({} if "votes" in path else tokens["editor"])}
    with caplog.at_level(logging.WARNING):
        response = client.post(path, content=deep, headers=headers)
    assert_error(response, 400)
    assert response.json()["code"] == "too_deeply_nested"
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []


def test_a_hostile_string_is_not_a_slow_scan(client: TestClient) -> None:  # type: ignore[type-arg]
    """An unterminated string of escaped quotes, a megabyte long: answered, not scanned for
    minutes (a regular expression over the bytes was quadratic on it)."""
    body = b'{"tool": "' + b'\\"' * 300_000
    response = client.post(f"/api/comparisons/{HAIKU}/votes", content=body,
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 400
