"""Small steps that many API tests take, written once."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from litestar.testing import TestClient

from cms.editing.write_side import WriteSide
from cms.identity.actors import Actor
from cms.store.documents import Revision

Headers = dict[str, str]
T = TypeVar("T")

EDITOR = Actor(name="Ada Editor", email="ada@example.com", roles=frozenset({"editor"}))
REVIEWER = Actor(name="Rita Reviewer", email="rita@example.com", roles=frozenset({"reviewer"}))
PUBLISHER = Actor(name="Paul Publisher", email="paul@example.com", roles=frozenset({"publisher"}))


def approved_draft(content: WriteSide, slug: str, summary: str | None = None) -> Revision:
    """A new revision of the published ``slug`` (with ``summary``, if given), submitted and
    approved through the write side: ready to publish."""
    import msgspec

    published = content.documents.published(slug)
    assert published is not None
    edited = published.comparison if summary is None else msgspec.structs.replace(
        published.comparison, summary=summary)
    draft = content.editor.save(slug, edited, EDITOR, published.revision)
    submitted = content.editor.transition(slug, "submit", EDITOR, draft.revision)
    return content.editor.transition(slug, "approve", REVIEWER, submitted.revision)


def read_draft(client: TestClient, slug: str, who: Headers) -> tuple[dict[str, Any], str]:  # type: ignore[type-arg]
    response = client.get(f"/api/drafts/{slug}", headers=who)
    assert response.status_code == 200, response.text
    return response.json(), response.headers["etag"]


def save_revision(client: TestClient, slug: str, who: Headers,  # type: ignore[type-arg]
                  words: str = " Revised.") -> str:
    """Read ``slug`` and save it with ``words`` added to its summary: a draft under review from
    a published comparison. Returns the new revision's ETag."""
    document, etag = read_draft(client, slug, who)
    document["summary"] += words
    saved = client.put(f"/api/drafts/{slug}", json=document, headers={**who, "If-Match": etag})
    assert saved.status_code == 200, saved.text
    return saved.headers["etag"]


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


def race(runs: list[Callable[[], T]]) -> list[T]:
    """Run each at the same moment, each in its own thread (as several servers would); what
    each returned."""
    start = threading.Barrier(len(runs))
    results: list[T] = []
    lock = threading.Lock()

    def run(one: Callable[[], T]) -> None:
        start.wait(timeout=30)
        result = one()
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run, args=(one,)) for one in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def comparable(response: object) -> tuple[int, dict[str, str], bytes]:
    """A response's status, headers (but its date) and body, to compare two answers."""
    headers = dict(response.headers)  # type: ignore[attr-defined]
    headers.pop("date", None)
    return response.status_code, headers, response.content  # type: ignore[attr-defined]
