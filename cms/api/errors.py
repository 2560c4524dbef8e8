"""Every error leaves the API as JSON: status, code, a message naming the field or rule."""

from __future__ import annotations

import errno
import logging
import sqlite3
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from ..content.codec import explain
from ..errors import CmsError
from ..shared.database import is_database_error

log = logging.getLogger("cms")


def error_body(status: int, code: str, message: str, field: str | None = None,
               **details: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if field:
        body["field"] = field
    body.update(details)
    return body


def _json(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(body, status_code=body["status"], media_type=MediaType.JSON, headers=headers)


def handle_cms_error(_: Request[Any, Any, Any], exc: CmsError) -> Response[Any]:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    if isinstance(exc.details.get("retry_after"), int):
        headers["Retry-After"] = str(exc.details["retry_after"])
    return _json(error_body(exc.status, exc.code, exc.message, exc.field, **exc.details),
                 headers or None)


def handle_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    problems = exc.extra if isinstance(exc.extra, list) else []
    if not problems:
        return _json(error_body(400, "bad_request", str(exc.detail)))
    first = problems[0]
    key = str(first.get("key", "")) if isinstance(first, dict) else ""
    message = str(first.get("message", exc.detail)) if isinstance(first, dict) else str(first)
    source = first.get("source") if isinstance(first, dict) else None
    if key == "data" and source == "body":
        key = ""
    if source in {"query", "path", "header"}:
        key = _as_sent(request, key)
        return _json(error_body(400, "bad_parameter", f"{key}: {message}", key or None))
    message, field = explain(message, key)
    return _json(error_body(422, "invalid_content", message, field))


def _as_sent(request: Request[Any, Any, Any], key: str) -> str:
    """A parameter by the name the client sends (`format`), not the handler's (`output`)."""
    field = request.route_handler.parsed_fn_signature.parameters.get(key)
    alias = getattr(field.kwarg_definition, "name", None) if field is not None else None
    return alias if isinstance(alias, str) and alias else key


# The framework's own refusals (a route or method that does not exist, a body too large), in
# the API's terms.
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 413: "payload_too_large"}


def handle_http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    # The framework's own headers for its refusal, `Allow` on a 405 among them.
    headers = {name.title(): value for name, value in (exc.headers or {}).items()}
    allowed = [method.strip() for method in headers.get("Allow", "").split(",") if method.strip()]
    if "GET" in allowed and "HEAD" not in allowed:  # answered for every GET route (head.py)
        headers["Allow"] = ", ".join([*allowed, "HEAD"])
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return _json(error_body(status, HTTP_CODES.get(status, "http_error"), str(exc.detail)),
                 headers or None)


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if _out_of_space(exc):
        log.warning("out of disk space on %s %s: %s", request.method, request.url.path, exc)
        return _json(error_body(503, "store_unavailable",
                                "the server is out of disk space; try again later"))
    if is_database_error(exc):
        # The stores turn their database's errors into StoreError; one that slipped past is
        # still the database's trouble, not the request's: said as such, without its message.
        log.warning("database error on %s %s: %s", request.method, request.url.path,
                    type(exc).__name__)
        return _json(error_body(503, "store_unavailable",
                                "the server's database is unavailable; try again later"))
    if isinstance(exc, RecursionError):
        # Input nested past what a parser could follow (the depth check refuses far less):
        # the client's fault, and no trace is worth logging for it.
        return _json(error_body(400, "too_deeply_nested",
                                "the JSON body nests its arrays and objects too deeply"))
    # The trace goes to the server log only; the client learns that it failed, not how.
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json(error_body(500, "internal_error", "the server failed to handle this request"))


def _out_of_space(exc: BaseException) -> bool:
    """A full disk wherever it was met (a state file, a database): the server's trouble, for a
    one-line warning, not a traceback per request."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)
