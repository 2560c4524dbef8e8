"""Refs read and moved in process with compare-and-swap, using git's own lock-file protocol.

A ref moves only if it still points where the writer last saw it (``old -> new``). The lock file
``<ref>.lock`` is the one git itself takes, so the CMS and a person running git on the same
repository exclude each other. The new value is flushed before the rename that makes it current.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import StoreError
from .objects import fsync_dir

ZERO = "0" * 40
_LOCK_WAIT_SECONDS = 2.0


class RefConflict(Exception):
    """The ref no longer points where the writer expected: someone else moved it first."""

    def __init__(self, name: str, expected: str | None, actual: str | None) -> None:
        super().__init__(f"{name} is at {actual or 'nothing'}, expected {expected or 'nothing'}")
        self.name = name
        self.expected = expected
        self.actual = actual


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
        """Every ref under ``prefix`` (e.g. ``refs/heads/cms/``), loose refs overriding packed."""
        found = {name: oid for name, oid in self._packed().items() if name.startswith(prefix)}
        root = self.git_dir / prefix
        if root.is_dir():
            for path in root.rglob("*"):
                if path.name.endswith(".lock"):
                    continue
                try:
                    value = path.read_text(encoding="ascii").strip()
                except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                    continue  # deleted (a branch merged or discarded) since it was listed
                if len(value) == 40:
                    found[path.relative_to(self.git_dir).as_posix()] = value
        return found

    def update(self, name: str, new: str, expected: str | None) -> None:
        """Point ``name`` at ``new`` if it is at ``expected`` now (None: if it does not exist)."""
        path = self.git_dir / name
        try:
            with self._locked(path) as lock:
                actual = self.read(name)
                if actual != expected:
                    raise RefConflict(name, expected, actual)
                os.write(lock.fd, f"{new}\n".encode("ascii"))
                if self.durable:
                    os.fsync(lock.fd)
                os.replace(lock.path, path)
                lock.released = True
            if self.durable:
                fsync_dir(path.parent)
        except OSError as exc:
            raise StoreError(f"could not move {name}: {exc.strerror}") from exc

    def delete(self, name: str, expected: str) -> None:
        if name in self._packed():
            # Removing a packed ref means rewriting packed-refs; git does that safely.
            result = subprocess.run(
                ["git", "--git-dir", str(self.git_dir), "update-ref", "-d", name, expected],
                capture_output=True, text=True, check=False,
            )
            if result.returncode != 0:
                raise RefConflict(name, expected, self.read(name))
            return
        path = self.git_dir / name
        with self._locked(path):
            actual = self.read(name)
            if actual != expected:
                raise RefConflict(name, expected, actual)
            path.unlink()
        if self.durable:
            fsync_dir(path.parent)

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[_Lock]:
        lock = _lock_path(path)
        lock.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + _LOCK_WAIT_SECONDS
        delay = 0.001
        while True:
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                break
            except FileExistsError:
                # Another writer (a second instance, or git itself) holds the ref for a moment.
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"the ref {path.name} is locked by another writer; try again"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        held = _Lock(fd, lock)
        try:
            yield held
        finally:
            os.close(fd)
            # Once renamed into place the lock is no longer ours: it may be another writer's now.
            if not held.released:
                lock.unlink(missing_ok=True)

    def remove_stale_locks(self, older_than: float) -> list[str]:
        """Lock files left by a writer that died; a live writer holds one for milliseconds."""
        removed = []
        cutoff = time.time() - older_than
        for lock in (self.git_dir / "refs").rglob("*.lock"):
            if lock.stat().st_mtime <= cutoff:
                lock.unlink(missing_ok=True)
                removed.append(lock.relative_to(self.git_dir).as_posix())
        return removed

    def _packed(self) -> dict[str, str]:
        try:
            text = (self.git_dir / "packed-refs").read_text(encoding="ascii")
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


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")
