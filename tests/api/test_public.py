"""What frontends read: published comparisons, filtered, sorted, paginated and cacheable."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from ..conftest import HAIKU, SEED
from ..helpers import Headers, act, new_document

SEEDED = len(list((SEED / "comparisons").glob("*.md")))


def slugs(response: Any) -> list[str]:
    return [item["slug"] for item in response.json()["items"]]


def test_read_one_with_derived_shares_html_and_revision(client: TestClient) -> None:  # type: ignore[type-arg]
    response = client.get(f"/api/comparisons/{HAIKU}")
    assert response.status_code == 200
    body = response.json()
    haiku, gemini = body["tools"]
    assert (haiku["panel_ship"], haiku["panel_ship_label"], haiku["panel_verdict"]) == (0.5, "50%", "split")
    assert (gemini["panel_ship"], gemini["panel_ship_label"]) == (1.0, "100%")
    assert haiku["community_label"] == "—"
    assert haiku["community_share"] is None
    assert len(haiku["reviews"]) == 4
    assert body["html"].startswith("<h2>The short version</h2>")
    assert body["body"].startswith("## The short version")
    assert response.headers["etag"] == f'"{body["revision"]}"'
    assert "must-revalidate" in response.headers["cache-control"]
    assert body["url"] == f"http://cms.test/api/comparisons/{HAIKU}"


def test_if_none_match_gives_304(client: TestClient) -> None:  # type: ignore[type-arg]
    first = client.get(f"/api/comparisons/{HAIKU}")
    again = client.get(f"/api/comparisons/{HAIKU}", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    listing = client.get("/api/comparisons?limit=2")
    cached = client.get("/api/comparisons?limit=2", headers={"If-None-Match": listing.headers["etag"]})
    assert cached.status_code == 304
    other = client.get("/api/comparisons?limit=3", headers={"If-None-Match": listing.headers["etag"]})
    assert other.status_code == 200


def test_cursor_pagination_visits_everything_once(client: TestClient) -> None:  # type: ignore[type-arg]
    for sort in ("-published", "title", "-title", "panel_ship", "-panel_ship"):
        seen: list[str] = []
        cursor = None
        for _ in range(SEEDED + 1):
            query = f"/api/comparisons?limit=2&sort={sort}" + (f"&cursor={cursor}" if cursor else "")
            page = client.get(query).json()
            assert page["total"] == SEEDED
            seen += [item["slug"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == SEEDED
        assert len(set(seen)) == SEEDED


def test_sort_by_title(client: TestClient) -> None:  # type: ignore[type-arg]
    titles = [item["title"] for item in client.get("/api/comparisons?sort=title&limit=100").json()["items"]]
    assert titles == sorted(titles, key=str.casefold)
    reverse = [item["title"] for item in client.get("/api/comparisons?sort=-title&limit=100").json()["items"]]
    assert reverse == titles[::-1]


def test_filters(client: TestClient) -> None:  # type: ignore[type-arg]
    everything = client.get("/api/comparisons?limit=100").json()["items"]
    by_tool = client.get("/api/comparisons?tool=gemini")
    assert slugs(by_tool) == [HAIKU]
    by_id = client.get("/api/comparisons?tool=claude-haiku-open-weights")
    assert slugs(by_id) == [HAIKU]
    category = everything[0]["tools"][0]["category"]
    by_category = client.get(f"/api/comparisons?category={category.upper()}&limit=100")
    expected = [i["slug"] for i in everything if any(t["category"] == category for t in i["tools"])]
    assert sorted(slugs(by_category)) == sorted(expected)
    ships = client.get("/api/comparisons?verdict=ship&limit=100")
    expected_ship = [i["slug"] for i in everything if any(t["panel_verdict"] == "ship" for t in i["tools"])]
    assert sorted(slugs(ships)) == sorted(expected_ship)
    split_haiku = client.get("/api/comparisons?tool=claude-haiku-open-weights&verdict=ship")
    assert slugs(split_haiku) == []
    assert client.get("/api/comparisons?tool=nothing-like-this").json()["items"] == []


def test_rendered_html_is_safe(client: TestClient, tokens: dict[str, Headers]) -> None:  # type: ignore[type-arg]
    base = client.get(f"/api/comparisons/{HAIKU}").json()
    document = new_document(base, "unsafe-markdown", "Unsafe Markdown")
    document["body"] = ("<script>alert(1)</script>\n\n[click](javascript:alert(1))\n\n"
                        '<img src=x onerror="alert(1)">\n')
    created = client.post("/api/drafts", json=document, headers=tokens["editor"])
    assert created.status_code == 201
    html = created.json()["html"]
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "javascript:" not in html.replace("[click](javascript:alert(1))", "")
    assert "<img" not in html
    doc = act(client, "unsafe-markdown", "submit", tokens["editor"], created.headers["etag"])
    doc = act(client, "unsafe-markdown", "approve", tokens["reviewer"], f'"{doc["revision"]}"')
    act(client, "unsafe-markdown", "publish", tokens["publisher"], f'"{doc["revision"]}"')
    public_html = client.get("/api/comparisons/unsafe-markdown").json()["html"]
    assert public_html == html


def test_index_follows_publications(client: TestClient, tokens: dict[str, Headers]) -> None:  # type: ignore[type-arg]
    before = client.get("/health").json()
    assert before["published"] == SEEDED
    etag = client.get(f"/api/comparisons/{HAIKU}").headers["etag"]
    act(client, HAIKU, "unpublish", tokens["publisher"], etag)
    after = client.get("/health").json()
    assert after["published"] == SEEDED - 1
    assert after["head"] != before["head"]
    assert HAIKU not in slugs(client.get("/api/comparisons?limit=100"))


def test_what_you_read_is_what_you_write(client: TestClient, tokens: dict[str, Headers]) -> None:  # type: ignore[type-arg]
    public = client.get(f"/api/comparisons/{HAIKU}")
    saved = client.put(f"/api/drafts/{HAIKU}", json=public.json(),
                       headers={**tokens["editor"], "If-Match": public.headers["etag"]})
    assert saved.status_code == 200, saved.text
    draft = client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"])
    resent = client.put(f"/api/drafts/{HAIKU}", json=draft.json(),
                        headers={**tokens["editor"], "If-Match": draft.headers["etag"]})
    assert resent.status_code == 200
    assert resent.json()["revision"] == draft.json()["revision"]  # nothing changed, nothing written
    for field in ("title", "summary", "panel", "body"):
        assert resent.json()[field] == public.json()[field]
    assert draft.json()["allowed_actions"] == ["edit", "discard", "submit"]


def test_tallies_are_not_written_by_editors(client: TestClient, tokens: dict[str, Headers]) -> None:  # type: ignore[type-arg]
    public = client.get(f"/api/comparisons/{HAIKU}")
    document = public.json()
    document["tools"][0]["community"] = {"ship": 999, "skip": 0}
    saved = client.put(f"/api/drafts/{HAIKU}", json=document,
                       headers={**tokens["editor"], "If-Match": public.headers["etag"]})
    assert saved.status_code == 200
    assert saved.json()["tools"][0]["community"] == public.json()["tools"][0]["community"]
    document["tools"][0]["community"] = {"ship": 10**30, "skip": 0}
    huge = client.put(f"/api/drafts/{HAIKU}", json=document,
                      headers={**tokens["editor"], "If-Match": saved.headers["etag"]})
    assert huge.status_code == 422
