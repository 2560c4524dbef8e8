"""What is scheduled to be published or taken down, soonest first."""

from __future__ import annotations

from litestar import Response, get
from msgspec import Struct

from ..editing.release_schedules import ReleaseSchedule
from ..editing.schedules import Schedule
from .auth import requires_roles
from .http import PRIVATE_CACHE
from .params import ServicesDep


class ScheduleList(Struct, kw_only=True):
    items: list[Schedule]
    releases: list[ReleaseSchedule]


@get("/api/schedule", sync_to_thread=True, tags=["drafts"], guards=[requires_roles],
     summary="Pending scheduled publications and takedowns, soonest first")
def list_schedule(services: ServicesDep) -> Response[ScheduleList]:
    return Response(ScheduleList(items=services.schedules.pending(),
                                 releases=services.release_schedules.pending()),
                    headers={"Cache-Control": PRIVATE_CACHE})
