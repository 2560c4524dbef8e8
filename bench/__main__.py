"""The benchmark: commits, reads, start-up and memory at several sizes, each against a baseline.

Run with ``make bench``. For each size it builds a content repository of generated comparisons
in a temporary folder and measures:

- state-change commits through the store (durable and not) against ``git add`` + ``git commit``
  of the same kind of change with the git CLI on a clone of the same repository;
- start-up to the first served request: first (nothing to start from), cold (a new replica,
  starting from the catalogue the first start shipped with the content) and warm, and peak
  memory;
- published reads over HTTP: a sequential client, and (with ``wrk`` installed) 32 connections
  against the CMS and against a raw ASGI app returning the same bytes on the same server.

Then webhooks, audit, frontend features, schedules and releases once at the largest default
size (at most 10,000). Every loop is
bounded in count. Writes ``bench/results/latest.json`` and prints a table with the ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from cms.config import load_settings

from .cluster import bench_cluster
from .commits import bench_git_cli, bench_store
from .common import RESULTS, seed_repository, some_slug
from .features import bench_audit, bench_frontends, bench_history, bench_webhooks
from .reads import bench_reads, bench_wrk
from .review import bench_review
from .search import bench_search
from .site import bench_site
from .startup import bench_startup
from .targets import TARGET_SIZE, check_targets


def bench_size(workdir: Path, size: int, args: argparse.Namespace) -> dict[str, object]:
    settings = load_settings({}, repo=workdir / f"content-{size}.git", data=workdir / f"data-{size}")
    progress(f"{size} comparisons: seeding")
    seed_repository(settings, size)
    report: dict[str, object] = {"comparisons": size}
    progress(f"{size} comparisons: git CLI baseline")
    settle()
    report["git_cli_add_commit"] = bench_git_cli(settings, workdir / f"clone-{size}", args.rounds)
    progress(f"{size} comparisons: start-up")
    report["startup"] = bench_startup(settings, some_slug(settings))
    progress(f"{size} comparisons: commits through the store")
    settle()
    report["store_durable"] = bench_store(settings, args.rounds, offset=0)
    fast = load_settings({}, repo=settings.repo, data=settings.data, durable=False)
    report["store_not_durable"] = bench_store(fast, args.rounds, offset=args.rounds)
    progress(f"{size} comparisons: reads")
    report["reads_sequential"] = bench_reads(settings, args.requests, args.read_all)
    report["reads_wrk"] = bench_wrk(settings, workdir / f"wrk-{size}", args.wrk_seconds)
    progress(f"{size} comparisons: search, a different query on every request")
    report["search_wrk"] = bench_search(settings, workdir / f"search-{size}", args.wrk_seconds)
    progress(f"{size} comparisons: one comparison's history after {args.audit_revisions} "
             "revisions")
    report["history"] = bench_history(settings, args.audit_revisions)
    return report


def settle() -> None:
    """Write back what earlier steps left dirty (clones, snapshots of hundreds of megabytes), so
    that the kernel flushing it does not land in the middle of the next measurement."""
    os.sync()


def progress(step: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {step}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,50000",
                        help="comma-separated numbers of comparisons (e.g. 1000,10000,50000)")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--publishes", type=int, default=20)
    parser.add_argument("--audit-revisions", type=int, default=1000)
    parser.add_argument("--votes", type=int, default=1000)
    parser.add_argument("--review-rounds", type=int, default=10,
                        help="releases and scheduled publications measured")
    parser.add_argument("--cluster-rounds", type=int, default=50,
                        help="writes measured per figure with instances over one upstream")
    parser.add_argument("--site-rounds", type=int, default=10,
                        help="rebuilds of the reference site measured")
    parser.add_argument("--read-all", type=int, default=0,
                        help="comparisons read once each before measuring peak memory "
                             "(0: every one)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the report")
    args = parser.parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as temp:
        workdir = Path(temp)
        for size in sizes:
            report[f"size_{size}"] = bench_size(workdir, size, args)
        features = max(size for size in sizes if size <= 10_000) if any(
            size <= 10_000 for size in sizes) else min(sizes)
        progress("webhooks")
        report["webhooks"] = bench_webhooks(workdir, args.publishes)
        progress(f"audit at {features} comparisons")
        report["audit"] = bench_audit(workdir, features, args.audit_revisions)
        progress(f"frontends at {features} comparisons")
        report["frontends"] = bench_frontends(workdir, features, args.votes)
        progress(f"schedules and releases at {features} comparisons")
        report["review"] = bench_review(workdir, features, args.review_rounds)
        progress(f"three instances over one upstream at {features} comparisons")
        report["cluster"] = bench_cluster(workdir, features, args.cluster_rounds)
        progress(f"the reference site at {features} comparisons")
        report["site"] = bench_site(workdir, features, args.site_rounds)
    report["targets"] = check_targets(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report, sizes)
    print(f"written to {args.out}")
    return 0


def print_table(report: dict[str, object], sizes: list[int]) -> None:
    print(f"{'measure':46} {'median':>10} {'p95':>10} {'ratio':>8}")
    for size in sizes:
        section = report[f"size_{size}"]
        assert isinstance(section, dict)
        git = section["git_cli_add_commit"]
        print(f"-- {size} comparisons")
        print(f"{'  git add + git commit (baseline), ms':46} {git['median_ms']:>10} "
              f"{git['p95_ms']:>10}")
        for kind in ("store_durable", "store_not_durable"):
            for step, row in section[kind].items():
                ratio = round(row["median_ms"] / git["median_ms"], 2)
                print(f"{'  ' + kind + ' ' + step + ', ms':46} {row['median_ms']:>10} "
                      f"{row['p95_ms']:>10} {ratio:>8}")
        for name in ("read_one", "read_list"):
            row = section["reads_sequential"][name]
            print(f"{'  http sequential ' + name + ', ms':46} {row['median_ms']:>10} "
                  f"{row['p95_ms']:>10}")
        wrk = section["reads_wrk"]
        if "skipped" in wrk:
            print(f"  wrk: {wrk['skipped']}")
        else:
            raw = wrk["raw_asgi_same_bytes"]
            for name in ("read_one", "read_list"):
                row = wrk[name]
                ratio = round(row["requests_per_s"] / raw["requests_per_s"], 2)
                print(f"{'  wrk ' + name + ', req/s (p50 / p99 ms)':46} "
                      f"{row['requests_per_s']:>10} {row['p50_ms']:>5}/{row['p99_ms']:<5} "
                      f"{ratio:>7}")
            print(f"{'  wrk raw ASGI same bytes, req/s (baseline)':46} "
                  f"{raw['requests_per_s']:>10} {raw['p50_ms']:>5}/{raw['p99_ms']:<5}")
        startup = section["startup"]
        for kind in ("first", "cold", "warm"):
            row = startup[kind]
            print(f"{'  start-up ' + kind + ': first read / all indexed, s':46} "
                  f"{row['first_read_s']:>10} {row['index_ready_s']:>10} "
                  f"{startup[kind + '_ratio_to_git']:>8}")
        print(f"{'  git reads every file once (baseline), s':46} "
              f"{startup['git_reads_every_file_s']:>10}")
        print(f"{'  catalogue shipped after the first start, s':46} "
              f"{startup['first']['shipped_after_s']:>10}")
        print(f"{'  shipped copy / repository grew, MB':46} "
              f"{startup['shipped']['copy_mb']:>10} {startup['shipped']['repository_grew_mb']:>10}")
        print(f"{'  a new replica fetches: main / the copy, s':46} "
              f"{startup['shipped']['clone_main_s']:>10} {startup['shipped']['fetch_copy_s']:>10}")
        history = section["history"]
        print(f"{'  history of one, ' + str(history['entries']) + ' entries, ms':46} "
              f"{history['history']['median_ms']:>10} {history['history']['p95_ms']:>10} "
              f"{history['ratio_to_git_log']:>8}")
        print(f"{'  the same, after one more draft each time, ms':46} "
              f"{history['after_a_change']['median_ms']:>10} "
              f"{history['after_a_change']['p95_ms']:>10} "
              f"{round(history['after_a_change']['median_ms'] / history['git_log']['median_ms'], 1):>8}")
        print(f"{'  git log of its file (baseline), ms':46} "
              f"{history['git_log']['median_ms']:>10} {history['git_log']['p95_ms']:>10}")
        search = section["search_wrk"]
        if "skipped" not in search:
            row = search["distinct_queries"]
            print(f"{'  wrk search, a new query each, req/s (p50/p99)':46} "
                  f"{row['requests_per_s']:>10} {row['p50_ms']:>5}/{row['p99_ms']:<5} "
                  f"{search['ratio_to_list_page']:>7}")
            row = search["list_page"]
            print(f"{'  wrk list page (baseline), req/s (p50/p99)':46} "
                  f"{row['requests_per_s']:>10} {row['p50_ms']:>5}/{row['p99_ms']:<5}")
            print(f"{'  search bitmaps ready after start, s':46} {search['search_ready_s']:>10}")
        every = section["reads_sequential"]["read_every_comparison"]
        print(f"{'  peak RSS cold start / after wrk, MB':46} "
              f"{section['startup']['cold']['peak_rss_mb']:>10} "
              f"{wrk.get('server_peak_rss_mb', '-'):>10}")
        print(f"{'  peak RSS after reading ' + str(every['comparisons']) + ' comparisons, MB':46} "
              f"{every['server_peak_rss_mb']:>10}")
    targets = report.get("targets")
    if targets:
        print(f"-- targets (at {TARGET_SIZE:,} comparisons unless said)")
        for row in targets:
            assert isinstance(row, dict)
            verdict = "met" if row["met"] else "MISSED"
            print(f"  {row['target']:66} {row['measured']:>8} {verdict:>7}")
    for group in ("webhooks", "audit", "frontends", "review"):
        rows = report[group]
        assert isinstance(rows, dict)
        print(f"-- {group}")
        for name, row in rows.items():
            if isinstance(row, dict):
                print(f"{'  ' + name + ', ms':46} {row['median_ms']:>10} {row['p95_ms']:>10}")
            else:
                print(f"{'  ' + name:46} {row!s:>10}")
    cluster = report["cluster"]
    assert isinstance(cluster, dict)
    print(f"-- three instances over one upstream (git daemon), {cluster['comparisons']} "
          "comparisons")
    for name in ("write_without_upstream", "write_with_push"):
        row = cluster[name]
        print(f"{'  ' + name + ', ms':46} {row['median_ms']:>10} {row['p95_ms']:>10}")
    added = cluster["push_adds_ms"]
    print(f"{'  the push adds, ms':46} {added['median']:>10} {added['p95']:>10}")
    git = cluster["git_push"]
    print(f"{'  baseline: git push of one commit, ms':46} {git['median_ms']:>10} "
          f"{git['p95_ms']:>10} {cluster['push_adds_ratio_to_git_push']:>8}")
    server = cluster["upstream_receive_pack"]["receive_pack"]
    print(f"{'  of which the upstream receive-pack (trace), ms':46} {server['median_ms']:>10} "
          f"{server['p95_ms']:>10}")
    rates = cluster["writes_per_second"]
    print(f"{'  writes/s: one instance, three':46} {rates['one_instance']:>10} "
          f"{rates['three_instances']:>10} {rates['ratio']:>8}")
    seen = cluster["visibility"]
    for name in ("polling", "push_hook"):
        row = seen[name]
        print(f"{'  visible on another, ' + name + ', ms':46} {row['median_ms']:>10} "
              f"{row['p95_ms']:>10}")
    site = report["site"]
    assert isinstance(site, dict)
    print(f"-- the reference site, {site['comparisons']} comparisons "
          f"(full build {site['full_build_s']} s, {site['files']} files)")
    for name in ("rebuild_nothing_new", "rebuild_one_changed"):
        row = site[name]
        print(f"{'  ' + name + ', ms':46} {row['median_ms']:>10} {row['p95_ms']:>10}")
    print(f"{'  ratio, one changed / nothing new':46} {site['ratio']:>10}")


if __name__ == "__main__":
    raise SystemExit(main())
