"""Bodies and query strings are taken as the document types them, with no coercion.

The framework converts what it parses leniently, as it must for query strings, where every value
arrives as text; but that takes `"enabled": 0` in a JSON body for false and `"5"` for a number,
the text `null` in a query string for an absent value, and the last of a parameter given twice
when the route takes one. Before a route runs, its input is checked strictly against the types
the route takes, and anything else is refused the way the framework refuses any invalid field:
a body's field with 422, a query parameter with 400, each naming it.
"""

from __future__ import annotations

from types import NoneType, UnionType
from typing import Any, NamedTuple, Union, get_args, get_origin

import msgspec
from litestar import Request
from litestar.handlers import HTTPRouteHandler
from litestar.params import QueryParameter

from ..content.codec import explain_validation
from ..errors import BadParameter, BadRequest, InvalidContent

_EXACT = 2**53  # the whole numbers a float holds exactly


class _Takes(NamedTuple):
    body: Any  # the type of the JSON body, or None
    body_required: bool
    single: dict[str, Any]  # query parameters that take one value: name to type, null aside


# Per handler, worked out on its first request and kept in the app's state, so that an app that
# is gone (tests build many) takes it along.
_CACHE = "strict_input"
_INTEGRAL_FLOAT = "Expected `int`, got `float`"
# Headers of one value, which a second field would contradict unseen (the framework reads the
# first). Two Authorization fields are read as one, joined, and refused as an unknown token.
_ONE_VALUE = ("If-Match",)


async def strict_input(request: Request[Any, Any, Any]) -> None:
    """A ``before_request`` hook for every route."""
    if not isinstance(request.route_handler, HTTPRouteHandler):
        return
    known: dict[int, _Takes] = request.app.state.setdefault(_CACHE, {})
    for name in _ONE_VALUE:
        if len(request.headers.getall(name, [])) > 1:
            raise BadParameter(f"{name}: sent {len(request.headers.getall(name))} times; it "
                               "takes one value", field=name)
    takes = known.get(id(request.route_handler))
    if takes is None:
        takes = known[id(request.route_handler)] = _what_it_takes(request.route_handler)
    _check_query(request, takes.single)
    if takes.body is not None:
        await _check_body(request, takes.body, takes.body_required)


def _what_it_takes(handler: HTTPRouteHandler) -> _Takes:
    parameters = handler.parsed_fn_signature.parameters
    single: dict[str, Any] = {}
    for name, field in parameters.items():
        if isinstance(field.kwarg_definition, QueryParameter) and not field.is_non_string_sequence:
            single[field.kwarg_definition.name or name] = _without_none(field.annotation)
    data = parameters.get("data")
    return _Takes(body=None if data is None else data.annotation,
                  body_required=data is not None and not data.has_default, single=single)


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, UnionType) and NoneType in get_args(annotation):
        rest = tuple(kind for kind in get_args(annotation) if kind is not NoneType)
        return rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007
    return annotation


def _check_query(request: Request[Any, Any, Any], single: dict[str, Any]) -> None:
    query = request.query_params
    for name, kind in single.items():
        values = query.getall(name, [])
        if len(values) > 1:
            raise BadParameter(f"{name}: given {len(values)} times; it takes one value",
                               field=name)
        if values and values[0] == "null":
            # The one text the framework would take for "absent" rather than for the value.
            try:
                msgspec.convert(values[0], type=kind, strict=False)
            except msgspec.ValidationError as exc:
                raise BadParameter(f"{name}: {str(exc).split(' - ', 1)[0]}",
                                   field=name) from None


async def _check_body(request: Request[Any, Any, Any], body_type: Any, required: bool) -> None:
    body = await request.body()
    if not body.strip():
        if required:
            raise BadRequest("this route takes a JSON body, and the request has none",
                             field="body")
        if body:
            raise BadRequest("send no body at all, or a JSON one", field="body")
        return
    try:
        # Typed and strict, in C, stopping at the first fault: as cheap as a parse can be.
        msgspec.json.decode(body, type=body_type, strict=True)
    except msgspec.DecodeError as exc:
        if not isinstance(exc, msgspec.ValidationError):
            return  # not JSON at all: the route's own parse says so, in its own terms
        if _INTEGRAL_FLOAT not in str(exc):
            raise _invalid(exc) from None
        # `919.0` is an integer as the document means it (JSON has numbers, not integers
        # and floats): only then is the body walked, to take such numbers as integers.
        try:
            msgspec.convert(_whole_numbers(msgspec.json.decode(body)), type=body_type,
                            strict=True)
        except msgspec.ValidationError as again:
            raise _invalid(again) from None


def _invalid(exc: msgspec.ValidationError) -> InvalidContent:
    message, field = explain_validation(str(exc))
    return InvalidContent(message, field=field)


def _whole_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT:
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    return value
