"""The catalogue shipped with the content: a new replica starts from the copy in the repository
and brings it to main, rather than decoding every published file."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from cms.config import Settings, load_settings
from cms.editing.seed import initialise
from cms.editing.write_side import open_write_side
from cms.reading import shipped
from cms.reading.card import Card
from cms.reading.index import PublishedIndex, Query
from cms.store.layout import CATALOGUE_PREFIX

from ..cluster.support import git_daemon
from ..conftest import HAIKU, SEED, fsck, git
from .test_index import PUBLISHER, SEEDED, catalogued, counting_store, store


def shipped_from(settings: Settings) -> tuple[PublishedIndex, str]:
    index = PublishedIndex(store(settings), settings.data / "first")
    index.load()
    index.fill()
    commit = index.ship()
    assert commit is not None
    return index, commit


def filled_from_git(settings: Settings, expected: dict[str, tuple[str, Card]]) -> None:
    """A new replica that decodes every file, as if no copy were shipped, and lists them."""
    replica, decoded = new_replica(settings, settings.data / "replica")
    assert len(decoded) == SEEDED
    assert catalogued(replica) == expected
    replica.close()


def shipped_and_closed(settings: Settings) -> dict[str, tuple[str, Card]]:
    """Ship a catalogue as a server that then stops would; what it listed."""
    first, _ = shipped_from(settings)
    listed = catalogued(first)
    first.close()
    return listed


def new_replica(settings: Settings, data: Path) -> tuple[PublishedIndex, list[str]]:
    """An index in a data folder of its own, as a new replica on the repository starts: its
    catalogue filled in the background."""
    documents, decoded = counting_store(settings)
    index = PublishedIndex(documents, data)
    index.load()
    index.start()
    assert index._filler is not None
    index._filler.join()
    assert index.ready
    return index, decoded


def test_a_new_replica_starts_from_the_shipped_copy(settings: Settings, repo_path: Path) -> None:
    first, commit = shipped_from(settings)
    replica, decoded = new_replica(settings, settings.data / "replica")
    assert decoded == []  # nothing decoded: every row came with the copy
    assert catalogued(replica) == catalogued(first)
    assert replica.query(Query(q="haiku")).total == 1
    assert replica.ready
    # A ref outside the branches; main and its history are untouched.
    refs = git(repo_path, "for-each-ref", "--format=%(refname) %(objectname)",
               CATALOGUE_PREFIX).split()
    assert refs[0].startswith(CATALOGUE_PREFIX)
    assert refs[1] == commit
    assert git(repo_path, "ls-tree", "--name-only", commit).split() == [shipped.FILE_NAME]
    # Git's repacking stores each copy whole, never as a delta of another.
    assert git(repo_path, "check-attr", "delta", "--", shipped.FILE_NAME).strip().endswith(
        "delta: unset")
    fsck(repo_path)
    first.close()
    replica.close()


def test_the_copy_is_brought_to_main_by_what_changed_since(settings: Settings,
                                                             repo_path: Path) -> None:
    first, _ = shipped_from(settings)
    first.close()
    content = open_write_side(settings)
    published = content.documents.published(HAIKU)
    assert published is not None
    content.editor.transition(HAIKU, "unpublish", PUBLISHER, published.revision)
    replica, decoded = new_replica(settings, settings.data / "replica")
    # The file that went, whose words the search index is told to forget: nothing else.
    assert decoded == [published.revision]
    assert replica.query(Query(q="haiku")).total == 0
    assert replica.query(Query(limit=100)).total == SEEDED - 1
    replica.close()


def test_a_damaged_copy_is_set_aside_and_the_catalogue_filled_from_git(
        settings: Settings, repo_path: Path) -> None:
    expected = shipped_and_closed(settings)
    point_copy_at(repo_path, b"not a database" * 1000)
    filled_from_git(settings, expected)


def test_a_copy_made_by_other_code_is_not_taken(settings: Settings, repo_path: Path,
                                                tmp_path: Path) -> None:
    first, _ = shipped_from(settings)
    first.close()
    ship_altered(settings, repo_path, tmp_path,
                 "UPDATE meta SET value = 'another version' WHERE key = 'fingerprint'")
    replica, decoded = new_replica(settings, settings.data / "replica")
    assert len(decoded) == SEEDED
    assert replica.query(Query(limit=100)).total == SEEDED
    replica.close()


def ship_altered(settings: Settings, repo: Path, tmp_path: Path, statement: str,
                 *params: str) -> None:
    """Replace the shipped copy with the first catalogue altered by an SQL statement."""
    altered = tmp_path / "altered.sqlite"
    with sqlite3.connect(settings.data / "first" / "catalogue-0.sqlite") as db:
        db.execute("VACUUM INTO ?", (str(altered),))
    with sqlite3.connect(altered) as db:
        db.execute(statement, params)
    point_copy_at(repo, altered.read_bytes())


def point_copy_at(repo: Path, data: bytes) -> None:
    """Replace the shipped copy's file with other bytes, under the same ref."""
    ref = git(repo, "for-each-ref", "--format=%(refname)", CATALOGUE_PREFIX).strip()
    blob = subprocess.run(["git", "--git-dir", str(repo), "hash-object", "-w", "--stdin"],
                          input=data, capture_output=True, check=True).stdout.decode().strip()
    tree = subprocess.run(["git", "--git-dir", str(repo), "mktree"], capture_output=True,
                          check=True, input=f"100644 blob {blob}\t{shipped.FILE_NAME}\n".encode(),
                          ).stdout.decode().strip()
    commit = git(repo, "commit-tree", tree, "-m", "by hand").strip()
    git(repo, "update-ref", ref, commit)


def test_a_fill_that_added_enough_ships_a_copy_by_itself(settings: Settings,
                                                         repo_path: Path) -> None:
    index = PublishedIndex(store(settings), settings.data)
    index.ship_from = SEEDED
    index.load()
    index.fill()
    shipping = index._shipping
    assert shipping is not None
    shipping.join()
    assert index.shipped is not None
    assert git(repo_path, "for-each-ref", "--format=%(objectname)",
               CATALOGUE_PREFIX).strip() == index.shipped
    # A commit of one comparison is far from enough for another copy.
    content = open_write_side(settings)
    published = content.documents.published(HAIKU)
    assert published is not None
    content.editor.transition(HAIKU, "unpublish", PUBLISHER, published.revision)
    index.refresh(now=10**9)
    index.fill()
    assert index._shipping is shipping
    index.close()
    fsck(repo_path)


def test_without_a_threshold_nothing_is_shipped(settings: Settings, repo_path: Path) -> None:
    index = PublishedIndex(store(settings), settings.data)
    index.load()
    index.fill()
    assert index._shipping is None
    assert git(repo_path, "for-each-ref", CATALOGUE_PREFIX).strip() == ""
    index.close()


def test_leftovers_of_a_process_that_died_mid_copy_are_removed(settings: Settings,
                                                               repo_path: Path) -> None:
    settings.data.mkdir(parents=True)
    for name in ("catalogue-0.sqlite.shipping", "catalogue-0.sqlite.shipping-journal",
                 "catalogue-0.sqlite.shipped"):
        (settings.data / name).write_bytes(b"half a copy")
    index = PublishedIndex(store(settings), settings.data)
    index.load()
    assert sorted(path.name for path in settings.data.iterdir()) == [
        "catalogue-0.lock", "catalogue-0.sqlite", "catalogue-0.sqlite-shm",
        "catalogue-0.sqlite-wal"]
    index.close()


def test_an_instance_ships_through_the_upstream_and_a_new_clone_starts_from_it(
        tmp_path: Path) -> None:
    bare = tmp_path / "srv" / "upstream.git"
    initialise(load_settings({}, repo=bare, data=tmp_path / "seed"), SEED)
    with git_daemon(tmp_path / "srv") as prefix:
        url = f"{prefix}/upstream.git"
        a = load_settings({}, repo=tmp_path / "a" / "content", data=tmp_path / "a" / "data",
                          upstream=url)
        early = load_settings({}, repo=tmp_path / "e" / "content", data=tmp_path / "e" / "data",
                              upstream=url)
        following = store(early)  # a clone made before the copy was shipped
        first = PublishedIndex(store(a), a.data)
        first.load()
        first.fill()
        commit = first.ship()
        first.close()
        upstream_refs = git(bare, "for-each-ref", "--format=%(objectname)", CATALOGUE_PREFIX)
        assert upstream_refs.strip() == commit
        fsck(bare)
        # Following main does not bring the copy: only a replica that starts asks for it.
        following.repo.fetch()
        assert git(early.repo, "for-each-ref", CATALOGUE_PREFIX).strip() == ""
        assert following.repo.local_refs() == following.repo.upstream.refs()  # type: ignore[union-attr]
        b = load_settings({}, repo=tmp_path / "b" / "content", data=tmp_path / "b" / "data",
                          upstream=url)
        replica, decoded = new_replica(b, b.data)
        assert decoded == []
        assert replica.query(Query(limit=100)).total == SEEDED
        replica.close()


def test_the_setting_turns_shipping_off(tmp_path: Path) -> None:
    settings = load_settings({"CMS_CATALOGUE_SHIP_FROM": "0"}, repo=tmp_path / "r")
    assert settings.catalogue_ship_from == 0
    assert load_settings({}, repo=tmp_path / "r").catalogue_ship_from == 5000


@pytest.mark.parametrize("what", ["a blob", "a tag", "a tree without the file", "no object"])
def test_a_ref_that_holds_no_copy_is_set_aside(settings: Settings, repo_path: Path,
                                               what: str) -> None:
    first, commit = shipped_from(settings)
    first.close()
    ref = git(repo_path, "for-each-ref", "--format=%(refname)", CATALOGUE_PREFIX).strip()
    if what == "a blob":
        git(repo_path, "update-ref", ref, f"{commit}:{shipped.FILE_NAME}")
    elif what == "a tag":
        git(repo_path, "tag", "-a", "-m", "not a copy", "forged", commit)
        git(repo_path, "update-ref", ref, git(repo_path, "rev-parse", "forged").strip())
    elif what == "a tree without the file":
        empty = subprocess.run(["git", "--git-dir", str(repo_path), "mktree"], input=b"",
                               capture_output=True, check=True).stdout.decode().strip()
        git(repo_path, "update-ref", ref, git(repo_path, "commit-tree", empty, "-m", "x").strip())
    else:
        (repo_path / ref).write_text("1" * 40 + "\n")
    replica, decoded = new_replica(settings, settings.data / "replica")
    assert len(decoded) == SEEDED
    assert replica.query(Query(limit=100)).total == SEEDED
    replica.close()
    (repo_path / ref).unlink(missing_ok=True)  # a ref to nothing fails the repository's check


def test_a_copy_larger_than_a_catalogue_could_be_is_not_unpacked(
        settings: Settings, repo_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first, _ = shipped_from(settings)
    first.close()
    point_copy_at(repo_path, bytes(65 * 2**20 + 16 * 2**10 * SEEDED))  # inflates from little
    replica, decoded = new_replica(settings, settings.data / "replica")
    assert len(decoded) == SEEDED
    assert "more than a catalogue" in caplog.text
    assert (settings.data / "replica" / "catalogue-0.sqlite").stat().st_size < 2**24
    replica.close()


def test_a_copy_whose_tree_holds_no_comparisons_is_filled_from_git(
        settings: Settings, repo_path: Path, tmp_path: Path) -> None:
    expected = shipped_and_closed(settings)
    folder = git(repo_path, "rev-parse", "main:content/comparisons").strip()
    ship_altered(settings, repo_path, tmp_path, "UPDATE meta SET value = ? WHERE key = 'tree'",
                 folder)
    filled_from_git(settings, expected)


def test_a_damaged_copy_that_opens_is_made_anew_by_the_background_fill(
        settings: Settings, repo_path: Path, tmp_path: Path) -> None:
    expected = shipped_and_closed(settings)
    ship_altered(settings, repo_path, tmp_path, "DROP TABLE search_full")
    # Bringing the copy to main reaches the damage: the words of what went are forgotten.
    content = open_write_side(settings)
    published = content.documents.published(HAIKU)
    assert published is not None
    content.editor.transition(HAIKU, "unpublish", PUBLISHER, published.revision)
    documents, decoded = counting_store(settings)
    replica = PublishedIndex(documents, settings.data / "replica")
    replica.load()
    replica.start()
    filler = replica._filler
    assert filler is not None
    filler.join()
    assert replica.ready  # without a list asking first
    assert set(decoded) >= {blob for blob, _card in expected.values()} - {published.revision}
    del expected[HAIKU]
    assert catalogued(replica) == expected
    assert replica.query(Query(q="haiku")).total == 0
    replica.close()


def test_lists_stay_ready_when_another_process_moves_main(settings: Settings,
                                                           repo_path: Path) -> None:
    index = PublishedIndex(store(settings), settings.data)
    index.load()
    index.fill()
    assert index.ready
    other = open_write_side(settings)
    published = other.documents.published(HAIKU)
    assert published is not None
    other.editor.transition(HAIKU, "unpublish", PUBLISHER, published.revision)
    index.refresh(now=10**9)
    assert index.head == other.documents.main_head()
    assert index.ready  # the next list takes the move in
    assert index.query(Query(q="haiku")).total == 0
    index.close()


@pytest.mark.parametrize("statement", [
    "CREATE TRIGGER kept AFTER DELETE ON comparisons BEGIN SELECT 1; END",
    "CREATE VIEW extra AS SELECT slug FROM comparisons",
])
def test_a_copy_with_more_than_this_codes_tables_is_not_taken(
        settings: Settings, repo_path: Path, tmp_path: Path, statement: str) -> None:
    expected = shipped_and_closed(settings)
    ship_altered(settings, repo_path, tmp_path, statement)
    filled_from_git(settings, expected)


def test_rows_of_a_copy_are_checked_against_main(settings: Settings, repo_path: Path,
                                                 tmp_path: Path) -> None:
    expected = shipped_and_closed(settings)
    ship_altered(settings, repo_path, tmp_path, "UPDATE comparisons SET blob = ? WHERE slug = ?",
                 "0" * 40, HAIKU)
    replica, _ = new_replica(settings, settings.data / "replica")
    assert catalogued(replica) == expected
    replica.close()


def test_copies_made_by_other_code_are_let_go_when_a_new_one_is_shipped(
        settings: Settings, repo_path: Path) -> None:
    old = f"{CATALOGUE_PREFIX}{'0' * 40}"
    git(repo_path, "update-ref", old, "main")
    first, commit = shipped_from(settings)
    first.close()
    shipped_now = git(repo_path, "for-each-ref", "--format=%(objectname)", CATALOGUE_PREFIX)
    assert shipped_now.split() == [commit]
