"""The docs cannot drift from the code: every error the API can answer is in docs/api.md's error
table, and every setting is in the README's configuration table. (The routes are checked against
docs/api.md's access table by tests/api/test_access.py.)"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import cms
from cms.api.errors import HTTP_CODES
from cms.config import _ENVIRONMENT
from cms.errors import CmsError

ROOT = Path(__file__).resolve().parents[1]


def every_error_class() -> set[type[CmsError]]:
    for module in pkgutil.walk_packages(cms.__path__, "cms."):
        importlib.import_module(module.name)
    found: set[type[CmsError]] = set()
    pending = [CmsError]
    while pending:
        for subclass in pending.pop().__subclasses__():
            found.add(subclass)
            pending.append(subclass)
    return found


def literal_error_bodies() -> set[tuple[int, str]]:
    """Every ``error_body(<status>, "<code>", …)`` written out in the API's modules."""
    found = set()
    for path in (ROOT / "cms" / "api").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "error_body"
                    and len(node.args) >= 2 and all(isinstance(a, ast.Constant)
                                                    for a in node.args[:2])):
                found.add((node.args[0].value, node.args[1].value))
    return found


def answerable_errors() -> set[tuple[int, str]]:
    errors = {(error.status, error.code) for error in every_error_class()}
    errors |= set(HTTP_CODES.items()) | literal_error_bodies()
    return {(status, code) for status, code in errors if status != 500}  # 500 is a bug


def documented_errors() -> set[tuple[int, str]]:
    text = (ROOT / "docs" / "api.md").read_text()
    table = text[text.index("| status | code | when |"):].split("\n\n", 1)[0]
    found = set()
    for row in table.splitlines()[2:]:
        status, codes = row.strip("|").split("|")[:2]
        found |= {(int(status), code) for code in re.findall(r"`(\w+)`", codes)}
    return found


def test_every_error_the_api_can_answer_is_in_the_error_table() -> None:
    missing = answerable_errors() - documented_errors()
    assert not missing, f"add to docs/api.md's error table: {sorted(missing)}"
    assert (412, "stale_revision") in documented_errors()  # the table was found and read


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `CMS_")]
    documented = set(re.findall(r"`(CMS_\w+)`", "\n".join(row.split("|")[1] for row in rows)))
    missing = set(_ENVIRONMENT) - documented
    assert not missing, f"add to the README's configuration table: {sorted(missing)}"
    assert not documented - set(_ENVIRONMENT), "the README documents settings that do not exist"
