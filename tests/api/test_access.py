"""Who may call which route: every route of the app is in docs/api.md's access table, and each
of its cells is tried."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from ..conftest import HAIKU, PEOPLE
from ..helpers import Headers, new_document

EVERYONE = set(PEOPLE)
ROLES_OF = {key: set(roles) for key, (_, _, roles) in PEOPLE.items()}


def holding(*roles: str) -> set[str]:
    return {key for key, held in ROLES_OF.items() if held & set(roles)}


PUBLIC = "public"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def documented_access() -> dict[tuple[str, str], Any]:
    """docs/api.md's "Who may call what" table: (method, route template) -> who may call it,
    PUBLIC or the set of people from conftest.PEOPLE holding one of the roles it names."""
    text = DOCS.read_text()
    table = text[text.index("| route | access |"):].split("\n\n", 1)[0]
    found: dict[tuple[str, str], Any] = {}
    for row in table.splitlines()[2:]:
        routes, access = (cell.strip() for cell in row.strip("|").rsplit("|", 1))
        if access.startswith("public"):
            who: Any = PUBLIC
        elif access.startswith("any token"):
            who = EVERYONE
        else:
            who = holding(*(role.strip() for role in access.split("(")[0].split(",")))
        for method, path in re.findall(r"`([A-Z]+) (/[^`]*)`", routes):
            found[(method, re.sub(r"\{(\w+)\}", r"{\1:str}", path))] = who
    return found


MATRIX = documented_access()


def app_routes(client: TestClient) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    found = set()
    for route in client.app.routes:
        if route.path.startswith("/schema"):
            continue
        for method in getattr(route, "methods", set()):
            if method not in {"HEAD", "OPTIONS"}:
                found.add((method, route.path.rstrip("/") or "/"))
    return found


def test_every_route_is_in_the_access_table(client: TestClient) -> None:  # type: ignore[type-arg]
    assert app_routes(client) == set(MATRIX)


def call(client: TestClient, method: str, template: str, headers: Headers) -> int:  # type: ignore[type-arg]
    path = template.replace("{slug:str}", HAIKU).replace("{token_id:str}", "nosuchtoken")
    path = path.replace("{endpoint_id:str}", "ep_none").replace("{delivery_id:str}", "dlv_none")
    path = path.replace("{commit:str}", "0" * 40).replace("{preview_id:str}", "pv_none")
    path = path.replace("{token:str}", "not-a-token")
    body: Any = None
    if method == "POST" and template == "/api/drafts":
        base = client.get(f"/api/comparisons/{HAIKU}").json()
        body = new_document(base, "access-check-doc", "Access check")
    elif method == "PUT":
        body = client.get(f"/api/comparisons/{HAIKU}").json()
        headers = {**headers, "If-Match": '"0000"'}
    elif template.endswith("/transitions"):
        body = {"action": "unpublish"}
        headers = {**headers, "If-Match": '"0000"'}
    elif method == "POST" and template == "/api/tokens":
        body = {"name": "New Person", "email": "new@example.com", "roles": ["auditor"]}
    elif template == "/api/webhooks" and method == "POST":
        body = {"url": "https://hooks.example.com/rebuild"}
    elif template.endswith("/votes"):
        body = {"tool": "claude-haiku-open-weights", "vote": "ship"}
    elif template.endswith("/revert"):
        body = {"to": "0" * 40}
        headers = {**headers, "If-Match": '"0000"'}
    elif template.endswith("/replay"):
        body = {"since": "0" * 40}
    elif method == "PATCH":
        body = {"description": "changed"}
    elif method == "DELETE":
        headers = {**headers, "If-Match": '"0000"'}
    response = client.request(method, path, json=body, headers=headers)
    return response.status_code


@pytest.mark.parametrize(("method", "template"), sorted(MATRIX))
def test_route_access(client: TestClient, tokens: dict[str, Headers], method: str,  # type: ignore[type-arg]
                      template: str) -> None:
    allowed = MATRIX[(method, template)]
    anonymous = call(client, method, template, {})
    if allowed == PUBLIC:
        # Public means no 401 or 403; a made-up preview token is simply not found.
        assert anonymous not in (401, 403), anonymous
        return
    assert anonymous == 401
    for person in sorted(EVERYONE):
        status = call(client, method, template, tokens[person])
        if person in allowed:
            assert status not in (401, 403), (person, status)
        else:
            assert status == 403, (person, status)


def test_unknown_and_revoked_tokens_are_refused(client: TestClient,  # type: ignore[type-arg]
                                                tokens: dict[str, Headers]) -> None:
    bad = client.get("/api/drafts", headers={"Authorization": "Bearer cms_not-a-real-token"})
    assert bad.status_code == 401
    assert bad.json()["code"] == "unauthorized"
    assert bad.headers["www-authenticate"] == "Bearer"
    scheme = client.get("/api/drafts", headers={"Authorization": "Basic abc"})
    assert scheme.status_code == 401

    created = client.post("/api/tokens", headers=tokens["admin"],
                          json={"name": "Temp", "email": "temp@example.com", "roles": ["editor"]})
    assert created.status_code == 201
    token = created.json()["token"]
    assert token.startswith("cms_")
    mine = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/drafts", headers=mine).status_code == 200
    revoked = client.post(f"/api/tokens/{created.json()['id']}/revoke", headers=tokens["admin"])
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"]
    assert client.get("/api/drafts", headers=mine).status_code == 401
    listed = client.get("/api/tokens", headers=tokens["admin"]).json()
    assert all("hash" not in item and "token" not in item for item in listed)


def test_published_reads_never_show_drafts(client: TestClient,  # type: ignore[type-arg]
                                           tokens: dict[str, Headers]) -> None:
    base = client.get(f"/api/comparisons/{HAIKU}").json()
    created = client.post("/api/drafts", json=new_document(base, "secret-draft", "Secret"),
                          headers=tokens["editor"])
    assert created.status_code == 201
    assert client.get("/api/comparisons/secret-draft").status_code == 404
    slugs = [item["slug"] for item in client.get("/api/comparisons").json()["items"]]
    assert "secret-draft" not in slugs
    assert client.get("/api/drafts/secret-draft").status_code == 401
