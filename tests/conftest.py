from __future__ import annotations

import itertools
import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
import pytest
from litestar.testing import TestClient

from cms.api.app import create_app
from cms.bundled import samples
from cms.config import Settings, load_settings
from cms.editing.seed import initialise
from cms.identity.tokens import TokenStore

SEED = samples()
HAIKU = "claude-haiku-open-weights-vs-gemini-2-5-flash-native-audio-output"

PEOPLE = {
    "editor": ("Ada Editor", "ada@example.com", ["editor"]),
    "editor2": ("Eve Editor", "eve@example.com", ["editor"]),
    "reviewer": ("Rita Reviewer", "rita@example.com", ["reviewer"]),
    "reviewer2": ("Rob Reviewer", "rob@example.com", ["reviewer"]),
    "publisher": ("Paul Publisher", "paul@example.com", ["publisher"]),
    "auditor": ("Aud Auditor", "aud@example.com", ["auditor"]),
    "admin": ("Ann Admin", "ann@example.com", ["admin"]),
    "both": ("Bo Both", "bo@example.com", ["editor", "reviewer"]),
    "chief": ("Cleo Chief", "cleo@example.com", ["chief"]),
    "reviewer_chief": ("Rae Ruth", "rae@example.com", ["reviewer", "chief"]),
    "editor_chief": ("Ed Chief", "edc@example.com", ["editor", "chief"]),
}


def fsck(repo: Path) -> None:
    result = subprocess.run(["git", "--git-dir", str(repo), "fsck", "--strict", "--no-dangling"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({}, repo=tmp_path / "content.git", data=tmp_path / "data",
                         public_url="http://cms.test")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """One PostgreSQL server for the whole run (started by the first test that needs it): the
    URL of its maintenance database."""
    from .cluster.support import postgres

    with postgres() as url:
        yield url


_DATABASE_NUMBERS = itertools.count()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A new, empty database of the run's PostgreSQL server, dropped afterwards."""
    name = f"test_{next(_DATABASE_NUMBERS)}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        # FORCE: a connection a test left open must not keep its database alive. (A test may
        # have dropped it already, to see what a lost database does.)
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The test's settings on each engine of the state kept outside git: the embedded default
    (SQLite under CMS_DATA), then a PostgreSQL database of its own."""
    if request.param == "sqlite":
        return settings
    return msgspec.structs.replace(settings,
                                   database_url=request.getfixturevalue("postgres_url"))


@pytest.fixture
def repo_path(settings: Settings) -> Iterator[Path]:
    initialise(settings, SEED)
    yield settings.repo
    fsck(settings.repo)


def make_tokens(settings: Settings) -> dict[str, dict[str, str]]:
    """A real token for each of PEOPLE, as Authorization headers."""
    store = TokenStore.open(settings)
    headers = {}
    for key, (name, email, roles) in PEOPLE.items():
        _, token = store.create(name, email, roles)
        headers[key] = {"Authorization": f"Bearer {token}"}
    return headers


@pytest.fixture
def tokens(settings: Settings, repo_path: Path) -> dict[str, dict[str, str]]:
    return make_tokens(settings)


@pytest.fixture
def client(settings: Settings, repo_path: Path) -> Iterator[TestClient]:  # type: ignore[type-arg]
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client
