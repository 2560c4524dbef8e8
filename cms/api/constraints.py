"""Constraints the framework leaves out of the document, put back from the types themselves.

The framework writes a field's bounds only when they are truthy, so `ge=0` disappears, and it
writes nothing for the bounds of a list's items. The types the API decodes with are the truth:
msgspec's own schema of each struct says every bound, and whatever the framework left out is
copied from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from litestar.openapi.spec import Reference, Schema
from msgspec import Struct

_ATTRIBUTES = {"minimum": "minimum", "maximum": "maximum",
               "exclusiveMinimum": "exclusive_minimum", "exclusiveMaximum": "exclusive_maximum",
               "minLength": "min_length", "maxLength": "max_length",
               "minItems": "min_items", "maxItems": "max_items", "pattern": "pattern"}


def restore(schemas: Mapping[str, Schema | Reference]) -> None:
    structs = structs_by_name()
    for name, schema in schemas.items():
        struct = structs.get(name)
        if struct is None or not isinstance(schema, Schema):
            continue
        _, definitions = msgspec.json.schema_components([struct])
        for field, truth in definitions[name].get("properties", {}).items():
            written = (schema.properties or {}).get(field)
            if not isinstance(written, Schema):
                continue
            _copy_missing(truth, written)
            truth_items, written_items = _items(truth), _written_items(written)
            if truth_items is not None and written_items is not None:
                _copy_missing(truth_items, written_items)


def structs_by_name() -> dict[str, type[Struct]]:
    """The API's structs whose name is theirs alone (a shared name is left as written)."""
    found: dict[str, list[type[Struct]]] = {}
    pending: list[type[Struct]] = [Struct]
    while pending:
        for subclass in pending.pop().__subclasses__():
            pending.append(subclass)
            if subclass.__module__.startswith("cms."):
                found.setdefault(subclass.__name__, []).append(subclass)
    return {name: classes[0] for name, classes in found.items() if len(classes) == 1}


def _alternatives(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [schema, *[branch for branch in schema.get("anyOf", ()) if isinstance(branch, dict)]]


def _items(schema: dict[str, Any]) -> dict[str, Any] | None:
    for branch in _alternatives(schema):
        if isinstance(branch.get("items"), dict):
            return branch["items"]  # type: ignore[no-any-return]
    return None


def _written_items(schema: Schema) -> Schema | None:
    for branch in [schema, *(schema.one_of or []), *(schema.any_of or [])]:
        if isinstance(branch, Schema) and isinstance(branch.items, Schema):
            return branch.items
    return None


def _copy_missing(truth: dict[str, Any], written: Schema) -> None:
    for branch in _alternatives(truth):
        for key, attribute in _ATTRIBUTES.items():
            if key in branch and getattr(written, attribute) is None:
                setattr(written, attribute, branch[key])
