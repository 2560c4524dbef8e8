"""A server reading what another process commits keeps its descriptors and memory bounded.

The other process commits through the real write path and repacks as a server does; this one
reads each new revision. Deleted packs must not stay mapped: each would hold its disk space and
a descriptor for as long as the server runs. ``make soak`` runs it with more commits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cms.config import Settings
from cms.editing.write_side import open_write_side
from cms.identity.actors import Actor
from cms.store.maintenance import PACK_LIMIT
from cms.store.object_db import CompletePacks

from ..conftest import HAIKU, fsck

EDITOR = Actor(name="Ada Editor", email="ada@example.com", roles=frozenset({"editor"}))
COMMITS = int(os.environ.get("CMS_SOAK_COMMITS", "2000"))
BATCH = 120  # not a multiple of the pack limit: each batch ends after a repack

WRITER = textwrap.dedent("""
    import sys, msgspec
    from cms.config import load_settings
    from cms.editing.write_side import open_write_side
    from cms.identity.actors import Actor
    from cms.store.maintenance import PACK_LIMIT, Maintenance

    settings = load_settings({}, repo=sys.argv[1], data=sys.argv[2], durable=False)
    side = open_write_side(settings)
    maintenance = Maintenance(side.repo)
    editor = Actor(name="Other Process", email="other@example.com", roles=frozenset({"editor"}))
    current = side.documents.current(sys.argv[3])
    number = 0
    for line in sys.stdin:
        for _ in range(int(line)):
            number += 1
            edited = msgspec.structs.replace(current.comparison, summary=f"Edit {number}.")
            current = side.editor.save(sys.argv[3], edited, editor, current.revision)
            if number % PACK_LIMIT == 0:
                maintenance.run()  # as a server does, deleting the packs it merged
        print(current.revision, flush=True)
""")


def deleted_mappings(repo: Path) -> int:
    maps = Path("/proc/self/maps").read_text().splitlines()
    return len({line.split(maxsplit=5)[-1] for line in maps
                if str(repo) in line and line.endswith("(deleted)")})


def resident_bytes() -> int:
    """This process's resident memory now (not its peak, which earlier tests have set)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def descriptor_targets() -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return sorted(found)


def test_reading_another_processs_commits_keeps_resources_bounded(
        settings: Settings, repo_path: Path) -> None:
    reader = open_write_side(settings).documents
    assert reader.current(HAIKU) is not None
    descriptors = open_descriptors()
    resident_before = resident_bytes()
    with subprocess.Popen([sys.executable, "-c", WRITER, str(repo_path), str(settings.data), HAIKU],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as writer:
        assert writer.stdin is not None
        assert writer.stdout is not None
        for _ in range(COMMITS // BATCH):
            writer.stdin.write(f"{BATCH}\n")
            writer.stdin.flush()
            revision = writer.stdout.readline().strip()
            current = reader.current(HAIKU)
            assert current is not None
            assert current.revision == revision
            # The last revision is in a pack made after the last repack: reading it read the
            # pack folder again, and let go of every pack deleted until then.
            assert deleted_mappings(repo_path) == 0
        writer.stdin.close()
        assert writer.wait(timeout=60) == 0
    # Live packs may stay open, two files each: at most the packs a repository keeps.
    assert open_descriptors() <= descriptors + 2 * (PACK_LIMIT + 5), descriptor_targets()
    assert resident_bytes() - resident_before < 64 * 1024 * 1024
    fsck(repo_path)


def test_a_pack_deleted_while_the_folder_is_read_is_looked_for_again(
        settings: Settings, repo_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reader = open_write_side(settings).documents
    writer = open_write_side(settings)
    published = writer.documents.published(HAIKU)
    assert published is not None
    draft = writer.editor.save(HAIKU, published.comparison, EDITOR, published.revision)
    original = CompletePacks.update_cache
    raised: list[bool] = []

    def vanishing(self: CompletePacks, force: bool = False) -> bool:
        if len(raised) < 2:
            raised.append(True)  # as gitdb does when a repack deletes a pack it just listed
            raise FileNotFoundError("pack-0000.pack")
        return original(self, force)

    monkeypatch.setattr(CompletePacks, "update_cache", vanishing)
    current = reader.current(HAIKU)
    assert raised == [True, True]
    assert current is not None
    assert current.revision == draft.revision


def test_caches_are_bounded_by_bytes_not_entries(
        settings: Settings, repo_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hundreds of saves of the largest bodies allowed, each read back and rendered as a reader
    would, keep only what the caches' byte budgets allow (here made small, so the run is short)."""
    import gc
    import tracemalloc

    import msgspec

    from cms.content import render
    from cms.lru import WeighedCache
    from cms.store import documents, repository

    budget = 2 * 1024 * 1024
    for module, name in ((documents, "_DECODED_BYTES"), (repository, "_TREE_BYTES"),
                         (repository, "_COMMIT_BYTES"), (repository, "_RECENT_BYTES")):
        monkeypatch.setattr(module, name, budget)
    monkeypatch.setattr(render, "_rendered", WeighedCache(budget, render._rendered._weigh))
    side = open_write_side(settings)
    current = side.documents.current(HAIKU)
    assert current is not None
    saves = 120
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for number in range(saves):
            body = f"Edit {number}: " + ("plain words of a long page " * 700 + "\n\n") * 10
            assert len(body) > 150_000
            edited = msgspec.structs.replace(current.comparison, body=body)
            current = side.editor.save(HAIKU, edited, EDITOR, current.revision)
            read = side.documents.current(HAIKU)
            assert read is not None
            assert read.comparison.body == body
            assert render.render_cached(read.revision, body).startswith("<p>Edit")
        del read, edited, body
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # 120 bodies of 180 kB are 22 MB of text, several times that once decoded and rendered;
    # five caches of 2 MB, and the last revision held here, are what may stay.
    assert kept < 16 * 1024 * 1024, kept


@pytest.mark.parametrize("repacker", ["another process", "this one's maintenance"])
def test_a_process_that_only_writes_lets_go_of_deleted_packs(
        settings: Settings, repo_path: Path, repacker: str) -> None:
    """A writer reads back only what it wrote itself, so no lookup of its ever misses and
    re-reads the pack folder: the packs a repack deleted are let go of all the same."""
    import msgspec

    from cms.store.maintenance import Maintenance
    from cms.store.recovery import PeriodicRecovery

    from ..conftest import git

    side = open_write_side(settings)
    current = side.documents.current(HAIKU)  # reads the seed's pack: mapped from now on
    assert current is not None
    for number in range(3):
        edited = msgspec.structs.replace(current.comparison, summary=f"Edit {number}.")
        current = side.editor.save(HAIKU, edited, EDITOR, current.revision)
    if repacker == "another process":
        git(repo_path, "repack", "-a", "-d", "-q")
        assert deleted_mappings(repo_path) > 0
        PeriodicRecovery(side.documents).run_once()  # a round of the server's periodic pass
    else:
        assert Maintenance(side.repo).run(force=True)
    assert deleted_mappings(repo_path) == 0
    for number in range(3):  # and writing goes on
        edited = msgspec.structs.replace(current.comparison, summary=f"After {number}.")
        current = side.editor.save(HAIKU, edited, EDITOR, current.revision)
    fsck(repo_path)
