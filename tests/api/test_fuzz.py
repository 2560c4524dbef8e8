"""An OpenAPI-driven fuzzer over every operation, without a token and with the tokens of an
admin and of an editor: whatever it sends, the API answers below 500, and every answer is one
the document describes (its status, content type, headers and body schema).

Bounded: ``CMS_FUZZ_EXAMPLES`` cases per operation (``make soak`` raises it).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cms.api.app import create_app
from cms.config import load_settings
from cms.editing.seed import initialise

from ..conftest import HAIKU, SEED, make_tokens

EXAMPLES = int(os.environ.get("CMS_FUZZ_EXAMPLES", "15"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Litestar, dict[str, Any]]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    config = load_settings({}, repo=folder / "content.git", data=folder / "data",
                           webhook_worker=False, vote_rate=0)
    initialise(config, SEED)
    return create_app(config), make_tokens(config)


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


def test_no_input_makes_a_server_error(fuzzed: tuple[Litestar, dict[str, Any]]) -> None:
    app, tokens = fuzzed
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30  # every route is in the document
    answered: Counter[int] = Counter()

    for operation in operations:
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def no_server_error(case: Any) -> None:
            for who in (None, "admin", "editor"):
                headers = dict(case.headers or {})
                if who is not None:
                    headers.update(tokens[who])
                response = case.call(headers=headers)
                answered[response.status_code // 100] += 1
                assert response.status_code < 500, (who, case.method, case.formatted_path,
                                                    response.text[:500])
                case.validate_response(response, checks=CHECKS)

        no_server_error()
    # The fuzzer got through: some requests were accepted, not only refused.
    assert answered[2] > 0
    assert answered[4] > 0


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
