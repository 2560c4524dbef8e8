"""The index of published content: main's files by slug, and the catalogue lists read."""

from __future__ import annotations

import os
import select
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from cms.config import Settings, load_settings
from cms.content import codec
from cms.content.model import Comparison
from cms.editing.seed import initialise
from cms.editing.write_side import open_write_side
from cms.errors import CatalogueUnavailable
from cms.identity.actors import Actor
from cms.reading.bulk_decode import decode_many
from cms.reading.card import Card
from cms.reading.catalogue import Catalogue, Writer
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


def catalogued(index: PublishedIndex) -> dict[str, tuple[str, Card]]:
    """Every listed comparison: slug -> (blob, card)."""
    return {item.slug: (item.blob, item.card) for item in index.query(Query(limit=100)).items}


def filled_and_closed(settings: Settings) -> dict[str, tuple[str, Card]]:
    """Fill the catalogue in the data folder as a server that then stops would; what it
    listed."""
    first = PublishedIndex(store(settings), settings.data)
    first.load()
    first.fill()
    listed = catalogued(first)
    first.close()
    return listed


def test_start_up_decodes_nothing_until_asked(settings: Settings, repo_path: Path) -> None:
    documents, decoded = counting_store(settings)
    index = PublishedIndex(documents, settings.data)
    index.load()
    assert len(index) == SEEDED
    assert decoded == []
    assert not index.ready
    entry = index.get(HAIKU)
    assert entry is not None
    assert entry.comparison.slug == HAIKU
    assert len(decoded) == 1
    page = index.query(Query(limit=100))  # a list needs the catalogue complete
    assert page.total == SEEDED
    assert index.ready
    assert {item.slug for item in page.items} == set(catalogued(index))


def test_a_restart_reads_the_catalogue_and_catches_up(settings: Settings, repo_path: Path) -> None:
    expected = filled_and_closed(settings)
    # While no server runs, a comparison is unpublished.
    content = open_write_side(settings)
    published = content.documents.published(HAIKU)
    assert published is not None
    content.editor.transition(HAIKU, "unpublish", PUBLISHER, published.revision)

    second_store, decoded = counting_store(settings)
    second = PublishedIndex(second_store, settings.data)
    second.load()
    second.fill()
    # Only the file that went, whose words the search index is told to forget.
    assert decoded == [published.revision]
    assert len(second) == SEEDED - 1
    assert second.get(HAIKU) is None
    assert second.head == content.documents.main_head()
    del expected[HAIKU]
    assert catalogued(second) == expected
    assert second.query(Query(q="haiku")).total == 0


def test_a_damaged_catalogue_is_made_anew(settings: Settings, repo_path: Path) -> None:
    settings.data.mkdir(parents=True, exist_ok=True)
    (settings.data / "catalogue-0.sqlite").write_bytes(b"not a database" * 100)
    (settings.data / "index.snapshot").write_bytes(b"left by an older version")
    index = PublishedIndex(store(settings), settings.data)
    index.load()
    index.fill()
    assert index.query(Query(limit=100)).total == SEEDED
    assert not (settings.data / "index.snapshot").exists()
    index.close()
    documents, decoded = counting_store(settings)
    again = PublishedIndex(documents, settings.data)
    again.load()
    again.fill()
    assert decoded == []
    assert again.query(Query(q="haiku")).total == 1


def test_processes_sharing_a_data_folder_each_keep_a_catalogue(settings: Settings,
                                                               repo_path: Path) -> None:
    one = PublishedIndex(store(settings), settings.data)
    one.load()
    two = PublishedIndex(store(settings), settings.data)
    two.load()
    assert one.folder == two.folder
    one.fill()
    two.fill()
    assert catalogued(one) == catalogued(two)
    assert sorted(path.name for path in settings.data.glob("catalogue-*.sqlite")) == [
        "catalogue-0.sqlite", "catalogue-1.sqlite"]
    one.close()
    documents, decoded = counting_store(settings)
    three = PublishedIndex(documents, settings.data)  # takes the slot that was let go
    three.load()
    three.fill()
    assert decoded == []
    two.close()
    three.close()


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
    index.fill()
    assert told == [True]
    assert sorted(decoded) == sorted(set(decoded))
    assert len(decoded) == SEEDED


def test_a_large_fill_decodes_in_worker_processes(settings: Settings, repo_path: Path) -> None:
    expected = PublishedIndex(store(settings))
    expected.load()
    expected.fill()
    documents, decoded = counting_store(settings)
    index = PublishedIndex(documents, settings.data)
    index.parallel_from, index.workers = 1, 2  # as for a repository of thousands
    index.load()
    index.fill()
    assert decoded == []  # none decoded in this process
    assert index.query(Query(limit=100)) == expected.query(Query(limit=100))
    assert index.query(Query(q="vllm")) == expected.query(Query(q="vllm"))


def test_what_a_worker_cannot_decode_comes_back_for_the_caller(settings: Settings,
                                                               repo_path: Path) -> None:
    missing = "0" * 40
    assert list(decode_many(settings.repo, [missing], 2)) == [(missing, None)]


def test_a_catalogue_of_another_repository_is_made_anew(
        settings: Settings, repo_path: Path, tmp_path: Path) -> None:
    other_settings = load_settings({}, repo=tmp_path / "other.git", data=tmp_path / "other-data")
    initialise(other_settings, SEED)
    other = open_write_side(other_settings)
    published = other.documents.published(HAIKU)
    assert published is not None
    other.editor.transition(HAIKU, "unpublish", PUBLISHER, published.revision)  # a tree ours lacks
    theirs = PublishedIndex(other.documents, other_settings.data)
    theirs.load()
    theirs.fill()
    theirs.close()
    settings.data.mkdir(parents=True, exist_ok=True)
    (settings.data / "catalogue-0.sqlite").write_bytes(
        (other_settings.data / "catalogue-0.sqlite").read_bytes())

    ours = PublishedIndex(store(settings), settings.data)
    ours.load()
    assert len(ours) == SEEDED
    assert ours.get(HAIKU) is not None
    fresh = PublishedIndex(store(settings))
    fresh.load()
    assert ours.query(Query(limit=100)) == fresh.query(Query(limit=100))
    assert ours.query(Query(q="haiku")).total == 1


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
    index = PublishedIndex(store(settings), settings.data)
    index.load()
    assert len(index) == SEEDED + 1  # in main's tree
    assert index.get("broken-by-hand") is None
    index.fill()
    assert index.ready
    assert index.query(Query(limit=100)).total == SEEDED
    index.close()
    again_store, decoded = counting_store(settings)
    again = PublishedIndex(again_store, settings.data)
    again.load()
    again.fill()
    assert decoded == []  # known to be broken: not tried again at every start
    commit_on_main(documents, {documents.layout.path("broken-by-hand"): None})
    again.refresh(now=10**9)
    assert len(again) == SEEDED
    assert again.query(Query(limit=100)).total == SEEDED


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


def test_a_catalogue_damaged_inside_is_made_anew_when_read(settings: Settings,
                                                          repo_path: Path) -> None:
    expected = filled_and_closed(settings)
    path = settings.data / "catalogue-0.sqlite"
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    data[page:] = bytes(range(256)) * ((len(data) - page) // 256) + b"\x00" * (len(data) % 256)
    path.write_bytes(bytes(data))  # the first page, schema and all, still reads
    again = PublishedIndex(store(settings), settings.data)
    again.load()
    assert catalogued(again) == expected
    assert again.query(Query(q="haiku")).total == 1


def test_a_damaged_card_renews_the_catalogue_and_the_list_is_right(
        settings: Settings, repo_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    expected = filled_and_closed(settings)
    with sqlite3.connect(settings.data / "catalogue-0.sqlite") as db:
        db.execute("UPDATE comparisons SET card = x'c1c1c1'")
    again = PublishedIndex(store(settings), settings.data)
    again.load()
    assert catalogued(again) == expected
    assert "it is made anew" in caplog.text


def test_a_file_naming_another_slug_than_its_path_is_left_out(settings: Settings,
                                                              repo_path: Path) -> None:
    documents = store(settings)
    head = documents.main_head()
    assert head is not None
    blob = documents.repo.blob_at(documents.repo.read_commit(head).tree,
                                  documents.layout.path(HAIKU))
    assert blob is not None
    # A copy of another comparison's file, by hand: both would answer as that comparison.
    commit_on_main(documents, {documents.layout.path("a-copy-by-hand"):
                               documents.repo.read_blob(blob)})
    index = PublishedIndex(store(settings), settings.data)
    index.load()
    assert len(index) == SEEDED + 1
    assert index.get("a-copy-by-hand") is None
    assert index.get(HAIKU) is not None
    page = index.query(Query(limit=100))
    assert page.total == SEEDED
    assert sorted(item.slug for item in page.items) == sorted(
        item.card.slug for item in page.items)


def fill_stopped_part_way(settings: Settings) -> PublishedIndex:
    """An index whose first fill was stopped by a shutdown after a few rows."""
    documents, decoded = counting_store(settings)
    index = PublishedIndex(documents, settings.data)
    index.load()
    counted = documents.decode_blob

    def closing(blob: str) -> Comparison:
        if len(decoded) == 2:
            index._closing = True  # what close() sets, seen by the fill between two rows
        return counted(blob)

    documents.decode_blob = closing  # type: ignore[method-assign]
    index.fill()
    return index


def test_a_fill_stopped_by_closing_is_taken_up_by_the_next_start(settings: Settings,
                                                                 repo_path: Path) -> None:
    index = fill_stopped_part_way(settings)
    assert not index.ready
    index._closing = False
    index.close()
    again = PublishedIndex(store(settings), settings.data)
    again.load()
    assert again.query(Query(limit=100)).total == SEEDED


def test_rows_a_failed_write_left_out_are_added_by_the_next_catch_up(
        settings: Settings, repo_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    filled_and_closed(settings)
    content = open_write_side(settings)
    published = content.documents.published(HAIKU)
    assert published is not None
    changed = msgspec.structs.replace(published.comparison, title="Haiku, retitled")
    commit_on_main(content.documents, {content.documents.layout.path(HAIKU):
                                       codec.encode(changed).encode()})
    index = PublishedIndex(store(settings), settings.data)
    index.load()

    def full(*_args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as patched:
        patched.setattr(Writer, "add", full)
        with pytest.raises(sqlite3.OperationalError):
            index.fill()  # the background fill after start, on a full disk
    page = index.query(Query(q="retitled"))
    assert [item.slug for item in page.items] == [HAIKU]
    assert index.query(Query(limit=100)).total == SEEDED


def test_a_catalogue_that_cannot_be_made_anew_is_a_503_until_it_can(
        settings: Settings, repo_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = PublishedIndex(store(settings), settings.data)
    index.load()
    index.fill()
    with sqlite3.connect(settings.data / "catalogue-0.sqlite") as db:
        db.execute("UPDATE comparisons SET card = x'c1c1c1'")

    def refused(*_args: object) -> Catalogue:
        raise OSError(30, "Read-only file system")

    with monkeypatch.context() as patched:
        patched.setattr(Catalogue, "open", refused)
        for _ in range(2):
            with pytest.raises(CatalogueUnavailable):
                index.query(Query(limit=100))
    assert index.query(Query(limit=100)).total == SEEDED


def test_a_list_waits_for_the_fill_only_as_long_as_it_is_told(settings: Settings,
                                                              repo_path: Path) -> None:
    index = PublishedIndex(store(settings), settings.data)
    index.load()
    with index._write_lock, pytest.raises(CatalogueUnavailable):  # a fill under way
        index.query(Query(limit=1), wait=0.01)
    assert index.query(Query(limit=1), wait=0.01).total == SEEDED


def test_a_commit_of_this_process_reaches_the_catalogue_at_once(settings: Settings,
                                                                repo_path: Path) -> None:
    content = open_write_side(settings)
    index = PublishedIndex(content.documents, settings.data)
    index.load()
    index.fill()
    content.listeners.subscribe(index.on_committed)
    published = content.documents.published(HAIKU)
    assert published is not None
    content.editor.transition(HAIKU, "unpublish", PUBLISHER, published.revision)
    assert index.ready
    assert index._require().tree == index.tree


_KILLED_MID_DECODE = """
import sys
from pathlib import Path
from cms.reading.bulk_decode import decode_many

if __name__ == "__main__":
    blobs = sys.argv[2:]
    for _ in decode_many(Path(sys.argv[1]), blobs * 400, 2):
        print("decoding", flush=True)
        sys.stdin.readline()  # held here, workers busy, until the test kills this process
"""


def test_workers_end_with_a_server_killed_mid_decode(settings: Settings, repo_path: Path,
                                                    tmp_path: Path) -> None:
    blobs = [line.split()[2] for line in git(
        repo_path, "ls-tree", "-r", "main", "content/comparisons").splitlines()]
    script = tmp_path / "killed.py"
    script.write_text(_KILLED_MID_DECODE)
    with subprocess.Popen([sys.executable, str(script), str(repo_path), *blobs],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as server:
        assert server.stdout is not None
        assert server.stdout.readline() == "decoding\n"
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        workers = [int(pid) for pid in children
                   if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert len(workers) == 2
        watched = [os.pidfd_open(pid) for pid in workers]
        server.kill()
        server.wait()
    try:
        for fd in watched:  # readable once the process it names has ended
            ready, _, _ = select.select([fd], [], [], 60)
            assert ready == [fd]
    finally:
        for fd in watched:
            os.close(fd)


def test_rows_a_stopped_first_fill_left_follow_main_by_blob(settings: Settings,
                                                            repo_path: Path) -> None:
    index = fill_stopped_part_way(settings)
    left = index._require().slugs()
    assert 0 < len(left) < SEEDED
    index._closing = False
    index.close()
    gone = sorted(left)[0]
    commit_on_main(store(settings), {store(settings).layout.path(gone): None})
    again = PublishedIndex(store(settings), settings.data)
    again.load()
    page = again.query(Query(limit=100))
    assert page.total == SEEDED - 1
    assert gone not in {item.slug for item in page.items}
