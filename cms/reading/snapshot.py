"""The index snapshot: decoded comparisons kept on disk by blob id, so a restart parses no YAML.

The file is the msgpack records, one per comparison, then a table saying where each one is (with
its CRC-32) and which tree of main they were taken from, then a footer with the table's CRC-32 and
length. Records are read one at a time when needed, so opening a snapshot costs only its table.
It is a cache: anything wrong with it (damage, other code, another layout) makes it unused, never
wrong, and the comparisons are decoded from git instead.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import zlib
from collections.abc import Iterable
from pathlib import Path

import msgspec
from msgspec import Struct

from ..content.model import Comparison

VERSION = 4
_FOOTER = struct.Struct("<IQ")  # CRC-32 and length of the table before it


class Table(Struct):
    version: int
    # What the records depend on besides the blobs: the model's shape and where files live.
    fingerprint: str
    # blob id -> (offset, length, CRC-32) of its comparison, msgpack-encoded
    records: dict[str, tuple[int, int, int]]
    # Main's tree when it was written, and its comparisons (slug -> blob): a start follows main
    # from there by comparing trees, rather than reading every folder.
    tree: str | None = None
    slugs: dict[str, str] = {}


def fingerprint(example_path: str) -> str:
    """Names what decoding depends on: the model's schema and the layout of files."""
    shape = msgspec.json.encode([msgspec.json.schema(Comparison), example_path])
    return hashlib.sha1(shape, usedforsecurity=False).hexdigest()


class Snapshot:
    """An open snapshot file; ``read`` is safe from any thread."""

    def __init__(self, fd: int, table: Table) -> None:
        self._fd: int | None = fd
        self.table = table
        self._records = table.records

    @classmethod
    def open(cls, path: Path, expected: str) -> Snapshot | None:
        """The snapshot at ``path`` if it is whole and was made for ``expected``; else None."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            end = os.fstat(fd).st_size - _FOOTER.size
            crc, size = _FOOTER.unpack(os.pread(fd, _FOOTER.size, end))
            if not 0 < size <= end:
                raise ValueError("not a snapshot")
            data = os.pread(fd, size, end - size)
            if zlib.crc32(data) != crc:
                raise ValueError("a damaged snapshot")
            table = msgspec.msgpack.decode(data, type=Table)
            if table.version != VERSION or table.fingerprint != expected:
                raise ValueError("a snapshot made by other code or for another layout")
        except (OSError, ValueError, struct.error):
            os.close(fd)
            return None
        return cls(fd, table)

    def __contains__(self, blob: str) -> bool:
        return blob in self._records

    def read(self, blob: str) -> Comparison | None:
        """The comparison recorded for a blob, or None when it is missing or damaged."""
        record, fd = self._records.get(blob), self._fd
        if record is None or fd is None:
            return None
        offset, length, crc = record
        try:
            data = os.pread(fd, length, offset)
            if zlib.crc32(data) != crc:
                return None
            return msgspec.msgpack.decode(data, type=Comparison)
        except (OSError, ValueError):  # msgspec's errors, and bad UTF-8, are ValueErrors
            return None

    def close(self) -> None:
        fd, self._fd, self._records = self._fd, None, {}
        if fd is not None:
            os.close(fd)


def write(path: Path, expected: str, comparisons: Iterable[tuple[str, str, Comparison]],
          tree: str | None) -> None:
    """Write (slug, blob, comparison) triples as a snapshot of ``tree``; None for ``tree`` when
    they are not all of its comparisons. Replaces the file whole, or raises and leaves it be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Named for this process and thread: instances may share a data folder.
    temp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        records: dict[str, tuple[int, int, int]] = {}
        slugs: dict[str, str] = {}
        offset = 0
        with temp.open("wb") as out:
            for slug, blob, comparison in comparisons:
                chunk = msgspec.msgpack.encode(comparison)
                records[blob] = (offset, len(chunk), zlib.crc32(chunk))
                slugs[slug] = blob
                out.write(chunk)
                offset += len(chunk)
            table = msgspec.msgpack.encode(Table(
                version=VERSION, fingerprint=expected, records=records, tree=tree,
                slugs=slugs if tree is not None else {}))
            out.write(table)
            out.write(_FOOTER.pack(zlib.crc32(table), len(table)))
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
