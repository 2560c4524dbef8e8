"""Bodies and query strings are taken as the document types them, with no coercion.

The framework converts what it parses leniently, as it must for query strings, where every value
arrives as text; but that takes `"enabled": 0` in a JSON body for false and `"5"` for a number,
the text `null` in a query string for an absent value, and the last of a parameter given twice
when the route takes one. Before a route runs, its input is checked strictly against the types
the route takes, and anything else is refused the way the framework refuses any invalid field:
a body's field with 422, a query parameter with 400, each naming it.
"""

from __future__ import annotations

import re
from types import NoneType, UnionType
from typing import Any, NamedTuple, Union, get_args, get_origin

import msgspec
from litestar import Request
from litestar.handlers import HTTPRouteHandler
from litestar.params import QueryParameter

from ..content.codec import explain
from ..errors import BadParameter, InvalidContent

_AT = re.compile(r"`\$\.(.+)`$")
_EXACT = 2**53  # the whole numbers a float holds exactly


class _Takes(NamedTuple):
    body: Any  # the type of the JSON body, or None
    single: dict[str, Any]  # query parameters that take one value: name to type, null aside


_takes: dict[HTTPRouteHandler, _Takes] = {}


async def strict_input(request: Request[Any, Any, Any]) -> None:
    """A ``before_request`` hook for every route."""
    if not isinstance(request.route_handler, HTTPRouteHandler):
        return
    takes = _what_it_takes(request.route_handler)
    _check_query(request, takes.single)
    if takes.body is not None:
        await _check_body(request, takes.body)


def _what_it_takes(handler: HTTPRouteHandler) -> _Takes:
    if handler not in _takes:
        parameters = handler.parsed_fn_signature.parameters
        single: dict[str, Any] = {}
        for name, field in parameters.items():
            if isinstance(field.kwarg_definition, QueryParameter) and not field.is_non_string_sequence:
                single[field.kwarg_definition.name or name] = _without_none(field.annotation)
        data = parameters.get("data")
        _takes[handler] = _Takes(body=None if data is None else data.annotation, single=single)
    return _takes[handler]


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


async def _check_body(request: Request[Any, Any, Any], body_type: Any) -> None:
    try:
        parsed = msgspec.json.decode(await request.body())
    except msgspec.DecodeError:
        return  # not JSON at all: the route's own parse says so, in its own terms
    try:
        msgspec.convert(_whole_numbers(parsed), type=body_type, strict=True)
    except msgspec.ValidationError as exc:
        text = str(exc)
        at = _AT.search(text)
        message, field = explain(text.split(" - ", 1)[0], at.group(1) if at else "")
        raise InvalidContent(message, field=field) from None


def _whole_numbers(value: Any) -> Any:
    """JSON has numbers, not integers and floats: `919.0` is an integer as the document means
    it, and is taken as one."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT:
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    return value
