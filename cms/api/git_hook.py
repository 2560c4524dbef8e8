"""The route a forge's push webhook calls: fetch from the upstream now, not at the next interval.

The call is signed with the secret both sides know (``CMS_GIT_HOOK_SECRET``), the way forges
sign: an HMAC-SHA256 of the body in ``X-Hub-Signature-256`` (GitHub, Gitea, Forgejo), or the
secret itself in ``X-Gitlab-Token`` (GitLab). The body says nothing the instance believes: it
fetches and reads what the upstream has.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import anyio.to_thread
from litestar import Request, post
from msgspec import Struct

from ..errors import Forbidden, NotFound, Unauthorized
from .params import ServicesDep


class Fetched(Struct, kw_only=True):
    main: str | None  # where main is on the upstream now, as this instance reads it too


@post("/api/hooks/git", status_code=200, tags=["cluster"],
      summary="Fetch from the upstream now (a forge's signed push webhook)")
async def git_hook(request: Request[Any, Any, Any], services: ServicesDep) -> Fetched:
    follower = services.follower
    if follower is None:
        raise NotFound("this instance has no upstream (CMS_UPSTREAM) to fetch from")
    secret = services.settings.git_hook_secret
    if not secret:
        raise Forbidden("set CMS_GIT_HOOK_SECRET on this instance, and the same secret in "
                        "the forge's webhook, to take signed push hooks")
    _check_signature(request.headers.get("x-hub-signature-256"),
                     request.headers.get("x-gitlab-token"), await request.body(), secret)
    refs = await anyio.to_thread.run_sync(follower.fetch)
    return Fetched(main=refs.get(services.documents.layout.main_ref))


def _check_signature(signature: str | None, token: str | None, body: bytes,
                     secret: str) -> None:
    if signature is not None:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(signature.strip().encode(), expected.encode()):
            return
        raise Unauthorized("X-Hub-Signature-256 is not the HMAC-SHA256 of the body with this "
                           "instance's secret", field="X-Hub-Signature-256")
    if token is not None:
        if hmac.compare_digest(token.encode(), secret.encode()):
            return
        raise Unauthorized("X-Gitlab-Token is not this instance's secret", field="X-Gitlab-Token")
    raise Unauthorized("sign the call: X-Hub-Signature-256 (an HMAC-SHA256 of the body) or "
                       "X-Gitlab-Token", field="X-Hub-Signature-256")


