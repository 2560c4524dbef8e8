"""What a frontend built against the documented API sees: sync, feeds and search."""

from __future__ import annotations

import base64
import json
import random
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import feedparser
import msgspec
import pytest
from litestar.testing import TestClient

from cms.config import Settings
from cms.editing.write_side import open_write_side
from cms.identity.actors import Actor
from cms.identity.previews import PreviewGone
from cms.store.repository import Repository

from ..conftest import HAIKU, git
from ..helpers import Headers, act, new_document

Client = TestClient  # type: ignore[type-arg]
EDITOR = Actor(name="Ada Editor", email="ada@example.com", roles=frozenset({"editor"}))
REVIEWER = Actor(name="Rita Reviewer", email="rita@example.com", roles=frozenset({"reviewer"}))
PUBLISHER = Actor(name="Paul Publisher", email="paul@example.com", roles=frozenset({"publisher"}))


class Frontend:
    """A client that keeps a local copy of the published comparisons, fed only by /api/sync."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.copy: dict[str, dict[str, Any]] = {}
        self.token: str | None = None

    def sync(self, limit: int = 7) -> int:
        params: dict[str, Any] = {"limit": limit}
        if self.token:
            params["token"] = self.token
        received = 0
        for _ in range(1000):
            answer = self.client.get("/api/sync", params=params)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            for item in body["items"]:
                self.copy[item["slug"]] = item
            for slug in body["deleted"]:
                self.copy.pop(slug, None)
            received += len(body["items"]) + len(body["deleted"])
            if body["next_page"]:
                params = {"page": body["next_page"], "limit": limit}
                continue
            self.token = body["next_sync"]
            return received
        raise AssertionError("sync did not finish")


def published_on_main(repo: Path) -> dict[str, str]:
    listing = git(repo, "ls-tree", "-r", "main", "content/comparisons")
    found = {}
    for line in listing.splitlines():
        meta, path = line.split("\t")
        found[path.rsplit("/", 1)[-1].removesuffix(".md")] = meta.split()[2]
    return found


def test_sync_through_a_hundred_publications(client: Client, settings: Settings,
                                             repo_path: Path) -> None:
    store = open_write_side(settings, repo=Repository(repo_path))
    frontend = Frontend(client)
    assert frontend.sync() == len(published_on_main(repo_path))
    base = store.documents.published(HAIKU)
    assert base is not None
    chooser = random.Random(7)
    slugs: list[str] = []
    for number in range(100):
        roll = chooser.random()
        if slugs and roll < 0.2:
            slug = chooser.choice(slugs)
            current = store.documents.current(slug)
            assert current is not None
            if current.state == "published":
                store.editor.transition(slug, "unpublish", PUBLISHER, current.revision)
                continue
            revision = current.revision
        elif slugs and roll < 0.5:
            slug = chooser.choice(slugs)
            current = store.documents.current(slug)
            assert current is not None
            edited = msgspec.structs.replace(current.comparison, summary=f"Revised {number}.")
            revision = store.editor.save(slug, edited, EDITOR, current.revision).revision
            revision = store.editor.transition(slug, "submit", EDITOR, revision).revision
            revision = store.editor.transition(slug, "approve", REVIEWER, revision).revision
        else:
            slug = f"synced-comparison-{number}"
            slugs.append(slug)
            doc = msgspec.structs.replace(base.comparison, slug=slug, title=f"Synced {number}")
            revision = store.editor.create(doc, EDITOR).revision
            revision = store.editor.transition(slug, "submit", EDITOR, revision).revision
            revision = store.editor.transition(slug, "approve", REVIEWER, revision).revision
        store.editor.transition(slug, "publish", PUBLISHER, revision)
        if number % 10 == 9:
            frontend.sync()
    frontend.sync()
    expected = published_on_main(repo_path)
    assert set(frontend.copy) == set(expected)
    assert {slug: item["revision"] for slug, item in frontend.copy.items()} == expected
    assert frontend.sync() == 0  # nothing new: an empty answer


def test_incremental_sync_sends_only_changes(client: Client, tokens: dict[str, Headers]) -> None:
    full = client.get("/api/sync").json()
    assert full["deleted"] == []
    assert {i["slug"] for i in full["items"]} == {
        i["slug"] for i in client.get("/api/comparisons?limit=100").json()["items"]}
    etag = client.get(f"/api/comparisons/{HAIKU}").headers["etag"]
    act(client, HAIKU, "unpublish", tokens["publisher"], etag)
    changes = client.get("/api/sync", params={"token": full["next_sync"]}).json()
    assert changes["items"] == []
    assert changes["deleted"] == [HAIKU]
    item = next(i for i in full["items"] if i["slug"] != HAIKU)
    assert set(item) == set(client.get(f"/api/comparisons/{item['slug']}").json())


def test_bad_and_foreign_sync_tokens(client: Client, tmp_path: Path) -> None:
    garbage = client.get("/api/sync", params={"token": "not a token"})
    assert garbage.status_code == 400
    assert garbage.json()["field"] == "token"
    foreign = msgspec.json.encode({"target": "ab" * 20, "base": None, "offset": 0})
    token = base64.urlsafe_b64encode(foreign).decode().rstrip("=")
    gone = client.get("/api/sync", params={"token": token})
    assert gone.status_code == 410
    assert "start" in gone.json()["message"]


def test_feeds_parse_and_say_what_changed(client: Client, tokens: dict[str, Headers]) -> None:
    base = client.get(f"/api/comparisons/{HAIKU}").json()
    created = client.post("/api/drafts", json=new_document(base, "feed-new-one", "Feed New One"),
                          headers=tokens["editor"])
    doc = act(client, "feed-new-one", "submit", tokens["editor"], created.headers["etag"])
    doc = act(client, "feed-new-one", "approve", tokens["reviewer"], f'"{doc["revision"]}"')
    act(client, "feed-new-one", "publish", tokens["publisher"], f'"{doc["revision"]}"')
    draft = client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"])
    changed = draft.json()
    changed["tools"][0]["reviews"][0]["verdict"] = "skip"
    saved = client.put(f"/api/drafts/{HAIKU}", json=changed,
                       headers={**tokens["editor"], "If-Match": draft.headers["etag"]})
    doc = act(client, HAIKU, "submit", tokens["editor"], saved.headers["etag"])
    doc = act(client, HAIKU, "approve", tokens["reviewer"], f'"{doc["revision"]}"')
    act(client, HAIKU, "publish", tokens["publisher"], f'"{doc["revision"]}"')

    atom = client.get("/api/feed.atom")
    assert atom.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(atom.content)
    assert not parsed.bozo, parsed.bozo_exception
    assert parsed.version == "atom10"
    titles = [entry.title for entry in parsed.entries]
    assert titles[0].endswith("verdicts updated")
    assert titles[1] == "Feed New One"
    assert "now says skip (was ship)" in parsed.entries[0].summary
    assert "50% → 25%" in parsed.entries[0].summary

    as_json = client.get("/api/feed.json")
    assert as_json.headers["content-type"].startswith("application/feed+json")
    feed = json.loads(as_json.content)
    # JSON Feed 1.1: version URL and title required; each item an id and content_html/text.
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["title"]
    assert feed["feed_url"].endswith("/api/feed.json")
    for item in feed["items"]:
        assert isinstance(item["id"], str)
        assert item["content_html"]
        datetime.fromisoformat(item["date_published"])
        assert item["authors"][0]["name"]
    assert [i["title"] for i in feed["items"]] == titles
    assert feed["items"][0]["tags"] == ["updated"]
    again = client.get("/api/feed.json", headers={"If-None-Match": as_json.headers["etag"]})
    assert again.status_code == 304


def test_search_over_titles_tools_quotes_and_body(client: Client) -> None:
    def found(q: str) -> list[str]:
        answer = client.get("/api/comparisons", params={"q": q, "limit": 100})
        return [item["slug"] for item in answer.json()["items"]]

    assert found("haiku") == [HAIKU]
    assert found("vLLM llama.cpp") == [HAIKU]            # words from a quote
    assert found("LLM → TTS") == [HAIKU]                  # from the body
    assert found("haiku nonexistentword") == []
    assert HAIKU in found("GEMINI")                       # case-insensitive


def test_preview_links(client: Client, tokens: dict[str, Headers], settings: Settings) -> None:
    base = client.get(f"/api/comparisons/{HAIKU}").json()
    for slug in ("preview-me", "not-previewed"):
        created = client.post("/api/drafts", json=new_document(base, slug, f"Draft {slug}"),
                              headers=tokens["editor"])
        assert created.status_code == 201
    minted = client.post("/api/drafts/preview-me/preview", json={"expires_in": 3600},
                         headers=tokens["reviewer"])
    assert minted.status_code == 201, minted.text
    link = minted.json()
    path = link["url"].removeprefix("http://cms.test")
    shown = client.get(path)
    assert shown.status_code == 200
    assert shown.headers["cache-control"] == "private, no-store"
    draft = client.get("/api/drafts/preview-me", headers=tokens["editor"]).json()
    assert shown.json()["title"] == "Draft preview-me"
    assert shown.json()["state"] == "draft"
    assert shown.json()["html"] == draft["html"]
    assert client.get("/api/comparisons/preview-me").status_code == 404  # still a draft

    token = path.rsplit("/", 1)[-1]
    payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["s"] = "not-previewed"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    assert client.get(f"/api/preview/{forged}.{signature}").status_code == 404
    assert client.get("/api/preview/garbage").status_code == 404

    previews = client.app.state.services.previews
    assert previews.check(token) == "preview-me"
    with pytest.raises(PreviewGone):
        previews.check(token, now=time.time() + 3601)

    revoked = client.delete(f"/api/drafts/preview-me/preview/{link['id']}", headers=tokens["editor"])
    assert revoked.status_code == 204
    after = client.get(path)
    assert after.status_code == 410
    assert after.json()["code"] == "preview_gone"
    assert client.post("/api/drafts/preview-me/preview", headers=tokens["auditor"]).status_code == 403
    assert not (settings.repo / "preview.key").exists()
