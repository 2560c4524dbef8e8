"""Small steps that many API tests take, written once."""

from __future__ import annotations

import copy
from typing import Any

from litestar.testing import TestClient

Headers = dict[str, str]


def read_draft(client: TestClient, slug: str, who: Headers) -> tuple[dict[str, Any], str]:  # type: ignore[type-arg]
    response = client.get(f"/api/drafts/{slug}", headers=who)
    assert response.status_code == 200, response.text
    return response.json(), response.headers["etag"]


def act(client: TestClient, slug: str, action: str, who: Headers, etag: str,  # type: ignore[type-arg]
        comment: str = "", expect: int = 200) -> dict[str, Any]:
    response = client.post(f"/api/drafts/{slug}/transitions",
                           json={"action": action, "comment": comment},
                           headers={**who, "If-Match": etag})
    assert response.status_code == expect, response.text
    return response.json()  # type: ignore[no-any-return]


def new_document(base: dict[str, Any], slug: str, title: str) -> dict[str, Any]:
    document = copy.deepcopy(base)
    document["slug"] = slug
    document["title"] = title
    return document
