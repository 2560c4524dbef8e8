"""The in-memory index of published content: built once, followed incrementally, snapshotted."""

from __future__ import annotations

from pathlib import Path

import msgspec

from cms.config import Settings
from cms.documents import Documents
from cms.gitstore.repository import Repository
from cms.identity import Actor
from cms.index import PublishedIndex
from cms.workflow import load_workflow

from .conftest import HAIKU, SEED

PUBLISHER = Actor(name="Paul Publisher", email="paul@example.com", roles=frozenset({"publisher"}))
SEEDED = len(list((SEED / "comparisons").glob("*.md")))


def store(settings: Settings) -> Documents:
    return Documents(Repository(settings.repo), load_workflow(settings.workflow), settings)


def test_a_restart_uses_the_snapshot_and_catches_up(settings: Settings, repo_path: Path) -> None:
    snapshot = settings.data / "index.snapshot"
    first = PublishedIndex(store(settings), snapshot)
    first.load()
    assert len(first) == SEEDED
    assert snapshot.exists()
    # While no server runs, a comparison is unpublished.
    documents = store(settings)
    published = documents.published(HAIKU)
    assert published is not None
    documents.transition(HAIKU, "unpublish", PUBLISHER, published.revision)

    decoded: list[str] = []
    second_store = store(settings)
    original = second_store.decode_blob

    def counting(blob: str) -> object:
        decoded.append(blob)
        return original(blob)

    second_store.decode_blob = counting  # type: ignore[method-assign,assignment]
    second = PublishedIndex(second_store, snapshot)
    second.load()
    assert len(second) == SEEDED - 1
    assert second.get(HAIKU) is None
    assert decoded == []  # everything came from the snapshot; only a removal to apply
    assert second.head == documents.main_head()


def test_a_broken_or_foreign_snapshot_is_ignored(settings: Settings, repo_path: Path,
                                                 tmp_path: Path) -> None:
    snapshot = settings.data / "index.snapshot"
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.write_bytes(b"not a snapshot")
    index = PublishedIndex(store(settings), snapshot)
    index.load()
    assert len(index) == SEEDED
    foreign = msgspec.msgpack.encode({"version": 1, "head": "a" * 40, "tree": "b" * 40,
                                      "entries": []})
    snapshot.write_bytes(foreign)
    again = PublishedIndex(store(settings), snapshot)
    again.load()
    assert len(again) == SEEDED


def test_commits_of_another_process_are_picked_up(settings: Settings, repo_path: Path) -> None:
    index = PublishedIndex(store(settings))
    index.load()
    other = store(settings)  # another instance sharing the repository
    published = other.published(HAIKU)
    assert published is not None
    other.transition(HAIKU, "unpublish", PUBLISHER, published.revision)
    index.refresh(now=10**9)
    assert index.get(HAIKU) is None
    assert index.head == other.main_head()
