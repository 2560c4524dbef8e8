"""A newcomer's first session against a live server on 127.0.0.1: real process, real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import fsck, git

EDITOR = ("Ada Editor", "ada@example.com", "editor")
REVIEWER = ("Rita Reviewer", "rita@example.com", "reviewer")
PUBLISHER = ("Paul Publisher", "paul@example.com", "publisher")
AUDITOR = ("Aud Auditor", "aud@example.com", "auditor")


class Server:
    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.url = url
        self.env = env

    def token(self, name: str, email: str, role: str) -> dict[str, str]:
        result = subprocess.run(
            [sys.executable, "-m", "cms", "token", "create", "--name", name, "--email", email,
             "--role", role],
            capture_output=True, text=True, env=self.env, check=True, timeout=60,
        )
        return {"Authorization": f"Bearer {result.stdout.strip().splitlines()[-1]}"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    env = {**os.environ, "CMS_REPO": str(tmp_path / "content"), "CMS_DATA": str(tmp_path / "var"),
           "CMS_HOST": "127.0.0.1", "CMS_PORT": "0"}
    subprocess.run([sys.executable, "-m", "cms", "init"], env=env, check=True,
                   capture_output=True, timeout=60)
    log = tmp_path / "server.log"
    with open(log, "w") as errors, subprocess.Popen(
        [sys.executable, "-m", "cms", "serve"], env=env, stdout=subprocess.PIPE, stderr=errors,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            # The server prints its URL once the socket is bound; connections queue from then on.
            banner = process.stdout.readline()
            assert banner.startswith("CMS serving http://127.0.0.1:"), banner + log.read_text()
            yield Server(banner.split()[2], env)
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert "Traceback" not in log.read_text()
    fsck(tmp_path / "content")


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
