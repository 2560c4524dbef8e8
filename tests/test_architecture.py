"""The folders are the architecture: each package may import only the packages listed here, so
dependencies point inward (edges -> services -> the write and read sides -> store -> content)."""

from __future__ import annotations

import ast
from pathlib import Path

CMS = Path(__file__).resolve().parents[1] / "cms"
SHARED = {"errors", "config", "statefiles", "urlsafe"}  # small modules anyone may use

ALLOWED: dict[str, set[str]] = {
    "content": set(),
    "store": {"content"},
    "identity": set(),
    "editing": {"content", "store", "identity"},
    "reading": {"content", "store", "identity", "editing"},
    "audit": {"content", "store", "identity", "editing"},
    "votes": {"content", "store", "editing"},
    "webhooks": {"content", "store", "identity", "editing"},
    "api": {"content", "store", "identity", "editing", "reading", "audit", "votes", "webhooks"},
    "cli": {"content", "store", "identity", "editing", "reading", "api"},
}


def imports_of(path: Path) -> set[str]:
    """The top-level cms packages or modules that ``path`` imports."""
    parts = path.relative_to(CMS.parent).with_suffix("").parts
    package = list(parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[: len(package) - (node.level - 1)]
            target = [*base, *(node.module.split(".") if node.module else [])]
        else:
            target = (node.module or "").split(".")
        if target[0] != "cms":
            continue
        if len(target) > 1:
            found.add(target[1])
        else:
            found.update(alias.name for alias in node.names)
    return found


def owner(path: Path) -> str:
    relative = path.relative_to(CMS)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def test_every_package_imports_only_what_its_layer_allows() -> None:
    problems = []
    for path in sorted(CMS.rglob("*.py")):
        name = owner(path)
        if name in SHARED or name in {"__init__", "__main__"}:
            continue
        assert name in ALLOWED, f"{name} is a new package: give it a place in ALLOWED"
        for imported in imports_of(path) - {name} - SHARED:
            if imported not in ALLOWED[name]:
                problems.append(f"{path.relative_to(CMS.parent)} imports cms.{imported}")
    assert problems == []


def test_nothing_outside_the_api_imports_it_but_the_command_line() -> None:
    importers = {owner(path) for path in CMS.rglob("*.py") if "api" in imports_of(path)}
    assert importers - {"api"} <= {"cli"}
