"""Start-up, cold (no index snapshot) and warm: to the first served read of a comparison, and
to the first list page (which waits until every comparison is decoded); peak memory."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from cms.config import Settings

from .common import cms_server

_DEADLINE = 300.0


def _serve_once(settings: Settings, slug: str) -> dict[str, float]:
    started = time.perf_counter()
    with cms_server(settings) as (server, url), httpx.Client(base_url=url, timeout=_DEADLINE) as http:
        # The socket is bound before the app starts, so this request waits in the backlog
        # until start-up is done: no polling needed.
        assert http.get(f"/api/comparisons/{slug}").status_code == 200
        first = time.perf_counter() - started
        assert http.get("/api/comparisons?sort=title&limit=20").status_code == 200
        ready = time.perf_counter() - started
        return {"first_read_s": round(first, 2), "index_ready_s": round(ready, 2),
                "peak_rss_mb": peak_rss_mb(server.pid)}


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def bench_startup(settings: Settings, slug: str) -> dict[str, dict[str, float]]:
    (settings.data / "index.snapshot").unlink(missing_ok=True)
    cold = _serve_once(settings, slug)
    warm = _serve_once(settings, slug)
    return {"cold": cold, "warm": warm}
