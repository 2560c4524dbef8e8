"""What the commands need to know of schedules: a scheduled run, and which schedules a write
voids.

A schedule is a commit (``Cms-Action: schedule``) and a ref that indexes it while it is pending
(see ``Layout.scheduled``). A write that changes what a schedule was made for drops that ref in
the same ref transaction as its own move, so no void schedule is ever left listed; the
publication a schedule makes drops it the same way, which is what makes it run once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from msgspec import Struct

from ..errors import Conflict, InvalidContent
from ..identity.actors import Actor
from ..store.layout import Layout
from ..store.refs import Refs
from .events import ACTION_TRAILER, AT_TRAILER, CANCEL, RUN_TRAILER, SCHEDULE, format_at, parse_at
from .pipeline import RefMove

__all__ = ["ACTION_TRAILER", "AT_TRAILER", "CANCEL", "RUN_TRAILER", "SCHEDULE", "ScheduleGone",
           "ScheduledRun", "author_of", "due_time", "format_at", "parse_at", "voided"]


class ScheduleGone(Conflict):
    """The schedule was carried out, cancelled or voided meanwhile (by another process, say)."""

    code = "schedule_gone"


class ScheduledRun(Struct, frozen=True, kw_only=True):
    """A transition a schedule makes: it runs only while ``ref`` still points at ``commit``."""

    ref: str
    commit: str
    due: datetime

    @property
    def not_before(self) -> datetime:
        """A change's ``after``: the publication is dated no earlier than the time it was
        scheduled for, which its audit checks."""
        return self.due - timedelta(seconds=1)

    @property
    def trailers(self) -> tuple[tuple[str, str], ...]:
        return ((RUN_TRAILER, self.commit),)

    def check(self, refs: Refs) -> None:
        if refs.read(self.ref) != self.commit:
            raise ScheduleGone(f"the schedule {self.commit[:12]} is no longer pending",
                               field="action")


# How far ahead a schedule may be set.
HORIZON_YEARS = 5


def due_time(at: datetime, now: datetime, what: str) -> datetime:
    """When a schedule made at ``now`` for ``at`` falls due: a whole second (commit times have
    whole seconds; never before the time asked), yet to come, at most five years ahead."""
    seconds = math.ceil(at.astimezone(UTC).timestamp())
    due = datetime.fromtimestamp(seconds, UTC)
    if due <= now:
        raise InvalidContent(f"`at` ({format_at(due)}) is not in the future; leave it out to "
                             f"{what} now", field="at")
    if due > _years_after(now, HORIZON_YEARS):
        raise InvalidContent(f"`at` is more than {HORIZON_YEARS} years ahead", field="at")
    return due


def _years_after(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # February 29th, in a year that has none
        return moment.replace(year=moment.year + years, day=28)


def author_of(scheduled_by: str, roles_of: Callable[[str], frozenset[str]]) -> Actor:
    """Who carries a schedule out: the person who made it (``Name <address>``), with the roles
    their active tokens hold now, so that one who lost the role schedules nothing."""
    name, _, address = scheduled_by.rpartition(" <")
    email = address.rstrip(">")
    return Actor(name=name, email=email, roles=roles_of(email.lower()))


def voided(refs: Refs, slug: str, place: str) -> tuple[RefMove, ...]:
    """The move that drops the pending schedule at ``place`` of ``slug``, if there is one."""
    ref = Layout.scheduled(slug, place)
    pending = refs.read(ref)
    return () if pending is None else (RefMove(ref=ref, expected=pending, delete=True),)
