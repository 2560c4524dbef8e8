"""The whole loop with real parts: a live CMS, `cms site watch` registered as its webhook
endpoint, a publication through the API, and the page in the site's folder; an unpublication
and its page gone; a forged webhook refused with nothing rebuilt."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from cms.site import pages
from cms.webhooks.signing import new_secret, signed_headers

from ..cluster.support import free_port
from ..conftest import HAIKU
from ..test_e2e import EDITOR, PUBLISHER, REVIEWER, Server, seeded_server

ADMIN = ("Ann Admin", "ann@example.com", "admin")
SLUG = "loop-tested-comparison"


class Watch:
    def __init__(self, url: str, out: Path) -> None:
        self.url = url
        self.out = out

    def status(self, through: int = 0) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/status", params={"through": through, "timeout": 30},
                           timeout=60)
        assert answer.status_code == 200
        return answer.json()  # type: ignore[no-any-return]


@contextmanager
def watching(api: str, out: Path, port: int, secret: str) -> Iterator[Watch]:
    log = out.parent / "watch.log"
    env = {**os.environ, "CMS_SITE_SECRET": secret}
    with open(log, "w") as errors, subprocess.Popen(
        [sys.executable, "-m", "cms", "site", "watch", "--api", api, "--out", str(out),
         "--listen", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.PIPE, stderr=errors, text=True,
    ) as process:
        try:
            assert process.stdout is not None
            banner = process.stdout.readline()
            assert banner.startswith(f"Watching for webhooks on http://127.0.0.1:{port}/"), \
                banner + log.read_text()
            yield Watch(f"http://127.0.0.1:{port}", out)
        finally:
            process.terminate()
            process.wait(timeout=60)
    text = log.read_text()
    assert "Traceback" not in text
    assert secret not in text


def publish_new(http: httpx.Client, server: Server) -> None:
    editor, reviewer, publisher = (server.token(*who) for who in (EDITOR, REVIEWER, PUBLISHER))
    document = http.get(f"/api/comparisons/{HAIKU}").json()
    document.update(slug=SLUG, title="Loop Tested Comparison")
    created = http.post("/api/drafts", json=document, headers=editor)
    assert created.status_code == 201, created.text
    etag = created.headers["etag"]
    for action, who in (("submit", editor), ("approve", reviewer), ("publish", publisher)):
        step = http.post(f"/api/drafts/{SLUG}/transitions", json={"action": action},
                         headers={**who, "If-Match": etag})
        assert step.status_code == 200, step.text
        etag = step.headers["etag"]


def test_publish_and_unpublish_rebuild_the_site_and_forgeries_do_not(tmp_path: Path) -> None:
    out = tmp_path / "public"
    port = free_port()
    with seeded_server(tmp_path / "cms", {"CMS_WEBHOOK_ALLOW_PRIVATE": "1"}) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        admin = server.token(*ADMIN)
        hook = http.post("/api/webhooks", json={"url": f"http://127.0.0.1:{port}/cms",
                                                "description": "the reference site"},
                         headers=admin)
        assert hook.status_code == 201, hook.text
        secret = hook.json()["secret"]
        with watching(server.url, out, port, secret) as watch:
            first = watch.status(through=1)  # the start's own build
            assert first["last"]["full"]
            assert (out / pages.comparison_path(HAIKU)).exists()
            assert not (out / pages.comparison_path(SLUG)).exists()

            publish_new(http, server)
            built = watch.status(through=2)  # waits for the event's rebuild (bounded)
            assert built["built_through"] >= 2, built
            assert built["last_error"] is None
            page = (out / pages.comparison_path(SLUG)).read_text()
            assert "<h1>Loop Tested Comparison</h1>" in page
            assert f'href="comparisons/{SLUG}/"' in (out / "index.html").read_text()

            files = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
            body = b'{"type": "comparison.unpublished", "data": {"slug": "x"}}'
            forged = signed_headers([new_secret()], "msg_forged", int(time.time()), body)
            answer = httpx.post(f"{watch.url}/cms", content=body, headers=forged, timeout=30)
            assert answer.status_code == 401
            assert watch.status()["requested"] == built["requested"]
            assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == files

            etag = http.get(f"/api/comparisons/{SLUG}").headers["etag"]
            publisher = server.token(*PUBLISHER)
            gone = http.post(f"/api/drafts/{SLUG}/transitions", json={"action": "unpublish"},
                             headers={**publisher, "If-Match": etag})
            assert gone.status_code == 200, gone.text
            assert watch.status(through=3)["built_through"] >= 3
            assert not (out / "comparisons" / SLUG).exists()
            assert SLUG not in (out / "index.html").read_text()
