"""The git store against real repositories: objects, compare-and-swap refs, concurrency, recovery."""

from __future__ import annotations

import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cms.config import Settings
from cms.content import codec
from cms.editing.write_side import WriteSide, open_write_side
from cms.errors import PreconditionFailed, StoreError
from cms.identity.actors import Actor
from cms.store.layout import BRANCH_PREFIX, shard
from cms.store.maintenance import Maintenance
from cms.store.objects import BLOB
from cms.store.recovery import recover
from cms.store.refs import RefConflict
from cms.store.repository import Repository, Signature

from ..conftest import HAIKU, fsck, git
from ..helpers import approved_draft

EDITOR = Actor(name="Ada Editor", email="ada@example.com", roles=frozenset({"editor"}))
REVIEWER = Actor(name="Rita Reviewer", email="rita@example.com", roles=frozenset({"reviewer"}))
PUBLISHER = Actor(name="Paul Publisher", email="paul@example.com", roles=frozenset({"publisher"}))


def documents(settings: Settings) -> WriteSide:
    return open_write_side(settings, repo=Repository(settings.repo))


def test_blob_and_tree_ids_match_git(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "r.git", branch="main")
    when = _sig()
    commit = repo.write_commit(parents=[], base_tree=None,
                         changes={"a/b/c.md": b"hello\n", "a/z.md": b"zed\n", "top.md": b"top\n"},
                         author=when, committer=when, message="First\n")[0]
    repo.refs.update("refs/heads/main", commit, None)
    assert git(repo.path, "rev-parse", "main").strip() == commit
    assert git(repo.path, "show", "main:a/b/c.md") == "hello\n"
    assert git(repo.path, "ls-tree", "-r", "--name-only", "main").split() == ["a/b/c.md", "a/z.md",
                                                                              "top.md"]
    second = repo.write_commit(parents=[commit], base_tree=repo.read_commit(commit).tree,
                         changes={"a/b/c.md": None}, author=when, committer=when, message="Second\n")[0]
    repo.refs.update("refs/heads/main", second, commit)
    assert git(repo.path, "ls-tree", "-r", "--name-only", "main").split() == ["a/z.md", "top.md"]
    assert repo.read_blob(repo.blob_at(repo.read_commit(second).tree, "top.md") or "") == b"top\n"
    fsck(repo.path)


def test_compare_and_swap_refuses_a_stale_expectation(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "r.git", branch="main")
    first = repo.write_commit(parents=[], base_tree=None, changes={"f": b"1"}, author=_sig(),
                        committer=_sig(), message="1\n")[0]
    second = repo.write_commit(parents=[first], base_tree=None, changes={"f": b"2"}, author=_sig(),
                         committer=_sig(), message="2\n")[0]
    repo.refs.update("refs/heads/main", first, None)
    with pytest.raises(RefConflict):
        repo.refs.update("refs/heads/main", second, None)
    with pytest.raises(RefConflict):
        repo.refs.update("refs/heads/main", second, second)
    assert repo.refs.read("refs/heads/main") == first
    assert not (repo.git_dir / "refs/heads/main.lock").exists()
    repo.refs.update("refs/heads/main", second, first)
    assert repo.refs.read("refs/heads/main") == second


def test_packed_refs_and_packed_objects_still_work(settings: Settings, repo_path: Path) -> None:
    store = documents(settings)
    published = store.documents.published(HAIKU)
    assert published is not None
    draft = store.editor.save(HAIKU, published.comparison, EDITOR, published.revision)
    git(repo_path, "gc", "--quiet")
    git(repo_path, "pack-refs", "--all")
    assert not (repo_path / "refs/heads/main").exists()
    fresh = documents(settings)
    current = fresh.documents.current(HAIKU)
    assert current is not None
    assert current.revision == draft.revision
    submitted = fresh.editor.transition(HAIKU, "submit", EDITOR, current.revision)
    approved = fresh.editor.transition(HAIKU, "approve", REVIEWER, submitted.revision)
    fresh.editor.transition(HAIKU, "publish", PUBLISHER, approved.revision)
    assert fresh.documents.work_in_progress(HAIKU) is None
    assert git(repo_path, "branch", "--list", "cms/*").strip() == ""


def test_one_writer_wins_a_race_and_the_others_change_nothing(settings: Settings,
                                                            repo_path: Path) -> None:
    published = documents(settings).documents.published(HAIKU)
    assert published is not None
    writers = [documents(settings) for _ in range(8)]  # separate instances: separate locks
    barrier = threading.Barrier(len(writers))
    outcomes: list[str] = []

    def write(store: WriteSide, number: int) -> None:
        edited = msgspec.structs.replace(published.comparison, summary=f"Summary number {number}.")
        barrier.wait()
        try:
            store.editor.save(HAIKU, edited, EDITOR, published.revision)
            outcomes.append(f"ok {number}")
        except PreconditionFailed:
            outcomes.append("stale")

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [o for o in outcomes if o.startswith("ok")]
    assert len(outcomes) == 8
    assert len(winners) == 1
    current = documents(settings).documents.current(HAIKU)
    assert current is not None
    assert current.comparison.summary == f"Summary number {winners[0].split()[1]}."
    commits = git(repo_path, "rev-list", "--count", f"main..refs/heads/cms/comparisons/{HAIKU}")
    assert commits.strip() == "1"


def test_concurrent_publications_of_different_comparisons_all_land(settings: Settings,
                                                                  repo_path: Path) -> None:
    setup = documents(settings)
    base = setup.documents.published(HAIKU)
    assert base is not None
    approved = []
    for number in range(6):
        slug = f"race-comparison-{number}"
        doc = msgspec.structs.replace(base.comparison, slug=slug, title=f"Race {number}")
        created = setup.editor.create(doc, EDITOR)
        submitted = setup.editor.transition(slug, "submit", EDITOR, created.revision)
        approved.append((slug, setup.editor.transition(slug, "approve", REVIEWER, submitted.revision)))
    barrier = threading.Barrier(len(approved))
    errors: list[BaseException] = []

    def publish(slug: str, revision: str) -> None:
        store = documents(settings)
        barrier.wait()
        try:
            store.editor.transition(slug, "publish", PUBLISHER, revision)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(slug, rev.revision)) for slug, rev in approved]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    files = git(repo_path, "ls-tree", "-r", "--name-only", "main")
    for slug, _ in approved:
        assert f"/{slug}.md" in files
    log = git(repo_path, "log", "--first-parent", "--format=%(trailers:key=Cms-Action,valueonly)",
              "main").split()
    assert log.count("publish") == 6


def test_file_in_git_is_the_codec_output(settings: Settings, repo_path: Path) -> None:
    store = documents(settings)
    published = store.documents.published(HAIKU)
    assert published is not None
    shown = git(repo_path, "show", f"main:content/comparisons/{shard(HAIKU)}/{HAIKU}.md")
    assert shown == codec.encode(published.comparison)
    path = f"main:content/comparisons/{shard(HAIKU)}/{HAIKU}.md"
    assert published.revision == git(repo_path, "rev-parse", path).strip()


def test_a_commit_rewrites_only_the_trees_on_its_path(settings: Settings, repo_path: Path) -> None:
    store = documents(settings)
    published = store.documents.published(HAIKU)
    assert published is not None
    draft = store.editor.save(HAIKU, published.comparison, EDITOR, published.revision)
    changed = git(repo_path, "diff-tree", "-r", "-t", "--name-only", "main", draft.commit).split()
    assert changed == ["content", "content/comparisons", f"content/comparisons/{shard(HAIKU)}",
                       f"content/comparisons/{shard(HAIKU)}/{HAIKU}.md"]


def test_recovery_finishes_an_interrupted_publish(settings: Settings, repo_path: Path) -> None:
    store = documents(settings)
    approved = approved_draft(store, HAIKU)
    branch = store.layout.branch(HAIKU)
    # Crash between the two ref moves: main has the merge, the branch was never deleted.
    store.editor.transition(HAIKU, "publish", PUBLISHER, approved.revision)
    store.repo.refs.update(branch, approved.commit, None)
    assert recover(documents(settings).documents) == [
        f"removed the branch of {HAIKU}, already published"]
    assert store.repo.refs.read(branch) is None


def test_recovery_reads_main_s_history_only_when_there_is_a_branch(
        settings: Settings, repo_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A start with no branch (the usual one) walks none of main's publications."""
    store = documents(settings)
    approved = approved_draft(store, HAIKU)
    store.editor.transition(HAIKU, "publish", PUBLISHER, approved.revision)
    walked: list[int] = []
    recovering = documents(settings).documents
    original = recovering.publication_log

    def counting(*args: Any, **kwargs: Any) -> Any:
        walked.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(recovering, "publication_log", counting)
    assert store.repo.refs.under(BRANCH_PREFIX) == {}
    assert recover(recovering) == []
    assert walked == []
    # With a branch left by a crash between a publication's two moves, it is walked.
    store.repo.refs.update(store.layout.branch(HAIKU), approved.commit, None)
    assert recover(recovering) == [f"removed the branch of {HAIKU}, already published"]
    assert walked == [1]


def test_recovery_reads_a_commit_s_own_parents_not_a_replacement_s(
        settings: Settings, repo_path: Path) -> None:
    """A replacement object (`git replace`) that hides a publication's merge from git's walks
    does not hide it from recovery: it reads the commit's own parents."""
    store = documents(settings)
    approved = approved_draft(store, HAIKU)
    merge = store.editor.transition(HAIKU, "publish", PUBLISHER, approved.revision).commit
    store.repo.refs.update(store.layout.branch(HAIKU), approved.commit, None)
    first_parent = git(repo_path, "rev-parse", f"{merge}^1").strip()
    git(repo_path, "replace", "--graft", merge, first_parent)
    assert recover(documents(settings).documents) == [
        f"removed the branch of {HAIKU}, already published"]


def test_recovery_takes_no_graft_for_a_merge(settings: Settings, repo_path: Path) -> None:
    """A graft file (`info/grafts`) that gives main's head a draft's head as second parent
    does not make recovery take the draft for published and drop it: it reads the commit's
    own parents, as git walks would not."""
    store = documents(settings)
    approved = approved_draft(store, HAIKU)
    store.editor.transition(HAIKU, "publish", PUBLISHER, approved.revision)
    published = store.documents.published(HAIKU)
    assert published is not None
    draft = store.editor.save(HAIKU, msgspec.structs.replace(
        published.comparison, summary="Still a draft."), EDITOR, published.revision)
    main = store.documents.main_head()
    assert main is not None
    first_parent = git(repo_path, "rev-parse", f"{main}^1").strip()
    (repo_path / "info").mkdir(exist_ok=True)
    (repo_path / "info" / "grafts").write_text(f"{main} {first_parent} {draft.commit}\n")
    if draft.commit not in git(repo_path, "rev-list", "--parents", "-n1", main):
        pytest.skip("this git no longer reads info/grafts")
    assert recover(documents(settings).documents) == []
    assert store.repo.refs.read(store.layout.branch(HAIKU)) == draft.commit


def test_recovery_finishes_an_interrupted_unpublish(settings: Settings, repo_path: Path) -> None:
    store = documents(settings)
    published = store.documents.published(HAIKU)
    assert published is not None
    main_before = store.documents.main_head()
    unpublished = store.editor.transition(HAIKU, "unpublish", PUBLISHER, published.revision)
    # Crash after the branch moved but before main did: put main back where it was.
    store.repo.refs.update(store.layout.main_ref, main_before or "", unpublished.commit)
    assert store.documents.published(HAIKU) is not None
    assert recover(documents(settings).documents) == [f"finished unpublishing {HAIKU}"]
    assert store.documents.published(HAIKU) is None
    current = store.documents.current(HAIKU)
    assert current is not None
    assert current.state == "unpublished"


def test_objects_are_written_in_process(settings: Settings, repo_path: Path) -> None:
    repo = Repository(repo_path)
    oid = repo.write_commit(parents=[], base_tree=None, changes={"x": b"data"}, author=_sig(),
                      committer=_sig(), message="m\n")[0]
    assert repo.read_object(oid)[0] == b"commit"
    blob = repo.blob_at(repo.read_commit(oid).tree, "x")
    assert blob is not None
    assert repo.read_object(blob) == (BLOB, b"data")
    assert git(repo_path, "cat-file", "-t", oid).strip() == "commit"


def _sig() -> Signature:
    return Signature(name="Tester", email="tester@example.com", at=datetime(2026, 1, 1, tzinfo=UTC))


def test_maintenance_merges_small_packs_and_reads_go_on(settings: Settings,
                                                        repo_path: Path) -> None:
    store = documents(settings)
    maintenance = Maintenance(store.repo, threshold=20, pack_limit=5)
    published = store.documents.published(HAIKU)
    assert published is not None
    revision = published.revision
    for number in range(8):
        edited = msgspec.structs.replace(published.comparison, summary=f"Pass {number}.")
        revision = store.editor.save(HAIKU, edited, EDITOR, revision).revision
    loose, packs = maintenance.counts()
    assert loose == 0  # every commit is one small pack
    assert packs >= 9
    for number in range(3):  # loose objects written by plain git are packed too
        subprocess.run(["git", "--git-dir", str(repo_path), "hash-object", "-w", "--stdin"],
                       input=f"loose {number}", text=True, capture_output=True, check=True)
    assert maintenance.run() is True
    after_loose, after_packs = maintenance.counts()
    assert after_loose == 0
    assert after_packs < packs
    fresh = documents(settings)
    current = fresh.documents.current(HAIKU)
    assert current is not None
    assert current.comparison.summary == "Pass 7."
    after = fresh.editor.save(HAIKU, msgspec.structs.replace(current.comparison, summary="Packed."),
                       EDITOR, current.revision)
    assert documents(settings).documents.current(HAIKU) == after


def test_recovery_leaves_a_ref_another_process_moved_meanwhile(settings: Settings,
                                                               repo_path: Path) -> None:
    store = documents(settings)
    approved = approved_draft(store, HAIKU)
    branch = store.layout.branch(HAIKU)
    store.editor.transition(HAIKU, "publish", PUBLISHER, approved.revision)
    store.repo.refs.update(branch, approved.commit, None)
    recovering = documents(settings)
    original = recovering.repo.refs.transaction

    def moved_first(moves: Any) -> None:
        store.repo.refs.delete(branch, approved.commit)  # another server's recovery was first
        original(moves)

    recovering.repo.refs.transaction = moved_first  # type: ignore[method-assign]
    assert recover(recovering.documents) == []
    assert store.repo.refs.read(branch) is None


def test_a_commit_by_hand_with_odd_identities_is_read_as_git_reads_it(tmp_path: Path) -> None:
    """Only a newline ends a header line; an identity git accepts but we cannot parse is shown
    as written."""
    repo = Repository.create(tmp_path / "r.git", branch="main")
    tree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # the empty tree
    raw = (f"tree {tree}\nauthor Eve\u2028Line <eve@example.com> 1700000000 +0000\n"
           "committer no angle brackets at all\n\nBy hand\n")
    oid = subprocess.run(["git", "--git-dir", str(repo.git_dir), "hash-object", "-t", "commit",
                          "-w", "--literally", "--stdin"], input=raw.encode(), capture_output=True,
                         check=True).stdout.decode().strip()
    commit = repo.read_commit(oid)
    assert commit.author.name == "Eve\u2028Line"
    assert commit.committer.name == "no angle brackets at all"
    assert commit.message.subject == "By hand"


def test_a_second_process_skips_its_repack_while_one_runs(settings: Settings,
                                                          repo_path: Path) -> None:
    """Two repacks deleting each other's packs both fail: while another process holds the
    repository's maintenance lock, this one's turn passes without running git at all."""
    import fcntl
    import os

    store = documents(settings)
    maintenance = Maintenance(store.repo)
    ran: list[tuple[str, ...]] = []
    store.repo.git = lambda *args, **kwargs: ran.append(args) or ""  # type: ignore[method-assign]
    other = os.open(repo_path / "cms-maintenance.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)  # another process, repacking
        assert maintenance.run(force=True) is False
        assert ran == []
    finally:
        os.close(other)
    assert maintenance.run(force=True) is True
    assert ("repack", "-d", "-q", "--geometric=2") in ran


def test_a_draft_created_again_in_the_second_it_was_discarded_survives_recovery(
        settings: Settings, repo_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Create, discard and create again, the same document by the same person within one
    second: the second create must not be the very commit discarded, which recovery would take
    for a discard whose branch was never dropped, and drop."""
    from cms.editing import pipeline

    frozen = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    monkeypatch.setattr(pipeline, "now", lambda: frozen)
    store = documents(settings)
    published = store.documents.published(HAIKU)
    assert published is not None
    again = msgspec.structs.replace(published.comparison, slug="made-twice", title="Made twice")
    first = store.editor.create(again, EDITOR)
    store.editor.discard("made-twice", EDITOR, first.revision)
    second = store.editor.create(again, EDITOR)
    assert second.commit != first.commit
    assert recover(documents(settings).documents) == []
    current = documents(settings).documents.current("made-twice")
    assert current is not None
    assert current.commit == second.commit
    fsck(repo_path)


def test_recovery_keeps_the_branch_of_a_publish_that_put_main_back(
        settings: Settings, repo_path: Path) -> None:
    """Recovery read main at a publish's merge; before it dropped the merged branch, the
    publish failed on the disk and put main back: the branch is the draft again, and stays."""
    store = documents(settings)
    approved = approved_draft(store, HAIKU)
    before = store.documents.main_head()
    store.editor.transition(HAIKU, "publish", PUBLISHER, approved.revision)
    branch = store.layout.branch(HAIKU)
    merge = store.documents.main_head()
    store.repo.refs.update(branch, approved.commit, None)  # main moved, the branch not yet
    recovering = documents(settings)
    original = recovering.repo.refs.transaction

    def put_back_first(moves: Any) -> None:
        store.repo.refs.update(store.layout.main_ref, before or "", merge)  # the undo
        original(moves)

    recovering.repo.refs.transaction = put_back_first  # type: ignore[method-assign]
    assert recover(recovering.documents) == []
    assert store.repo.refs.read(branch) == approved.commit


def test_git_commands_run_together_each_answer_or_the_failure_is_told(
        settings: Settings, repo_path: Path) -> None:
    repo = Repository(repo_path)
    main = git(repo_path, "rev-parse", "main").strip()
    assert repo.git_together(["rev-parse", "main"], ["log", "-1", "--format=%H", "main"]) == [
        f"{main}\n", f"{main}\n"]
    with pytest.raises(StoreError, match="git log failed"):
        repo.git_together(["rev-parse", "main"], ["log", "no-such-branch"])
