"""What the commands need to know of schedules: a scheduled run, and which schedules a write
voids.

A schedule is a commit (``Cms-Action: schedule``) and a ref that indexes it while it is pending
(see ``Layout.scheduled``). A write that changes what a schedule was made for drops that ref in
the same ref transaction as its own move, so no void schedule is ever left listed; the
publication a schedule makes drops it the same way, which is what makes it run once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from msgspec import Struct

from ..errors import Conflict
from ..store.layout import Layout
from ..store.refs import Refs
from .events import ACTION_TRAILER, AT_TRAILER, CANCEL, RUN_TRAILER, SCHEDULE, format_at, parse_at
from .pipeline import RefMove

__all__ = ["ACTION_TRAILER", "AT_TRAILER", "CANCEL", "RUN_TRAILER", "SCHEDULE", "ScheduleGone",
           "ScheduledRun", "format_at", "parse_at", "voided"]



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


def voided(refs: Refs, slug: str, place: str) -> tuple[RefMove, ...]:
    """The move that drops the pending schedule at ``place`` of ``slug``, if there is one."""
    ref = Layout.scheduled(slug, place)
    pending = refs.read(ref)
    return () if pending is None else (RefMove(ref=ref, expected=pending, delete=True),)
