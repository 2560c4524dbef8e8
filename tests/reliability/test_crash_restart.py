"""A server SIGKILLed at random moments while four clients write, and restarted at once on the
same port; a webhook endpoint on a real receiver hears every publication and unpublication.

The clients save and take every workflow action (publish and unpublish included) on shared and
own comparisons; a connection lost to a kill is retried, with the same If-Match and request id,
once the server is back (a bounded number of times). A write whose answer was lost is
*uncertain*: it may or may not have happened. Every kill waits for a few acknowledged writes
since the last restart; every other one then comes at a random moment, the others aimed at a
publish, unpublish or discard on its way (the writes that move two refs). After the kills the
server runs until its outbox is empty (a delivery that a kill caught in flight goes out again
when its claim ends, CMS_WEBHOOK_TIMEOUT + 30 s later), and then:

- `git fsck --strict` is clean; every acknowledged write is exactly one commit in git, and no
  write refused with certainty left one (see support.check_writes_against_git);
- the next write to every comparison succeeds, and no `.lock` file is left under refs/;
- every publication and unpublication on main's first-parent history since the endpoint was
  registered reached the receiver, under one webhook-id per event (retries and redeliveries
  keep it), with the right commit in the payload, signed, and first received in main's order.
  A duplicate delivery of one id is at-least-once and allowed; the test prints how many.

CMS_SOAK_SCALE multiplies the kills; CMS_RELIABILITY_SEED replays a run's choices.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from ..receivers import Receiver, running
from .support import (
    SEED,
    Findings,
    Headers,
    Hook,
    Ledger,
    Server,
    check_statuses,
    check_writes_against_git,
    cli_token,
    cms_env,
    edited,
    free_port,
    fsck,
    git,
    init_repository,
    lock_files,
    new_comparison,
    scaled,
    send,
    serving,
    strip_etag,
    token,
    tracebacks,
)
from .walker import Walker

CLIENTS = 4
KILLS = 10  # times CMS_SOAK_SCALE
ACKS_BETWEEN_KILLS = 3  # the server makes some progress in each of its lives
MAX_KILL_DELAY = 0.6  # seconds: each kill comes at a random moment up to this after that
MAX_AIMED_DELAY = 0.03  # seconds after a publish, unpublish or discard was sent
TWO_REF_WRITES = {"publish", "unpublish", "discard"}
RETRIES = 40  # tries of one request across restarts


def test_sigkill_at_random_moments_loses_no_acknowledged_write_and_no_event(
        tmp_path: Path) -> None:
    rng = random.Random(SEED)
    repo, data = tmp_path / "content.git", tmp_path / "data"
    env = cms_env(repo, data, free_port())
    init_repository(env)
    admin = cli_token(env, "Ann Admin", "ann@example.com", "admin")
    people = []
    for number in range(CLIENTS):
        roles: dict[str, tuple[Headers, str]] = {}
        for role in ("editor", "reviewer", "publisher", "auditor"):
            email = f"{role}{number}@example.com"
            roles[role] = (token(data, f"{role.title()} Number{number}", email, role), email)
        people.append(roles)
    auditor = people[0]["auditor"][0]

    server = Server(env, tmp_path / "server.log", "server")
    receiver = Receiver()
    ledger = Ledger()
    findings = Findings()
    up = threading.Event()  # cleared just before a kill, set once /health answers again
    stop = threading.Event()
    kills = scaled(KILLS)

    def back_up(_error: BaseException, _tries: int) -> bool:
        """After a lost connection: try again once the server answers (bounded wait)."""
        return up.wait(timeout=120)

    with running(receiver), serving([server]):
        up.set()
        hook = Hook(server, admin, receiver)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            listing = http.get("/api/comparisons", params={"sort": "title", "limit": 100}).json()
            seeded = [item["slug"] for item in listing["items"]]
            template = http.get(f"/api/comparisons/{seeded[0]}").json()

        # A new connection per request: one refused while the server is down was certainly not
        # sent, and one cut by a kill is marked uncertain.
        no_keepalive = httpx.Limits(max_keepalive_connections=0)
        client_list = [httpx.Client(base_url=server.url, timeout=60, limits=no_keepalive)
                       for _ in range(CLIENTS)]
        walkers = [
            Walker(name=f"c{number}", rng=random.Random(rng.random()), ledger=ledger,
                   writer=client, writer_name="server", readers=[("server", client)],
                   people=people[number], template=template, own=[f"own-{number}"],
                   shared=[*seeded[:3], "shared-new-0"], retry=back_up, max_tries=RETRIES,
                   stop=stop)
            for number, client in enumerate(client_list)
        ]
        threads = [threading.Thread(target=w.run, args=(scaled(100_000),), name=w.name)
                   for w in walkers]
        delays = []
        started = time.monotonic()
        try:
            for thread in threads:
                thread.start()
            for number in range(kills):
                with ledger.acked:
                    target = ledger.ack_count + ACKS_BETWEEN_KILLS
                    progressed = ledger.acked.wait_for(lambda t=target: ledger.ack_count >= t,
                                                       timeout=120)
                if not progressed:
                    findings.add(f"no progress: fewer than {ACKS_BETWEEN_KILLS} writes "
                                 "acknowledged within 120 s of a restart")
                    break
                if number % 2:
                    delay = rng.uniform(0, MAX_KILL_DELAY)
                else:
                    # Every other kill aims at a write that moves two refs (publish, unpublish,
                    # discard): it comes while one is on its way, at a random moment of it.
                    ledger.wait_in_flight(TWO_REF_WRITES, timeout=30)
                    delay = rng.uniform(0, MAX_AIMED_DELAY)
                delays.append(round(delay, 3))
                stop.wait(delay)  # the random moment of the kill, not a synchronisation
                up.clear()
                server.kill()
                server.start()
                up.set()
        finally:
            stop.set()
            up.set()
            for thread in threads:
                thread.join(timeout=300)
            for client in client_list:
                client.close()
        assert not any(t.is_alive() for t in threads), "clients still running after 5 minutes"
        for walker in walkers:
            findings.problems += walker.problems

        killed = time.monotonic()
        # The outbox drains: every expected event reaches the receiver, then nothing is pending.
        hook.drain(repo, server, findings)
        drained = time.monotonic()

        # The next write to every comparison succeeds, and leaves no lock behind.
        with httpx.Client(base_url=server.url, timeout=60) as http:
            last = write_everything_once(http, ledger, people[0], template, findings)
            verify = http.get("/api/audit/verify", headers=auditor)
            if verify.status_code != 200 or verify.json().get("ok") is not True:
                findings.add(f"/api/audit/verify: {verify.status_code} {verify.text[:2000]}")
        phases = (f"kills {killed - started:.1f} s, drain {drained - killed:.1f} s, "
                  f"final writes {time.monotonic() - drained:.1f} s")
        locks = lock_files(repo)
        if locks:
            findings.add(f"lock files left under refs/ after a write to every ref: {locks}")
    findings.problems += [f"traceback in the server log: {t}" for t in tracebacks([server])]

    problems = fsck(repo)
    if problems:
        findings.add(f"git fsck --strict: {problems}")
    calls = ledger.snapshot()
    check_statuses(calls, findings)
    counts = check_writes_against_git(repo, calls, findings)

    summary = (f"seed={SEED} kills={server.kills} starts={server.starts} ({phases}) "
               f"delays={delays} "
               f"writes={len(calls)} acked={sum(c.ack for c in calls)} "
               f"uncertain={sum(c.uncertain for c in calls)} "
               f"statuses={dict(Counter(c.status for c in calls))} events={len(hook.expected)} "
               f"received={len(receiver.received)} duplicate_deliveries={hook.duplicates} "
               f"cut_by_kills={hook.cut} "
               f"final_writes={last} {counts}\n{ledger.summary()}")
    print(summary)
    assert not findings.problems, f"{summary}\n{findings.report()}"
    assert server.kills == kills, summary
    assert hook.expected, f"no publication happened: {summary}"


def write_everything_once(http: httpx.Client, ledger: Ledger, roles: dict[str, tuple[Headers, str]],
                          template: dict[str, Any], findings: Findings) -> dict[str, int]:
    """For every comparison there is (published, in progress, or created and discarded), one
    more write with the revision read now: an edit where the state allows one, a withdrawal
    where it does not, a creation where the comparison is gone. Every one must succeed."""
    editor, email = roles["editor"]
    slugs = {c.slug for c in ledger.snapshot()}
    listing = http.get("/api/comparisons", params={"limit": 100}).json()["items"]
    slugs |= {item["slug"] for item in listing}
    slugs |= {item["slug"] for item in http.get("/api/drafts", headers=editor).json()["items"]}
    outcome: Counter[str] = Counter()
    for slug in sorted(slugs):
        read = http.get(f"/api/drafts/{slug}", headers=editor)
        if read.status_code == 404:
            call = ledger.open("final", "server", "create", slug, email, None)
            send(http, ledger, call, "POST", "/api/drafts", editor,
                 new_comparison(template, slug, call.req_id))
        elif read.status_code == 200:
            document, etag = read.json(), strip_etag(read.headers.get("etag"))
            if "edit" in document["allowed_actions"]:
                call = ledger.open("final", "server", "edit", slug, email, etag)
                send(http, ledger, call, "PUT", f"/api/drafts/{slug}", editor,
                     edited(document, call.req_id))
            else:
                call = ledger.open("final", "server", "withdraw", slug, email, etag)
                send(http, ledger, call, "POST", f"/api/drafts/{slug}/transitions", editor,
                     {"action": "withdraw", "comment": call.req_id})
        else:
            findings.add(f"reading {slug} after the kills answered {read.status_code}: "
                         f"{read.text[:300]}")
            continue
        outcome[f"{call.action}:{call.status}"] += 1
        if not call.ack:
            findings.add(f"the next write to {slug} after the kills failed: {call.describe()} "
                         f"{call.text}")
    return dict(outcome)


def test_a_kill_between_a_packs_two_renames_leaves_a_server_that_starts(tmp_path: Path) -> None:
    """The pack writer renames a commit's `.pack` into place, then its `.idx`; a SIGKILL between
    the two leaves the pack without its index (the index still a `tmp_idx_*` temporary), which
    the random kills above met now and then: the server restarted at once then exited with
    `cms: no object ... in the content repository`, though `git fsck --strict` found nothing
    wrong. That state is made here exactly, around a real SIGKILL; the server must start again,
    serve and take writes, and the repository stay sound."""
    repo, data = tmp_path / "content.git", tmp_path / "data"
    env = cms_env(repo, data, free_port())
    init_repository(env)
    editor = token(data, "Ada Editor", "ada@example.com", "editor")
    server = Server(env, tmp_path / "server.log", "server")
    with serving([server]), httpx.Client(base_url=server.url, timeout=60) as http:
        seeded = http.get("/api/comparisons", params={"limit": 1}).json()["items"][0]["slug"]
        document = http.get(f"/api/drafts/{seeded}", headers=editor)
        assert document.status_code == 200, document.text
        saved = http.put(f"/api/drafts/{seeded}", headers={**editor,
                         "If-Match": document.headers["etag"]},
                         json=edited(document.json(), "req-setup-0"))
        assert saved.status_code == 200, saved.text
        server.kill()
        # What the kill left: a pack renamed into place, its index not (yet) renamed.
        pack_folder = repo / "objects" / "pack"
        objects = git(repo, "rev-list", "--objects", "--all")
        name = git(repo, "pack-objects", "-q", str(pack_folder / "pack"),
                   stdin="\n".join(line.split()[0] for line in objects.splitlines())).strip()
        (pack_folder / f"pack-{name}.idx").rename(pack_folder / "tmp_idx_4242_4242")
        started = ""
        try:
            server.start(timeout=60)
        except AssertionError as exc:
            started = str(exc)[-600:]
        assert not started, f"the server does not start again: {started}"
        read = http.get(f"/api/drafts/{seeded}", headers=editor)
        assert read.status_code == 200, read.text
        again = http.put(f"/api/drafts/{seeded}", headers={**editor, "If-Match": read.headers["etag"]},
                         json=edited(read.json(), "req-setup-1"))
        assert again.status_code == 200, again.text
    problems = fsck(repo)
    assert not problems, problems
