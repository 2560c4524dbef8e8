"""`cms site build` against the real app (in process): what the pages show, and that rebuilds
are incremental and byte-stable."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from cms.site import pages
from cms.site.build import BuildResult, build
from cms.site.model import SyncPage
from cms.site.source import Source

from ..conftest import HAIKU
from ..helpers import Headers, act

SEEDED = 6


def site_files(out: Path) -> dict[str, bytes]:
    return {str(path.relative_to(out)): path.read_bytes()
            for path in sorted(out.rglob("*")) if path.is_file()}


def stamps(out: Path) -> dict[str, int]:
    return {str(path.relative_to(out)): path.stat().st_mtime_ns
            for path in sorted(out.rglob("*")) if path.is_file()}


class Site:
    def __init__(self, client: TestClient, folder: Path) -> None:  # type: ignore[type-arg]
        self.source = Source("http://testserver.local", client=client)
        self.out = folder / "public"
        self.state = folder / "public.state"

    def build(self) -> BuildResult:
        return build(self.source, self.out, self.state)

    def page(self, slug: str) -> str:
        return (self.out / pages.comparison_path(slug)).read_text()


@pytest.fixture
def site(client: TestClient, tmp_path: Path) -> Iterator[Site]:  # type: ignore[type-arg]
    return Site(client, tmp_path)


def republish(client: TestClient, tokens: dict[str, Headers], slug: str,  # type: ignore[type-arg]
              change: Any) -> None:
    """Edit the published ``slug`` with ``change`` and take it through review to main."""
    document = client.get(f"/api/drafts/{slug}", headers=tokens["editor"])
    body = document.json()
    change(body)
    saved = client.put(f"/api/drafts/{slug}", json=body,
                       headers={**tokens["editor"], "If-Match": document.headers["etag"]})
    assert saved.status_code == 200, saved.text
    doc = act(client, slug, "submit", tokens["editor"], saved.headers["etag"])
    doc = act(client, slug, "approve", tokens["reviewer"], f'"{doc["revision"]}"')
    act(client, slug, "publish", tokens["publisher"], f'"{doc["revision"]}"')


def flip_builder(document: dict[str, Any]) -> None:
    review = document["tools"][0]["reviews"][0]
    review["verdict"] = "skip" if review["verdict"] == "ship" else "ship"


def test_a_comparison_page_shows_what_the_seed_page_shows(
        site: Site, client: TestClient) -> None:  # type: ignore[type-arg]
    result = site.build()
    assert result.full
    assert result.comparisons == SEEDED
    item = client.get(f"/api/comparisons/{HAIKU}").json()
    html = site.page(HAIKU)
    assert '<html lang="en">' in html
    assert f"<h1>{item['title']}</h1>" in html
    assert "Which one should you ship with?" in html
    for tool in item["tools"]:
        assert f">{tool['name']}</h3>" in html
        for shown in (tool["category"], tool["entry_price"], tool["panel_ship_label"]):
            assert f">{shown}<" in html
        assert tool["description"].replace("'", "&#x27;") in html
    assert "<dt>Community</dt><dd>—</dd>" in html  # no votes yet
    assert "<h2 id=\"scorecard-heading\">Reviewer scorecard</h2>" in html
    for reviewer in item["panel"]:
        assert f"<h3>{reviewer['name']}</h3>" in html
        assert reviewer["lens"].replace("'", "&#x27;").replace('"', "&quot;") in html
    quotes = [review["quote"] for tool in item["tools"] for review in tool["reviews"]]
    assert len(re.findall("<blockquote>", html)) == len(quotes)
    assert html.count('class="verdict verdict-ship"') == sum(
        review["verdict"] == "ship" for tool in item["tools"] for review in tool["reviews"])
    assert "<h3>The short version</h3>" in html  # the body, its headings below the page's
    assert 'Published <time datetime="' in html
    assert "approved by Seed Reviewer" in html
    assert "reviewer@example.com" not in html
    assert '<a href="verdicts.html">History of verdict changes</a>' in html
    assert 'href="../../feed.atom"' in html
    assert 'href="../../style.css"' in html


def test_every_page_links_the_feed_and_the_stylesheet(site: Site) -> None:
    site.build()
    files = site_files(site.out)
    html_pages = [path for path in files if path.endswith(".html")]
    assert {"index.html", "verdicts.html", "feed.atom", "style.css"} <= set(files)
    assert len([path for path in html_pages if path.startswith("comparisons/")]) == 2 * SEEDED
    assert any(path.startswith("category/") for path in html_pages)
    for path in html_pages:
        text = files[path].decode()
        root = "../" * path.count("/")
        assert f'href="{root}feed.atom"' in text, path
        assert f'href="{root}style.css"' in text, path
        assert "<script" not in text, path
        assert "http://" not in text.split("</head>")[1], path  # no external asset or link


def test_categories_filter_without_script(site: Site, client: TestClient) -> None:  # type: ignore[type-arg]
    site.build()
    items = client.get("/api/comparisons?limit=100").json()["items"]
    category = items[0]["tools"][0]["category"]
    listed = (site.out / "category" / pages.category_slug(category) / "index.html").read_text()
    expected = {item["slug"] for item in items
                if category in {tool["category"] for tool in item["tools"]}}
    linked = set(re.findall(r'href="\.\./\.\./comparisons/([a-z0-9-]+)/"', listed))
    assert linked == expected
    index = (site.out / "index.html").read_text()
    assert f'href="category/{pages.category_slug(category)}/"' in index


def test_a_rebuild_with_nothing_new_changes_no_file(site: Site) -> None:
    site.build()
    before, times = site_files(site.out), stamps(site.out)
    state = site_files(site.state)
    again = site.build()
    assert again.written == []
    assert again.removed == []
    assert site_files(site.out) == before
    assert stamps(site.out) == times
    assert site_files(site.state) == state


def test_a_publication_rewrites_its_pages_and_the_lists_only(
        site: Site, client: TestClient, tokens: dict[str, Headers]) -> None:  # type: ignore[type-arg]
    site.build()
    before = site_files(site.out)
    republish(client, tokens, HAIKU, flip_builder)
    result = site.build()
    assert not result.full
    changed = {path for path, data in site_files(site.out).items() if before.get(path) != data}
    assert set(result.written) == changed
    assert {pages.comparison_path(HAIKU), pages.history_path(HAIKU), "verdicts.html"} <= changed
    others = {path for path in changed if path.startswith("comparisons/")
              and not path.startswith(f"comparisons/{HAIKU}/")}
    assert others == set()
    history = (site.out / pages.history_path(HAIKU)).read_text()
    assert ("<bdi>The Builder</bdi> on <bdi>Claude Haiku Open Weights</bdi>: <del>ship</del> → "
            "<ins>skip</ins>") in history
    recent = (site.out / "verdicts.html").read_text()
    assert f'href="comparisons/{HAIKU}/"' in recent
    assert "(2 verdict changes)" in site.page(HAIKU)  # the reviewer's, and the panel's share


def test_an_unpublished_comparison_leaves_the_site(
        site: Site, client: TestClient, tokens: dict[str, Headers]) -> None:  # type: ignore[type-arg]
    site.build()
    etag = client.get(f"/api/comparisons/{HAIKU}").headers["etag"]
    act(client, HAIKU, "unpublish", tokens["publisher"], etag)
    result = site.build()
    assert set(result.removed) == {pages.comparison_path(HAIKU), pages.history_path(HAIKU)}
    assert not (site.out / "comparisons" / HAIKU).exists()
    for path, data in site_files(site.out).items():
        assert HAIKU.encode() not in data, path
    assert result.comparisons == SEEDED - 1


def test_a_lost_state_builds_in_full_and_removes_what_is_gone(
        site: Site, client: TestClient, tokens: dict[str, Headers]) -> None:  # type: ignore[type-arg]
    site.build()
    (site.state / "site.json").write_text("{not json")
    etag = client.get(f"/api/comparisons/{HAIKU}").headers["etag"]
    act(client, HAIKU, "unpublish", tokens["publisher"], etag)
    result = site.build()
    assert result.full
    assert pages.comparison_path(HAIKU) in result.removed
    assert not (site.out / "comparisons" / HAIKU).exists()
    assert site.build().written == []


def test_what_an_editor_typed_is_shown_as_text(
        site: Site, client: TestClient, tokens: dict[str, Headers]) -> None:  # type: ignore[type-arg]
    def hostile(document: dict[str, Any]) -> None:
        document["title"] = "Tools <script>alert(1)</script> & co"
        document["tools"][0]["tagline"] = '"><img src=x onerror=alert(1)>'
        document["body"] = "Hello <script>alert(2)</script>\n\n[x](javascript:alert(3))\n"

    republish(client, tokens, HAIKU, hostile)
    site.build()
    html = site.page(HAIKU)
    assert "<script" not in html
    assert "<img" not in html
    assert "href=\"javascript" not in html  # shown as text, never a link
    assert "Tools &lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html


def test_slugs_that_are_not_slugs_never_become_paths() -> None:
    hostile = {"items": [], "deleted": ["../../etc"], "next_sync": "t"}
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode(hostile), type=SyncPage)


def test_a_full_build_reads_the_record_in_one_go_and_makes_the_same_pages(
        client: TestClient, tokens: dict[str, Headers], tmp_path: Path,  # type: ignore[type-arg]
        monkeypatch: pytest.MonkeyPatch) -> None:
    from cms.site import build as building

    republish(client, tokens, HAIKU, flip_builder)
    one_by_one = Site(client, tmp_path / "one-by-one")
    one_by_one.build()
    monkeypatch.setattr(building, "ONE_BY_ONE", 0)
    asked: list[str] = []
    every_change = Source.every_change
    monkeypatch.setattr(Source, "every_change",
                        lambda self: asked.append("all") or every_change(self))
    at_once = Site(client, tmp_path / "at-once")
    at_once.build()
    assert asked == ["all"]
    assert site_files(at_once.out) == site_files(one_by_one.out)


def test_what_a_killed_build_left_is_swept_by_the_next(
        site: Site, client: TestClient, tokens: dict[str, Headers]) -> None:  # type: ignore[type-arg]
    site.build()
    # As a kill mid-build leaves it: its mark, and half-written pages beside real ones.
    (site.state / "building").touch()
    folder = site.out / "comparisons" / HAIKU
    (folder / ".index.html.cms-site.tmp").write_bytes(b"<!doctype html><p>half")
    (site.out / ".verdicts.html.cms-site.tmp").write_bytes(b"")
    etag = client.get(f"/api/comparisons/{HAIKU}").headers["etag"]
    act(client, HAIKU, "unpublish", tokens["publisher"], etag)
    site.build()
    assert not folder.exists()  # the unpublished comparison's folder, whole
    assert list(site.out.rglob("*.cms-site.tmp")) == []
    assert not (site.state / "building").exists()


def test_the_feed_stays_well_formed_whatever_a_title_holds(
        site: Site, client: TestClient, tokens: dict[str, Headers]) -> None:  # type: ignore[type-arg]
    from xml.etree import ElementTree

    def odd(document: dict[str, Any]) -> None:
        document["title"] = "Odd \ufffe title \uffff & <co>"

    republish(client, tokens, HAIKU, odd)
    site.build()
    feed = ElementTree.fromstring((site.out / "feed.atom").read_bytes())  # noqa: S314 - our own file
    titles = [entry.findtext("{http://www.w3.org/2005/Atom}title")
              for entry in feed.iter("{http://www.w3.org/2005/Atom}entry")]
    assert "Odd  title  & <co>" in titles


def publish_new(client: TestClient, tokens: dict[str, Headers], slug: str) -> None:  # type: ignore[type-arg]
    document = client.get(f"/api/comparisons/{HAIKU}").json()
    document.update(slug=slug, title=f"New {slug}")
    created = client.post("/api/drafts", json=document, headers=tokens["editor"])
    assert created.status_code == 201, created.text
    doc = act(client, slug, "submit", tokens["editor"], created.headers["etag"])
    doc = act(client, slug, "approve", tokens["reviewer"], f'"{doc["revision"]}"')
    act(client, slug, "publish", tokens["publisher"], f'"{doc["revision"]}"')


def unpublish(client: TestClient, tokens: dict[str, Headers], slug: str) -> None:  # type: ignore[type-arg]
    etag = client.get(f"/api/comparisons/{slug}").headers["etag"]
    act(client, slug, "unpublish", tokens["publisher"], etag)


def test_a_build_stopped_by_an_error_is_made_good_by_the_next(
        site: Site, client: TestClient, tokens: dict[str, Headers],  # type: ignore[type-arg]
        monkeypatch: pytest.MonkeyPatch) -> None:
    from cms.site.source import SourceError

    site.build()
    publish_new(client, tokens, "briefly-published")

    def unreachable(self: Source) -> list[Any]:
        raise SourceError("the API could not be reached")

    with monkeypatch.context() as patched:
        patched.setattr(Source, "recent_changes", unreachable)
        with pytest.raises(SourceError):
            site.build()  # its pages were written, its state not saved
    assert (site.out / pages.comparison_path("briefly-published")).exists()
    unpublish(client, tokens, "briefly-published")  # the sync nets the two out
    site.build()
    assert not (site.out / "comparisons" / "briefly-published").exists()
    assert "briefly-published" not in (site.out / "index.html").read_text()
    assert site.build().written == []


def test_list_pages_the_catalogue_no_longer_fills_are_removed(
        site: Site, client: TestClient, tokens: dict[str, Headers],  # type: ignore[type-arg]
        monkeypatch: pytest.MonkeyPatch) -> None:
    from cms.site import build as building

    monkeypatch.setattr(building, "PER_PAGE", 2)
    site.build()
    assert (site.out / "page" / "3" / "index.html").exists()
    index = (site.out / "index.html").read_text()
    assert 'rel="next" href="page/2/"' in index
    for slug in client.get("/api/comparisons?limit=2").json()["items"]:
        unpublish(client, tokens, slug["slug"])
    result = site.build()
    assert "page/3/index.html" in result.removed
    assert not (site.out / "page" / "3").exists()
    assert (site.out / "page" / "2" / "index.html").exists()


def test_a_category_that_empties_leaves_the_site(
        site: Site, client: TestClient, tokens: dict[str, Headers]) -> None:  # type: ignore[type-arg]
    def moved(document: dict[str, Any]) -> None:
        for tool in document["tools"]:
            tool["category"] = "Brand New Category"

    site.build()
    before = {path.name for path in (site.out / "category").iterdir()}
    republish(client, tokens, HAIKU, moved)
    site.build()
    after = {path.name for path in (site.out / "category").iterdir()}
    assert after - before == {"brand-new-category"}
    listed = (site.out / "category" / "brand-new-category" / "index.html").read_text()
    assert f'href="../../comparisons/{HAIKU}/"' in listed
    gone = before - after  # a category only this comparison had, if any
    for name in gone:
        assert name not in (site.out / "index.html").read_text()


def test_category_folders_never_collide() -> None:
    names = ["C", "C++", "C#", "Données", "Developer Tools", "developer tools!"]
    slugs = [pages.category_slug(name) for name in names]
    assert len(set(slugs)) == len(slugs)
    assert pages.category_slug("Developer Tools") == "developer-tools"
    assert all(re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", slug) for slug in slugs)
