"""The folders are the architecture: each package may import only what is listed here, so that
dependencies point inward (edges -> services -> the write side -> store -> content)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CMS = Path(__file__).resolve().parents[1] / "cms"
# Small modules anyone may use.
SHARED = {"errors", "config", "statefiles", "urlsafe", "lru", "bundled", "periodic", "memory",
          "one_write"}
SERVICES = {"content", "store", "identity", "shared", "editing.events"}

# A package, or one module of a package ("editing.events"), that each package may import.
ALLOWED: dict[str, set[str]] = {
    "content": set(),
    "store": {"content"},
    "shared": set(),  # the database of the state kept outside git, and leases
    "identity": {"shared"},
    "editing": {"content", "store", "identity", "shared"},
    "reading": SERVICES,
    "audit": SERVICES | {"editing.workflow", "editing.workflows"},
    "votes": SERVICES | {"editing.pipeline"},
    "webhooks": SERVICES | {"reading.views", "editing.workflows"},
    "api": {"content", "store", "identity", "shared", "editing", "reading", "audit", "votes",
            "webhooks"},
    # The reference website: a frontend that reads the public API over HTTP, as any would; it
    # renders Markdown with the CMS's own safe renderer and checks slugs with its pattern.
    "site": {"content.render", "content.model"},
    "cli": {"content", "store", "identity", "shared", "editing", "reading", "api", "site"},
}


def imports_of(path: Path) -> set[str]:
    """What ``path`` imports from cms, as dotted names below it (``store.documents``)."""
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
        for alias in node.names:
            # ``from cms.editing import events`` imports the module editing.events.
            module = [*target[1:], alias.name]
            is_module = CMS.joinpath(*module).with_suffix(".py").exists() or CMS.joinpath(
                *module).is_dir()
            found.add(".".join(module if is_module else target[1:]))
    return found


def owner(path: Path) -> str:
    relative = path.relative_to(CMS)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def permitted(name: str, imported: str) -> bool:
    top = imported.split(".")[0]
    if top in SHARED or top == name:
        return True
    return any(imported == allowed or imported.startswith(f"{allowed}.")
               for allowed in ALLOWED[name])


def test_every_package_imports_only_what_its_layer_allows() -> None:
    problems = []
    for path in sorted(CMS.rglob("*.py")):
        name = owner(path)
        if name in SHARED or name in {"__init__", "__main__"}:
            continue
        assert name in ALLOWED, f"{name} is a new package: give it a place in ALLOWED"
        problems += [f"{path.relative_to(CMS.parent)} imports cms.{imported}"
                     for imported in sorted(imports_of(path)) if not permitted(name, imported)]
    assert problems == []


def test_nothing_outside_the_api_imports_it_but_the_command_line() -> None:
    importers = {owner(path) for path in CMS.rglob("*.py")
                 if any(imported.split(".")[0] == "api" for imported in imports_of(path))}
    assert importers - {"api"} <= {"cli"}


def test_what_serves_before_the_app_is_built_imports_no_framework() -> None:
    """`cms serve` answers published reads while the framework is imported in a thread
    (api/starting.py): importing the framework first would take that time back. Nor does it
    load the framework's async library or the h11 protocol, which the server does not use
    (together about 40 ms of a 0.3 s start)."""
    code = ("import sys\nfrom cms.api.starting import Starting\nfrom cms.one_write import *\n"
            "loaded = {'litestar', 'anyio', 'h11'} & set(sys.modules)\n"
            "sys.exit(', '.join(sorted(loaded)) or None)")
    run = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                         text=True)
    assert (run.returncode, run.stderr) == (0, "")
