"""Instances over one upstream: what the synchronous push adds to a write, writes per second with
three instances against one, and how soon a write on one instance is read on another.

The upstream is a bare repository served by `git daemon` on loopback (as in the tests). Each
figure has its baseline measured in the same run: the same write on a repository without an
upstream, one instance writing alone, the fetch interval itself.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from pathlib import Path

import msgspec

from cms.config import load_settings
from cms.editing.write_side import WriteSide, open_write_side
from cms.store.following import Follower
from tests.cluster.support import git_daemon

from .common import EDITOR, published_slugs, seed_repository, summary, timed

INSTANCES = 3
# Each push's objects kept as the one pack they came in (one file flushed, not one per object),
# and no `git gc --auto` run by every push.
UPSTREAM_CONFIG = {"receive.unpackLimit": "1", "receive.autogc": "false"}
# A write on one instance is looked for on another this often (a bounded busy wait).
LOOK_SECONDS = 0.001
LOOK_LIMIT_SECONDS = 10.0


def save(store: WriteSide, slug: str, number: int) -> None:
    current = store.documents.current(slug)
    assert current is not None
    edited = msgspec.structs.replace(current.comparison,
                                     summary=f"{current.comparison.summary[:200]} {number}.")
    store.editor.save(slug, edited, EDITOR, current.revision)


def bench_cluster(workdir: Path, comparisons: int, rounds: int) -> dict[str, object]:
    base = workdir / "cluster"
    seed = load_settings({}, repo=base / "srv" / "site.git", data=base / "seed-data")
    seed_repository(seed, comparisons)
    for key, value in UPSTREAM_CONFIG.items():  # as docs/deploy.md advises
        subprocess.run(["git", "--git-dir", str(seed.repo), "config", key, value], check=True)
    alone_settings = load_settings({}, repo=base / "alone.git", data=base / "alone-data")
    subprocess.run(["git", "clone", "-q", "--mirror", str(seed.repo), str(alone_settings.repo)],
                   check=True)
    alone = open_write_side(alone_settings)
    slugs = published_slugs(alone.documents)
    report: dict[str, object] = {"comparisons": comparisons}
    with git_daemon(base / "srv") as prefix:
        url = f"{prefix}/site.git"
        instances = [open_write_side(load_settings(
            {}, repo=base / f"i{n}" / "content", data=base / f"i{n}" / "data", upstream=url))
            for n in range(INSTANCES)]
        first = instances[0]
        local, pushed = [], []
        for number in range(rounds):  # interleaved, so that both see the same machine
            slug = slugs[number % len(slugs)]
            local.append(timed(lambda slug=slug, n=number: save(alone, slug, n)))
            pushed.append(timed(lambda slug=slug, n=number: save(first, slug, n)))
        alone_row, pushed_row = summary(local), summary(pushed)
        report["write_without_upstream"] = alone_row
        report["write_with_push"] = pushed_row
        adds = {"median": round(pushed_row["median_ms"] - alone_row["median_ms"], 3),
                "p95": round(pushed_row["p95_ms"] - alone_row["p95_ms"], 3)}
        report["push_adds_ms"] = adds
        git_row = _git_push(url, base / "git-push", rounds)
        report["git_push"] = git_row
        report["push_adds_ratio_to_git_push"] = round(adds["median"] / git_row["median_ms"], 2)
        report["writes_per_second"] = _throughput(instances, slugs, rounds)
        report["visibility"] = _visibility(instances[0], instances[1], slugs, rounds)
    report["upstream_receive_pack"] = _server_side(base, seed.repo, slugs, rounds)
    return report


def _server_side(base: Path, upstream: Path, slugs: list[str],
                 rounds: int) -> dict[str, object]:
    """What the upstream itself spends on each push: the `git receive-pack` that `git daemon`
    runs for it, timed by git's own trace (its start to its exit), beside the whole save
    measured here. The floor under what the push adds."""
    trace = base / "receive-pack.trace"
    with git_daemon(upstream.parent, env={"GIT_TRACE2_EVENT": str(trace)}) as prefix:
        store = open_write_side(load_settings(
            {}, repo=base / "traced" / "content", data=base / "traced" / "data",
            upstream=f"{prefix}/{upstream.name}"))
        saves = []
        for number in range(rounds):
            slug = slugs[number % len(slugs)]
            saves.append(timed(lambda slug=slug, n=number: save(store, slug, n)))
    receive_packs = _receive_pack_seconds(trace)
    return {"save_traced": summary(saves), "receive_pack": summary(receive_packs)}


def _receive_pack_seconds(trace: Path) -> list[float]:
    started: set[str] = set()
    spent: list[float] = []
    for line in trace.read_text().splitlines():
        event = msgspec.json.decode(line)
        if event.get("event") == "start" and "receive-pack" in event.get("argv", [])[:2]:
            started.add(event["sid"])
        elif event.get("event") == "exit" and event.get("sid") in started:
            spent.append(float(event["t_abs"]))
    return spent


def _git_push(url: str, work: Path, rounds: int) -> dict[str, float]:
    """The baseline for the push: git's own `git push` of a one-file commit to the same
    upstream (to a ref of its own, out of the instances' way), from a clone that has the rest."""
    subprocess.run(["git", "clone", "-q", url, str(work)], check=True)
    files = sorted(work.rglob("*.md"))
    samples = []
    for number in range(rounds):
        path = files[number % len(files)]
        path.write_text(f"{path.read_text()}\n{number}\n")
        subprocess.run(["git", "-C", str(work), "commit", "-qam", f"Edit {number}"], check=True)
        samples.append(timed(lambda: subprocess.run(
            ["git", "-C", str(work), "push", "-q", "origin", "HEAD:refs/heads/git-push"],
            check=True)))
    return summary(samples)


def _throughput(instances: list[WriteSide], slugs: list[str],
                rounds: int) -> dict[str, float]:
    """Saves of distinct comparisons: ``rounds`` by one instance, then ``rounds`` by each of
    three at once (threads of one process, each with its own clone)."""
    for store in instances:  # each reads what the others wrote before: no stale revision
        store.documents.repo.fetch()
    start = time.perf_counter()
    for number in range(rounds):
        save(instances[0], slugs[number % len(slugs)], 1000 + number)
    one = rounds / (time.perf_counter() - start)
    for store in instances:
        store.documents.repo.fetch()

    def run(store: WriteSide, offset: int) -> None:
        # Comparisons of this instance's own: the three never write to one ref.
        for number in range(rounds):
            save(store, slugs[(offset + number * len(instances)) % len(slugs)], 2000 + number)

    threads = [threading.Thread(target=run, args=(store, offset))
               for offset, store in enumerate(instances)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    three = len(instances) * rounds / (time.perf_counter() - start)
    return {"one_instance": round(one, 1), "three_instances": round(three, 1),
            "ratio": round(three / one, 2)}


def _visibility(writer: WriteSide, reader: WriteSide, slugs: list[str],
                rounds: int) -> dict[str, object]:
    """From a save returning on ``writer`` to ``reader`` reading it: with the follower at its
    default interval, and with a fetch at once (what the forge's push hook triggers)."""
    interval = load_settings({}).fetch_interval
    writer.documents.repo.fetch()  # what the others wrote before
    follower = Follower(reader.documents.repo, interval)
    polled, hooked = [], []
    follower.start()
    try:
        for number in range(rounds):
            slug = slugs[number % len(slugs)]
            # At a random point of the follower's cycle, as writes come: right after the last
            # sighting, each write would wait a whole interval.
            time.sleep(random.uniform(0, interval))
            save(writer, slug, 3000 + number)
            polled.append(_until_seen(writer, reader, slug))
    finally:
        follower.stop()
    for number in range(rounds):
        slug = slugs[number % len(slugs)]
        save(writer, slug, 4000 + number)
        start = time.perf_counter()
        follower.fetch()
        hooked.append(time.perf_counter() - start)
        assert _branch(reader, slug) == _branch(writer, slug)
    return {"fetch_interval_s": interval, "polling": summary(polled), "push_hook": summary(hooked)}


def _branch(store: WriteSide, slug: str) -> str | None:
    return store.documents.repo.refs.read(store.layout.branch(slug))


def _until_seen(writer: WriteSide, reader: WriteSide, slug: str) -> float:
    wanted = _branch(writer, slug)
    start = time.perf_counter()
    while _branch(reader, slug) != wanted:
        if time.perf_counter() - start > LOOK_LIMIT_SECONDS:
            raise RuntimeError("a write never reached the other instance")
        time.sleep(LOOK_SECONDS)
    return time.perf_counter() - start
