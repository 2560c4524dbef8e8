"""The in-memory index of published content: built once, followed incrementally, snapshotted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cms.config import Settings, load_settings
from cms.content.model import Comparison
from cms.editing.seed import initialise
from cms.editing.write_side import open_write_side
from cms.identity.actors import Actor
from cms.reading.bulk_decode import decode_many
from cms.reading.index import PublishedIndex, Query
from cms.store.documents import Documents
from cms.store.repository import Signature

from ..conftest import HAIKU, SEED, git

PUBLISHER = Actor(name="Paul Publisher", email="paul@example.com", roles=frozenset({"publisher"}))
SEEDED = len(list((SEED / "comparisons").glob("*.md")))


def store(settings: Settings) -> Documents:
    return open_write_side(settings).documents


def counting_store(settings: Settings) -> tuple[Documents, list[str]]:
    """A store that records which blobs it decodes from git."""
    documents = store(settings)
    decoded: list[str] = []
    original = documents.decode_blob

    def counting(blob: str) -> Comparison:
        decoded.append(blob)
        return original(blob)

    documents.decode_blob = counting  # type: ignore[method-assign]
    return documents, decoded


def test_start_up_decodes_nothing_until_asked(settings: Settings, repo_path: Path) -> None:
    documents, decoded = counting_store(settings)
    index = PublishedIndex(documents, settings.data / "index.snapshot")
    index.load()
    assert len(index) == SEEDED
    assert decoded == []
    assert not index.ready
    entry = index.get(HAIKU)
    assert entry is not None
    assert entry.comparison.slug == HAIKU
    assert len(decoded) == 1
    page = index.query(Query(limit=100))  # a query needs every comparison
    assert page.total == SEEDED
    assert index.ready
    assert len(decoded) == SEEDED  # the one already decoded was not decoded again


def test_a_restart_reads_the_snapshot_and_catches_up(settings: Settings, repo_path: Path) -> None:
    snapshot = settings.data / "index.snapshot"
    first = PublishedIndex(store(settings), snapshot)
    first.load()
    first.fill()
    assert snapshot.exists()
    expected = {entry.slug: entry.comparison for entry in first.query(Query(limit=100)).items}
    # While no server runs, a comparison is unpublished.
    content = open_write_side(settings)
    published = content.documents.published(HAIKU)
    assert published is not None
    content.editor.transition(HAIKU, "unpublish", PUBLISHER, published.revision)

    second_store, decoded = counting_store(settings)
    second = PublishedIndex(second_store, snapshot)
    second.load()
    second.fill()
    assert decoded == []  # everything came from the snapshot
    assert len(second) == SEEDED - 1
    assert second.get(HAIKU) is None
    assert second.head == content.documents.main_head()
    del expected[HAIKU]
    assert {e.slug: e.comparison for e in second.query(Query(limit=100)).items} == expected


def test_a_broken_snapshot_is_ignored_and_a_damaged_record_read_from_git(
        settings: Settings, repo_path: Path) -> None:
    snapshot = settings.data / "index.snapshot"
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.write_bytes(b"not a snapshot")
    index = PublishedIndex(store(settings), snapshot)
    index.load()
    index.fill()
    assert len(index.query(Query(limit=100)).items) == SEEDED
    # Flip one bit in the text of the first record: still valid msgpack, but no longer what
    # git holds.
    data = bytearray(snapshot.read_bytes())
    assert 0x20 < data[200] < 0x7F
    data[200] ^= 0x01
    snapshot.write_bytes(bytes(data))
    documents, decoded = counting_store(settings)
    again = PublishedIndex(documents, snapshot)
    again.load()
    again.fill()
    assert len(decoded) == 1
    assert {e.slug: e.comparison for e in again.query(Query(limit=100)).items} == {
        e.slug: e.comparison for e in index.query(Query(limit=100)).items}


def test_commits_of_another_process_are_picked_up(settings: Settings, repo_path: Path) -> None:
    index = PublishedIndex(store(settings))
    index.load()
    other = open_write_side(settings)  # another instance sharing the repository
    published = other.documents.published(HAIKU)
    assert published is not None
    other.editor.transition(HAIKU, "unpublish", PUBLISHER, published.revision)
    index.refresh(now=10**9)
    assert index.get(HAIKU) is None
    assert index.head == other.documents.main_head()


def test_main_moving_during_the_fill_ends_with_main_as_it_is(settings: Settings,
                                                            repo_path: Path) -> None:
    documents, decoded = counting_store(settings)
    index = PublishedIndex(documents)
    index.load()
    other = open_write_side(settings)  # another writer, unpublishing while the index fills
    other.listeners.subscribe(index.on_committed)
    counted = documents.decode_blob

    def moving(blob: str) -> Comparison:
        if len(decoded) == 2:
            published = other.documents.published(HAIKU)
            assert published is not None
            other.editor.transition(HAIKU, "unpublish", PUBLISHER, published.revision)
        return counted(blob)

    documents.decode_blob = moving  # type: ignore[method-assign]
    index.fill()
    assert index.ready
    in_git = {line.split()[2]: line.rsplit("/", 1)[-1].removesuffix(".md") for line in
              git(repo_path, "ls-tree", "-r", "main", "content/comparisons").splitlines()}
    page = index.query(Query(limit=100))
    assert {entry.blob: entry.slug for entry in page.items} == in_git
    assert HAIKU not in in_git.values()


def test_the_background_fill_decodes_each_comparison_once(settings: Settings,
                                                         repo_path: Path) -> None:
    documents, decoded = counting_store(settings)
    index = PublishedIndex(documents)
    index.load()
    told: list[bool] = []
    index.filled.append(lambda: told.append(index.ready))
    index.start()
    index.fill()  # waits for the background fill, or does it first
    assert index.ready
    assert told == [True]
    assert sorted(decoded) == sorted(set(decoded))
    assert len(decoded) == SEEDED


def test_a_large_fill_decodes_in_worker_processes(settings: Settings, repo_path: Path) -> None:
    expected = PublishedIndex(store(settings))
    expected.load()
    expected.fill()
    documents, decoded = counting_store(settings)
    index = PublishedIndex(documents, settings.data / "index.snapshot")
    index.parallel_from, index.workers = 1, 2  # as for a repository of thousands
    index.load()
    index.fill()
    assert decoded == []  # none decoded in this process
    assert index.query(Query(limit=100)) == expected.query(Query(limit=100))
    assert (settings.data / "index.snapshot").exists()


def test_what_a_worker_cannot_decode_comes_back_for_the_caller(settings: Settings,
                                                               repo_path: Path) -> None:
    missing = "0" * 40
    assert list(decode_many(settings.repo, [missing], 2)) == [(missing, None)]


def test_a_snapshot_of_another_repository_lends_records_not_its_tree(
        settings: Settings, repo_path: Path, tmp_path: Path) -> None:
    other_settings = load_settings({}, repo=tmp_path / "other.git", data=tmp_path / "other-data")
    initialise(other_settings, SEED)
    other = open_write_side(other_settings)
    published = other.documents.published(HAIKU)
    assert published is not None
    other.editor.transition(HAIKU, "unpublish", PUBLISHER, published.revision)  # a tree ours lacks
    theirs = PublishedIndex(other.documents, other_settings.data / "index.snapshot")
    theirs.load()
    theirs.fill()
    snapshot = settings.data / "index.snapshot"
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.write_bytes((other_settings.data / "index.snapshot").read_bytes())

    ours = PublishedIndex(store(settings), snapshot)
    ours.load()
    assert len(ours) == SEEDED
    assert ours.get(HAIKU) is not None
    fresh = PublishedIndex(store(settings))
    fresh.load()
    assert ours.query(Query(limit=100)) == fresh.query(Query(limit=100))


def commit_on_main(documents: Documents, changes: dict[str, bytes | None]) -> None:
    """A commit made without the workflow, as plain git could make it."""
    repo = documents.repo
    head = documents.main_head()
    assert head is not None
    who = Signature(name="Mallory", email="mallory@example.com", at=datetime.now(UTC))
    commit, _ = repo.write_commit(parents=[head], base_tree=repo.read_commit(head).tree,
                                  changes=changes, author=who, committer=who,
                                  message="By hand\n")
    repo.refs.update(documents.layout.main_ref, commit, head)


def test_a_file_on_main_that_does_not_decode_is_left_out(settings: Settings,
                                                         repo_path: Path) -> None:
    documents = store(settings)
    commit_on_main(documents, {documents.layout.path("broken-by-hand"): b"---\ntitle: [unclosed\n---\n"})
    index = PublishedIndex(store(settings))
    index.load()
    assert len(index) == SEEDED + 1  # in main's tree
    assert index.get("broken-by-hand") is None
    index.fill()
    assert index.ready
    assert index.query(Query(limit=100)).total == SEEDED


def test_files_outside_the_layout_never_touch_a_comparison(settings: Settings,
                                                          repo_path: Path) -> None:
    documents = store(settings)
    index = PublishedIndex(documents)
    index.load()
    stray = f"{documents.layout.folder}/zz/{HAIKU}.md"
    assert stray != documents.layout.path(HAIKU)
    commit_on_main(documents, {stray: b"not a comparison"})
    index.refresh(now=10**9)
    commit_on_main(documents, {stray: None})
    index.refresh(now=2 * 10**9)
    entry = index.get(HAIKU)
    assert entry is not None
    assert entry.comparison.slug == HAIKU
