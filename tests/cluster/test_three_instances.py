"""Three `cms serve` processes, each with its own clone and CMS_DATA, over one upstream (a real
`git daemon` on 127.0.0.1) and one PostgreSQL (Debian's, run unprivileged in a temporary
folder), written to at once, with one of them killed (SIGKILL) and restarted mid-run.

Six walkers, two per instance, save and take every workflow action on shared comparisons (their
writes collide across instances) and on their own; each reads what it writes through the
instance it writes to. Then, read back from the upstream with git:

- nothing answered 5xx; every acknowledged write is exactly one commit on the upstream, every
  refused one left nothing; `git fsck --strict` is clean;
- every instance converges to the upstream: the same `main` and the same refs in each clone;
- every publication and unpublication reaches the webhook receiver under one webhook-id, sent
  once across the three instances (a second sending of the same id only by an instance killed
  before it could record the first);
- the killed instance comes back and serves; nothing it acknowledged is lost.
"""

from __future__ import annotations

import random
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..receivers import Receiver, running
from ..reliability.support import (
    SEED,
    Findings,
    Headers,
    Hook,
    Ledger,
    Server,
    cms_env,
    free_port,
    init_repository,
    refs,
    scaled,
    serving,
    token,
)
from ..reliability.test_two_processes import (
    Pair,
    final_checks,
    stop_and_read_logs,
    template_and_seeded,
)
from ..reliability.walker import Walker
from .support import git_daemon

NAMES = ("a", "b", "c")
WALKERS = 6
STEPS = 25  # per walker, times CMS_SOAK_SCALE
SHARED_NEW = 2
# The third instance is killed once the ledger holds this many writes, and restarted at once.
KILL_AFTER = 40


def tokens(data: Path, database_url: str, walkers: int
           ) -> tuple[list[dict[str, tuple[Headers, str]]], Headers, Headers]:
    """Tokens in the shared database: every instance takes them."""
    people = [{role: (token(data, f"{role.title()} Number{n}", f"{role}{n}@example.com", role,
                            database_url=database_url), f"{role}{n}@example.com")
               for role in ("editor", "reviewer", "publisher", "auditor")}
              for n in range(walkers)]
    return (people,
            token(data, "Aud Auditor", "aud@example.com", "auditor", database_url=database_url),
            token(data, "Ann Admin", "ann@example.com", "admin", database_url=database_url))


@pytest.fixture
def trio(tmp_path: Path, postgres_url: str) -> Iterator[Pair]:
    upstream = tmp_path / "srv" / "site.git"
    subprocess.run(["git", "init", "-q", "--bare", str(upstream)], check=True)
    with git_daemon(tmp_path / "srv") as prefix:
        shared = {"CMS_UPSTREAM": f"{prefix}/site.git", "CMS_DATABASE_URL": postgres_url,
                  "CMS_FETCH_INTERVAL": "0.2"}
        envs = [cms_env(tmp_path / name / "content", tmp_path / name / "data", free_port(),
                        **shared) for name in NAMES]
        init_repository(envs[0])  # seeds the empty upstream; the others clone it on start
        people, auditor, admin = tokens(tmp_path / "a" / "data", postgres_url, WALKERS)
        servers = [Server(env, tmp_path / f"server-{name}.log", name)
                   for env, name in zip(envs, NAMES, strict=True)]
        receiver = Receiver()
        with running(receiver), serving(servers):
            # The upstream is the repository every check reads.
            yield Pair(repo=upstream, data=tmp_path / "a" / "data", servers=servers,
                       auditor=auditor, receiver=receiver,
                       hook=Hook(servers[0], admin, receiver), people=people)


def converged(trio: Pair, findings: Findings) -> None:
    """Wait (bounded) until every clone holds exactly the upstream's refs, as its follower
    fetches them; then every instance must read the upstream's main."""
    upstream = refs(trio.repo)
    for server in trio.servers:
        clone = Path(server.env["CMS_REPO"])
        for _ in range(300):
            if refs(clone) == upstream:
                break
            with trio.receiver.arrived:  # a bounded pause that any webhook arrival cuts short
                trio.receiver.arrived.wait(timeout=0.1)
        else:
            findings.add(f"{server.name}'s clone still differs from the upstream: "
                         f"{sorted(set(refs(clone).items()) ^ set(upstream.items()))}\n"
                         f"{server.log_tail(30)}")
            continue
        with httpx.Client(base_url=server.url, timeout=60) as http:
            head = http.get("/health").json()["head"]
        if head != upstream["refs/heads/main"]:
            findings.add(f"{server.name} reads main at {head}, its clone and the upstream have "
                         f"{upstream['refs/heads/main']}")


def test_six_writers_on_three_instances_with_one_killed_lose_nothing(trio: Pair) -> None:
    rng = random.Random(SEED)
    ledger = Ledger()
    findings = Findings()
    http = {server.name: httpx.Client(base_url=server.url, timeout=60)
            for server in trio.servers}
    victim = trio.servers[2]
    up = threading.Event()  # cleared just before the kill, set once the victim answers again
    up.set()

    def back_up(_error: BaseException, _tries: int) -> bool:
        """After a lost connection: try again once the instance answers (bounded wait)."""
        return up.wait(timeout=120)

    def kill_and_restart() -> None:
        # A supervisor's immediate restart, while the walkers of this instance are writing.
        with ledger.acked:
            ledger.acked.wait_for(lambda: ledger.ack_count >= KILL_AFTER, timeout=300)
        up.clear()
        victim.kill()
        victim.start()
        up.set()

    try:
        template, seeded = template_and_seeded(http["a"])
        shared = seeded + [f"shared-new-{n}" for n in range(SHARED_NEW)]
        walkers = []
        for number in range(WALKERS):
            name = NAMES[number % len(NAMES)]
            walkers.append(Walker(
                name=f"w{number}", rng=random.Random(rng.random()), ledger=ledger,
                writer=http[name], writer_name=name, readers=[(name, http[name])],
                people=trio.people[number], template=template, own=[f"own-{number}"],
                shared=shared, retry=back_up, max_tries=40,
            ))
        killer = threading.Thread(target=kill_and_restart, name="killer")
        threads = [threading.Thread(target=w.run, args=(scaled(STEPS),), name=w.name)
                   for w in walkers]
        killer.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        killer.join(timeout=300)
        hung = [t.name for t in [*threads, killer] if t.is_alive()]
        for walker in walkers:
            walker.stop.set()
        assert not hung, f"still running after 10 minutes: {hung}"
        for walker in walkers:
            findings.problems += walker.problems
        calls = ledger.snapshot()
        converged(trio, findings)
        counts = final_checks(trio, calls, findings, kills=victim.kills)
    finally:
        for client in http.values():
            client.close()
    stop_and_read_logs(trio, findings)
    summary = (f"seed={SEED} writes={len(calls)} acked={sum(c.ack for c in calls)} "
               f"statuses={dict(Counter(c.status for c in calls))} {counts} "
               f"\n{ledger.summary()}")
    print(summary)
    assert not findings.problems, f"{summary}\n{findings.report()}"
    assert victim.kills == 1, summary
    assert any(c.status in (409, 412) for c in calls), summary  # writes did collide
    assert counts["publish_acks"] > 0, summary
