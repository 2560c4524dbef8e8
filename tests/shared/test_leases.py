"""Leases: one holder at a time, taken over when the holder's lease runs out (it died), and the
vote fold and the scheduler run their rounds only while they hold theirs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from litestar.testing import TestClient

from cms.api.services import Services
from cms.config import Settings
from cms.editing import scheduler as scheduler_module
from cms.editing.scheduler import Scheduler
from cms.editing.schedules import Schedules
from cms.shared.database import Database
from cms.shared.leases import LEASE_SECONDS, Leases, instance_name
from cms.votes import folding
from cms.votes.folding import VoteFolder

from ..conftest import HAIKU, git
from ..votes.test_votes import HAIKU_TOOL, vote

Client = TestClient  # type: ignore[type-arg]


def instances(settings: Settings, *holders: str) -> list[Leases]:
    return [Leases(Database.for_store(settings, "leases"), holder) for holder in holders]


def test_a_holder_that_cannot_do_the_work_lets_the_lease_go(shared_settings: Settings) -> None:
    cut_off = threading.Event()
    one = Leases(Database.for_store(shared_settings, "leases"), "instance-a",
                 able=lambda: not cut_off.is_set())
    (two,) = instances(shared_settings, "instance-b")
    now = time.time()
    assert one.take("scheduler", 60, now=now)
    cut_off.set()  # its upstream stopped answering: its next round gives the lease up
    assert not one.take("scheduler", 60, now=now + 1)
    assert two.take("scheduler", 60, now=now + 2)
    cut_off.clear()
    assert not one.take("scheduler", 60, now=now + 3)  # back, but the other holds it now
    assert one.holder_of("scheduler", now=now + 3) == "instance-b"


def test_one_holder_at_a_time_and_a_dead_holders_lease_passes_on(
        shared_settings: Settings) -> None:
    one, two = instances(shared_settings, "instance-a", "instance-b")
    now = time.time()
    assert one.take("fold", 60, now=now)
    assert not two.take("fold", 60, now=now + 1)
    assert one.take("fold", 60, now=now + 30)  # renewed by its holder: until now + 90
    assert not two.take("fold", 60, now=now + 89)
    assert one.holder_of("fold", now=now + 89) == "instance-a"
    # instance-a died after that renewal: once its lease has run out, instance-b takes it.
    assert two.take("fold", 60, now=now + 91)
    assert two.holder_of("fold", now=now + 91) == "instance-b"
    assert not one.take("fold", 60, now=now + 92)  # back from the dead, it does not run
    assert one.take("scheduler", 60, now=now + 92)  # another lease is another matter
    two.release("fold")  # a clean stop: free at once
    assert one.take("fold", 60, now=now + 93)
    for leases in (one, two):
        leases.close()


def test_of_many_instances_taking_a_free_lease_at_once_one_gets_it(
        shared_settings: Settings) -> None:
    takers = instances(shared_settings, *(f"instance-{n}" for n in range(8)))
    start = threading.Barrier(len(takers))
    won: list[str] = []

    def take(leases: Leases) -> None:
        start.wait(timeout=30)
        if leases.take("fold"):
            won.append(leases.holder)

    threads = [threading.Thread(target=take, args=(leases,)) for leases in takers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(won) == 1
    assert takers[0].holder_of("fold") == won[0]
    for leases in takers:
        leases.close()


def test_an_instance_is_the_same_holder_after_a_restart(settings: Settings,
                                                         tmp_path: Path) -> None:
    assert instance_name(settings) == instance_name(Settings(data=settings.data))
    assert instance_name(settings) != instance_name(Settings(data=tmp_path / "elsewhere"))


def test_only_the_instance_holding_the_lease_folds_on_its_timer(
        client: Client, settings: Settings, repo_path: Path) -> None:
    services: Services = client.app.state.services
    here = services.vote_folder
    other_leases, = instances(settings, "instance-b")
    other = VoteFolder(services.documents, services.pipeline, services.votes, here.interval,
                       leases=other_leases)
    assert vote(client, HAIKU_TOOL, "ship").status_code == 202
    main = git(repo_path, "rev-parse", "main")
    assert here.round()  # this instance takes the lease, and folds
    assert git(repo_path, "rev-parse", "main") != main
    assert vote(client, HAIKU_TOOL, "skip").status_code == 202
    main = git(repo_path, "rev-parse", "main")
    assert not other.round()  # held by the first: skipped, nothing folded
    assert git(repo_path, "rev-parse", "main") == main
    # The first instance dies; when the other looks after its lease ran out, it takes over.
    assert other_leases.take(folding.LEASE, now=time.time() + here.interval + LEASE_SECONDS + 1)
    assert other.round()
    assert git(repo_path, "rev-parse", "main") != main
    assert not here.round()
    assert client.get(f"/api/comparisons/{HAIKU}").status_code == 200
    other_leases.close()


def test_only_the_instance_holding_the_lease_runs_the_schedules(
        client: Client, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    services: Services = client.app.state.services
    other_leases, = instances(settings, "instance-b")
    here = services.scheduler
    other = Scheduler(Schedules(services.documents, services.pipeline, services.editor,
                                services.workflows), None, services.tokens.roles_of,
                      leases=other_leases)
    rounds: list[str] = []
    for name, scheduler in (("here", here), ("other", other)):
        # Which of them carried out a round, whatever the round found due.
        run = scheduler.schedules.run_due
        monkeypatch.setattr(scheduler.schedules, "run_due", lambda roles_of, name=name, run=run: (
            rounds.append(name), run(roles_of))[1])
    here.run_due()
    other.run_due()
    assert rounds == ["here"]
    # This instance dies; when the other looks after its lease ran out, it takes over.
    later = time.time() + scheduler_module.POLL_SECONDS + LEASE_SECONDS + 1
    assert other_leases.take(scheduler_module.LEASE, now=later)
    other.run_due()
    here.run_due()
    assert rounds == ["here", "other"]
    other_leases.close()



def test_a_round_that_meets_a_full_disk_says_so_in_a_line(
        client: TestClient, monkeypatch: pytest.MonkeyPatch,  # type: ignore[type-arg]
        caplog: pytest.LogCaptureFixture) -> None:
    """Every round fails while the disk is full: one line each, not a traceback each time."""
    from cms.errors import StoreError

    scheduler = client.app.state.services.scheduler

    def full(roles_of: object) -> list[str]:
        raise StoreError("git could not write: No space left on device")

    monkeypatch.setattr(scheduler.schedules, "run_due", full)
    with caplog.at_level("ERROR", logger="cms"):
        assert scheduler.run_due() == []
    failed = [record for record in caplog.records if "schedules failed" in record.getMessage()]
    assert failed
    assert all(record.exc_info is None for record in failed)
    assert "No space left" in failed[0].getMessage()
