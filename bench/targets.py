"""The performance targets, checked against a report: what each asks, what was measured."""

from __future__ import annotations

from typing import Any

TARGET_SIZE = 10_000
BASE_SIZE = 1_000
LARGE_SIZE = 100_000
STEPS = ("save", "submit", "approve", "publish")


def check_targets(report: dict[str, Any]) -> list[dict[str, object]]:
    """One row per target that the report has the figures for."""
    return _targets(report) + _large_targets(report)


def _large_targets(report: dict[str, Any]) -> list[dict[str, object]]:
    """What a small machine must reach at 100,000 comparisons (`--sizes 100000`)."""
    at = report.get(f"size_{LARGE_SIZE}")
    if at is None:
        return []
    name = f"at {LARGE_SIZE:,}:"
    startup, wrk, search = at["startup"], at["reads_wrk"], at["search_wrk"]
    peak = max(startup["first"]["peak_rss_mb"], startup["cold"]["peak_rss_mb"],
               startup["warm"]["peak_rss_mb"], wrk.get("server_peak_rss_mb", 0.0),
               at["reads_sequential"]["read_every_comparison"]["server_peak_rss_mb"])
    rows = [
        _row(f"{name} peak RSS, MB", peak, "<=", 400.0),
        _row(f"{name} warm start to first read, s", startup["warm"]["first_read_s"], "<=", 0.5),
        _row(f"{name} cold start to first read, s", startup["cold"]["first_read_s"], "<=", 0.5),
        _row(f"{name} warm start, all indexed, s", startup["warm"]["index_ready_s"], "<=", 1.5),
        _row(f"{name} cold start, all indexed, s", startup["cold"]["index_ready_s"], "<=", 10.0),
        # After a change, not repeated reads of an unchanged history (those are kept in memory).
        _row(f"{name} history of one, 1,000 revisions, after a change, ms",
             at["history"]["after_a_change"]["median_ms"], "<=", 20.0),
    ]
    if "skipped" not in wrk:
        rows.append(_row(f"{name} wrk read_one req/s / raw ASGI", wrk["ratio_requests"], ">=", 0.8))
        rows.append(_row(f"{name} wrk read_one p99, ms", wrk["read_one"]["p99_ms"], "<=", 3.0))
    if "skipped" not in search:
        rows.append(_row(f"{name} search, a new query each, p99 ms",
                         search["distinct_queries"]["p99_ms"], "<=", 10.0))
        rows.append(_row(f"{name} search req/s / list page's", search["ratio_to_list_page"],
                         ">=", 0.5))
    return rows


def _targets(report: dict[str, Any]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    at = report.get(f"size_{TARGET_SIZE}")
    if at is None:
        return rows
    git = at["git_cli_add_commit"]["median_ms"]
    worst = max(at["store_durable"][step]["median_ms"] for step in STEPS)
    rows.append(_row("durable commit / git add + commit, worst step", worst / git, "<=", 0.15))
    base = report.get(f"size_{BASE_SIZE}")
    if base is not None:
        growth = max(at["store_durable"][step]["median_ms"]
                     / base["store_durable"][step]["median_ms"] for step in STEPS)
        rows.append(_row(f"commit at {TARGET_SIZE:,} / at {BASE_SIZE:,}, worst step", growth,
                         "<=", 2.0))
    wrk = at["reads_wrk"]
    if "skipped" not in wrk:
        raw = wrk["raw_asgi_same_bytes"]["requests_per_s"]
        for name in ("read_one", "read_list"):
            rows.append(_row(f"wrk {name} req/s / raw ASGI", wrk[name]["requests_per_s"] / raw,
                             ">=", 0.5))
            rows.append(_row(f"wrk {name} p99, ms", wrk[name]["p99_ms"], "<", 5.0))
    startup = at["startup"]
    rows.append(_row("warm start to first read, s", startup["warm"]["first_read_s"], "<=", 0.5))
    rows.append(_row("cold start to first read, s", startup["cold"]["first_read_s"], "<=", 2.0))
    peak = max(startup["cold"]["peak_rss_mb"], startup["warm"]["peak_rss_mb"],
               wrk.get("server_peak_rss_mb", 0.0),
               at["reads_sequential"]["read_every_comparison"]["server_peak_rss_mb"])
    rows.append(_row("peak RSS, MB", peak, "<=", 300.0))
    cluster = report.get("cluster")
    if cluster is not None and cluster["comparisons"] >= TARGET_SIZE:
        rows.append(_row("the push adds to a write, median ms", cluster["push_adds_ms"]["median"],
                         "<=", 15.0))
        seen = cluster["visibility"]
        rows.append(_row("visible on another instance, polling, p95 ms",
                         seen["polling"]["p95_ms"], "<=", 1000.0))
        rows.append(_row("visible on another instance, push hook, p95 ms",
                         seen["push_hook"]["p95_ms"], "<=", 100.0))
    return rows


def _row(name: str, value: float, relation: str, limit: float) -> dict[str, object]:
    met = {"<=": value <= limit, ">=": value >= limit, "<": value < limit}[relation]
    return {"target": f"{name} {relation} {limit:g}", "measured": round(value, 3), "met": met}
