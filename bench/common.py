"""Shared by the benchmark sections: the actors, generated content, timing."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from cms import codec
from cms.config import PROJECT_ROOT, Settings
from cms.identity import Actor

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


def make_seed(folder: Path, count: int) -> None:
    """``count`` comparisons made from the samples, each under its own slug."""
    samples = [codec.decode(p.read_text()) for p in sorted((PROJECT_ROOT / "content").rglob("*.md"))]
    for number in range(count):
        base = samples[number % len(samples)]
        slug = f"{base.slug[:80]}-{number:05d}"
        doc = msgspec.structs.replace(base, slug=slug, title=f"{base.title} #{number}")
        (folder / f"{slug}.md").write_text(codec.encode(doc))


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
