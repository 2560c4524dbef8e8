"""Start-up, cold (no catalogue) and warm: to the first served read of a comparison, and to the
first list page (which waits until the catalogue holds every comparison); peak memory. The
baseline is git itself reading every comparison's file once, in one `git cat-file --batch`."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from cms.config import Settings

from .common import cms_server, until_ready

_DEADLINE = 600.0


def _serve_once(settings: Settings, slug: str) -> dict[str, float]:
    started = time.perf_counter()
    with cms_server(settings) as (server, url), httpx.Client(base_url=url, timeout=_DEADLINE) as http:
        # The socket is bound before the app starts, so this request waits in the backlog
        # until start-up is done: no polling needed.
        assert http.get(f"/api/comparisons/{slug}").status_code == 200
        first = time.perf_counter() - started
        until_ready(http.get)
        assert http.get("/api/comparisons?sort=title&limit=20").status_code == 200
        ready = time.perf_counter() - started
        return {"first_read_s": round(first, 2), "index_ready_s": round(ready, 2),
                "peak_rss_mb": peak_rss_mb(server.pid)}


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


def bench_startup(settings: Settings, slug: str) -> dict[str, object]:
    forget_catalogue(settings)
    cold = _serve_once(settings, slug)
    warm = _serve_once(settings, slug)
    baseline = git_reads_every_file_s(settings)
    return {"cold": cold, "warm": warm, "git_reads_every_file_s": baseline,
            "cold_ratio_to_git": round(cold["index_ready_s"] / baseline, 1),
            "warm_ratio_to_git": round(warm["index_ready_s"] / baseline, 2)}
