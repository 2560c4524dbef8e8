"""Published reads over HTTP from a live server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import shutil
import socket
import statistics
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from cms.config import Settings

from .common import cms_server, summary, timed, until_ready
from .startup import peak_rss_mb


def bench_reads(settings: Settings, requests: int, read_all: int) -> dict[str, object]:
    """A sequential keep-alive client: one comparison and one list page, ``requests`` times
    each; then every comparison (up to ``read_all``) once, and the server's peak memory after
    that, when its caches are as full as they get."""
    # The first list page waits until the index has decoded every comparison.
    with cms_server(settings) as (server, url), \
            httpx.Client(base_url=url, timeout=300) as http:
        until_ready(http.get)
        slugs = [i["slug"] for i in http.get("/api/comparisons?limit=100").json()["items"]]
        one, listing = [], []
        for number in range(requests):
            slug = slugs[number % len(slugs)]
            one.append(timed(lambda s=slug: http.get(f"/api/comparisons/{s}")))
            listing.append(timed(lambda: http.get(
                "/api/comparisons?category=developer%20tools&sort=title&limit=20")))
        every = _all_slugs(http, read_all)
        _read_each(url, every)
        return {"read_one": summary(one), "read_list": summary(listing),
                "read_every_comparison": {"comparisons": len(every),
                                          "server_peak_rss_mb": peak_rss_mb(server.pid)}}


def _read_each(url: str, slugs: list[str]) -> None:
    """Every comparison once, from four clients at a time (the server has two cores)."""
    def read(share: list[str]) -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            for slug in share:
                assert http.get(f"/api/comparisons/{slug}").status_code == 200

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(read, [slugs[start::4] for start in range(4)]))


def _all_slugs(http: httpx.Client, limit: int) -> list[str]:
    """The first ``limit`` slugs in the list's order; every one for 0."""
    slugs: list[str] = []
    params: dict[str, object] = {"limit": 100}
    while not limit or len(slugs) < limit:
        page = http.get("/api/comparisons", params=params).json()
        slugs += [item["slug"] for item in page["items"]]
        if not page["next_cursor"]:
            break
        params = {"limit": 100, "cursor": page["next_cursor"]}
    return slugs[:limit] if limit else slugs


RAW_APP = """
BODY = open({path!r}, "rb").read()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(BODY)).encode())]}})
    await send({{"type": "http.response.body", "body": BODY}})
"""


def wrk_figures(url: str, seconds: int, script: Path | None = None,
                arguments: list[str] | None = None) -> dict[str, float]:
    """32 connections on two threads for ``seconds``: requests/s, p50 and p99 in ms, and how
    many answers were not 2xx or 3xx (wrk counts them; a load that fails is no measure).
    ``arguments`` go to the script."""
    output = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency",
         *(["-s", str(script)] if script is not None else []), url,
         *(["--", *arguments] if arguments else [])],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout
    found: dict[str, float] = {"failed": 0}
    for line in output.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            found["requests_per_s"] = round(float(parts[1]))
        elif parts[:1] == ["99%"]:
            found["p99_ms"] = _milliseconds(parts[1])
        elif parts[:1] == ["50%"]:
            found["p50_ms"] = _milliseconds(parts[1])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            found["failed"] = int(parts[-1])
    return found


def _milliseconds(text: str) -> float:
    for suffix, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(suffix):
            return round(float(text[: -len(suffix)]) * factor, 3)
    return float(text)


_RAW_SERVER = """import uvicorn
from cms.one_write import OneWriteProtocol
uvicorn.run("raw_app:app", fd={fd}, log_level="warning", access_log=False, http=OneWriteProtocol)
"""


def bench_wrk(settings: Settings, workdir: Path, seconds: int) -> dict[str, object]:
    """32 connections for ``seconds`` against the CMS and against a raw ASGI app returning the
    same bytes on the same server, both running, in turns (``_ROUNDS`` of each, since a
    machine's speed drifts over a minute): each figure's median over the rounds, and the
    ratio of the medians; then the list page."""
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    report: dict[str, object] = {}
    with cms_server(settings) as (server, url):
        until_ready(lambda path: httpx.get(f"{url}{path}", timeout=60))
        slug = httpx.get(f"{url}/api/comparisons?limit=1", timeout=300).json()["items"][0]["slug"]
        read = f"{url}/api/comparisons/{slug}"
        body = httpx.get(read).content
        with _raw_server(workdir, body) as raw:
            rounds = [{"read_one": wrk_figures(read, seconds),
                       "raw_asgi_same_bytes": wrk_figures(raw, seconds)}
                      for _ in range(_ROUNDS)]
        page = f"{url}/api/comparisons?category=developer%20tools&sort=title&limit=20"
        httpx.get(page)  # warm, as for the read: a page's first request filters and sorts
        report["read_list"] = wrk_figures(page, seconds)
        report["server_peak_rss_mb"] = peak_rss_mb(server.pid)
    for name in ("read_one", "raw_asgi_same_bytes"):
        report[name] = median_round([found[name] for found in rounds])
    report["rounds"] = rounds
    report["ratio_requests"] = throughput_ratio(report, "read_one", "raw_asgi_same_bytes")
    return report


_ROUNDS = 3


@contextlib.contextmanager
def _raw_server(workdir: Path, body: bytes) -> Iterator[str]:
    """The raw ASGI app serving ``body``, as `cms serve` serves (the same HTTP protocol,
    ``cms.one_write``); its URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "body.json").write_bytes(body)
    (workdir / "raw_app.py").write_text(RAW_APP.format(path=str(workdir / "body.json")))
    # Bind first and hand the socket to uvicorn, so requests wait in the backlog until it is up.
    listener = socket.create_server(("127.0.0.1", 0))
    listener.set_inheritable(True)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as `cms serve` does
    port = listener.getsockname()[1]
    with listener, subprocess.Popen(
        [sys.executable, "-c", _RAW_SERVER.format(fd=listener.fileno())],
        cwd=workdir, pass_fds=[listener.fileno()],
    ) as raw:
        try:
            assert httpx.get(f"http://127.0.0.1:{port}/", timeout=60).content == body  # up
            yield f"http://127.0.0.1:{port}/"
        finally:
            raw.terminate()
            raw.wait(timeout=30)


def median_round(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the rounds (failures summed: any is a failed load)."""
    return {name: (sum(found[name] for found in rounds) if name == "failed" else
                   statistics.median(found[name] for found in rounds))
            for name in rounds[0]}


def throughput_ratio(report: dict[str, object], ours: str, baseline: str) -> float:
    """Requests per second of one wrk run of a report over another's."""
    measured, base = report[ours], report[baseline]
    assert isinstance(measured, dict)
    assert isinstance(base, dict)
    return round(measured["requests_per_s"] / base["requests_per_s"], 2)
