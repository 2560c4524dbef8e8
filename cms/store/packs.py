"""Writing a commit's objects as one small pack: one file and its index, flushed once.

A state change writes a blob, a few trees and a commit. As loose objects that is one file and
one folder flush each; as a pack it is two files and one folder, whatever the count. Packs are
also what git reads fastest; the background maintenance folds small packs together.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import zlib
from collections.abc import Iterable
from pathlib import Path

from ..statefiles import fsync_dir
from .objects import BLOB, COMMIT, TREE

_TYPES = {COMMIT: 1, TREE: 2, BLOB: 3}


def _entry_header(kind: bytes, size: int) -> bytes:
    byte = (_TYPES[kind] << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def build_pack(objects: Iterable[tuple[bytes, bytes]]) -> tuple[list[str], bytes, bytes]:
    """Object ids in order, the pack and its version 2 index."""
    ids: list[str] = []
    entries: dict[bytes, tuple[int, int]] = {}  # binary id -> (crc32, offset)
    body = bytearray()
    count = 0
    chunks: list[bytes] = []
    offset = 12
    for kind, data in objects:
        binsha = hashlib.sha1(b"%s %d\x00%s" % (kind, len(data), data),
                              usedforsecurity=False).digest()
        ids.append(binsha.hex())
        if binsha in entries:
            continue
        chunk = _entry_header(kind, len(data)) + zlib.compress(data, 1)
        entries[binsha] = (zlib.crc32(chunk), offset)
        chunks.append(chunk)
        offset += len(chunk)
        count += 1
    body += b"PACK" + struct.pack(">II", 2, count)
    for chunk in chunks:
        body += chunk
    pack_sha = hashlib.sha1(body, usedforsecurity=False).digest()
    body += pack_sha
    ordered = sorted(entries)
    fanout = [0] * 256
    for binsha in ordered:
        fanout[binsha[0]] += 1
    running = 0
    for index, value in enumerate(fanout):
        running += value
        fanout[index] = running
    idx = bytearray(b"\xfftOc" + struct.pack(">I", 2))
    idx += struct.pack(">256I", *fanout)
    idx += b"".join(ordered)
    idx += b"".join(struct.pack(">I", entries[binsha][0]) for binsha in ordered)
    idx += b"".join(struct.pack(">I", entries[binsha][1]) for binsha in ordered)
    idx += pack_sha
    idx += hashlib.sha1(idx, usedforsecurity=False).digest()
    return ids, bytes(body), bytes(idx)


class PackWriter:
    def __init__(self, objects_dir: Path, *, durable: bool = True) -> None:
        self.folder = objects_dir / "pack"
        self.durable = durable

    def write(self, objects: Iterable[tuple[bytes, bytes]]) -> tuple[list[str], bytes]:
        """The objects' ids, and the pack that holds them (what a push sends)."""
        ids, pack, idx = build_pack(objects)
        self.folder.mkdir(exist_ok=True)
        name = f"pack-{pack[-20:].hex()}"
        tag = f"{os.getpid()}_{threading.get_ident()}"
        temps = [(self.folder / f"tmp_pack_{tag}", self.folder / f"{name}.pack", pack),
                 (self.folder / f"tmp_idx_{tag}", self.folder / f"{name}.idx", idx)]
        try:
            for temp, _, data in temps:
                _write(temp, data, durable=self.durable)
            # The pack before its index: git finds packs by their index, so a reader never
            # meets an index whose pack is missing.
            for temp, final, _ in temps:
                os.replace(temp, final)
        finally:
            for temp, _, _ in temps:
                temp.unlink(missing_ok=True)
        if self.durable:
            fsync_dir(self.folder)
        return ids, pack


def _write(path: Path, data: bytes, *, durable: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        if durable:
            os.fsync(handle.fileno())
