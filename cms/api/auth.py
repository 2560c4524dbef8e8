"""Bearer tokens to actors, and guards that say which roles a route needs.

Published reads are public, so a request without a token passes through as anonymous; a token
that is present but unknown or revoked is refused outright rather than quietly ignored.
"""

from __future__ import annotations

from typing import Any

import anyio
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from ..errors import Forbidden, Unauthorized
from ..identity.actors import ROLES, Actor
from .services import Services


class TokenAuthentication(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]
                                   ) -> AuthenticationResult:
        header = connection.headers.get("authorization")
        if not header:
            return AuthenticationResult(user=None, auth=None)
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send the token as `Authorization: Bearer <token>`",
                               field="Authorization")
        services: Services = connection.app.state.services
        # A database round trip (PostgreSQL may be across the network): off the event loop.
        actor = await anyio.to_thread.run_sync(services.tokens.authenticate, token.strip())
        if actor is None:
            raise Unauthorized("the token is unknown or revoked", field="Authorization")
        return AuthenticationResult(user=actor, auth=token)


def current_actor(connection: ASGIConnection[Any, Any, Any, Any]) -> Actor:
    actor = connection.scope.get("user")
    if not isinstance(actor, Actor):
        raise Unauthorized("this route needs a token: `Authorization: Bearer <token>`",
                           field="Authorization")
    return actor


def requires_roles(connection: ASGIConnection[Any, Any, Any, Any],
                   handler: BaseRouteHandler) -> None:
    """Guard: the actor must hold a role the workflow allows for the handler's ``action``
    option, or else one of its ``roles`` option."""
    if connection.scope.get("method") == "OPTIONS":
        return  # which methods a route has is no secret; the methods themselves are guarded
    actor = current_actor(connection)
    roles: tuple[str, ...] = handler.opt.get("roles", ROLES)
    if "action" in handler.opt:
        services: Services = connection.app.state.services
        # Any workflow's: the comparison's own workflow decides in the command itself.
        roles = tuple(sorted(services.workflows.permitted_roles(handler.opt["action"])))
    if not actor.has_any(set(roles)):
        raise Forbidden(f"this route needs one of the roles: {', '.join(roles)}")
