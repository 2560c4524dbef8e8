"""Routes for admins: API tokens."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED

from ..identity.tokens import TokenRecord
from .auth import requires_roles
from .params import ServicesDep
from .schemas import TokenCreated, TokenIn, TokenView


def token_view(record: TokenRecord) -> TokenView:
    return TokenView(id=record.id, name=record.name, email=record.email, roles=list(record.roles),
                     created_at=record.created_at, revoked_at=record.revoked_at)


class TokensController(Controller):
    path = "/api/tokens"
    tags = ["admin"]
    guards = [requires_roles]
    opt = {"roles": ("admin",)}

    @get("/", sync_to_thread=True, summary="List tokens (never their secrets)")
    def list_tokens(self, services: ServicesDep) -> list[TokenView]:
        return [token_view(record) for record in services.tokens.all()]

    @post("/", sync_to_thread=True, status_code=HTTP_201_CREATED,
          summary="Create a token; the secret is shown once")
    def create_token(self, services: ServicesDep, data: JSONBody[TokenIn]) -> TokenCreated:
        record, token = services.tokens.create(data.name, data.email, list(data.roles))
        view = token_view(record)
        return TokenCreated(**{f: getattr(view, f) for f in view.__struct_fields__}, token=token)

    @post("/{token_id:str}/revoke", sync_to_thread=True, status_code=200,
          summary="Revoke a token")
    def revoke_token(
        self, services: ServicesDep,
        token_id: FromPath[str],
    ) -> TokenView:
        return token_view(services.tokens.revoke(token_id))
