"""State-change commits through the store, against `git add` + `git commit` with the git CLI."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import msgspec

from cms.config import Settings
from cms.editing.write_side import open_write_side
from cms.store.repository import Repository

from .common import ACTING, EDITOR, published_slugs, summary, timed


def bench_store(settings: Settings, rounds: int, offset: int = 0) -> dict[str, dict[str, float]]:
    store = open_write_side(settings, repo=Repository(settings.repo, durable=settings.durable))
    slugs = published_slugs(store.documents)[offset : offset + rounds]
    samples: dict[str, list[float]] = {"save": [], "submit": [], "approve": [], "publish": []}
    for slug in slugs:
        published = store.documents.published(slug)
        assert published is not None
        edited = msgspec.structs.replace(published.comparison, summary="An edited summary.")
        revision = published.revision
        for step in samples:
            start = time.perf_counter()
            if step == "save":
                result = store.editor.save(slug, edited, EDITOR, revision)
            else:
                result = store.editor.transition(slug, step, ACTING[step], revision)
            samples[step].append(time.perf_counter() - start)
            revision = result.revision
    return {step: summary(values) for step, values in samples.items()}


def bench_git_cli(settings: Settings, clone: Path, rounds: int) -> dict[str, float]:
    """The same kind of change made the usual way: a clone, an edited file, add and commit."""
    subprocess.run(["git", "clone", "-q", str(settings.repo), str(clone)], check=True)
    # A fresh checkout's files carry the index's own timestamp, so git re-reads every one of them
    # on each command until a later index write ("racily clean" entries). Age them once, as on
    # any clone in use, so that the baseline is git's steady state and not its worst case.
    past = time.time() - 60
    for path in (clone / "content").rglob("*.md"):
        os.utime(path, (past, past))
    subprocess.run(["git", "-C", str(clone), "update-index", "-q", "--refresh"], check=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "B", "GIT_AUTHOR_EMAIL": "b@example.com",
           "GIT_COMMITTER_NAME": "B", "GIT_COMMITTER_EMAIL": "b@example.com"}
    files = sorted((clone / "content" / "comparisons").rglob("*.md"))[:rounds]
    samples = []
    for number, path in enumerate(files):
        path.write_text(path.read_text() + f"\nEdited {number}.\n")

        def commit(target: Path = path) -> None:
            subprocess.run(["git", "-C", str(clone), "add", str(target)], check=True, env=env)
            subprocess.run(["git", "-C", str(clone), "commit", "-q", "-m", "Edit"], check=True,
                           env=env)

        samples.append(timed(commit))
    return summary(samples)


