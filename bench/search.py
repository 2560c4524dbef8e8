"""Search under load: 32 connections, a different query on every request, so that no cache of
responses can answer any of them; against the list page (one request line, answered from the
response cache) on the same server in the same run."""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter
from pathlib import Path

import httpx

from cms.bundled import samples
from cms.config import Settings

from .common import cms_server, until_ready
from .reads import median_round, throughput_ratio, wrk_figures

# Each wrk thread numbers its requests from the offset it is given; thread `id` takes every
# other number, so the two never send the same query. Request j pairs word j mod n with word
# (j div n) mod n (n * n distinct pairs before any repeats), and every other pair ends in its
# second word cut short (``cut_short``), matched as a beginning.
_SCRIPT = """
local words = {%(words)s}
local cut = {%(cut)s}
local counter = 0
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  counter = tonumber(args[1] or "0")
end

function request()
  counter = counter + 1
  local j = counter * 2 + (id or 0)
  local n = #words
  local first = words[(j %% n) + 1]
  local second = words[(math.floor(j / n) %% n) + 1]
  if math.floor(j / 2) %% 2 == 1 then
    second = cut[(math.floor(j / n) %% n) + 1]
  end
  return wrk.format("GET", "/api/comparisons?limit=20&q=" .. first .. "+" .. second)
end
"""


def vocabulary() -> list[str]:
    """The distinct words of the sample comparisons that a URL carries as they are."""
    text = " ".join(path.read_text() for path in sorted(samples().rglob("*.md"))).lower()
    return sorted({word for word in re.findall(r"[a-z0-9]+", text) if len(word) >= 3})


def cut_short(words: list[str]) -> list[str]:
    """Each word with its last two letters cut (three kept), where that makes a beginning no
    other word has, whole or cut: else the word whole, so that two pairs never make the same
    request line (a pair is asked cut or whole, never both)."""
    cuts = [word[: max(3, len(word) - 2)] for word in words]
    taken = Counter(cuts)
    whole = set(words)
    return [cut if taken[cut] == 1 and cut not in whole else word
            for word, cut in zip(words, cuts, strict=True)]


def request_line(words: list[str], cut: list[str], j: int) -> str:
    """Request j of the script, as it makes it (for the check that none repeats)."""
    n = len(words)
    second = (cut if (j // 2) % 2 == 1 else words)[(j // n) % n]
    return f"/api/comparisons?limit=20&q={words[j % n]}+{second}"


def search_ready(url: str, started: float, deadline_s: float = 600.0) -> float:
    """Seconds from ``started`` until /health says search_ready; a bounded loop."""
    while not httpx.get(f"{url}/health", timeout=60).json()["search_ready"]:
        if time.monotonic() - started > deadline_s:
            raise TimeoutError("the search bitmaps were not made in time")
        time.sleep(0.05)
    return round(time.monotonic() - started, 2)


def bench_search(settings: Settings, workdir: Path, seconds: int) -> dict[str, object]:
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    words = vocabulary()
    script = workdir / "search.lua"
    workdir.mkdir(parents=True, exist_ok=True)
    script.write_text(_SCRIPT % {"words": ", ".join(f'"{word}"' for word in words),
                                 "cut": ", ".join(f'"{word}"' for word in cut_short(words))})
    report: dict[str, object] = {"vocabulary": len(words)}
    started = time.monotonic()
    with cms_server(settings) as (_, url):
        listing = f"{url}/api/comparisons?category=developer%20tools&sort=title&limit=20"
        until_ready(lambda path: httpx.get(f"{url}{path}", timeout=60))
        # The common words' bitmaps: taken from the file an earlier server saved, or made
        # after start-up (searches are answered meanwhile, by SQL).
        report["search_ready_s"] = search_ready(url, started)
        assert httpx.get(listing, timeout=300).status_code == 200
        # Rounds of each in turn, since a machine's speed drifts over a minute; each round's
        # queries are new (a third of the pairs apart), so no search is ever asked twice.
        rounds: list[dict[str, dict[str, float]]] = []
        spacing = len(words) ** 2 // _ROUNDS  # request numbers between two rounds' starts
        for number in range(_ROUNDS):
            offset = number * spacing // 2  # each thread's count: half the request numbers
            rounds.append({"list_page": wrk_figures(listing, seconds),
                           "distinct_queries": wrk_figures(f"{url}/", seconds, script=script,
                                                           arguments=[str(offset)])})
        sample = httpx.get(f"{url}/api/comparisons", params={"q": f"{words[0]} {words[1]}"})
        assert sample.status_code == 200
    for name in ("list_page", "distinct_queries"):
        report[name] = median_round([found[name] for found in rounds])
    report["rounds"] = rounds
    # A round that sent more requests than the spacing would have asked again what the next
    # one asks: its figures would not be of new searches alone.
    sent = max(found["distinct_queries"]["requests_per_s"] for found in rounds) * seconds
    if sent >= spacing:
        raise RuntimeError(f"a round of searches sent {sent:.0f} requests, past the "
                           f"{spacing} before the next round's; use fewer --wrk-seconds")
    report["ratio_to_list_page"] = throughput_ratio(report, "distinct_queries", "list_page")
    return report


_ROUNDS = 3
