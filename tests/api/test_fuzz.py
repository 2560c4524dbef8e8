"""An OpenAPI-driven fuzzer over every operation, without a token and with an admin's, with all
of its checks: whatever it sends, the API answers below 500, every answer is one the document
describes (its status, content type, headers and body schema), what the document calls valid is
accepted and what it calls invalid is refused.

Bounded: ``CMS_FUZZ_EXAMPLES`` cases per operation (``make soak`` raises it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

from cms.api.app import create_app
from cms.api.contract import OPERATIONS
from cms.config import load_settings
from cms.editing.seed import initialise

from ..conftest import HAIKU, SEED, make_tokens
from ..test_e2e import seeded_server

ROOT = Path(__file__).resolve().parents[2]

EXAMPLES = int(os.environ.get("CMS_FUZZ_EXAMPLES", "15"))


@pytest.fixture(scope="module")
def fuzzed_writes(tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[Litestar, dict[str, Any], TestClient]]:  # type: ignore[type-arg]
    folder: Path = tmp_path_factory.mktemp("fuzz-writes")
    config = load_settings({}, repo=folder / "content.git", data=folder / "data",
                           webhook_worker=False)
    initialise(config, SEED)
    app = create_app(config)
    with TestClient(app=app) as client:
        yield app, make_tokens(config), client


@pytest.mark.parametrize("who", ["anonymous", "admin"])
def test_every_check_of_the_fuzzer_passes_on_every_operation(tmp_path: Path, who: str) -> None:
    """The fuzzer as anyone would run it, over a live server: its command line, every check
    (schema conformance, positive and negative data, required headers, methods, auth ignored,
    the stateful links) and this project's schemathesis.toml, which lists per operation the
    refusals of well-formed requests that depend on what the server holds."""
    with seeded_server(tmp_path, {"CMS_WEBHOOK_WORKER": "0", "CMS_VOTE_RATE": "0"}) as server:
        command = [str(Path(sys.executable).with_name("schemathesis")),
                   "--config-file", str(ROOT / "schemathesis.toml"), "run",
                   f"{server.url}/schema/openapi.json", "--checks", "all",
                   "--max-examples", str(EXAMPLES), "--seed", "1", "--generation-deterministic",
                   "--no-color", "--workers", "1", "--request-timeout", "60"]
        if who == "admin":
            token = server.token("Ada Admin", "ada@example.com", "admin", "editor", "reviewer",
                                 "publisher", "auditor")
            # Its own revocation would leave the rest of the run without a token (the run
            # without one covers that operation).
            command += ["-H", f"Authorization: {token['Authorization']}",
                        "--exclude-operation-id", "revokeToken"]
        run = subprocess.run(command, capture_output=True, text=True, timeout=600,
                             cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"})
        summary = run.stdout[run.stdout.find("=== SUMMARY"):]
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        assert "Tested: " in summary, summary
        tested = summary.split("Tested: ", 1)[1].split()[0]
        # Every operation was reached (but the one left out above).
        assert int(tested) == len(OPERATIONS) - (who == "admin"), summary


hostile_text = st.text(st.characters(codec="utf-8"), max_size=300) | st.sampled_from([
    "---", "# ------------------------ >8 ------------------------", "Cms-Action: publish",
    "\r\n\r\n", "\u2028", "\x85", "<script>alert(1)</script>", "{{ title }}", "\\", '"'])


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(title=hostile_text, summary=hostile_text, quote=hostile_text, body=hostile_text,
       comment=hostile_text)
def test_hostile_text_through_every_write_step_makes_no_server_error(
        fuzzed_writes: tuple[Litestar, dict[str, Any], TestClient], title: str, summary: str,  # type: ignore[type-arg]
        quote: str, body: str, comment: str) -> None:
    """Where the schema-driven cases stop at validation, these are valid requests with hostile
    text in every field the model allows: saved, taken through the workflow, published."""
    _, tokens, client = fuzzed_writes
    read = client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"])
    assert read.status_code == 200
    document = read.json()
    document.update(title=title, summary=summary, body=body, comment=comment)
    document["tools"][0]["reviews"][0]["quote"] = quote
    saved = client.put(f"/api/drafts/{HAIKU}", json=document,
                       headers={**tokens["editor"], "If-Match": read.headers["etag"]})
    assert saved.status_code < 500, saved.text
    if saved.status_code != 200:
        assert saved.status_code == 422, saved.text
        return
    etag = saved.headers["etag"]
    for action, who in (("submit", "editor"), ("approve", "reviewer"), ("publish", "publisher")):
        step = client.post(f"/api/drafts/{HAIKU}/transitions",
                           json={"action": action, "comment": comment},
                           headers={**tokens[who], "If-Match": etag})
        assert step.status_code == 200, step.text
        etag = step.headers["etag"]
    assert client.get(f"/api/comparisons/{HAIKU}").status_code == 200
