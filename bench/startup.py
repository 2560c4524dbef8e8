"""Start-up to the first served read of a comparison, and to the first list page (which waits
until the catalogue holds every comparison); peak memory. Three starts:

- first: nothing to start from (no catalogue here, none shipped with the content): every file is
  decoded. The server then ships a copy of its catalogue with the content, and the time that
  took and the copy's size are reported;
- cold: a new replica, with no catalogue of its own, which starts from the shipped copy;
- warm: a restart, with the catalogue the last run left.

Cold and warm starts are each made three times, and each figure is their median (every start's
figures are kept under "starts"): one start on a shared machine can be a tenth of a second off.

The baseline is git itself reading every comparison's file once, in one `git cat-file --batch`."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from pathlib import Path

import httpx

from cms.config import Settings
from cms.reading.shipped import FILE_NAME
from cms.store.layout import CATALOGUE_PREFIX

from .common import cms_server, until_ready

_DEADLINE = 600.0
_STARTS = 3


def _serve_once(settings: Settings, slug: str, *, ship: bool = False) -> dict[str, float]:
    started = time.perf_counter()
    # The first start ships its catalogue whatever the size; later ones add too little to.
    environment = {"CMS_CATALOGUE_SHIP_FROM": "1" if ship else "0"}
    with cms_server(settings, **environment) as (server, url), \
            httpx.Client(base_url=url, timeout=_DEADLINE) as http:
        # The socket is bound before the server serves, so this request waits in the backlog
        # until it does (a published read, before the app is built): no polling needed.
        assert http.get(f"/api/comparisons/{slug}").status_code == 200
        first = time.perf_counter() - started
        until_ready(http.get)
        assert http.get("/api/comparisons?sort=title&limit=20").status_code == 200
        ready = time.perf_counter() - started
        figures = {"first_read_s": round(first, 2), "index_ready_s": round(ready, 2)}
        if ship:
            until_shipped(settings)
            figures["shipped_after_s"] = round(time.perf_counter() - started - ready, 2)
        figures["peak_rss_mb"] = peak_rss_mb(server.pid)
        return figures


def shipped_copy(settings: Settings) -> str:
    return subprocess.run(
        ["git", f"--git-dir={settings.repo}", "for-each-ref", "--format=%(objectname)",
         CATALOGUE_PREFIX], capture_output=True, text=True, check=True).stdout.strip()


def until_shipped(settings: Settings) -> None:
    """Until the server's copy of its catalogue is in the repository (bounded in time)."""
    deadline = time.monotonic() + _DEADLINE
    while not shipped_copy(settings):
        if time.monotonic() > deadline:
            raise RuntimeError("the catalogue was not shipped in time")
        time.sleep(0.05)


def copy_size_mb(settings: Settings) -> float:
    size = subprocess.run(["git", f"--git-dir={settings.repo}", "cat-file", "-s",
                           f"{shipped_copy(settings)}:{FILE_NAME}"],
                          capture_output=True, text=True, check=True).stdout
    return round(int(size) / 2**20, 1)


def repository_mb(settings: Settings) -> float:
    return round(sum(path.stat().st_size for path in settings.repo.rglob("*") if path.is_file())
                 / 2**20, 1)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def git_reads_every_file_s(settings: Settings) -> float:
    """How long git takes to list main's comparisons and read each file once."""
    started = time.perf_counter()
    listing = subprocess.run(
        ["git", f"--git-dir={settings.repo}", "ls-tree", "-r", "--format=%(objectname)",
         settings.branch, "--", f"{settings.content_dir}/comparisons"],
        capture_output=True, check=True).stdout
    subprocess.run(["git", f"--git-dir={settings.repo}", "cat-file", "--batch"], input=listing,
                   stdout=subprocess.DEVNULL, check=True)
    return round(time.perf_counter() - started, 2)


def forget_catalogue(settings: Settings) -> None:
    for path in settings.data.glob("catalogue-*"):
        path.unlink()


def forget_shipped(settings: Settings) -> None:
    copy = shipped_copy(settings)
    if copy:
        ref = subprocess.run(["git", f"--git-dir={settings.repo}", "for-each-ref",
                              "--format=%(refname)", CATALOGUE_PREFIX],
                             capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run(["git", f"--git-dir={settings.repo}", "update-ref", "-d", ref],
                       check=True)


def fetch_times(settings: Settings, workdir: Path) -> dict[str, float]:
    """What a new replica fetches before it starts, over git's own transport (a local path
    without hard links): the content (main), then the shipped copy, which replicas fetch on
    their own."""
    clone = workdir / "new-replica.git"
    started = time.perf_counter()
    subprocess.run(["git", "clone", "--quiet", "--bare", "--no-local", "--single-branch",
                    "--branch", settings.branch, str(settings.repo), str(clone)], check=True)
    cloned = time.perf_counter()
    ref = subprocess.run(["git", f"--git-dir={settings.repo}", "for-each-ref",
                          "--format=%(refname)", CATALOGUE_PREFIX],
                         capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["git", f"--git-dir={clone}", "fetch", "--quiet", "--no-tags",
                    f"file://{settings.repo}", f"+{ref}:{ref}"], check=True)
    fetched = time.perf_counter()
    shutil.rmtree(clone)
    return {"clone_main_s": round(cloned - started, 2),
            "fetch_copy_s": round(fetched - cloned, 2)}


def bench_startup(settings: Settings, slug: str) -> dict[str, object]:
    forget_catalogue(settings)
    forget_shipped(settings)
    before = repository_mb(settings)
    first = _serve_once(settings, slug, ship=True)
    copy = {"copy_mb": copy_size_mb(settings),
            "repository_grew_mb": round(repository_mb(settings) - before, 1),
            **fetch_times(settings, settings.data.parent)}
    cold_starts = []
    for _ in range(_STARTS):
        forget_catalogue(settings)
        cold_starts.append(_serve_once(settings, slug))
    cold = _median_start(cold_starts)
    warm_starts = [_serve_once(settings, slug) for _ in range(_STARTS)]
    warm = _median_start(warm_starts)
    baseline = git_reads_every_file_s(settings)
    return {"first": first, "cold": {**cold, "starts": cold_starts},
            "warm": {**warm, "starts": warm_starts}, "shipped": copy,
            "git_reads_every_file_s": baseline,
            "first_ratio_to_git": round(first["index_ready_s"] / baseline, 1),
            "cold_ratio_to_git": round(cold["index_ready_s"] / baseline, 1),
            "warm_ratio_to_git": round(warm["index_ready_s"] / baseline, 2)}


def _median_start(starts: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the starts; the highest peak memory of any."""
    return {name: (max if name == "peak_rss_mb" else statistics.median)(
        start[name] for start in starts) for name in starts[0]}
