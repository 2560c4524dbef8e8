"""A newcomer's first session against a live server on 127.0.0.1: real process, real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from .conftest import HAIKU, fsck, git
from .receivers import Receiver, running

EDITOR = ("Ada Editor", "ada@example.com", "editor")
REVIEWER = ("Rita Reviewer", "rita@example.com", "reviewer")
PUBLISHER = ("Paul Publisher", "paul@example.com", "publisher")
AUDITOR = ("Aud Auditor", "aud@example.com", "auditor")


class Server:
    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.url = url
        self.env = env

    def token(self, name: str, email: str, *roles: str) -> dict[str, str]:
        result = subprocess.run(
            [sys.executable, "-m", "cms", "token", "create", "--name", name, "--email", email,
             *(option for role in roles for option in ("--role", role))],
            capture_output=True, text=True, env=self.env, check=True, timeout=60,
        )
        return {"Authorization": f"Bearer {result.stdout.strip().splitlines()[-1]}"}


@contextmanager
def start(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``cms serve`` as a child process; yields it and its URL once the socket is bound."""
    log = Path(env["CMS_DATA"]) / "server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as errors, subprocess.Popen(
        [sys.executable, "-m", "cms", "serve"], env=env, stdout=subprocess.PIPE, stderr=errors,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            # The server prints its URL once the socket is bound; connections queue from then on.
            banner = process.stdout.readline()
            assert banner.startswith("CMS serving http://127.0.0.1:"), banner + log.read_text()
            yield process, banner.split()[2]
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=30)
    assert "Traceback" not in log.read_text()


@contextmanager
def seeded_server(folder: Path, settings: dict[str, str] | None = None) -> Iterator[Server]:
    """A content repository made by `cms init` in ``folder``, served by `cms serve` (with
    ``settings`` among its environment)."""
    env = {**os.environ, "CMS_REPO": str(folder / "content"), "CMS_DATA": str(folder / "var"),
           "CMS_HOST": "127.0.0.1", "CMS_PORT": "0", **(settings or {})}
    subprocess.run([sys.executable, "-m", "cms", "init"], env=env, check=True,
                   capture_output=True, timeout=60)
    with start(env) as (_, url):
        yield Server(url, env)
    fsck(folder / "content")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with seeded_server(tmp_path) as running:
        yield running


def test_a_comparison_from_draft_to_frontend(server: Server, tmp_path: Path) -> None:
    editor = server.token(*EDITOR)
    reviewer = server.token(*REVIEWER)
    publisher = server.token(*PUBLISHER)
    auditor = server.token(*AUDITOR)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/health").json()["status"] == "ok"
        listing = http.get("/api/comparisons")
        assert listing.status_code == 200
        first = listing.json()["items"][0]
        document = http.get(f"/api/comparisons/{first['slug']}").json()
        document.update(slug="live-server-comparison", title="Live Server Comparison")

        created = http.post("/api/drafts", json=document, headers=editor)
        assert created.status_code == 201, created.text
        etag = created.headers["etag"]
        for action, who in (("submit", editor), ("approve", reviewer), ("publish", publisher)):
            step = http.post("/api/drafts/live-server-comparison/transitions",
                             json={"action": action, "comment": f"{action} via HTTP"},
                             headers={**who, "If-Match": etag})
            assert step.status_code == 200, step.text
            etag = step.headers["etag"]

        public = http.get("/api/comparisons/live-server-comparison")
        assert public.status_code == 200
        assert public.json()["state"] == "published"
        assert "<h2>" in public.json()["html"]
        again = http.get("/api/comparisons/live-server-comparison",
                         headers={"If-None-Match": public.headers["etag"]})
        assert again.status_code == 304
        history = http.get("/api/comparisons/live-server-comparison/history", headers=auditor)
        assert [e["action"] for e in history.json()["entries"]] == [
            "publish", "approve", "submit", "create"]
        spec = http.get("/schema/openapi.json")
        assert spec.status_code == 200
        assert "/api/drafts/{slug}/transitions" in spec.json()["paths"]

    log = git(tmp_path / "content", "log", "--first-parent", "--format=%s", "main").splitlines()
    assert log[0] == "Publish: Live Server Comparison"


def test_kill_nine_between_commit_and_delivery_still_delivers(tmp_path: Path) -> None:
    env = {**os.environ, "CMS_REPO": str(tmp_path / "content"), "CMS_DATA": str(tmp_path / "var"),
           "CMS_PORT": "0", "CMS_WEBHOOK_ALLOW_PRIVATE": "1", "CMS_WEBHOOK_BACKOFF": "3600"}
    subprocess.run([sys.executable, "-m", "cms", "init"], env=env, check=True,
                   capture_output=True, timeout=60)
    server = Server("", env)
    admin = server.token("Ann Admin", "ann@example.com", "admin")
    publisher = server.token(*PUBLISHER)
    receiver = Receiver()
    receiver.hold = threading.Event()
    with running(receiver):
        with start(env) as (process, url), httpx.Client(base_url=url, timeout=30) as http:
            hook = http.post("/api/webhooks", json={"url": receiver.url}, headers=admin)
            assert hook.status_code == 201
            first = http.get("/api/comparisons").json()["items"][0]["slug"]
            etag = http.get(f"/api/comparisons/{first}").headers["etag"]
            done = http.post(f"/api/drafts/{first}/transitions", json={"action": "unpublish"},
                             headers={**publisher, "If-Match": etag})
            assert done.status_code == 200
            assert receiver.wait_for(1)
            # The delivery is in flight: the receiver holds it. Now the server dies.
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        receiver.hold.set()
        with start(env):
            assert receiver.wait_for(2)
    assert receiver.ids()[0] == receiver.ids()[1]
    assert json.loads(receiver.received[1].body)["data"]["slug"] == first
    fsck(tmp_path / "content")


def test_nesting_is_refused_at_one_depth_whatever_the_servers_stack(server: Server) -> None:
    """The refusal does not hang on how much stack the parser has left: every depth past the
    limit, including those where a recursive parser's own limit falls in a real server (about
    a thousand), is the same 400, and the log has no traceback (checked as the server stops)."""
    from cms.api.json_depth import MAX_DEPTH

    depths = [2, MAX_DEPTH, MAX_DEPTH + 1, *range(900, 1100, 3), 5000]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for depth in depths:
            inner = depth - 1  # inside the object
            body = '{"tool": ' + "[" * inner + "]" * inner + ', "vote": "ship"}'
            answer = http.post(f"/api/comparisons/{HAIKU}/votes", content=body,
                               headers={"Content-Type": "application/json"})
            if depth > MAX_DEPTH:
                assert (answer.status_code, answer.json()["code"]) == (400, "too_deeply_nested")
            else:
                assert answer.status_code == 422, (depth, answer.text)  # a list is not a tool


def test_head_through_a_real_server(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        got = http.get(f"/api/comparisons/{HAIKU}")
        head = http.head(f"/api/comparisons/{HAIKU}")
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == got.headers["content-length"]
        assert http.get("/health").status_code == 200  # the connection is still good


def test_the_server_does_not_load_pydantic(tmp_path: Path) -> None:
    """Litestar loads its pydantic plugins whenever pydantic can be imported (it can here, beside
    the development tools): a third of a second of every start, for types the API never uses.
    A loaded pydantic shows as its compiled core among the server's mappings."""
    import importlib.util

    # Importable here, so that the check below can fail.
    assert importlib.util.find_spec("pydantic_core") is not None

    env = {**os.environ, "CMS_REPO": str(tmp_path / "content"), "CMS_DATA": str(tmp_path / "var"),
           "CMS_HOST": "127.0.0.1", "CMS_PORT": "0"}
    subprocess.run([sys.executable, "-m", "cms", "init"], env=env, check=True,
                   capture_output=True, timeout=60)
    with start(env) as (process, url), httpx.Client(base_url=url, timeout=30) as http:
        assert http.get(f"/api/comparisons/{HAIKU}").status_code == 200
        assert http.get("/schema/openapi.json").status_code == 200
        maps = Path(f"/proc/{process.pid}/maps").read_text()
    assert "pydantic_core" not in maps


def test_the_app_is_built_without_the_pydantic_and_attrs_plugins(tmp_path: Path) -> None:
    """Both are importable here (development tools need them); the server's app is built
    without either, and its OpenAPI document is still whole."""
    import importlib.util

    assert importlib.util.find_spec("attrs") is not None
    assert importlib.util.find_spec("pydantic") is not None
    program = (
        "import sys\n"
        "from cms.cli import without_unused_plugins\n"
        "without_unused_plugins()\n"
        "from litestar.testing import TestClient\n"
        "from cms.api.app import create_app\n"
        "from cms.config import load_settings\n"
        "app = create_app(load_settings())\n"
        "with TestClient(app) as client:\n"
        "    assert client.get('/schema/openapi.json').status_code == 200\n"
        "print(sorted(name for name in ('attr', 'attrs', 'pydantic', 'litestar.plugins.attrs',\n"
        "      'litestar.plugins.pydantic') if sys.modules.get(name) is not None))\n")
    env = {**os.environ, "CMS_REPO": str(tmp_path / "content"), "CMS_DATA": str(tmp_path / "var")}
    subprocess.run([sys.executable, "-m", "cms", "init"], env=env, check=True,
                   capture_output=True, timeout=60)
    loaded = subprocess.run([sys.executable, "-c", program], env=env, check=True,
                            capture_output=True, text=True, timeout=120).stdout
    assert loaded.strip() == "[]"
