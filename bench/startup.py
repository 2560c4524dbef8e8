"""Start-up to the first served request, cold (no index snapshot) and warm, and peak memory."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from cms.config import Settings

from .common import cms_server

_DEADLINE = 300.0


def _serve_once(settings: Settings) -> tuple[float, float]:
    """Seconds from starting ``cms serve`` to its first 200, and its peak RSS in MB."""
    started = time.perf_counter()
    with cms_server(settings) as (server, url):
        with httpx.Client(base_url=url, timeout=_DEADLINE) as http:
            # The socket is bound before the app starts, so this request waits in the
            # backlog until start-up is done: no polling needed.
            assert http.get("/health").status_code == 200
        elapsed = time.perf_counter() - started
        peak = _peak_rss_mb(server.pid)
    return elapsed, peak


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def bench_startup(settings: Settings) -> dict[str, float]:
    (settings.data / "index.snapshot").unlink(missing_ok=True)
    cold, cold_rss = _serve_once(settings)
    warm, warm_rss = _serve_once(settings)
    return {"cold_s": round(cold, 2), "warm_s": round(warm, 2),
            "peak_rss_mb": max(cold_rss, warm_rss)}
