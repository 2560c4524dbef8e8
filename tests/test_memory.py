"""The allocator's arenas: one, unless the operator said how many."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from cms.memory import one_malloc_arena


def test_the_operators_count_of_arenas_is_left_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert one_malloc_arena() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="arenas are glibc's")
def test_threads_share_one_arena_once_set() -> None:
    """In a process of its own: threads that allocate at once, after the call, add no arena
    (glibc lists each arena in malloc_info)."""
    program = """
import ctypes, os, sys, tempfile, threading
from cms.memory import one_malloc_arena
if sys.argv[1] == "one":
    assert one_malloc_arena()
barrier = threading.Barrier(8)
def allocate():
    barrier.wait()
    kept = [bytearray(1000) for _ in range(20000)]
    barrier.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads: thread.start()
for thread in threads: thread.join()
libc = ctypes.CDLL(None)
libc.fdopen.restype = ctypes.c_void_p
with tempfile.TemporaryFile("w+") as out:
    stream = libc.fdopen(os.dup(out.fileno()), b"w")
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    out.seek(0)
    print(out.read().count("<heap nr="))
"""
    counts: dict[str, int] = {}
    for mode in ("one", "default"):
        run = subprocess.run([sys.executable, "-c", program, mode], capture_output=True,
                             text=True, check=True, env={"PATH": "/usr/bin:/bin"},
                             cwd=Path(__file__).resolve().parents[1])
        counts[mode] = int(run.stdout.strip())
    assert counts["one"] == 1
    assert counts["default"] > 1
