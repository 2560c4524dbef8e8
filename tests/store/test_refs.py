"""Ref locks: a lock left by a writer that died never blocks a ref; a live writer's always does."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cms.errors import StoreError
from cms.store import refs as refs_module
from cms.store.refs import Move, RefConflict, Refs
from cms.store.repository import Repository, Signature

from ..conftest import fsck, git

HOLDER = """
import sys
from pathlib import Path
from cms.store.refs import Refs
refs = Refs(Path(sys.argv[1]))
with refs._locked(Path(sys.argv[1]) / "refs/heads/main"):
    print("locked", flush=True)
    sys.stdin.read()
"""


def repository(tmp_path: Path) -> tuple[Repository, str]:
    repo = Repository.create(tmp_path / "r.git", branch="main")
    who = Signature(name="T", email="t@example.com", at=datetime.now(UTC))
    first, _ = repo.write_commit(parents=[], base_tree=None, changes={"f": b"1"}, author=who,
                                 committer=who, message="1\n")
    repo.refs.update("refs/heads/main", first, None)
    return repo, first


def next_commit(repo: Repository, parent: str, text: bytes) -> str:
    who = Signature(name="T", email="t@example.com", at=datetime.now(UTC))
    commit, _ = repo.write_commit(parents=[parent], base_tree=repo.read_commit(parent).tree,
                                  changes={"f": text}, author=who, committer=who,
                                  message="next\n")
    return commit


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def killed_when(said: list[str], script: str, *args: str) -> None:
    """Run ``script`` until it has said ``said``, then SIGKILL it."""
    with subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None
        assert [holder.stdout.readline().strip() for _ in said] == said
        holder.kill()
        holder.wait(timeout=30)


def assert_taken_over(repo: Repository, first: str) -> None:
    """The dead writer's lock on main is there, and the next write removes it and succeeds."""
    lock = repo.git_dir / "refs/heads/main.lock"
    assert lock.exists()
    age(lock, 5)  # as old as it would be a moment after a supervisor's restart
    second = next_commit(repo, first, b"2")
    repo.refs.update("refs/heads/main", second, first)
    assert repo.refs.read("refs/heads/main") == second
    assert not lock.exists()
    fsck(repo.path)


def test_the_lock_of_a_writer_killed_mid_write_is_taken_over(tmp_path: Path) -> None:
    repo, first = repository(tmp_path)
    killed_when(["locked"], HOLDER, str(repo.git_dir))
    assert_taken_over(repo, first)


KILLED_AFTER_CREATING = """
import os, sys
from pathlib import Path
from cms.store import refs
os.umask(int(sys.argv[2], 8))

def stop(*args, **kwargs):
    print("created", flush=True)
    sys.stdin.read()  # killed here, the lock file made and nothing else done

refs.fcntl.flock = stop
os.fchmod = stop
refs.Refs(Path(sys.argv[1])).update("refs/heads/main", "1" * 40, None)
"""


@pytest.mark.parametrize("umask", ["022", "027", "077"])
def test_a_writer_killed_just_after_making_its_lock_leaves_it_to_be_taken_over(
        tmp_path: Path, umask: str) -> None:
    repo, first = repository(tmp_path)
    killed_when(["created"], KILLED_AFTER_CREATING, str(repo.git_dir), umask)
    assert_taken_over(repo, first)


def test_a_live_writers_lock_is_never_taken_over(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    repo, first = repository(tmp_path)
    lock = repo.git_dir / "refs/heads/main.lock"
    monkeypatch.setattr(refs_module, "_LOCK_WAIT_SECONDS", 0.2)
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(repo.git_dir)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert holder.stdout.readline().strip() == "locked"
        age(lock, 3600)  # however old: its writer is alive
        with pytest.raises(StoreError):
            repo.refs.update("refs/heads/main", next_commit(repo, first, b"2"), first)
        assert lock.exists()
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not lock.exists()
    assert repo.refs.read("refs/heads/main") == first


def test_a_lock_of_gits_is_never_taken_over_while_the_cms_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """git holds no advisory lock: however long it holds its lock file (a prepared
    `update-ref --stdin` transaction, say), the CMS waits and never removes it."""
    repo, first = repository(tmp_path)
    monkeypatch.setattr(refs_module, "_LOCK_WAIT_SECONDS", 0.2)
    lock = repo.git_dir / "refs/heads/main.lock"
    lock.write_text("")  # as git makes it
    age(lock, 60)
    with pytest.raises(StoreError):
        repo.refs.update("refs/heads/main", next_commit(repo, first, b"2"), first)
    assert lock.exists()
    assert repo.refs.read("refs/heads/main") == first
    assert repo.refs.remove_stale_locks() == []
    age(lock, refs_module.GIT_ABANDONED_AFTER_SECONDS + 1)  # a git that died long ago
    assert repo.refs.remove_stale_locks() == ["refs/heads/main.lock"]


def test_a_transaction_moves_every_ref_or_none(tmp_path: Path) -> None:
    repo, first = repository(tmp_path)
    second = next_commit(repo, first, b"2")
    repo.refs.update("refs/heads/other", first, None)
    with pytest.raises(RefConflict):
        repo.refs.transaction([Move("refs/heads/main", second, first),
                               Move("refs/heads/other", None, second)])  # other is at first
    assert repo.refs.read("refs/heads/main") == first
    assert repo.refs.read("refs/heads/other") == first
    repo.refs.transaction([Move("refs/heads/main", second, first),
                           Move("refs/heads/other", None, first)])
    assert repo.refs.read("refs/heads/main") == second
    assert repo.refs.read("refs/heads/other") is None
    fsck(repo.path)


def test_a_transaction_deleting_a_packed_ref_removes_it_from_packed_refs(
        tmp_path: Path) -> None:
    repo, first = repository(tmp_path)
    second = next_commit(repo, first, b"2")
    repo.refs.update("refs/heads/other", first, None)
    git(repo.path, "pack-refs", "--all")
    assert not (repo.git_dir / "refs/heads/other").exists()
    with pytest.raises(RefConflict):
        repo.refs.transaction([Move("refs/heads/main", second, first),
                               Move("refs/heads/other", None, second)])
    assert repo.refs.read("refs/heads/main") == first
    repo.refs.transaction([Move("refs/heads/main", second, first),
                           Move("refs/heads/other", None, first)])
    assert repo.refs.read("refs/heads/main") == second
    assert repo.refs.read("refs/heads/other") is None
    assert "refs/heads/other" not in (repo.git_dir / "packed-refs").read_text()
    assert "refs/heads/main" in git(repo.path, "for-each-ref")
    fsck(repo.path)


def failing_second_move(monkeypatch: pytest.MonkeyPatch, refs: Refs,
                        after_first: Callable[[], None]) -> None:
    """The disk fails the second move of ``refs``' next transaction (after ``after_first``)."""
    original = Refs._commit
    calls: list[Move] = []

    def apply(self: Refs, move: Move, lock: Any, done: list[Move]) -> None:
        if self is not refs:
            original(self, move, lock, done)
            return
        calls.append(move)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, move, lock, done)
        if len(calls) == 1:
            after_first()

    monkeypatch.setattr(Refs, "_commit", apply)


@pytest.mark.parametrize("order", ["update first", "delete first"])
def test_a_transaction_failing_part_way_puts_back_what_it_moved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: str) -> None:
    repo, first = repository(tmp_path)
    second = next_commit(repo, first, b"2")
    repo.refs.update("refs/heads/other", first, None)
    moves = [Move("refs/heads/main", second, first), Move("refs/heads/other", None, first)]
    if order == "delete first":
        moves.reverse()
    failing_second_move(monkeypatch, repo.refs, lambda: None)
    with pytest.raises(StoreError) as failed:
        repo.refs.transaction(moves)
    assert "No space left" in failed.value.message
    assert "uncertain" not in failed.value.details
    monkeypatch.undo()
    assert repo.refs.read("refs/heads/main") == first
    assert repo.refs.read("refs/heads/other") == first
    assert list((repo.git_dir / "refs").rglob("*.lock")) == []
    repo.refs.transaction(moves)  # and the same write goes through once the disk has room
    assert repo.refs.read("refs/heads/main") == second
    assert repo.refs.read("refs/heads/other") is None
    fsck(repo.path)


def test_a_write_that_cannot_be_put_back_says_its_outcome_is_uncertain(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the first move and the failure of the second, another writer moved the first
    ref on: it is not put back over that writer's move, and the error says part may stand."""
    repo, first = repository(tmp_path)
    second, third = next_commit(repo, first, b"2"), next_commit(repo, first, b"3")
    repo.refs.update("refs/heads/other", first, None)
    other = Refs(repo.git_dir)
    failing_second_move(monkeypatch, repo.refs, lambda: other.transaction(
        [Move("refs/heads/main", third, second)]))
    with pytest.raises(StoreError) as failed:
        repo.refs.transaction([Move("refs/heads/main", second, first),
                               Move("refs/heads/other", None, first)])
    assert failed.value.details == {"uncertain": True}
    monkeypatch.undo()
    assert repo.refs.read("refs/heads/main") == third  # the other writer's, kept
    assert repo.refs.read("refs/heads/other") == first
    fsck(repo.path)


def test_a_ref_folder_removed_by_pack_refs_as_it_is_made_is_made_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`git pack-refs` removes folders it emptied, perhaps one a writer has just made for a
    new ref: the writer makes it again rather than fail."""
    repo, first = repository(tmp_path)
    original = Refs._make_folders
    removed: list[Path] = []

    def made_then_removed(self: Refs, folder: Path) -> None:
        original(self, folder)
        if not removed:
            removed.append(folder)
            folder.rmdir()

    monkeypatch.setattr(Refs, "_make_folders", made_then_removed)
    repo.refs.update("refs/cms/discarded/a-vs-b/1", first, None)
    assert removed == [repo.git_dir / "refs/cms/discarded/a-vs-b"]
    assert repo.refs.read("refs/cms/discarded/a-vs-b/1") == first


def test_listing_refs_while_pack_refs_removes_folders(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    repo, first = repository(tmp_path)
    for slug in ("a-vs-b", "c-vs-d", "e-vs-f"):
        repo.refs.update(f"refs/heads/cms/comparisons/{slug}", first, None)
    root = repo.git_dir / "refs/heads/cms/comparisons"
    original = Path.read_text

    def packed_meanwhile(self: Path, *args: Any, **kwargs: Any) -> str:
        text = original(self, *args, **kwargs)
        if self.parent == root:
            git(repo.path, "pack-refs", "--all")  # the loose refs go, and their folders
            assert not root.exists()
        return text

    monkeypatch.setattr(Path, "read_text", packed_meanwhile)
    listed = repo.refs.under("refs/heads/cms/")
    monkeypatch.undo()
    assert set(listed) == {f"refs/heads/cms/comparisons/{s}" for s in ("a-vs-b", "c-vs-d", "e-vs-f")}


def test_packed_refs_locked_for_a_moment_by_git_is_waited_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Removing a packed ref rewrites packed-refs under its lock; git holding that lock for a
    moment (a `pack-refs` under way) is waited for like any lock, not taken for a moved ref."""
    repo, first = repository(tmp_path)
    repo.refs.update("refs/heads/other", first, None)
    git(repo.path, "pack-refs", "--all")
    lock = repo.git_dir / "packed-refs.lock"
    lock.write_text("")  # git's, for a moment
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        lock.unlink(missing_ok=True)  # git is done with it

    monkeypatch.setattr(refs_module.time, "sleep", sleep)
    repo.refs.delete("refs/heads/other", first)
    assert waits
    assert repo.refs.read("refs/heads/other") is None
    assert "refs/heads/other" not in (repo.git_dir / "packed-refs").read_text()
    fsck(repo.path)


def test_a_ref_packed_while_its_removal_waited_for_its_lock_stays_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`git pack-refs` copied the ref into packed-refs just before the removal locked it (and
    could not prune the loose file, locked): the removal takes it out of packed-refs too, or
    the ref would come back from there, its removal acknowledged."""
    repo, first = repository(tmp_path)
    repo.refs.update("refs/heads/cms/comparisons/a-vs-b", first, None)
    original = Refs._locked
    packed: list[bool] = []

    @contextlib.contextmanager
    def locked(self: Refs, path: Path) -> Iterator[Any]:
        with original(self, path) as held:
            if path.name == "a-vs-b" and not packed:
                packed.append(True)
                (repo.git_dir / "packed-refs").write_text(
                    f"# pack-refs with: peeled fully-peeled sorted \n{first} refs/heads/main\n"
                    f"{first} refs/heads/cms/comparisons/a-vs-b\n")
            yield held

    monkeypatch.setattr(Refs, "_locked", locked)
    repo.refs.delete("refs/heads/cms/comparisons/a-vs-b", first)
    assert packed == [True]
    assert repo.refs.read("refs/heads/cms/comparisons/a-vs-b") is None
    assert repo.refs.read("refs/heads/main") == first
    fsck(repo.path)


def test_new_ref_folders_are_made_on_the_way(tmp_path: Path) -> None:
    repo, first = repository(tmp_path)
    repo.refs.update("refs/heads/cms/comparisons/deep-slug", first, None)
    assert (repo.git_dir / "refs/heads/cms/comparisons").is_dir()
    assert git(repo.path, "rev-parse", "cms/comparisons/deep-slug").strip() == first
    assert Refs(repo.git_dir).read("refs/heads/cms/comparisons/deep-slug") == first


def test_a_new_ref_folder_is_flushed_into_its_parent(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    repo, first = repository(tmp_path)
    flushed: list[Path] = []
    monkeypatch.setattr(refs_module, "fsync_dir", flushed.append)
    repo.refs.update("refs/heads/cms/comparisons/new-one", first, None)
    heads = repo.git_dir / "refs/heads"
    assert heads in flushed  # where the new folder cms/ was made
    assert heads / "cms" in flushed  # where comparisons/ was made


def test_a_ref_folder_pack_refs_removed_after_the_move_is_no_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The move is done; `git pack-refs` then packed the ref and removed its emptied folder
    before the folder was flushed: the write stands and is acknowledged, not a 503."""
    repo, first = repository(tmp_path)
    original = refs_module.fsync_dir
    vanished: list[Path] = []

    def fsync_dir(folder: Path) -> None:
        if folder.name == "comparisons" and not vanished:
            vanished.append(folder)
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(folder))
        original(folder)

    monkeypatch.setattr(refs_module, "fsync_dir", fsync_dir)
    repo.refs.update("refs/heads/cms/comparisons/a-vs-b", first, None)
    assert vanished
    assert repo.refs.read("refs/heads/cms/comparisons/a-vs-b") == first


def test_the_periodic_pass_removes_a_dead_writers_lock_nobody_meets(tmp_path: Path) -> None:
    """A lock on a ref nobody writes again (a discard's archive) is not met by a next writer:
    the periodic pass removes it, and leaves a lock of git's alone."""
    from cms.store.documents import Documents
    from cms.store.layout import Layout
    from cms.store.recovery import PeriodicRecovery

    repo, _ = repository(tmp_path)
    killed_when(["locked"], HOLDER, str(repo.git_dir))
    lock = repo.git_dir / "refs/heads/main.lock"
    gits = repo.git_dir / "refs/heads/other.lock"
    gits.write_text("")
    age(lock, 5)
    age(gits, 3600)
    PeriodicRecovery(Documents(repo, Layout(content_dir="content", main_branch="main"))).run_once()
    assert not lock.exists()
    assert gits.exists()


def test_the_first_periodic_pass_comes_once_a_lock_left_at_start_up_is_old_enough(
        tmp_path: Path) -> None:
    """A server restarted at once after a kill meets the dead writer's lock while it is too
    young to call abandoned; the first pass comes soon after, not a whole interval later."""
    from cms.store.documents import Documents
    from cms.store.layout import Layout
    from cms.store.recovery import PeriodicRecovery
    from cms.store.refs import ABANDONED_AFTER_SECONDS

    repo, _ = repository(tmp_path)
    recovery = PeriodicRecovery(Documents(repo, Layout(content_dir="content",
                                                       main_branch="main")))
    assert ABANDONED_AFTER_SECONDS < recovery.first < recovery.interval
    passes = threading.Event()
    recovery.run_once = passes.set  # type: ignore[method-assign]
    recovery.first = 0.0
    recovery.start()
    try:
        assert passes.wait(30)  # the first pass, without waiting out the interval (30 s)
    finally:
        recovery.stop()


class Killed(BaseException):
    """The process dies here: nothing after runs, no handler sees it."""


def test_a_removal_killed_at_any_point_never_brings_back_an_older_value(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A branch packed at its first commit and loose at its second: a removal killed just after
    the loose file goes must not leave the packed, older value showing (git takes the ref out
    of packed-refs first for this reason)."""
    repo, first = repository(tmp_path)
    branch = "refs/heads/cms/comparisons/a-vs-b"
    repo.refs.update(branch, first, None)
    git(repo.path, "pack-refs", "--all")
    second = next_commit(repo, first, b"2")
    repo.refs.update(branch, second, first)  # loose now, over the packed first
    original = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        original(self, missing_ok=missing_ok)
        if self == repo.git_dir / branch:
            raise Killed

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(Killed):
        repo.refs.delete(branch, second)
    monkeypatch.undo()
    assert Refs(repo.git_dir).read(branch) in (second, None)


def test_refs_not_named_in_ascii_are_read_and_kept(tmp_path: Path) -> None:
    """Git takes any UTF-8 name (a person's tag `résumé`); packed, it is read past and kept."""
    repo, first = repository(tmp_path)
    branch = "refs/heads/cms/comparisons/a-vs-b"
    repo.refs.update(branch, first, None)
    git(repo.path, "tag", "-a", "-m", "t", "résumé", "main")
    git(repo.path, "pack-refs", "--all")
    assert repo.refs.read(branch) == first
    assert branch in repo.refs.under("refs/heads/cms/")
    repo.refs.delete(branch, first)
    assert repo.refs.read(branch) is None
    assert "résumé" in git(repo.path, "for-each-ref", "--format=%(refname)", "refs/tags/")
    fsck(repo.path)


def test_a_dead_writers_packed_refs_lock_is_removed(tmp_path: Path) -> None:
    repo, _ = repository(tmp_path)
    lock = repo.git_dir / "packed-refs.lock"
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, refs_module.MARK)
    os.close(fd)  # made by a CMS writer that died before anything else
    age(lock, 5)
    assert repo.refs.remove_stale_locks(gits=False) == ["packed-refs.lock"]
    assert not lock.exists()
    assert repo.refs.remove_stale_locks(gits=False) == []


def test_removing_the_last_ref_of_a_packed_refs_without_header_leaves_git_a_valid_file(
        tmp_path: Path) -> None:
    """Older git and other tools write packed-refs without the `# pack-refs` header."""
    repo, first = repository(tmp_path)
    (repo.git_dir / "packed-refs").write_text(f"{first} refs/heads/other\n")
    repo.refs.delete("refs/heads/other", first)
    assert (repo.git_dir / "packed-refs").read_text() == ""
    assert "refs/heads/main" in git(repo.path, "for-each-ref")
    fsck(repo.path)


def test_refs_the_cms_writes_are_readable_as_git_makes_them(tmp_path: Path) -> None:
    """The mode that marks a lock as the CMS's is the lock's only: the ref it becomes, and a
    rewritten packed-refs, are 0644 (a repository shared by a group reads them)."""
    repo, first = repository(tmp_path)
    repo.refs.update("refs/heads/other", first, None)
    git(repo.path, "pack-refs", "--all")
    repo.refs.update("refs/heads/third", first, None)
    repo.refs.update("refs/heads/main", next_commit(repo, first, b"2"), first)
    repo.refs.delete("refs/heads/other", first)
    for name in ("refs/heads/main", "refs/heads/third", "packed-refs"):
        assert (repo.git_dir / name).stat().st_mode & 0o777 == 0o644, name


def test_a_full_disk_while_writing_the_new_values_moves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every new value is written into its lock before any ref moves: a disk that fills up on
    the second leaves every ref where it was, with nothing to put back."""
    repo, first = repository(tmp_path)
    second = next_commit(repo, first, b"2")
    repo.refs.update("refs/heads/other", first, None)
    original = Refs._prepare
    calls: list[Move] = []

    def prepare(self: Refs, move: Move, lock: Any) -> None:
        calls.append(move)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, move, lock)

    monkeypatch.setattr(Refs, "_prepare", prepare)
    monkeypatch.setattr(Refs, "_undo", lambda *args: pytest.fail("nothing moved to undo"))
    with pytest.raises(StoreError) as failed:
        repo.refs.transaction([Move("refs/heads/main", second, first),
                               Move("refs/heads/third", second, None)])
    assert "uncertain" not in failed.value.details
    monkeypatch.undo()
    assert repo.refs.read("refs/heads/main") == first
    assert repo.refs.read("refs/heads/third") is None
    assert list((repo.git_dir / "refs").rglob("*.lock")) == []
