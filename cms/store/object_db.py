"""Reading objects through gitdb, seeing only packs that are complete.

A pack is written as two files, renamed into place one after the other: the pack, then its
index (git itself finds packs by their index). Between the two renames, or after a crash there,
a pack has no index yet; gitdb would take it up by its name and then fail on every lookup that
reaches it. Here a pack counts once its index is in place.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any

from gitdb import GitDB
from gitdb.db.pack import PackedDB
from gitdb.pack import PackEntity
from gitdb.util import mman

# Packs are read through memory maps that gitdb keeps whole for as long as the process runs, so
# every page a read touched would stay in the process's resident memory: reading each
# comparison of a large repository once would keep the whole pack resident. After this many
# bytes read, the pages are handed back (they stay in the kernel's cache; a later read of them
# maps them again without touching the disk).
RELEASE_AFTER_BYTES = 16 * 1024 * 1024
# What one read maps besides its own bytes: the kernel maps the cached pages around each page
# faulted in (64 KB by default), for the object and for each delta base it is built from. A
# read of a small file thus costs its process far more resident memory than its size.
MAPPED_PER_READ = 128 * 1024


def release_mapped_pages() -> None:
    """Drop the pages of every mapped pack from this process's memory. The maps are read-only
    views of files, so nothing is lost: the next access reads the page back from the cache."""
    for regions in list(mman._fdict.values()):
        for region in list(regions):
            mapped = getattr(region, "_mf", None)
            if mapped is None:
                continue
            try:
                mapped.madvise(mmap.MADV_DONTNEED)
                # Reads land anywhere in a pack: without this, each page read back brings
                # megabytes of its neighbours with it.
                mapped.madvise(mmap.MADV_RANDOM)
            except (ValueError, OSError):  # closed meanwhile
                continue


class CompletePacks(PackedDB):  # type: ignore[misc]
    _st_mtime: float
    _entities: list[list[Any]]  # [size, PackEntity, lookup], as gitdb keeps them

    def update_cache(self, force: bool = False) -> bool:
        """Take up the complete packs that appeared and drop those that went; whether any did.
        Dropped packs are the caller's to close."""
        changed_at = os.stat(self.root_path()).st_mtime
        if not force and changed_at <= self._st_mtime:
            return False
        self._st_mtime = changed_at
        complete = {str(pack) for pack in Path(self.root_path()).glob("pack-*.pack")
                    if pack.with_suffix(".idx").exists()}
        known = {item[1].pack().path(): item for item in self._entities}
        for path in sorted(complete - known.keys()):
            entity = PackEntity(path)
            self._entities.append([entity.pack().size(), entity, entity.index().sha_to_index])
        for path in known.keys() - complete:
            self._entities.remove(known[path])
        self._sort_entities()
        return True


class ObjectDB(GitDB):  # type: ignore[misc]
    PackDBCls = CompletePacks
