"""One error hierarchy for the whole CMS; each error knows its HTTP meaning.

Library errors (YAML, msgspec, git) are translated into these where they are caught, keeping the
cause, and the API turns them into JSON in one exception handler.
"""

from __future__ import annotations

from typing import Any


class CmsError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details


class BadRequest(CmsError):
    status = 400
    code = "bad_request"


class BadParameter(BadRequest):
    """A query parameter, header or path segment that is not what the route takes."""

    code = "bad_parameter"


class InvalidContent(CmsError):
    """A document or payload that does not fit the content model; ``field`` names the culprit."""

    status = 422
    code = "invalid_content"


class Unauthorized(CmsError):
    status = 401
    code = "unauthorized"


class Forbidden(CmsError):
    status = 403
    code = "forbidden"


class NotFound(CmsError):
    status = 404
    code = "not_found"


class Conflict(CmsError):
    status = 409
    code = "conflict"


class TransitionNotAllowed(Conflict):
    code = "transition_not_allowed"


class Gone(CmsError):
    """A link or token that was valid once and no longer is (expired, revoked, rewritten)."""

    status = 410
    code = "gone"


class PreconditionFailed(CmsError):
    """The client's If-Match names a revision that is no longer current."""

    status = 412
    code = "stale_revision"


class PreconditionRequired(CmsError):
    status = 428
    code = "revision_required"


class StoreError(CmsError):
    """The content repository could not be written: nothing was changed, unless the error says
    (``uncertain``) that part of the write may stand."""

    status = 503
    code = "store_unavailable"


class CatalogueUnavailable(CmsError):
    """The catalogue that lists and search read could not be used; it is being made anew."""

    status = 503
    code = "catalogue_unavailable"
