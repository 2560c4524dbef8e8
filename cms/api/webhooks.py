"""Routes for admins: webhook endpoints, their delivery log, redelivery and replay."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from msgspec import UNSET, Meta, Struct, UnsetType

from ..webhooks.events import EVENT_TYPES
from ..webhooks.store import ROTATION_GRACE_SECONDS, Delivery, Endpoint
from ..webhooks.targets import check_url
from .auth import requires_roles
from .http import PRIVATE_CACHE
from .params import ServicesDep

EventType = Literal["comparison.published", "comparison.unpublished", "comparison.transitioned",
                    "review.requested", "review.approved", "review.changes_requested",
                    "comment.created", "comparison.scheduled", "release.published"]
Kind = Literal["standard", "build_hook"]
# What a delivery can reach, written as a pattern so that the document says it too: http(s), a
# host name or an IPv4 address (no credentials), an optional port from 1 to 65535, and the rest
# in printable ASCII. The address a name resolves to is checked when a delivery is sent.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# The last label holds a letter (or it would be an address): digits, then the first other
# character, then anything; written so that a long label is matched without backtracking.
_NAME = r"(?:[A-Za-z0-9_-]+\.)*[0-9]*[A-Za-z_-][A-Za-z0-9_-]*\.?"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_URL = rf"^https?://(?:{_OCTET}(?:\.{_OCTET}){{3}}|{_NAME})(?::{_PORT})?(?:[/?#][!-~]*)?\Z"
Url = Annotated[str, Meta(min_length=8, max_length=2000, pattern=_URL,
                          description="Where deliveries go: http:// or https://, a host name or "
                                      "an IPv4 address, no credentials")]
Window = Annotated[float, Meta(ge=0, le=3600)]
DEFAULT_EVENTS: list[EventType] = ["comparison.published", "comparison.unpublished"]
assert set(EVENT_TYPES) == set(EventType.__args__)  # type: ignore[attr-defined]


class EndpointIn(Struct, forbid_unknown_fields=True, kw_only=True):
    url: Url
    events: Annotated[list[EventType], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: list(DEFAULT_EVENTS))
    description: Annotated[str, Meta(max_length=500)] = ""
    kind: Kind = "standard"
    coalesce_seconds: Window = 0


class EndpointPatch(Struct, forbid_unknown_fields=True, kw_only=True):
    url: Url | UnsetType = UNSET
    events: Annotated[list[EventType], Meta(min_length=1)] | UnsetType = UNSET
    description: Annotated[str, Meta(max_length=500)] | UnsetType = UNSET
    kind: Kind | UnsetType = UNSET
    coalesce_seconds: Window | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET


class EndpointCreated(Struct, kw_only=True):
    endpoint: Endpoint
    secret: str


class SecretRotated(Struct, kw_only=True):
    secret: str
    previous_secret_valid_for_seconds: int


class ReplayIn(Struct, forbid_unknown_fields=True):
    since: Annotated[str, Meta(pattern=r"^[0-9a-f]{40}\Z")]


class Replayed(Struct):
    queued: int


class DeliveryList(Struct):
    items: list[Delivery]


class WebhooksController(Controller):
    path = "/api/webhooks"
    tags = ["webhooks"]
    guards = [requires_roles]
    opt = {"roles": ("admin",)}

    @post("/", sync_to_thread=True, status_code=HTTP_201_CREATED,
          summary="Subscribe an endpoint; the signing secret is shown only now")
    def create_endpoint(self, services: ServicesDep, data: JSONBody[EndpointIn]
                        ) -> EndpointCreated:
        endpoint, secret = services.webhooks.store.create_endpoint(
            url=check_url(data.url), events=list(data.events), description=data.description,
            kind=data.kind, coalesce_seconds=data.coalesce_seconds,
        )
        return EndpointCreated(endpoint=endpoint, secret=secret)

    @get("/", sync_to_thread=True, summary="List endpoints (never their secrets)")
    def list_endpoints(self, services: ServicesDep) -> Response[list[Endpoint]]:
        return Response(services.webhooks.store.endpoints(),
                        headers={"Cache-Control": PRIVATE_CACHE})

    @get("/{endpoint_id:str}", sync_to_thread=True, summary="Read one endpoint")
    def read_endpoint(self, services: ServicesDep, endpoint_id: FromPath[str]) -> Endpoint:
        return services.webhooks.store.endpoint(endpoint_id)

    @patch("/{endpoint_id:str}", sync_to_thread=True,
           summary="Change an endpoint; `enabled: true` re-enables one that was disabled")
    def update_endpoint(self, services: ServicesDep, endpoint_id: FromPath[str],
                        data: JSONBody[EndpointPatch]) -> Endpoint:
        changes = {name: getattr(data, name) for name in data.__struct_fields__
                   if getattr(data, name) is not UNSET}
        if "url" in changes:
            check_url(changes["url"])
        endpoint = services.webhooks.store.update_endpoint(endpoint_id, **changes)
        services.webhooks.dispatcher.wake()
        return endpoint

    @delete("/{endpoint_id:str}", sync_to_thread=True, status_code=HTTP_204_NO_CONTENT,
            summary="Remove an endpoint and its delivery log")
    def delete_endpoint(self, services: ServicesDep, endpoint_id: FromPath[str]) -> None:
        services.webhooks.store.delete_endpoint(endpoint_id)

    @post("/{endpoint_id:str}/rotate-secret", sync_to_thread=True, status_code=200,
          summary="New signing secret; both are used to sign for a day")
    def rotate_secret(self, services: ServicesDep, endpoint_id: FromPath[str]
                      ) -> SecretRotated:
        secret = services.webhooks.store.rotate_secret(endpoint_id)
        return SecretRotated(secret=secret,
                             previous_secret_valid_for_seconds=ROTATION_GRACE_SECONDS)

    @get("/{endpoint_id:str}/deliveries", sync_to_thread=True,
         summary="Delivery log, newest first, with every attempt")
    def list_deliveries(self, services: ServicesDep, endpoint_id: FromPath[str]
                        ) -> DeliveryList:
        return DeliveryList(items=services.webhooks.store.deliveries(endpoint_id))

    @post("/{endpoint_id:str}/deliveries/{delivery_id:str}/redeliver", sync_to_thread=True,
          status_code=HTTP_201_CREATED, summary="Send an event again (same webhook-id)")
    def redeliver(self, services: ServicesDep, endpoint_id: FromPath[str],
                  delivery_id: FromPath[str]) -> Delivery:
        delivery = services.webhooks.store.redeliver(endpoint_id, delivery_id)
        services.webhooks.dispatcher.wake()
        return delivery

    @post("/{endpoint_id:str}/replay", sync_to_thread=True, status_code=200,
          summary="Queue again every publication after a commit of main")
    def replay_since(self, services: ServicesDep, endpoint_id: FromPath[str],
                     data: JSONBody[ReplayIn]) -> Replayed:
        services.webhooks.store.endpoint(endpoint_id)
        queued = services.webhooks.replay(endpoint_id, data.since)
        return Replayed(queued=queued)
