"""Routes for auditors: the history of a comparison, read from git."""

from __future__ import annotations

from litestar import Controller, Response, get
from msgspec import Struct

from ..errors import NotFound
from ..history import HistoryEntry, history
from .auth import requires_roles
from .http import PRIVATE_CACHE, SlugPath, check_slug
from .services import ServicesDep


class History(Struct, kw_only=True):
    slug: SlugPath
    entries: list[HistoryEntry]


class AuditController(Controller):
    path = "/api/comparisons"
    tags = ["audit"]
    guards = [requires_roles]
    opt = {"roles": ("auditor", "admin")}

    @get("/{slug:str}/history", sync_to_thread=True, summary="Every commit that changed it")
    def read_history(self, services: ServicesDep, slug: SlugPath) -> Response[History]:
        entries = history(services.documents, check_slug(slug))
        if not entries:
            raise NotFound(f"no comparison with slug `{slug}` has ever existed", field="slug")
        return Response(History(slug=slug, entries=entries),
                        headers={"Cache-Control": PRIVATE_CACHE})
