"""Shared by the benchmark sections: the actors, generated content, timing."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from cms.bundled import samples
from cms.config import Settings
from cms.content import codec
from cms.editing.seed import as_published, create_repository
from cms.editing.write_side import open_write_side
from cms.identity.actors import Actor
from cms.store.documents import Documents

EDITOR = Actor(name="Bench Editor", email="editor@example.com", roles=frozenset({"editor"}))
REVIEWER = Actor(name="Bench Reviewer", email="reviewer@example.com", roles=frozenset({"reviewer"}))
PUBLISHER = Actor(name="Bench Publisher", email="publisher@example.com",
                  roles=frozenset({"publisher"}))
ACTING = {"submit": EDITOR, "approve": REVIEWER, "publish": PUBLISHER}
RESULTS = Path(__file__).parent / "results" / "latest.json"


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": round(statistics.median(ordered) * 1000, 3),
            "p95_ms": round(p95 * 1000, 3), "n": len(ordered)}


_NUMBER = "qqqqq"  # where each copy's number goes; five characters, like the numbers


def seed_repository(settings: Settings, count: int) -> None:
    """A content repository of ``count`` published comparisons made from the samples, each
    under its own slug and title, in one first commit. Each sample is encoded once and copies
    are made from its text, so a large repository takes seconds rather than minutes."""
    assert count <= 100_000
    now = datetime.now(UTC).replace(microsecond=0)
    templates = []
    for path in sorted(samples().rglob("*.md")):
        base = codec.decode(path.read_text())
        copy = msgspec.structs.replace(base, slug=f"{base.slug[:80]}-{_NUMBER}",
                                       title=f"{base.title} #{_NUMBER}")
        templates.append((copy.slug, codec.encode(as_published(copy, now))))
    files = {}
    for number in range(count):
        slug, text = templates[number % len(templates)]
        tag = f"{number:05d}"
        files[slug.replace(_NUMBER, tag)] = text.replace(_NUMBER, tag).encode()
    create_repository(settings, files)


def published_slugs(documents: Documents) -> list[str]:
    """Every slug on main, sorted."""
    head = documents.main_head()
    assert head is not None
    paths = documents.repo.files(documents.repo.read_commit(head).tree, documents.layout.folder)
    return sorted(slug for slug in map(documents.layout.slug_at, paths) if slug is not None)


def some_slug(settings: Settings) -> str:
    """The first published slug."""
    return published_slugs(open_write_side(settings).documents)[0]


def until_ready(get: Callable[[str], Any], deadline_s: float = 1800.0) -> None:
    """Ask /health until the catalogue holds every comparison: lists answer 503 until then
    once they have waited a few seconds. A benchmark's own loop, bounded in time."""
    stop = time.monotonic() + deadline_s
    while not get("/health").json()["index_ready"]:
        if time.monotonic() > stop:
            raise TimeoutError("the catalogue was not filled in time")
        time.sleep(0.02)


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start




@contextmanager
def cms_server(settings: Settings,
               **environment: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``cms serve`` on a free loopback port for these settings; yields the process and its URL
    as soon as the socket is bound (requests wait in the backlog until start-up is done)."""
    env = {**os.environ, "CMS_REPO": str(settings.repo), "CMS_DATA": str(settings.data),
           "CMS_PORT": "0", **environment}
    with subprocess.Popen([sys.executable, "-m", "cms", "serve"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as server:
        try:
            assert server.stdout is not None
            yield server, server.stdout.readline().split()[2]
        finally:
            server.terminate()
            server.wait(timeout=60)
