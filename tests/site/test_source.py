"""The site's reading of the API holds against an API that misbehaves: a real HTTP server on
127.0.0.1 that sends what no CMS would."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cms.site.source import Source, SourceError

ANSWERS: dict[str, dict[str, Any]] = {
    # Every page names another page, for ever: A, B, A, …
    "/api/sync": {"items": [], "deleted": []},
    # A cursor that never goes back.
    "/api/verdict-changes": {"items": [], "next_cursor": "7"},
}


class _Looping(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        self.server.asked += 1  # type: ignore[attr-defined]
        answer = dict(ANSWERS[path])
        if path == "/api/sync":
            answer["next_page"] = "B" if "page=A" in query else "A"
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def looping() -> Iterator[tuple[Source, ThreadingHTTPServer]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Looping)
    server.asked = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    source = Source(f"http://127.0.0.1:{server.server_address[1]}", timeout=30)
    try:
        yield source, server
    finally:
        source.close()
        server.shutdown()
        server.server_close()


def test_sync_pages_that_come_round_again_are_refused(
        looping: tuple[Source, ThreadingHTTPServer]) -> None:
    source, server = looping
    with pytest.raises(SourceError, match="same sync page"):
        source.sync(None)
    assert server.asked == 3  # type: ignore[attr-defined]  # first, A, B: then A again


def test_a_record_cursor_that_does_not_go_back_is_refused(
        looping: tuple[Source, ThreadingHTTPServer]) -> None:
    source, server = looping
    with pytest.raises(SourceError, match="does not go back"):
        source.every_change()
    assert server.asked == 2  # type: ignore[attr-defined]
