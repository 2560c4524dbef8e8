"""First benchmark: state-change commits through the store, and published reads over HTTP.

Run with ``make bench``. Builds a content repository of generated comparisons in a temporary
folder, measures each workflow step against ``git add`` + ``git commit`` of the same change with
the git CLI, then reads published comparisons from a live server on 127.0.0.1. Every loop is
bounded in count. Writes ``bench/results/latest.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import msgspec

from cms import codec
from cms.config import PROJECT_ROOT, Settings, load_settings
from cms.documents import Documents
from cms.gitstore.maintenance import Maintenance
from cms.gitstore.repository import Repository
from cms.identity import Actor
from cms.seed import initialise
from cms.tokens import TokenStore
from cms.workflow import load_workflow

EDITOR = Actor(name="Bench Editor", email="editor@example.com", roles=frozenset({"editor"}))
REVIEWER = Actor(name="Bench Reviewer", email="reviewer@example.com", roles=frozenset({"reviewer"}))
PUBLISHER = Actor(name="Bench Publisher", email="publisher@example.com",
                  roles=frozenset({"publisher"}))
ACTING = {"submit": EDITOR, "approve": REVIEWER, "publish": PUBLISHER}
RESULTS = Path(__file__).parent / "results" / "latest.json"


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": round(statistics.median(ordered) * 1000, 3),
            "p95_ms": round(p95 * 1000, 3), "n": len(ordered)}


def make_seed(folder: Path, count: int) -> None:
    """``count`` comparisons made from the samples, each under its own slug."""
    samples = [codec.decode(p.read_text()) for p in sorted((PROJECT_ROOT / "content").rglob("*.md"))]
    for number in range(count):
        base = samples[number % len(samples)]
        slug = f"{base.slug[:80]}-{number:05d}"
        doc = msgspec.structs.replace(base, slug=slug, title=f"{base.title} #{number}")
        (folder / f"{slug}.md").write_text(codec.encode(doc))


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def bench_store(settings: Settings, rounds: int) -> dict[str, dict[str, float]]:
    store = Documents(Repository(settings.repo, durable=settings.durable),
                      load_workflow(settings.workflow), settings)
    head = store.main_head()
    assert head is not None
    paths = store.repo.files(store.repo.read_commit(head).tree, store.folder())
    slugs = sorted(path.rsplit("/", 1)[-1].removesuffix(".md") for path in paths)[:rounds]
    samples: dict[str, list[float]] = {"save": [], "submit": [], "approve": [], "publish": []}
    for slug in slugs:
        published = store.published(slug)
        assert published is not None
        edited = msgspec.structs.replace(published.comparison, summary="An edited summary.")
        revision = published.revision
        for step in samples:
            start = time.perf_counter()
            if step == "save":
                result = store.save(slug, edited, EDITOR, revision)
            else:
                result = store.transition(slug, step, ACTING[step], revision)
            samples[step].append(time.perf_counter() - start)
            revision = result.revision
    return {step: summary(values) for step, values in samples.items()}


def bench_git_cli(settings: Settings, workdir: Path, rounds: int) -> dict[str, float]:
    """The same kind of change made the usual way: a clone, an edited file, add and commit."""
    clone = workdir / "clone"
    subprocess.run(["git", "clone", "-q", str(settings.repo), str(clone)], check=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "B", "GIT_AUTHOR_EMAIL": "b@example.com",
           "GIT_COMMITTER_NAME": "B", "GIT_COMMITTER_EMAIL": "b@example.com"}
    files = sorted((clone / "content" / "comparisons").rglob("*.md"))[:rounds]
    samples = []
    for number, path in enumerate(files):
        path.write_text(path.read_text() + f"\nEdited {number}.\n")

        def commit(target: Path = path) -> None:
            subprocess.run(["git", "-C", str(clone), "add", str(target)], check=True, env=env)
            subprocess.run(["git", "-C", str(clone), "commit", "-q", "-m", "Edit"], check=True,
                           env=env)

        samples.append(timed(commit))
    return summary(samples)


def bench_reads(settings: Settings, requests: int) -> dict[str, dict[str, float]]:
    env = {**os.environ, "CMS_REPO": str(settings.repo), "CMS_DATA": str(settings.data),
           "CMS_PORT": "0"}
    with subprocess.Popen([sys.executable, "-m", "cms", "serve"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as server:
        try:
            assert server.stdout is not None
            url = server.stdout.readline().split()[2]
            with httpx.Client(base_url=url, timeout=30) as http:
                slugs = [i["slug"] for i in http.get("/api/comparisons?limit=100").json()["items"]]
                one, listing = [], []
                for number in range(requests):
                    slug = slugs[number % len(slugs)]
                    one.append(timed(lambda s=slug: http.get(f"/api/comparisons/{s}")))
                    listing.append(timed(lambda: http.get(
                        "/api/comparisons?category=developer%20tools&sort=title&limit=20")))
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {"read_one": summary(one), "read_list": summary(listing)}


class CountingReceiver:
    """A loopback receiver that answers 200 and counts what arrives."""

    def __init__(self) -> None:
        self.count = 0
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver.arrived:
                    receiver.count += 1
                    receiver.arrived.notify_all()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def bench_webhooks(workdir: Path, publishes: int) -> dict[str, object]:
    """Publish latency over HTTP with 0 and with 10 endpoints, and what reached the receiver."""
    settings = load_settings({}, repo=workdir / "hooks.git", data=workdir / "hooks-data")
    initialise(settings, PROJECT_ROOT / "content")
    tokens = TokenStore(settings.data)
    editor = {"Authorization": "Bearer " + tokens.create("E", "e@example.com", ["editor"])[1]}
    reviewer = {"Authorization": "Bearer " + tokens.create("R", "r@example.com", ["reviewer"])[1]}
    publisher = {"Authorization": "Bearer " + tokens.create("P", "p@example.com", ["publisher"])[1]}
    admin = {"Authorization": "Bearer " + tokens.create("A", "a@example.com", ["admin"])[1]}
    receiver = CountingReceiver()
    env = {**os.environ, "CMS_REPO": str(settings.repo), "CMS_DATA": str(settings.data),
           "CMS_PORT": "0", "CMS_WEBHOOK_ALLOW_PRIVATE": "1"}
    report: dict[str, object] = {}
    with subprocess.Popen([sys.executable, "-m", "cms", "serve"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as server:
        try:
            assert server.stdout is not None
            url = server.stdout.readline().split()[2]
            with httpx.Client(base_url=url, timeout=30) as http:
                base = http.get("/api/comparisons?limit=1").json()["items"][0]["slug"]
                document = http.get(f"/api/comparisons/{base}").json()

                def approved(slug: str) -> str:
                    created = http.post("/api/drafts", headers=editor,
                                        json={**document, "slug": slug, "title": slug})
                    etag = created.headers["etag"]
                    for action, who in (("submit", editor), ("approve", reviewer)):
                        etag = http.post(f"/api/drafts/{slug}/transitions", json={"action": action},
                                         headers={**who, "If-Match": etag}).headers["etag"]
                    return etag

                for endpoints in (0, 10):
                    for _ in range(endpoints - len(http.get("/api/webhooks", headers=admin).json())):
                        http.post("/api/webhooks", json={"url": receiver.url}, headers=admin)
                    samples = []
                    for number in range(publishes):
                        slug = f"hooked-{endpoints}-{number}"
                        etag = approved(slug)
                        samples.append(timed(lambda s=slug, e=etag: http.post(
                            f"/api/drafts/{s}/transitions", json={"action": "publish"},
                            headers={**publisher, "If-Match": e})))
                    report[f"publish_http_{endpoints}_endpoints"] = summary(samples)
                expected = 10 * publishes
                with receiver.arrived:
                    receiver.arrived.wait_for(lambda: receiver.count >= expected, timeout=60)
                attempts = 0
                for hook in http.get("/api/webhooks", headers=admin).json():
                    log = http.get(f"/api/webhooks/{hook['id']}/deliveries", headers=admin)
                    attempts += sum(len(d["attempt_log"]) for d in log.json()["items"])
                report["events_expected"] = expected
                report["requests_received"] = receiver.count
                report["attempts_logged"] = attempts
        finally:
            server.terminate()
            server.wait(timeout=30)
            receiver.server.shutdown()
    return report


def bench_audit(workdir: Path, comparisons: int, revisions: int) -> dict[str, object]:
    """History of one comparison with many revisions; verdict changes over many comparisons."""
    from litestar.testing import TestClient

    from cms.api.app import create_app

    seed = workdir / "audit-seed"
    seed.mkdir()
    make_seed(seed, comparisons)
    settings = load_settings({}, repo=workdir / "audit.git", data=workdir / "audit-data",
                             durable=False, webhook_worker=False)
    initialise(settings, seed)
    store = Documents(Repository(settings.repo, durable=False), load_workflow(settings.workflow),
                      settings)
    head = store.main_head()
    assert head is not None
    slug = sorted(p.rsplit("/", 1)[-1].removesuffix(".md")
                  for p in store.repo.files(store.repo.read_commit(head).tree, store.folder()))[0]
    current = store.published(slug)
    assert current is not None
    revision = current.revision
    verdicts = ("ship", "skip")
    for number in range(revisions // 4):
        doc = store.current(slug)
        assert doc is not None
        tools = list(doc.comparison.tools)
        reviews = list(tools[0].reviews)
        reviews[0] = msgspec.structs.replace(reviews[0], verdict=verdicts[number % 2])
        tools[0] = msgspec.structs.replace(tools[0], reviews=reviews)
        edited = msgspec.structs.replace(doc.comparison, tools=tools)
        revision = store.save(slug, edited, EDITOR, revision).revision
        for action, actor in (("submit", EDITOR), ("approve", REVIEWER), ("publish", PUBLISHER)):
            revision = store.transition(slug, action, actor, revision).revision
    # Steady state: the server packs loose objects in the background as they pile up.
    Maintenance(store.repo).run(force=True)
    auditor = {"Authorization": "Bearer " + TokenStore(settings.data).create(
        "Aud", "aud@example.com", ["auditor"])[1]}
    report: dict[str, object] = {"comparisons": comparisons, "revisions": revisions}
    with TestClient(app=create_app(settings)) as client:
        report["history_1000_ms"] = round(timed(lambda: client.get(
            f"/api/comparisons/{slug}/history?limit=1000", headers=auditor)) * 1000, 1)
        report["verdict_changes_first_ms"] = round(timed(lambda: client.get(
            "/api/audit/verdict-changes", headers=auditor)) * 1000, 1)
        report["verdict_changes_again_ms"] = round(timed(lambda: client.get(
            "/api/audit/verdict-changes", headers=auditor)) * 1000, 1)
        report["verdict_changes_entries"] = len(client.get(
            "/api/audit/verdict-changes", headers=auditor).json()["items"])
        report["verify_ms"] = round(timed(lambda: client.get(
            "/api/audit/verify", headers=auditor)) * 1000, 1)
    return report


def bench_frontends(workdir: Path, comparisons: int, votes: int) -> dict[str, object]:
    """Full and incremental sync over many comparisons; concurrent votes and their fold."""
    seed = workdir / "front-seed"
    seed.mkdir()
    make_seed(seed, comparisons)
    settings = load_settings({}, repo=workdir / "front.git", data=workdir / "front-data")
    initialise(settings, seed)
    tokens = TokenStore(settings.data)
    admin = {"Authorization": "Bearer " + tokens.create("A", "a@example.com", ["admin"])[1]}
    env = {**os.environ, "CMS_REPO": str(settings.repo), "CMS_DATA": str(settings.data),
           "CMS_PORT": "0", "CMS_VOTE_RATE": "0", "CMS_VOTE_FOLD_SECONDS": "3600"}
    report: dict[str, object] = {"comparisons": comparisons}
    store = Documents(Repository(settings.repo), load_workflow(settings.workflow), settings)
    with subprocess.Popen([sys.executable, "-m", "cms", "serve"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as server:
        try:
            assert server.stdout is not None
            url = server.stdout.readline().split()[2]
            with httpx.Client(base_url=url, timeout=120) as http:
                pages = 0
                token = None

                def full_sync() -> None:
                    nonlocal pages, token
                    params: dict[str, object] = {"limit": 1000}
                    while True:
                        body = http.get("/api/sync", params=params).json()
                        pages += 1
                        if not body["next_page"]:
                            token = body["next_sync"]
                            return
                        params = {"page": body["next_page"], "limit": 1000}

                report["sync_full_ms"] = round(timed(full_sync) * 1000, 1)
                report["sync_full_pages"] = pages
                slug = http.get("/api/comparisons?limit=1").json()["items"][0]["slug"]
                current = store.published(slug)
                assert current is not None
                revision = store.save(slug, current.comparison, EDITOR, current.revision).revision
                for action, actor in (("submit", EDITOR), ("approve", REVIEWER),
                                      ("publish", PUBLISHER)):
                    revision = store.transition(slug, action, actor, revision).revision
                changed: list[int] = []
                report["sync_one_change_ms"] = round(timed(lambda: changed.append(len(
                    http.get("/api/sync", params={"token": token}).json()["items"]))) * 1000, 1)
                report["sync_one_change_items"] = changed[0]

                def cast(worker: int) -> None:
                    with httpx.Client(base_url=url, timeout=60) as voter:
                        tool = http.get(f"/api/comparisons/{slug}").json()["tools"][0]["id"]
                        for _ in range(votes // 20):
                            voter.post(f"/api/comparisons/{slug}/votes",
                                       json={"tool": tool, "vote": "ship"})

                workers = [threading.Thread(target=cast, args=(n,)) for n in range(20)]
                started = time.perf_counter()
                for worker in workers:
                    worker.start()
                for worker in workers:
                    worker.join(timeout=300)
                elapsed = time.perf_counter() - started
                report["votes"] = votes
                report["votes_per_second"] = round(votes / elapsed)
                report["fold_ms"] = round(timed(lambda: http.post("/api/votes/fold",
                                                                  headers=admin)) * 1000, 1)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--comparisons", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--publishes", type=int, default=20)
    parser.add_argument("--audit-comparisons", type=int, default=10_000)
    parser.add_argument("--audit-revisions", type=int, default=1000)
    parser.add_argument("--votes", type=int, default=1000)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    report: dict[str, object] = {"comparisons": args.comparisons}
    with tempfile.TemporaryDirectory() as temp:
        workdir = Path(temp)
        seed = workdir / "seed"
        seed.mkdir()
        make_seed(seed, args.comparisons)
        settings = load_settings({}, repo=workdir / "content.git", data=workdir / "data")
        initialise(settings, seed)
        report["git_cli_add_commit"] = bench_git_cli(settings, workdir, args.rounds)
        report["store_durable"] = bench_store(settings, args.rounds)
        report["reads_http_sequential"] = bench_reads(settings, args.requests)
        fast = load_settings({}, repo=workdir / "fast.git", data=workdir / "data", durable=False)
        initialise(fast, seed)
        report["store_not_durable"] = bench_store(fast, args.rounds)
        report["webhooks"] = bench_webhooks(workdir, args.publishes)
        report["audit"] = bench_audit(workdir, args.audit_comparisons, args.audit_revisions)
        report["frontends"] = bench_frontends(workdir, args.audit_comparisons, args.votes)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'measure':42} {'median ms':>10} {'p95 ms':>10}")
    baseline = report["git_cli_add_commit"]
    assert isinstance(baseline, dict)
    print(f"{'git add + git commit (CLI baseline)':42} {baseline['median_ms']:>10} "
          f"{baseline['p95_ms']:>10}")
    for group in ("store_durable", "store_not_durable", "reads_http_sequential", "webhooks",
                  "audit", "frontends"):
        rows = report[group]
        assert isinstance(rows, dict)
        for name, row in rows.items():
            if isinstance(row, dict):
                print(f"{group + ' ' + name:42} {row['median_ms']:>10} {row['p95_ms']:>10}")
            else:
                print(f"{group + ' ' + name:42} {row:>10}")
    print(f"written to {RESULTS.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
