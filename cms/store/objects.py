"""Git objects encoded and parsed in process: blobs, trees and commits.

Spawning ``git hash-object`` per object costs milliseconds; hashing and encoding here costs
microseconds. ``packs.py`` writes what is encoded here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
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
