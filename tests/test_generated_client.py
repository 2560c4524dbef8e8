"""A client generated from the served OpenAPI document, by a standard generator, drives the
README's first session against a live server: the document is enough to use the API.

The generated package is written to a temporary folder and imported from there; its operation
names are the document's operationIds, its models the document's schemas.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from .test_e2e import Server, seeded_server

SLUG = "langgraph-vs-crewai"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with seeded_server(tmp_path_factory.mktemp("client")) as running:
        yield running


@pytest.fixture(scope="module")
def client_package(live: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The package openapi-python-client makes of the document the server serves."""
    folder = tmp_path_factory.mktemp("generated")
    document = folder / "openapi.json"
    document.write_bytes(httpx.get(f"{live.url}/schema/openapi.json", timeout=30).content)
    tools = Path(sys.executable).parent
    result = subprocess.run(
        [str(tools / "openapi-python-client"), "generate", "--path", str(document), "--meta",
         "none", "--output-path", str(folder / "cms_client")],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sys.path.insert(0, str(folder))
    try:
        yield "cms_client"
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name.startswith("cms_client")]:
            del sys.modules[name]


def module(package: str, name: str) -> ModuleType:
    return importlib.import_module(f"{package}.{name}")


def test_the_first_session_through_a_generated_client(live: Server, client_package: str) -> None:
    Client = module(client_package, "client").Client
    Authenticated = module(client_package, "client").AuthenticatedClient

    with contextlib.ExitStack() as clients:
        def as_person(name: str, email: str, role: str) -> Any:
            token = live.token(name, email, role)["Authorization"].removeprefix("Bearer ")
            return clients.enter_context(Authenticated(base_url=live.url, token=token))

        anonymous = clients.enter_context(Client(base_url=live.url))
        session(client_package, anonymous, as_person("Ada Editor", "ada@example.com", "editor"),
                as_person("Rita Reviewer", "rita@example.com", "reviewer"),
                as_person("Paul Publisher", "paul@example.com", "publisher"))


def session(client_package: str, anonymous: Any, editor: Any, reviewer: Any,
            publisher: Any) -> None:
    models = module(client_package, "models")
    published = module(client_package, "api.published")
    drafts = module(client_package, "api.drafts")

    # What frontends see, then a new comparison made from it, as the README does.
    importlib.import_module(f"{client_package}.api.published.get_comparison")
    read = published.get_comparison.sync_detailed(SLUG, client=anonymous)
    assert read.status_code == 200
    document = read.parsed.to_dict()
    document.update(slug=f"{SLUG}-2026", title="LangGraph vs CrewAI (2026)")
    importlib.import_module(f"{client_package}.api.drafts.create_draft")
    created = drafts.create_draft.sync_detailed(client=editor,
                                                body=models.ComparisonIn.from_dict(document))
    assert created.status_code == 201, created.content
    revision = created.parsed.revision

    importlib.import_module(f"{client_package}.api.drafts.transition_draft")
    for action, who in (("submit", editor), ("approve", reviewer), ("publish", publisher)):
        step = drafts.transition_draft.sync_detailed(
            f"{SLUG}-2026", client=who, body=models.TransitionIn(action=models.TransitionInAction(action)),
            if_match=f'"{revision}"')
        assert step.status_code == 200, step.content
        assert isinstance(step.parsed, models.ComparisonView)
        revision = step.parsed.revision
    assert step.parsed.state == "published"

    public = published.get_comparison.sync_detailed(f"{SLUG}-2026", client=anonymous)
    assert public.status_code == 200
    assert public.parsed.title == "LangGraph vs CrewAI (2026)"

    # A write naming a revision that is no longer current: a typed error, not an exception.
    stale = drafts.transition_draft.sync_detailed(
        f"{SLUG}-2026", client=publisher,
        body=models.TransitionIn(action=models.TransitionInAction.UNPUBLISH),
        if_match=f'"{created.parsed.revision}"')
    assert stale.status_code == 412
    assert isinstance(stale.parsed, models.Error)
    assert stale.parsed.code == "stale_revision"
