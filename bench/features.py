"""Webhooks, audit and frontend features, measured through the API."""

from __future__ import annotations

import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import msgspec

from cms.bundled import samples
from cms.config import Settings, load_settings
from cms.editing.seed import initialise
from cms.editing.write_side import WriteSide, open_write_side
from cms.identity.tokens import TokenStore
from cms.store.maintenance import Maintenance
from cms.store.repository import Repository

from .common import (
    EDITOR,
    PUBLISHER,
    REVIEWER,
    cms_server,
    published_slugs,
    seed_repository,
    summary,
    timed,
    until_ready,
)


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
    initialise(settings, samples())
    tokens = TokenStore.open(settings)
    editor = {"Authorization": "Bearer " + tokens.create("E", "e@example.com", ["editor"])[1]}
    reviewer = {"Authorization": "Bearer " + tokens.create("R", "r@example.com", ["reviewer"])[1]}
    publisher = {"Authorization": "Bearer " + tokens.create("P", "p@example.com", ["publisher"])[1]}
    admin = {"Authorization": "Bearer " + tokens.create("A", "a@example.com", ["admin"])[1]}
    receiver = CountingReceiver()
    report: dict[str, object] = {}
    with cms_server(settings, CMS_WEBHOOK_ALLOW_PRIVATE="1") as (_, url):
        try:
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
                    timings = []
                    for number in range(publishes):
                        slug = f"hooked-{endpoints}-{number}"
                        etag = approved(slug)
                        timings.append(timed(lambda s=slug, e=etag: http.post(
                            f"/api/drafts/{s}/transitions", json={"action": "publish"},
                            headers={**publisher, "If-Match": e})))
                    report[f"publish_http_{endpoints}_endpoints"] = summary(timings)
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
            receiver.server.shutdown()
    return report


def add_revisions(settings: Settings, revisions: int) -> str:
    """Edit, submit, approve and publish one comparison until it has ``revisions`` more
    commits, then pack as the server does in the background; the comparison's slug."""
    store = open_write_side(settings, repo=Repository(settings.repo, durable=False))
    slug = published_slugs(store.documents)[0]
    current = store.documents.published(slug)
    assert current is not None
    revision = current.revision
    for number in range(revisions // 4):
        revision = save_edit(store, slug, revision, number)
        for action, actor in (("submit", EDITOR), ("approve", REVIEWER), ("publish", PUBLISHER)):
            revision = store.editor.transition(slug, action, actor, revision).revision
    # Steady state: the server packs loose objects in the background as they pile up.
    Maintenance(store.repo).run(force=True)
    return slug


def save_edit(store: WriteSide, slug: str, revision: str, number: int) -> str:
    """Save a draft of ``slug`` with its first verdict flipped by ``number``; its revision."""
    doc = store.documents.current(slug)
    assert doc is not None
    tools = list(doc.comparison.tools)
    reviews = list(tools[0].reviews)
    reviews[0] = msgspec.structs.replace(reviews[0], verdict=("ship", "skip")[number % 2])
    tools[0] = msgspec.structs.replace(tools[0], reviews=reviews)
    edited = msgspec.structs.replace(doc.comparison, tools=tools)
    return store.editor.save(slug, edited, EDITOR, revision).revision


def auditor_token(settings: Settings) -> dict[str, str]:
    return {"Authorization": "Bearer " + TokenStore.open(settings).create(
        "Aud", "aud@example.com", ["auditor"])[1]}


def bench_history(settings: Settings, revisions: int, rounds: int = 7) -> dict[str, object]:
    """One comparison's history after ``revisions`` more commits, through the API in process,
    against `git log` of the comparison's file on main (the walk an auditor would run)."""
    from litestar.testing import TestClient

    from cms.api.app import create_app

    slug = add_revisions(settings, revisions)
    auditor = auditor_token(settings)
    path = open_write_side(settings).documents.layout.path(slug)
    git_log = ["git", f"--git-dir={settings.repo}", "log", "--format=%H", settings.branch,
               "--", path]
    baseline = [timed(lambda: subprocess.run(git_log, capture_output=True, check=True))
                for _ in range(rounds)]
    with TestClient(app=create_app(settings)) as client:
        until_ready(client.get)
        url = f"/api/comparisons/{slug}/history?limit=1000"
        answer = client.get(url, headers=auditor)
        assert answer.status_code == 200, answer.text
        entries = answer.json()["total"]
        samples = [timed(lambda: client.get(url, headers=auditor)) for _ in range(rounds)]
        # After each, one more draft: the history is walked again (git's walk, with only the
        # new commit parsed).
        store = open_write_side(settings)
        current = store.documents.current(slug)
        assert current is not None
        revision = current.revision
        changed = []
        for number in range(rounds):
            revision = save_edit(store, slug, revision, number + 1)
            changed.append(timed(lambda: client.get(url, headers=auditor)))
    ours, git = summary(samples), summary(baseline)
    return {"revisions": revisions, "entries": entries, "history": ours, "git_log": git,
            "ratio_to_git_log": round(ours["median_ms"] / git["median_ms"], 1),
            "after_a_change": summary(changed)}


def bench_audit(workdir: Path, comparisons: int, revisions: int) -> dict[str, object]:
    """History of one comparison with many revisions; verdict changes over many comparisons."""
    from litestar.testing import TestClient

    from cms.api.app import create_app

    settings = load_settings({}, repo=workdir / "audit.git", data=workdir / "audit-data",
                             durable=False, webhook_worker=False)
    seed_repository(settings, comparisons)
    slug = add_revisions(settings, revisions)
    auditor = auditor_token(settings)
    report: dict[str, object] = {"comparisons": comparisons, "revisions": revisions}
    with TestClient(app=create_app(settings)) as client:
        until_ready(client.get)
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
    settings = load_settings({}, repo=workdir / "front.git", data=workdir / "front-data")
    seed_repository(settings, comparisons)
    tokens = TokenStore.open(settings)
    admin = {"Authorization": "Bearer " + tokens.create("A", "a@example.com", ["admin"])[1]}
    report: dict[str, object] = {"comparisons": comparisons}
    store = open_write_side(settings, repo=Repository(settings.repo))
    with cms_server(settings, CMS_VOTE_RATE="0", CMS_VOTE_FOLD_SECONDS="3600") as (_, url), \
            httpx.Client(base_url=url, timeout=120) as http:
        until_ready(http.get)
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
        current = store.documents.published(slug)
        assert current is not None
        revision = store.editor.save(slug, current.comparison, EDITOR, current.revision).revision
        for action, actor in (("submit", EDITOR), ("approve", REVIEWER),
                              ("publish", PUBLISHER)):
            revision = store.editor.transition(slug, action, actor, revision).revision
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
    return report


