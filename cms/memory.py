"""The server's memory as the C library's allocator keeps it.

glibc gives each thread that allocates while another holds the lock an arena of its own, up to
eight per core, and memory freed in one arena serves only the threads that use it. The server's
threads (request workers, the catalogue's filler, the search bitmaps' build) each leave freed
memory behind in theirs, which the caches then allocate anew elsewhere: at 100,000 comparisons
that was 45 to 60 MB of the peak, for nothing. Python threads allocate under the GIL, so one
arena costs them no waiting; the C code that runs without it (SQLite, zlib) allocates little.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_ARENA_MAX = -8  # mallopt's parameter, as glibc's malloc.h numbers it


def one_malloc_arena() -> bool:
    """Have every thread allocate from one arena, unless the environment says how many
    (``MALLOC_ARENA_MAX``, which glibc reads itself); whether it was set here. Called before
    the server starts its threads. Elsewhere than glibc (musl keeps no arenas) nothing
    changes."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, 1))
