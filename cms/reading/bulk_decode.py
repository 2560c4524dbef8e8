"""Decoding many comparisons at once, in worker processes.

Parsing YAML is nearly all of the work of a start-up without a catalogue (about half a
millisecond a file), and one interpreter runs it on one core while also serving requests.
Workers read the blobs from the repository themselves and send back each comparison as msgpack,
which the server turns into a struct in a twentieth of the time. Whatever a worker cannot
decode comes back as None, for the caller to decode itself and report in its own terms.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import multiprocessing
import os
import signal
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

import msgspec

from ..content import codec
from ..content.model import Comparison
from ..store.repository import Repository

log = logging.getLogger("cms")

CHUNK = 250
_PR_SET_PDEATHSIG = 1
_repositories: dict[str, Repository] = {}


def worker_count() -> int:
    return min(os.cpu_count() or 1, 8)


def decode_many(repo: Path, blobs: list[str], workers: int) -> Iterator[tuple[str, Comparison | None]]:
    """Each blob with its comparison, in no particular order; None where a worker failed."""
    chunks = [blobs[start : start + CHUNK] for start in range(0, len(blobs), CHUNK)]
    # Spawned, not forked: the server has threads, and a fork copies their locks mid-use.
    context = multiprocessing.get_context("spawn")
    done: set[str] = set()
    waiting = iter(chunks)
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                 initializer=_die_with, initargs=(os.getpid(),)) as pool:
            running: set[Future[list[tuple[str, bytes | None]]]] = set()
            while True:
                # Two chunks per worker keep them busy; more would pile up results in memory.
                for chunk in itertools.islice(waiting, 2 * workers - len(running)):
                    running.add(pool.submit(_decode_chunk, str(repo), chunk))
                if not running:
                    break
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    for blob, data in future.result():
                        done.add(blob)
                        yield blob, None if data is None else _from_msgpack(data)
    except Exception as exc:  # a pool that cannot start or broke: the caller decodes the rest
        log.warning("decoding in worker processes failed (%s); decoding in process", exc)
    for blob in blobs:
        if blob not in done:
            yield blob, None


def _die_with(parent: int) -> None:
    """Have the kernel end this worker when the server goes (Linux): a worker whose server was
    killed would otherwise wait for ever to hand back a result nobody reads."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the pool's own shutdown is all there is
        return
    if os.getppid() != parent:  # the server went before the request was made
        os._exit(1)


def _from_msgpack(data: bytes) -> Comparison | None:
    try:
        return msgspec.msgpack.decode(data, type=Comparison)
    except (ValueError, msgspec.ValidationError):
        return None


def _decode_chunk(repo: str, blobs: list[str]) -> list[tuple[str, bytes | None]]:
    repository = _repositories.get(repo)
    if repository is None:
        repository = _repositories[repo] = Repository(Path(repo), durable=False)
    out: list[tuple[str, bytes | None]] = []
    for blob in blobs:
        try:
            comparison = codec.decode(repository.read_blob(blob).decode("utf-8"))
        except Exception:  # the caller decodes it again and reports the error properly
            out.append((blob, None))
            continue
        out.append((blob, msgspec.msgpack.encode(comparison)))
    return out
