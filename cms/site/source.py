"""The public API as the site reads it: an incremental sync of the published comparisons and
their verdict changes. No token is sent: the site sees what any reader sees."""

from __future__ import annotations

from typing import TypeVar

import httpx
import msgspec

from .model import Comparison, SyncPage, VerdictChange, VerdictChanges

T = TypeVar("T")

SYNC_PAGE = 1000
RECENT_CHANGES = 100
LOG_PAGE = 1000
# More changed comparisons than this in one build: their records are read in one go.
ONE_BY_ONE = 20


class SourceError(Exception):
    """The API could not be read: the build stops and the site stays as it was."""


class Synced(msgspec.Struct, frozen=True):
    items: list[Comparison]
    deleted: list[str]
    next_sync: str
    full: bool  # every published comparison is in ``items``


class Source:
    def __init__(self, api: str, *, timeout: float = 30.0,
                 client: httpx.Client | None = None) -> None:
        self.api = api.rstrip("/")
        self._client = client or httpx.Client(base_url=self.api, timeout=timeout,
                                              headers={"User-Agent": "cms-site"})
        self._own = client is None

    def close(self) -> None:
        if self._own:
            self._client.close()

    def sync(self, token: str | None) -> Synced:
        """What changed since ``token`` (everything without one, or when the API no longer
        knows it), all pages of one sync."""
        items: list[Comparison] = []
        deleted: list[str] = []
        params: dict[str, str | int] = {"limit": SYNC_PAGE}
        seen: set[str] = set()
        if token:
            params["token"] = token
        while True:
            response = self._get("/api/sync", params)
            if response.status_code == 410 and token:
                return self.sync(None)  # a token from another repository, or rewritten history
            page = self._decode(response, SyncPage)
            items += page.items
            deleted += page.deleted
            if page.next_page in seen:
                # An API that named a page again would be followed for ever.
                raise SourceError(f"the API at {self.api} sent the same sync page again")
            if page.next_page is None:
                if page.next_sync is None:
                    raise SourceError("the API ended a sync without a token to continue from")
                return Synced(items=items, deleted=deleted, next_sync=page.next_sync,
                              full=not token)
            seen.add(page.next_page)
            params = {"limit": SYNC_PAGE, "page": page.next_page}

    def verdict_changes(self, slug: str) -> list[VerdictChange]:
        """One comparison's verdict changes, newest first ([] once it is no longer published)."""
        response = self._get(f"/api/comparisons/{slug}/verdict-changes", {})
        if response.status_code == 404:
            return []
        return self._decode(response, VerdictChanges).items

    def recent_changes(self) -> list[VerdictChange]:
        response = self._get("/api/verdict-changes", {"limit": RECENT_CHANGES})
        return self._decode(response, VerdictChanges).items

    def every_change(self) -> dict[str, list[VerdictChange]]:
        """The whole public record, by comparison, newest first: a full build's one read of
        it, rather than one request per comparison."""
        by_slug: dict[str, list[VerdictChange]] = {}
        params: dict[str, str | int] = {"limit": LOG_PAGE}
        while True:
            page = self._decode(self._get("/api/verdict-changes", params), VerdictChanges)
            for change in page.items:
                by_slug.setdefault(change.slug, []).append(change)
            if page.next_cursor is None:
                return by_slug
            # Each page is older than the last: a cursor that does not go back is refused
            # (an API that named the same place again would be followed for ever).
            if not page.next_cursor.isdigit() or (
                    "cursor" in params and int(page.next_cursor) >= int(params["cursor"])):
                raise SourceError(f"the API at {self.api} sent a cursor that does not go back")
            params = {"limit": LOG_PAGE, "cursor": page.next_cursor}

    def _get(self, path: str, params: dict[str, str | int]) -> httpx.Response:
        try:
            return self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise SourceError(f"the API at {self.api} could not be reached ({exc})") from exc

    def _decode(self, response: httpx.Response, kind: type[T]) -> T:
        if response.status_code != 200:
            raise SourceError(f"the API at {self.api} answered {response.status_code} to "
                              f"{response.request.url.path}")
        try:
            return msgspec.json.decode(response.content, type=kind)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise SourceError(f"the API at {self.api} sent what the site cannot read "
                              f"({exc})") from exc
