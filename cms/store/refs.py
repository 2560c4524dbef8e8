"""Refs read and moved in process with compare-and-swap, using git's own lock-file protocol.

A ref moves only if it still points where the writer last saw it (``old -> new``). The lock file
``<ref>.lock`` is the one git itself takes, so the CMS and a person running git on the same
repository exclude each other. The new value is flushed before the rename that makes it current.

Several refs can move together (``transaction``): every lock is taken and every expected value
checked before the first one moves, so two writers can never both see their precondition hold.

A CMS writer marks each lock file it makes (a file mode git never uses) and holds an advisory
lock (flock) on it for as long as it exists. A marked lock file that nobody holds was left by a
writer that died; whoever meets it removes it, so a crash never blocks a ref. A lock of git's is
never taken over while the CMS runs; start-up recovery removes one only when it is very old.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from msgspec import Struct

from ..errors import StoreError
from ..statefiles import fsync_dir

log = logging.getLogger("cms")

PACKED = "packed-refs"
_FOLDER_TRIES = 8
_LOCK_WAIT_SECONDS = 2.0
# A CMS writer creates its lock files with this mode, which git never gives one (git's are
# 0666 less the umask, so always writable by their owner), so that only its own are ever taken
# over: a lock of git's is git's to remove, however long it is held. The mark is set by the very
# call that creates the file, and no umask removes its one bit, so a writer killed at any moment
# leaves a marked lock. (Git would make a lock of mode 0400 only under a umask that takes away
# its owner's write permission, which no working setup has. 0604, the mark of earlier versions,
# which set it a call later, would need a umask of 0062.)
MARK = 0o400
# A ref file once renamed into place: readable as git makes them, for a shared repository too.
FILE_MODE = 0o644
MARKS = frozenset({MARK, 0o604})
# A CMS lock nobody holds is a dead writer's once it is older than the moment between its
# creation and its advisory lock.
ABANDONED_AFTER_SECONDS = 1.0
# An unmarked (git's) lock this old is left by a git that died; start-up recovery removes it.
GIT_ABANDONED_AFTER_SECONDS = 600.0


class RefConflict(Exception):
    """The ref no longer points where the writer expected: someone else moved it first."""

    def __init__(self, name: str, expected: str | None, actual: str | None) -> None:
        super().__init__(f"{name} is at {actual or 'nothing'}, expected {expected or 'nothing'}")
        self.name = name
        self.expected = expected
        self.actual = actual


class Move(Struct, frozen=True):
    """Point ``name`` at ``new`` (None deletes it), provided it is at ``expected`` now (None: it
    does not exist). With ``new`` equal to ``expected`` the ref is only checked, under its lock."""

    name: str
    new: str | None
    expected: str | None


class Refs:
    def __init__(self, git_dir: Path, *, durable: bool = True) -> None:
        self.git_dir = git_dir
        self.durable = durable

    def read(self, name: str) -> str | None:
        try:
            value = (self.git_dir / name).read_text(encoding="ascii").strip()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return self._packed().get(name)
        if value.startswith("ref: "):
            return self.read(value[5:])
        return value or None

    def under(self, prefix: str) -> dict[str, str]:
        """Every ref under ``prefix`` (e.g. ``refs/heads/cms/``), loose refs overriding packed.
        The loose ones are read first: `git pack-refs` writes a ref into packed-refs before it
        deletes the loose file, so a ref it moves meanwhile is found in one or the other."""
        loose: dict[str, str] = {}
        for path in _files_under(self.git_dir / prefix):
            if path.name.endswith(".lock"):
                continue
            try:
                value = path.read_text(encoding="ascii").strip()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                continue  # deleted (a branch merged or discarded) since it was listed
            if len(value) == 40:
                loose[path.relative_to(self.git_dir).as_posix()] = value
        found = {name: oid for name, oid in self._packed().items() if name.startswith(prefix)}
        found.update(loose)
        return found

    def update(self, name: str, new: str, expected: str | None) -> None:
        """Point ``name`` at ``new`` if it is at ``expected`` now (None: if it does not exist)."""
        self.transaction([Move(name, new, expected)])

    def delete(self, name: str, expected: str) -> None:
        self.transaction([Move(name, None, expected)])

    def transaction(self, moves: Sequence[Move]) -> None:
        """Apply every move, in order, or none of them (RefConflict) when one ref is not where
        its move expects it. A crash part-way leaves the first moves done: writers order their
        moves so that start-up recovery can finish or undo them."""
        names = ", ".join(move.name for move in moves)
        try:
            with contextlib.ExitStack() as stack:
                locks = {name: stack.enter_context(self._locked(self.git_dir / name))
                         for name in sorted({move.name for move in moves})}
                if any(move.new is None and move.expected is not None for move in moves):
                    # A removed ref must leave packed-refs too, and `git pack-refs` must not
                    # write it back there meanwhile: its lock, as git takes it, excludes that.
                    locks[PACKED] = stack.enter_context(self._locked(self.git_dir / PACKED))
                for move in moves:
                    actual = self.read(move.name)
                    if actual != move.expected:
                        raise RefConflict(move.name, move.expected, actual)
                changing = [move for move in moves if move.new != move.expected]
                # First everything that takes disk space, into the locks still held (a full
                # disk fails here, and nothing has moved); then the renames and removals.
                try:
                    for move in changing:
                        self._prepare(move, locks[move.name])
                    removed = [move for move in changing if move.new is None]
                    unpacked = bool(removed) and self._prepare_unpack(removed, locks[PACKED])
                except OSError as exc:
                    raise StoreError(f"could not move {names}: {exc.strerror}") from exc
                done: list[Move] = []
                try:
                    if unpacked:
                        self._commit_unpack(locks[PACKED])
                    for move in changing:
                        self._commit(move, locks[move.name], done)
                except OSError as exc:
                    # Put back what moved while the refs not yet moved are still locked, so
                    # that nobody (recovery included) acts on the half-done write meanwhile.
                    if self._undo(done, locks):
                        raise StoreError(f"could not move {names}: {exc.strerror}") from exc
                    raise StoreError(
                        f"could not finish moving {names}: {exc.strerror}; part of the write "
                        "may stand: read it again before retrying", uncertain=True) from exc
        except OSError as exc:  # taking the locks
            raise StoreError(f"could not move {names}: {exc.strerror}") from exc

    def _undo(self, done: list[Move], locks: dict[str, _Lock]) -> bool:
        """Put back what a failing transaction moved (on a full disk, say), each ref only if
        nobody moved it since; whether all of it was put back."""
        complete = True
        for move in reversed(done):
            back = Move(move.name, move.expected, move.new)
            lock = locks[move.name]
            try:
                if not lock.released:  # a removal: its lock is still this writer's
                    self._apply(back, lock, [])
                    continue
                # Renamed into place, the lock went with it: take it again.
                with self._locked(self.git_dir / move.name) as again:
                    if self.read(move.name) != move.new:
                        raise RefConflict(move.name, move.new, self.read(move.name))
                    self._apply(back, again, [])
            except (OSError, RefConflict, StoreError):
                log.warning("could not put %s back after a failed write", move.name)
                complete = False
        return complete

    def _apply(self, move: Move, lock: _Lock, done: list[Move]) -> None:
        self._prepare(move, lock)
        self._commit(move, lock, done)

    def _prepare(self, move: Move, lock: _Lock) -> None:
        """The new value, flushed into the held lock file (nothing for a removal)."""
        if move.new is not None:
            os.write(lock.fd, f"{move.new}\n".encode("ascii"))
            if self.durable:
                os.fsync(lock.fd)

    def _commit(self, move: Move, lock: _Lock, done: list[Move]) -> None:
        path = self.git_dir / move.name
        if move.new is None:
            path.unlink(missing_ok=True)
        else:
            os.replace(lock.path, path)
            lock.released = True
            os.fchmod(lock.fd, FILE_MODE)  # the mark was the lock's, not the ref's
        done.append(move)  # it stands now, whatever happens next
        if self.durable:
            self._sync_folder(path.parent)

    def _prepare_unpack(self, removed: list[Move], lock: _Lock) -> bool:
        """packed-refs without the refs to be removed, flushed into its held lock; whether any
        was there. They leave packed-refs before their loose files go, as in git: a ref only
        packed is first written loose, with the value it has, so that until its own removal it
        stays exactly where it was, a crash at any point included."""
        try:
            lines = (self.git_dir / PACKED).read_bytes().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            return False
        gone = {move.name for move in removed}
        kept: list[str] = []
        dropping = False
        for line in lines.splitlines():
            if line.startswith("^"):
                if not dropping:
                    kept.append(line)
                continue
            dropping = not line.startswith("#") and line.partition(" ")[2] in gone
            if not dropping:
                kept.append(line)
        if len(kept) == len(lines.splitlines()):
            return False
        for move in removed:
            if move.expected is not None and not (self.git_dir / move.name).exists():
                self._write_loose(move.name, move.expected)
        # Nothing left is an empty file, which git reads as no packed refs (a lone newline it
        # refuses, in a packed-refs that had no header).
        text = "".join(f"{line}\n" for line in kept)
        os.write(lock.fd, text.encode("utf-8", "surrogateescape"))
        if self.durable:
            os.fsync(lock.fd)
        return True

    def _commit_unpack(self, lock: _Lock) -> None:
        os.replace(lock.path, self.git_dir / PACKED)
        lock.released = True
        os.fchmod(lock.fd, FILE_MODE)
        if self.durable:
            fsync_dir(self.git_dir)

    def _write_loose(self, name: str, value: str) -> None:
        """``name`` as a loose ref file, while its lock is held (so not through the lock)."""
        temp = self.git_dir / f"cms-ref-{os.getpid()}-{threading.get_ident()}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, f"{value}\n".encode("ascii"))
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        path = self.git_dir / name
        self._make_folders(path.parent)
        os.replace(temp, path)
        if self.durable:
            self._sync_folder(path.parent)

    def _sync_folder(self, folder: Path) -> None:
        """Flush ``folder``; if `git pack-refs` removed it (emptied) meanwhile, its removal is
        the parent's to record."""
        while True:
            try:
                fsync_dir(folder)
                return
            except FileNotFoundError:
                if folder == self.git_dir:
                    raise
                folder = folder.parent

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[_Lock]:
        lock = _lock_path(path)
        self._make_folders(lock.parent)
        deadline = time.monotonic() + _LOCK_WAIT_SECONDS
        delay = 0.001
        while True:
            try:
                fd = _create_held(lock)
            except FileNotFoundError:
                # `git pack-refs` removes a ref folder it emptied, perhaps the one just made.
                self._make_folders(lock.parent)
            else:
                if fd is not None:
                    break
                # Another writer (a second instance, or git itself) holds the ref for a
                # moment, unless it died holding it.
                if _remove_if_abandoned(lock):
                    continue
            if time.monotonic() >= deadline:
                raise StoreError(f"the ref {path.name} is locked by another writer; try again")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        held = _Lock(fd, lock)
        try:
            yield held
        finally:
            # Once renamed into place the lock is no longer ours: it may be another writer's now.
            if not held.released:
                lock.unlink(missing_ok=True)
            os.close(fd)

    def _make_folders(self, folder: Path) -> None:
        """Create ``folder`` and its missing parents, each recorded in its parent folder on disk
        before a ref is written into it."""
        for _ in range(_FOLDER_TRIES):
            missing = []
            parent = folder
            while not parent.is_dir():
                missing.append(parent)
                parent = parent.parent
            try:
                for new in reversed(missing):
                    new.mkdir(exist_ok=True)
                    if self.durable:
                        self._sync_folder(new.parent)
                return
            except FileNotFoundError:
                continue  # `git pack-refs` removed a parent just made, emptied: again
        raise StoreError(f"could not make the ref folder {folder.name}; try again")

    def remove_stale_locks(self, *, gits: bool = True) -> list[str]:
        """Lock files left by writers that died: the CMS's own, which nobody holds, and with
        ``gits`` git's that are older than any git command takes."""
        removed = []
        candidates = list(_files_under(self.git_dir / "refs"))
        if (self.git_dir / f"{PACKED}.lock").exists():  # a removal's, once packed-refs changed
            candidates.append(self.git_dir / f"{PACKED}.lock")
        for lock in candidates:
            if lock.name.endswith(".lock") and _remove_if_abandoned(
                    lock, git_locks_after=GIT_ABANDONED_AFTER_SECONDS if gits else None):
                removed.append(lock.relative_to(self.git_dir).as_posix())
        return removed

    def _packed(self) -> dict[str, str]:
        try:
            # Git allows any name that is not ASCII too (a tag of a person's); ours all are.
            text = (self.git_dir / PACKED).read_bytes().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            return {}
        refs: dict[str, str] = {}
        for line in text.splitlines():
            if line and line[0] not in "#^":
                oid, _, name = line.partition(" ")
                refs[name] = oid
        return refs


class _Lock:
    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path
        self.released = False


def _files_under(root: Path) -> Iterator[Path]:
    """The files under ``root``, however its folders come and go meanwhile (``git pack-refs``
    removes the ones it empties; a missing one is simply not listed)."""
    for folder, _, names in os.walk(root):
        for name in names:
            yield Path(folder, name)


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _create_held(lock: Path) -> int | None:
    """A new lock file, held (flock) by this writer; None if it exists already."""
    try:
        # Writable through this descriptor whatever its mode says.
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MARK)
    except FileExistsError:
        return None
    fcntl.flock(fd, fcntl.LOCK_EX)
    # Between the two calls another process may have judged the file abandoned and removed it:
    # then it is not the lock any more, and the ref must be locked again.
    try:
        current = os.stat(lock).st_ino
    except FileNotFoundError:
        current = None
    if current != os.fstat(fd).st_ino:
        os.close(fd)
        return None
    return fd


def _remove_if_abandoned(lock: Path, *, git_locks_after: float | None = None) -> bool:
    """Remove ``lock`` if its writer died; True if it is gone (so the caller may try again).
    A lock of git's (unmarked) is removed only when ``git_locks_after`` is given and it is older.
    """
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        made = os.fstat(fd)
        age = time.time() - made.st_mtime
        if made.st_mode & 0o777 not in MARKS:
            if git_locks_after is None or age < git_locks_after:
                return False  # git's: it may hold it for as long as it likes
        elif age < ABANDONED_AFTER_SECONDS:
            return False  # a CMS writer between making it and locking it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer of the CMS holds it
        try:
            if os.stat(lock).st_ino != made.st_ino:
                return True  # replaced meanwhile: look again
        except FileNotFoundError:
            return True
        os.unlink(lock)
        log.warning("removed the lock %s, left by a writer that died", lock.name)
        return True
    finally:
        os.close(fd)
