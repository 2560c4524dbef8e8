"""The file format: YAML front matter between ``---`` lines, then the Markdown body.

Pure functions, no I/O. Keys keep the model's order and long text is written in block style so
that files read well and diff line by line.
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

import msgspec
import yaml

from ..errors import InvalidContent
from .model import Comparison

_Loader: type[Any]
_BaseDumper: type[Any]
try:
    _Loader, _BaseDumper = yaml.CSafeLoader, yaml.CSafeDumper
except AttributeError:  # PyYAML built without libyaml
    _Loader, _BaseDumper = yaml.SafeLoader, yaml.SafeDumper

DELIMITER = "---"
_FOLD_AFTER = 80


class _Dumper(_BaseDumper):  # type: ignore[misc]
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    if len(value) > _FOLD_AFTER:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=">")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


def encode(comparison: Comparison) -> str:
    data = msgspec.to_builtins(comparison)
    workflow = data["workflow"]
    published_at = comparison.workflow.published_at
    if published_at is not None:
        # UTC, because the notation keeps offsets only to the minute.
        workflow["published_at"] = msgspec.to_builtins(published_at.astimezone(UTC))
    for key in ("name", "authors", "approved_by", "published_at"):
        # Empty workflow fields are left out; the state is always written.
        if workflow.get(key) in ([], None):
            del workflow[key]
    body: str = data.pop("body")
    front = yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=_FOLD_AFTER + 20,
        indent=2,
    )
    text = f"{DELIMITER}\n{front}{DELIMITER}\n"
    return f"{text}\n{body}" if body else text


def split(text: str) -> tuple[str, str]:
    """Separate front matter from body; the blank line after the closing delimiter is optional."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.startswith(DELIMITER + "\n"):
        raise InvalidContent(
            "the file must start with a `---` line that opens the front matter", field="front_matter"
        )
    end = text.find(f"\n{DELIMITER}\n", len(DELIMITER))
    if end == -1:
        if text.endswith(f"\n{DELIMITER}"):
            return text[len(DELIMITER) + 1 : -len(DELIMITER)], ""
        raise InvalidContent("the front matter has no closing `---` line", field="front_matter")
    front = text[len(DELIMITER) + 1 : end + 1]
    body = text[end + len(DELIMITER) + 2 :]
    if body.startswith("\n"):
        body = body[1:]
    return front, body


def decode(text: str) -> Comparison:
    front, body = split(text)
    try:
        data: Any = yaml.load(front, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise InvalidContent(f"the front matter is not valid YAML{where}: {problem}",
                             field="front_matter") from exc
    if not isinstance(data, dict):
        raise InvalidContent("the front matter must be a mapping of fields", field="front_matter")
    if "body" in data:
        raise InvalidContent("`body` belongs below the front matter, not in it", field="body")
    data["body"] = body
    return from_builtins(data)


def from_builtins(data: Any) -> Comparison:
    """Validate plain data (parsed YAML or JSON) into a comparison, naming the bad field."""
    try:
        return msgspec.convert(data, Comparison)
    except msgspec.ValidationError as exc:
        raise content_error(exc) from exc


def content_error(exc: msgspec.ValidationError) -> InvalidContent:
    message, _, path = str(exc).partition(" - at `$")
    message, field = explain(message, path.rstrip("`").lstrip("."))
    return InvalidContent(message, field=field)


_ALLOWED = {"verdict": "`ship` or `skip`", "roles": "editor, reviewer, publisher, admin, auditor"}
_NAMED_FIELD = re.compile(r"^`([A-Za-z0-9_.\[\]]+)`")
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `([^`]{1,100})`$")


def explain_validation(text: str) -> tuple[str, str | None]:
    """``explain`` for msgspec's own text: ``Expected `int`, got `str` - at `$.tools[0].id```."""
    message, _, at = text.partition(" - at `$")
    return explain(message, at.rstrip("`").lstrip("."))


def explain(message: str, path: str) -> tuple[str, str | None]:
    """Make a validation message name the exact field, and say what would have been valid.

    Cross-field rules report the struct they belong to, with the field first in the message;
    that field is appended to the path.
    """
    field = path or None
    named = _NAMED_FIELD.match(message) or _UNKNOWN_FIELD.match(message)
    if named:
        field = f"{path}.{named.group(1)}" if path else named.group(1)
    leaf = re.sub(r"\[\d+\]$", "", (field or "").rsplit(".", 1)[-1])
    if message.startswith("Invalid enum value") and leaf in _ALLOWED:
        message = f"{message}; expected {_ALLOWED[leaf]}"
    elif "matching regex" in message:
        shape = _SHAPES.get(leaf, "a value of the documented form")
        message = f"Expected {shape}"
    return message, field


_SLUG_SHAPE = "lowercase letters, digits and single hyphens, like `cursor-vs-windsurf`"
_SHAPES = {"slug": _SLUG_SHAPE, "id": _SLUG_SHAPE, "reviewer": _SLUG_SHAPE,
           "authors": "`Name <email>`", "approved_by": "`Name <email>`",
           "state": "lowercase letters and underscores", "email": "an address like `ada@example.com`",
           "name": "a name without `<`, `>` or line breaks", "since": "a 40-character commit id"}
