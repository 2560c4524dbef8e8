"""Git objects written and parsed in process: blobs, trees and commits, stored as loose objects.

Spawning ``git hash-object`` per object costs milliseconds; hashing and compressing here costs
microseconds. Objects are written to a temporary file and renamed into place, so a reader never sees
half an object, and flushed together before any ref points at them.
"""

from __future__ import annotations

import hashlib
import os
import threading
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Final

BLOB: Final = b"blob"
TREE: Final = b"tree"
COMMIT: Final = b"commit"
MODE_FILE: Final = b"100644"
MODE_TREE: Final = b"40000"

TreeEntries = dict[bytes, tuple[bytes, bytes]]  # name -> (mode, binary sha)


def object_id(kind: bytes, data: bytes) -> str:
    return hashlib.sha1(b"%s %d\x00%s" % (kind, len(data), data), usedforsecurity=False).hexdigest()


def encode_tree(entries: TreeEntries) -> bytes:
    # Git orders entries by name, comparing a tree's name as if it ended in "/".
    def key(name: bytes) -> bytes:
        return name + b"/" if entries[name][0] == MODE_TREE else name

    return b"".join(
        entries[name][0] + b" " + name + b"\x00" + entries[name][1] for name in sorted(entries, key=key)
    )


def decode_tree(data: bytes) -> TreeEntries:
    entries: TreeEntries = {}
    position = 0
    size = len(data)
    while position < size:
        space = data.index(b" ", position)
        nul = data.index(b"\x00", space)
        mode = data[position:space]
        entries[data[space + 1 : nul]] = (MODE_TREE if mode == b"040000" else mode,
                                          data[nul + 1 : nul + 21])
        position = nul + 21
    return entries


def encode_commit(
    tree: str,
    parents: Iterable[str],
    author: str,
    committer: str,
    message: str,
) -> bytes:
    """``author`` and ``committer`` are full identity lines: ``Name <email> seconds +zzzz``."""
    lines = [f"tree {tree}"]
    lines += [f"parent {parent}" for parent in parents]
    lines += [f"author {author}", f"committer {committer}"]
    return ("\n".join(lines) + "\n\n" + message).encode("utf-8")


class LooseObjectWriter:
    """Writes objects under ``objects/xx/yyyy`` the way git does, with one flush per batch."""

    def __init__(self, objects_dir: Path, *, durable: bool = True) -> None:
        self.objects_dir = objects_dir
        self.durable = durable

    def write(self, objects: Iterable[tuple[bytes, bytes]]) -> list[str]:
        ids: list[str] = []
        pending: list[tuple[Path, Path]] = []  # (temporary file, final path)
        folders: set[Path] = set()
        try:
            for kind, data in objects:
                raw = b"%s %d\x00%s" % (kind, len(data), data)
                oid = hashlib.sha1(raw, usedforsecurity=False).hexdigest()
                ids.append(oid)
                folder = self.objects_dir / oid[:2]
                target = folder / oid[2:]
                if target.exists() or any(final == target for _, final in pending):
                    continue
                folder.mkdir(exist_ok=True)
                temp = folder / f"tmp_obj_{os.getpid()}_{threading.get_ident()}_{oid[2:12]}"
                _write_file(temp, zlib.compress(raw, 1), durable=self.durable)
                pending.append((temp, target))
                folders.add(folder)
            for temp, target in pending:
                os.replace(temp, target)
            pending = []
            if self.durable:
                for folder in folders:
                    fsync_dir(folder)
        finally:
            for temp, _ in pending:
                temp.unlink(missing_ok=True)
        return ids


def _write_file(path: Path, data: bytes, *, durable: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
