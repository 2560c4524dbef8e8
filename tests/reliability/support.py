"""What the reliability tests share: real ``cms serve`` processes on free ports of 127.0.0.1, tokens,
a ledger of every request and its answer, and git read back with git itself.

Nothing here sleeps to synchronise: a server is known to be up when ``/health`` answers, and every
wait is a bounded loop or a bounded wait on an event.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import standardwebhooks

from cms.config import load_settings
from cms.identity.tokens import TokenStore
from cms.store.layout import Layout
from cms.webhooks.events import event_id

from ..receivers import Receiver

# `make soak` multiplies rounds and operations by this; `make test` runs with 1.
SCALE = max(1.0, float(os.environ.get("CMS_SOAK_SCALE", "1") or "1"))
# The random choices of the tests (actions, slugs, kill moments) come from this seed; a failing
# run prints it. The assertions hold whatever the timing, so any seed must pass.
SEED = int(os.environ.get("CMS_RELIABILITY_SEED", "0") or "0") or random.SystemRandom().randrange(1, 10**9)
LAYOUT = Layout(content_dir="content", main_branch="main")
MAIN = LAYOUT.main_ref
# Retries of webhooks come fast, so that an outbox drains within the test.
FAST_BACKOFF = "0.2,0.3,0.5,0.5,1,1,1,2,2,2,2,2,2,2,2"
_REQ = re.compile(r"\breq-[0-9a-z]+-[0-9]+\b")


def scaled(count: int) -> int:
    return max(1, round(count * SCALE))


Headers = dict[str, str]


# Processes


def free_port() -> int:
    """A port of 127.0.0.1 nobody listens on now (the server binds it with SO_REUSEADDR)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cms_env(repo: Path, data: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of a CMS process: the inherited one without any CMS_* (`make` exports
    CMS_REPO), then this test's repository, data, port and fast webhooks."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CMS_")}
    env.update({
        "CMS_REPO": str(repo), "CMS_DATA": str(data), "CMS_HOST": "127.0.0.1",
        "CMS_PORT": str(port), "CMS_WEBHOOK_ALLOW_PRIVATE": "1",
        "CMS_WEBHOOK_BACKOFF": FAST_BACKOFF, "CMS_WEBHOOK_TIMEOUT": "5",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def init_repository(env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "cms", "init"], env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def token(data: Path, name: str, email: str, *roles: str, database_url: str = "") -> Headers:
    """A real token, stored (as a hash) where every server of ``data`` reads tokens (or, with
    ``database_url``, where every instance on that database does)."""
    store = TokenStore.open(load_settings({}, data=data, database_url=database_url))
    try:
        _, secret = store.create(name, email, list(roles))
    finally:
        store.close()
    return {"Authorization": f"Bearer {secret}"}


def cli_token(env: dict[str, str], name: str, email: str, role: str) -> Headers:
    """The same through the command line, as an operator makes one."""
    result = subprocess.run(
        [sys.executable, "-m", "cms", "token", "create", "--name", name, "--email", email,
         "--role", role], env=env, capture_output=True, text=True, timeout=60, check=True)
    return {"Authorization": f"Bearer {result.stdout.strip().splitlines()[-1]}"}


class Server:
    """One ``cms serve`` process; restartable on the same port. Its output goes to a log file,
    kept across restarts, so that a traceback from any life of it can be found."""

    def __init__(self, env: dict[str, str], log: Path, name: str = "server") -> None:
        self.env = env
        self.name = name
        self.port = int(env["CMS_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def start(self, timeout: float = 60) -> None:
        assert self.process is None or self.process.poll() is not None
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            out.write(f"--- start {self.starts + 1} of {self.name}\n".encode())
            out.flush()
            self.process = subprocess.Popen([sys.executable, "-m", "cms", "serve"], env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        self.starts += 1
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Poll /health until it answers; bounded in time and in tries. Between tries the wait is
        on the process itself, so a server that dies at start-up is noticed at once."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.02) + 10):
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode} at "
                                     f"start-up:\n{self.log_tail()}")
            try:
                answer = httpx.get(f"{self.url}/health", timeout=5)
                if answer.status_code == 200 and answer.json().get("status") == "ok":
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=0.02)
        self.kill()
        raise AssertionError(f"{self.name} did not answer /health within {timeout} s:\n"
                             f"{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed that was not already."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.kills += 1
        if self.process is not None:
            self.process.wait(timeout=60)

    def stop(self) -> None:
        """SIGTERM and wait for a clean exit; SIGKILL if it does not come."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process.wait(timeout=60)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


@contextlib.contextmanager
def serving(servers: list[Server]) -> Iterator[list[Server]]:
    """Every server started; every one stopped (killed if need be) whatever happens."""
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            try:
                server.stop()
            except Exception:
                server.kill()


def tracebacks(servers: Iterable[Server]) -> list[str]:
    """Tracebacks the servers logged (an unexpected error or a listener that failed)."""
    found = []
    for server in servers:
        text = server.log_text()
        for match in re.finditer(r"(?m)^.*\n?Traceback \(most recent call last\):", text):
            start = match.start()
            found.append(f"{server.name}: " + text[max(0, start - 200):start + 2500])
    return found


# Git, read with git


def git(repo: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), *args], input=stdin, capture_output=True,
                          text=True, check=True, timeout=120).stdout


def fsck(repo: Path) -> str:
    """What ``git fsck --strict`` complains about; empty when the repository is sound."""
    result = subprocess.run(["git", "--git-dir", str(repo), "fsck", "--strict", "--no-dangling",
                             "--no-progress"], capture_output=True, text=True, check=False,
                            timeout=300)
    return "" if result.returncode == 0 else (result.stdout + result.stderr or "fsck failed")


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    parents: tuple[str, ...]
    author: str  # email
    actions: tuple[str, ...]  # Cms-Action trailers, as git reads them
    documents: tuple[str, ...]  # Cms-Document trailers
    message: str
    req_ids: tuple[str, ...]

    @property
    def action(self) -> str | None:
        return self.actions[0] if len(self.actions) == 1 else None

    @property
    def slug(self) -> str | None:
        if len(self.documents) != 1:
            return None
        return Layout.slug_of_document(self.documents[0])


def republication(commits: dict[str, CommitInfo], commit: CommitInfo) -> bool:
    """A publication of an unpublished comparison: its one parent, the unpublish commit."""
    parent = commits.get(commit.parents[0]) if len(commit.parents) == 1 else None
    return parent is not None and parent.action == "unpublish" and parent.slug == commit.slug


def reachable_commits(repo: Path) -> dict[str, CommitInfo]:
    """Every commit reachable from any ref (branches, main, the discarded archive), with its
    trailers as ``git log`` parses them (not as the CMS does)."""
    fmt = ("%H%x1f%P%x1f%ae%x1f%(trailers:key=Cms-Action,valueonly,separator=%x1d)%x1f"
           "%(trailers:key=Cms-Document,valueonly,separator=%x1d)%x1f%B%x1e")
    found: dict[str, CommitInfo] = {}
    for record in git(repo, "log", "--all", f"--format={fmt}").split("\x1e"):
        record = record.strip("\n")
        if not record:
            continue
        sha, parents, author, actions, documents, message = record.split("\x1f", 5)
        found[sha] = CommitInfo(
            sha=sha, parents=tuple(parents.split()), author=author,
            actions=tuple(a.strip() for a in actions.split("\x1d") if a.strip()),
            documents=tuple(d.strip() for d in documents.split("\x1d") if d.strip()),
            message=message, req_ids=tuple(dict.fromkeys(_REQ.findall(message))),
        )
    return found


def first_parents(repo: Path, ref: str = MAIN) -> list[str]:
    """Main's first-parent history, newest first: the publication log."""
    return git(repo, "rev-list", "--first-parent", ref).split()


def refs(repo: Path) -> dict[str, str]:
    lines = git(repo, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
    return dict(line.split(" ", 1) for line in lines if line)


def blobs_at(repo: Path, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
    """The blob at ``path`` in each ``commit`` (None where the file is not there), in one call."""
    wanted = list(dict.fromkeys(pairs))
    if not wanted:
        return {}
    text = "".join(f"{commit}:{path}\n" for commit, path in wanted)
    lines = git(repo, "cat-file", "--batch-check=%(objectname) %(objecttype)", stdin=text).splitlines()
    assert len(lines) == len(wanted), (len(lines), len(wanted))
    found: dict[tuple[str, str], str | None] = {}
    for pair, line in zip(wanted, lines, strict=True):
        parts = line.split()
        found[pair] = parts[0] if len(parts) == 2 and parts[1] == "blob" else None
    return found


def reachable_from(repo: Path, tips: Iterable[str]) -> set[str]:
    tips = list(tips)
    return set(git(repo, "rev-list", *tips).split()) if tips else set()


def lock_files(repo: Path) -> list[str]:
    """Lock files under refs/, each with its mode and size (a CMS writer's are mode 604)."""
    found = []
    for path in sorted((repo / "refs").rglob("*.lock")):
        with contextlib.suppress(FileNotFoundError):
            info = path.stat()
            found.append(f"{path.relative_to(repo).as_posix()} (mode {info.st_mode & 0o777:o}, "
                         f"{info.st_size} bytes)")
    return found


def path_of(slug: str) -> str:
    return LAYOUT.path(slug)


# Requests and their answers


@dataclass
class Call:
    """One write as the client sent it and what came back."""

    seq: int
    worker: str
    server: str
    action: str  # create, edit, revert, discard, or a transition
    slug: str
    req_id: str
    actor: str  # email of the token's person
    if_match: str | None
    status: int | None = None
    etag: str | None = None
    code: str | None = None
    state: str | None = None
    text: str = ""
    transport_errors: list[str] = field(default_factory=list)
    # True once a request went out and its answer was lost: the write may have happened.
    uncertain: bool = False
    note: str = ""  # what the client had read before sending it, where that matters

    @property
    def ack(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        return (f"#{self.seq} {self.worker}@{self.server} {self.action} {self.slug} "
                f"[{self.req_id}] If-Match={self.if_match} -> {self.status} {self.code or ''} "
                f"etag={self.etag} state={self.state} errors={self.transport_errors[-1:]}"
                f"{' (uncertain)' if self.uncertain else ''}{' ' + self.note if self.note else ''}")


class Ledger:
    """Every write of a test, in the order they were sent; safe to use from many threads."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self.acked = threading.Condition(self._lock)
        self.ack_count = 0
        self.in_flight: dict[int, Call] = {}

    def open(self, worker: str, server: str, action: str, slug: str, actor: str,
             if_match: str | None) -> Call:
        with self._lock:
            seq = len(self.calls)
            call = Call(seq=seq, worker=worker, server=server, action=action, slug=slug,
                        req_id=f"req-{worker}-{seq}", actor=actor, if_match=if_match)
            self.calls.append(call)
            return call

    def close(self, call: Call, answer: httpx.Response) -> None:
        body: Any = None
        with contextlib.suppress(ValueError):
            body = answer.json()
        with self._lock:
            call.status = answer.status_code
            call.etag = strip_etag(answer.headers.get("etag"))
            call.text = answer.text[:600]
            if isinstance(body, dict):
                code = body.get("code")
                call.code = code if isinstance(code, str) else None
                state = body.get("state")
                call.state = state if isinstance(state, str) else None
            if call.ack:
                self.ack_count += 1
                self.acked.notify_all()

    def begin(self, call: Call) -> None:
        with self.acked:
            self.in_flight[call.seq] = call
            self.acked.notify_all()

    def end(self, call: Call) -> None:
        with self.acked:
            self.in_flight.pop(call.seq, None)

    def wait_in_flight(self, actions: set[str], timeout: float) -> bool:
        """Until a request for one of ``actions`` is on its way (bounded)."""
        with self.acked:
            return self.acked.wait_for(
                lambda: any(c.action in actions for c in self.in_flight.values()), timeout=timeout)

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def summary(self) -> str:
        calls = self.snapshot()
        by = Counter((c.action, c.status) for c in calls)
        return ", ".join(f"{a}:{s}x{n}" for (a, s), n in sorted(by.items(), key=str))


def strip_etag(value: str | None) -> str | None:
    if not value:
        return None
    return value.removeprefix("W/").strip('"').split("+", 1)[0] or None


Retry = Callable[[BaseException, int], bool]  # (error, tries so far) -> try again?


def send(client: httpx.Client, ledger: Ledger, call: Call, method: str, path: str,
         headers: Headers, body: dict[str, Any] | None, retry: Retry | None = None,
         max_tries: int = 1) -> Call:
    """Send one write; with ``retry``, resend it (same If-Match, same request id) after a lost
    connection, a bounded number of times. A request that may have reached the server before
    its answer was lost marks the call uncertain."""
    sent_headers = dict(headers)
    if call.if_match is not None:
        sent_headers["If-Match"] = f'"{call.if_match}"'
    for tries in range(1, max_tries + 1):
        ledger.begin(call)
        try:
            answer = client.request(method, path, headers=sent_headers, json=body)
        except httpx.TransportError as exc:
            with ledger.acked:
                call.transport_errors.append(f"{type(exc).__name__}: {exc}")
                if not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                    call.uncertain = True
            if retry is None or tries >= max_tries or not retry(exc, tries):
                return call
            continue
        finally:
            ledger.end(call)
        ledger.close(call, answer)
        return call
    return call


def edited(document: dict[str, Any], req_id: str) -> dict[str, Any]:
    """The document read, sent back with a new summary naming the request, and the request id
    as the comment, which becomes the commit's body."""
    body = copy.deepcopy(document)
    body["summary"] = f"Edited by {req_id}. " + str(body.get("summary", ""))[:300]
    body["comment"] = req_id
    return body


def new_comparison(template: dict[str, Any], slug: str, req_id: str) -> dict[str, Any]:
    body = copy.deepcopy(template)
    body["slug"] = slug
    body["title"] = f"Reliability {slug}"
    body["summary"] = f"Created by {req_id}."
    body["comment"] = req_id
    return body


# Checking git against the ledger


def check_statuses(calls: list[Call], findings: Findings) -> None:
    """No 5xx; every refusal a 409 or 412, or a 404 for a comparison a discard made vanish."""
    vanished = {c.slug for c in calls if c.action == "discard" and (c.ack or c.uncertain)}
    for call in calls:
        if call.status is None:
            findings.add(f"no answer: {call.describe()}")
        elif call.status >= 500:
            findings.add(f"server error: {call.describe()} {call.text}")
        elif call.ack or call.status in (409, 412):
            continue
        elif (call.status == 404 and call.slug in vanished and call.action != "create"
              and "no object" not in call.text):
            continue  # discarded meanwhile (a comparison never published, or unpublished first)
        else:
            findings.add(f"refused with an unexpected status: {call.describe()} {call.text}")



# Actions whose commit lands on the comparison's branch, and whose answer is that commit's file.
BRANCH_ACTIONS = {"create", "edit", "revert", "submit", "approve", "request_changes", "withdraw"}


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)

    def add(self, problem: str) -> None:
        self.problems.append(problem)

    def report(self, limit: int = 40) -> str:
        shown = self.problems[:limit]
        more = len(self.problems) - len(shown)
        return "\n".join(shown) + (f"\n... and {more} more" if more > 0 else "")


def check_writes_against_git(repo: Path, calls: list[Call], findings: Findings) -> dict[str, int]:
    """Every acknowledged write is exactly one commit with the right trailers, reachable from
    the comparison's refs, holding the revision the client was answered; every write refused
    (with certainty) left nothing; no commit exists that no request asked for. Returns counts."""
    commits = reachable_commits(repo)
    main_chain = first_parents(repo)
    on_main = set(main_chain)
    all_refs = refs(repo)
    by_req: dict[str, list[CommitInfo]] = {}
    for commit in commits.values():
        for req_id in commit.req_ids:
            by_req.setdefault(req_id, []).append(commit)
    calls_by_req = {c.req_id: c for c in calls}
    slugs = {c.slug for c in calls}
    reach: dict[str, set[str]] = {}
    for slug in slugs:
        tips = [MAIN] + [name for name in all_refs
                         if name == LAYOUT.branch(slug)
                         or name.startswith(f"refs/cms/discarded/comparisons/{slug}/")]
        reach[slug] = reachable_from(repo, tips)

    wanted: list[tuple[str, str]] = []
    for call in calls:
        for commit in by_req.get(call.req_id, []):
            wanted.append((commit.sha, path_of(call.slug)))
            wanted += [(parent, path_of(call.slug)) for parent in commit.parents[:1]]
    discards = [c for c in commits.values() if c.action == "discard"]
    wanted += [(c.parents[0], path_of(c.slug or "")) for c in discards if c.parents and c.slug]
    blob = blobs_at(repo, wanted)

    for call in calls:
        found = by_req.get(call.req_id, [])
        if call.action == "discard":
            continue  # a discard carries no comment; counted below
        if call.ack:
            if not found and call.action in ("edit", "revert") and call.etag == call.if_match:
                continue  # it changed nothing, so it committed nothing: the revision stands
            if len(found) != 1:
                findings.add(f"acknowledged write is {len(found)} commits, not one: "
                             f"{call.describe()} commits={[c.sha for c in found]}")
                continue
            commit = found[0]
            if commit.action != call.action:
                findings.add(f"commit {commit.sha} of {call.describe()} has Cms-Action "
                             f"{commit.actions}")
            if commit.slug != call.slug:
                findings.add(f"commit {commit.sha} of {call.describe()} has Cms-Document "
                             f"{commit.documents}")
            if commit.author != call.actor:
                findings.add(f"commit {commit.sha} of {call.describe()} is authored by "
                             f"{commit.author}")
            if commit.sha not in reach[call.slug]:
                findings.add(f"commit {commit.sha} of {call.describe()} is not on main, the "
                             "comparison's branch or its archive")
            at = blob.get((commit.sha, path_of(call.slug)))
            if (call.action in BRANCH_ACTIONS or call.action == "publish") and (
                    at is None or at != call.etag):
                findings.add(f"{call.describe()}: answered revision {call.etag}, but its "
                             f"commit {commit.sha} holds {at}")
            if call.action == "publish" and (commit.sha not in on_main or not (
                    len(commit.parents) == 2 or republication(commits, commit))):
                findings.add(f"publication {commit.sha} of {call.describe()} is not a merge "
                             "on main's first-parent history")
            if call.action == "unpublish":
                before = blob.get((commit.parents[0], path_of(call.slug))) if commit.parents else None
                if commit.sha not in on_main or at is not None or before is None:
                    findings.add(f"unpublication {commit.sha} of {call.describe()} does not "
                                 "remove the file on main's first-parent history")
                if call.state == "unpublished" and call.etag != commit.sha:
                    findings.add(f"{call.describe()}: answered revision {call.etag}, but the "
                                 f"unpublication is {commit.sha}")
        elif found and not call.uncertain:
            findings.add(f"refused write left {len(found)} commit(s): {call.describe()} "
                         f"{[c.sha for c in found]}")
        elif len(found) > 1:
            findings.add(f"write with a lost answer is {len(found)} commits: {call.describe()}")

    # No commit that no request asked for (the seed aside; discards carry no request id).
    for commit in commits.values():
        if commit.action == "seed" or commit.action == "discard":
            continue
        owners = [calls_by_req[r] for r in commit.req_ids if r in calls_by_req]
        if len(owners) != 1:
            findings.add(f"commit {commit.sha} ({commit.actions}, {commit.documents}) belongs to "
                         f"no single request: {commit.req_ids}")
            continue
        owner = owners[0]
        if not (owner.ack or owner.uncertain):
            findings.add(f"commit {commit.sha} was written for a refused request: "
                         f"{owner.describe()}")

    # Discards: per comparison, the discards in git are the acknowledged ones (plus, at most,
    # those whose answer was lost), each discarding the revision its request named.
    for slug in slugs:
        in_git = Counter(blob.get((c.parents[0], path_of(slug))) for c in discards
                         if c.slug == slug and c.parents)
        acked = Counter(c.if_match for c in calls if c.slug == slug and c.action == "discard"
                        and c.ack)
        maybe = Counter(c.if_match for c in calls if c.slug == slug and c.action == "discard"
                        and c.uncertain and not c.ack)
        if acked - in_git:
            findings.add(f"acknowledged discards of {slug} missing from git: "
                         f"{dict(acked - in_git)}")
        if in_git - (acked + maybe):
            findings.add(f"discards of {slug} in git that no request acknowledged: "
                         f"{dict(in_git - (acked + maybe))}")

    # The publication log: no branch commit merged twice; as many merges as acknowledgements.
    merges = [commits[sha] for sha in main_chain if sha in commits
              and commits[sha].action == "publish"]
    merged = Counter(c.parents[1] for c in merges if len(c.parents) == 2)
    twice = {sha: n for sha, n in merged.items() if n > 1}
    if twice:
        findings.add(f"branch commits published more than once: {twice}")
    unpublications = [sha for sha in main_chain if sha in commits
                      and commits[sha].action == "unpublish"]
    counts = {
        "commits": len(commits),
        "publish_merges": len(merges),
        "unpublish_commits": len(unpublications),
        "publish_acks": sum(c.ack for c in calls if c.action == "publish"),
        "publish_uncertain": sum(c.uncertain and not c.ack for c in calls
                                 if c.action == "publish"),
        "unpublish_acks": sum(c.ack for c in calls if c.action == "unpublish"),
        "unpublish_uncertain": sum(c.uncertain and not c.ack for c in calls
                                   if c.action == "unpublish"),
        "discard_commits": len(discards),
    }
    if not counts["publish_acks"] <= counts["publish_merges"] <= (
            counts["publish_acks"] + counts["publish_uncertain"]):
        findings.add(f"{counts['publish_merges']} publish merges on main for "
                     f"{counts['publish_acks']} acknowledged publications "
                     f"(+{counts['publish_uncertain']} with a lost answer)")
    if not counts["unpublish_acks"] <= counts["unpublish_commits"] <= (
            counts["unpublish_acks"] + counts["unpublish_uncertain"]):
        findings.add(f"{counts['unpublish_commits']} unpublish commits on main for "
                     f"{counts['unpublish_acks']} acknowledged unpublications "
                     f"(+{counts['unpublish_uncertain']} with a lost answer)")
    return counts


# Webhooks, as the receiver heard them

EVENTS = ["comparison.published", "comparison.unpublished"]
KINDS = {"publish": "comparison.published", "unpublish": "comparison.unpublished"}


class Hook:
    """A webhook endpoint subscribed to publications and unpublications, registered at a real
    receiver on 127.0.0.1; it knows main's commit when it was registered, so that the events
    it must hear are read from git afterwards."""

    def __init__(self, server: Server, admin: Headers, receiver: Receiver) -> None:
        self.admin = admin
        self.receiver = receiver
        with httpx.Client(base_url=server.url, timeout=60) as http:
            answer = http.post("/api/webhooks", headers=admin,
                               json={"url": receiver.url, "events": EVENTS,
                                     "description": "reliability receiver"})
            assert answer.status_code == 201, answer.text
            self.endpoint = str(answer.json()["endpoint"]["id"])
            self.secret = str(answer.json()["secret"])
            self.since = str(http.get("/health").json()["head"])
        self.expected: list[tuple[str, str]] = []
        self.duplicates = 0
        self.cut = 0
        self.left: list[dict[str, Any]] = []

    def drain(self, repo: Path, server: Server, findings: Findings, timeout: float = 120) -> None:
        """Wait (bounded) until every event main's history calls for has reached the receiver
        and the delivery log has nothing pending; then check what was received."""
        self.expected = expected_events(repo, self.since)
        wanted = {event_id(kind, commit): (kind, commit) for kind, commit in self.expected}
        with self.receiver.arrived:
            self.receiver.arrived.wait_for(lambda: set(wanted) <= received_ids(self.receiver),
                                           timeout=timeout)
        self.left = self.undelivered(server)
        if self.left:
            findings.add(f"deliveries still pending or failed after the wait: {self.left}")
        self.duplicates, self.cut = check_deliveries(self.receiver, wanted, self.expected,
                                                     self.secret, findings)

    def log(self, server: Server) -> list[str]:
        """The delivery log, oldest first: each delivery's event, status and attempts' codes."""
        answer = httpx.get(f"{server.url}/api/webhooks/{self.endpoint}/deliveries",
                           headers=self.admin, timeout=60)
        assert answer.status_code == 200, answer.text
        return [f"{d['event_id']} {d['status']} attempts={d['attempts']} "
                f"codes={[a['status_code'] for a in d['attempt_log']]}"
                for d in reversed(answer.json()["items"])]

    def undelivered(self, server: Server) -> list[dict[str, Any]]:
        """Poll the delivery log (bounded) until nothing is pending; what is not delivered.
        Between polls the wait is on the receiver, which hears of any attempt at once."""
        left: list[dict[str, Any]] = []
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for _ in range(600):
                answer = http.get(f"/api/webhooks/{self.endpoint}/deliveries", headers=self.admin)
                assert answer.status_code == 200, answer.text
                left = [{"id": d["id"], "status": d["status"], "commit": d["commit"],
                         "attempts": d["attempts"],
                         "errors": [a["error"] for a in d["attempt_log"]][-2:]}
                        for d in answer.json()["items"] if d["status"] != "delivered"]
                if not any(item["status"] == "pending" for item in left):
                    return left
                with self.receiver.arrived:
                    self.receiver.arrived.wait(timeout=0.5)
        return left


def expected_events(repo: Path, since: str) -> list[tuple[str, str]]:
    """Publications and unpublications on main's first-parent history after ``since``, oldest
    first, read from git."""
    commits = reachable_commits(repo)
    chain = first_parents(repo)
    assert since in chain, "main no longer contains the commit it was at when hooked"
    newer = list(reversed(chain[: chain.index(since)]))
    return [(KINDS[commits[sha].action or ""], sha) for sha in newer
            if commits[sha].action in KINDS]


def complete(request: Any) -> bool:
    """Whether the receiver got the whole request: a sender killed while sending leaves one
    whose body is shorter than its Content-Length (the receiver reads what arrived)."""
    length = headers_of(request.headers).get("content-length", "")
    return bool(request.body) and length.isdigit() and int(length) == len(request.body)


def received_ids(receiver: Receiver) -> set[str]:
    return {headers_of(r.headers).get("webhook-id", "") for r in receiver.received if complete(r)}


def headers_of(headers: dict[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


def check_deliveries(receiver: Receiver, wanted: dict[str, tuple[str, str]],
                     expected: list[tuple[str, str]], secret: str, findings: Findings
                     ) -> tuple[int, int]:
    """Each expected event arrived under its own webhook-id, with its commit, signed; first
    arrivals in main's order. Returns how many deliveries repeated an id already received, and
    how many requests were cut short (their sender killed while sending them)."""
    verifier = standardwebhooks.Webhook(secret)
    seen: dict[str, tuple[str, str]] = {}
    first_order: list[str] = []
    duplicates = cut = 0
    with receiver.arrived:
        requests = list(receiver.received)
    for request in requests:
        headers = headers_of(request.headers)
        webhook_id = headers.get("webhook-id", "")
        if not complete(request):
            cut += 1
            continue
        try:
            verifier.verify(request.body, headers)
        except standardwebhooks.WebhookVerificationError as exc:
            findings.add(f"delivery {webhook_id} is not signed with the endpoint's secret: {exc}")
        payload = json.loads(request.body)
        got = (payload["type"], payload["data"]["commit"])
        if webhook_id in seen:
            duplicates += 1
            if seen[webhook_id] != got:
                findings.add(f"webhook-id {webhook_id} carried {seen[webhook_id]} and then {got}")
            continue
        seen[webhook_id] = got
        first_order.append(webhook_id)
        if wanted.get(webhook_id) != got:
            findings.add(f"delivery {webhook_id} carries {got}, which is not the event of that "
                         f"id on main: {wanted.get(webhook_id)}")
    missing = [wanted[i] for i in wanted if i not in seen]
    extra = [seen[i] for i in seen if i not in wanted]
    if missing:
        findings.add(f"{len(missing)} of {len(wanted)} events never reached the receiver: "
                     f"{missing}")
    if extra:
        findings.add(f"events received that main's history does not hold: {extra}")
    order = [event_id(kind, commit) for kind, commit in expected]
    arrived = [i for i in first_order if i in wanted]
    if arrived != [i for i in order if i in set(arrived)]:
        findings.add("events first arrived out of main's order: "
                     f"{[wanted[i][1][:10] for i in arrived]} vs "
                     f"{[commit[:10] for _, commit in expected]}")
    return duplicates, cut
