"""The benchmark runs end to end at a tiny size: `make bench` must not rot between runs.

Only the report's shape is checked here; its figures belong to `make bench`, never to a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench import search


def test_the_benchmark_runs_and_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--sizes", "60", "--rounds", "2", "--requests", "3",
         "--wrk-seconds", "1", "--publishes", "2", "--audit-revisions", "4", "--votes", "20",
         "--review-rounds", "2", "--cluster-rounds", "2", "--site-rounds", "2",
         "--out", str(out)],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    size = report["size_60"]
    assert size["comparisons"] == 60
    assert set(size["store_durable"]) == {"save", "submit", "approve", "publish"}
    assert size["git_cli_add_commit"]["n"] == 2
    startup = size["startup"]
    assert {"first", "cold", "warm", "git_reads_every_file_s"} <= set(startup)
    assert startup["cold"]["first_read_s"] > 0
    # The first start shipped its catalogue, which the cold start (a new replica) began from.
    assert startup["first"]["shipped_after_s"] >= 0
    assert startup["shipped"]["copy_mb"] > 0
    search = size["search_wrk"]
    if "skipped" not in search:
        assert search["distinct_queries"]["requests_per_s"] > 0
        assert search["distinct_queries"]["failed"] == 0  # every query answered 200
    assert "read_one" in size["reads_sequential"]
    assert size["reads_sequential"]["read_every_comparison"]["comparisons"] == 60
    assert report["webhooks"]["requests_received"] == report["webhooks"]["events_expected"]
    assert {"history_1000_ms", "verdict_changes_first_ms", "verify_ms"} <= set(report["audit"])
    assert report["frontends"]["sync_one_change_items"] == 1
    assert report["review"]["scheduled_carried_out"] == "2/2"
    assert report["review"]["release_of_3_one_commit"]["n"] == 2
    cluster = report["cluster"]
    assert cluster["write_with_push"]["n"] == 2
    assert cluster["git_push"]["n"] == 2
    assert cluster["upstream_receive_pack"]["receive_pack"]["n"] == 2
    assert cluster["writes_per_second"]["three_instances"] > 0
    assert cluster["visibility"]["push_hook"]["n"] == 2
    site = report["site"]
    assert site["files"] > 60
    assert site["rebuild_one_changed"]["n"] == 2
    assert 2 <= site["files_written_per_rebuild"] < site["files"]
    assert report["targets"] == []  # they are judged at 10,000 comparisons
    assert "-- 60 comparisons" in result.stdout


def test_the_search_load_never_asks_the_same_query_twice() -> None:
    words = ["app", "apple", "apply", "applet", "banana", "band", "bandana", "zz9"]
    cut = search.cut_short(words)
    n = len(words)
    lines = [search.request_line(words, cut, j) for j in range(n * n)]
    assert len(set(lines)) == n * n
    assert cut[words.index("banana")] == "bana"  # cut where nothing else makes it
    assert cut[words.index("apple")] == "apple"  # "app" is a word: whole
    real = search.vocabulary()
    real_cut = search.cut_short(real)
    shortened = [c for word, c in zip(real, real_cut, strict=True) if c != word]
    assert len(shortened) > len(real) // 2
    assert len(set(shortened)) == len(shortened)
    assert not set(shortened) & set(real)
