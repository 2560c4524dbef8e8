"""Schedules and releases at size: how late the scheduler carries out a publication, and what a
release of several comparisons costs as one commit, each against a plain publication measured in
the same run."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from cms.config import load_settings
from cms.editing.events import Committed
from cms.editing.releases import Releases
from cms.editing.scheduler import Scheduler
from cms.editing.schedules import Schedules
from cms.editing.write_side import WriteSide, open_write_side
from cms.store.repository import Repository

from .common import EDITOR, PUBLISHER, REVIEWER, published_slugs, seed_repository, summary, timed

RELEASE_SIZE = 3
# A schedule falls due this long after it is made; the next one a little later than that.
LEAD_SECONDS = 1.5


def approved(store: WriteSide, slug: str, number: int) -> str:
    """A new revision of ``slug``, submitted and approved; its revision."""
    current = store.documents.current(slug)
    assert current is not None
    edited = msgspec.structs.replace(current.comparison,
                                     summary=f"{current.comparison.summary} Round {number}.")
    revision = store.editor.save(slug, edited, EDITOR, current.revision).revision
    for action, actor in (("submit", EDITOR), ("approve", REVIEWER)):
        revision = store.editor.transition(slug, action, actor, revision).revision
    return revision


def bench_review(workdir: Path, comparisons: int, rounds: int) -> dict[str, object]:
    settings = load_settings({}, repo=workdir / "review.git", data=workdir / "review-data",
                             webhook_worker=False)
    seed_repository(settings, comparisons)
    store = open_write_side(settings, repo=Repository(settings.repo))
    slugs = published_slugs(store.documents)
    report: dict[str, object] = {"comparisons": comparisons}

    publish, release = [], []
    releases = Releases(store.documents, store.pipeline, store.workflows)
    for number in range(rounds):
        one = slugs[number]
        revision = approved(store, one, number)
        publish.append(timed(lambda s=one, r=revision: store.editor.transition(
            s, "publish", PUBLISHER, r)))
        gathered = slugs[rounds + number * RELEASE_SIZE:rounds + (number + 1) * RELEASE_SIZE]
        for slug in gathered:
            approved(store, slug, number)
        made = releases.create(f"Round {number}", gathered, EDITOR)
        release.append(timed(lambda r=made.id: releases.publish(r, PUBLISHER)))
    report["publish_one_baseline"] = summary(publish)
    report[f"release_of_{RELEASE_SIZE}_one_commit"] = summary(release)
    report["release_ratio"] = round(report[f"release_of_{RELEASE_SIZE}_one_commit"][
        "median_ms"] / report["publish_one_baseline"]["median_ms"], 2)  # type: ignore[index]

    # Lateness: from the time a schedule names to its publication being on main, with the
    # scheduler's own thread waiting for it as a server's does.
    schedules = Schedules(store.documents, store.pipeline, store.editor, store.workflows)
    landed: dict[str, float] = {}
    done = threading.Condition()

    def heard(event: Committed) -> None:
        if event.action == "publish" and event.main_moved:
            with done:
                landed[event.slug] = time.time()
                done.notify_all()

    store.listeners.subscribe(heard)
    scheduler = Scheduler(schedules, None, lambda _address: PUBLISHER.roles)
    scheduler.start()
    try:
        due: dict[str, float] = {}
        targets = slugs[rounds * (RELEASE_SIZE + 1):rounds * (RELEASE_SIZE + 2)]
        for number, slug in enumerate(targets):
            revision = approved(store, slug, number)
            at = datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS)
            made = schedules.schedule(slug, "publish", at, PUBLISHER, revision)
            due[slug] = made.at.timestamp()
        with done:
            done.wait_for(lambda: len(landed) >= len(targets), timeout=60 + 2 * len(targets))
    finally:
        scheduler.stop()
    late = [landed[slug] - due[slug] for slug in due if slug in landed]
    report["scheduler_lateness"] = summary(late) if late else {"missed": len(due)}
    report["scheduled_carried_out"] = f"{len(late)}/{len(due)}"
    return report
