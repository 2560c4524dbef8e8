"""An OpenAPI-driven fuzzer over every operation, without a token and with the tokens of an
admin and of an editor: whatever it sends, the API answers below 500.

Bounded: ``CMS_FUZZ_EXAMPLES`` cases per operation (``make soak`` raises it).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from litestar import Litestar

from cms.api.app import create_app
from cms.config import load_settings
from cms.editing.seed import initialise

from ..conftest import SEED, make_tokens

EXAMPLES = int(os.environ.get("CMS_FUZZ_EXAMPLES", "15"))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Litestar, dict[str, Any]]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    config = load_settings({}, repo=folder / "content.git", data=folder / "data",
                           webhook_worker=False, vote_rate=0)
    initialise(config, SEED)
    return create_app(config), make_tokens(config)


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

        no_server_error()
    # The fuzzer got through: some requests were accepted, not only refused.
    assert answered[2] > 0
    assert answered[4] > 0
