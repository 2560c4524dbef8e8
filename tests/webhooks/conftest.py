"""The app with its webhooks over a seeded repository, shared by the webhook tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from cms.api.app import create_app
from cms.config import Settings
from cms.editing.seed import initialise

from ..conftest import SEED, fsck, make_tokens
from ..helpers import Headers
from .test_webhooks import Client, webhook_settings


@pytest.fixture
def hooks_settings(tmp_path: Path) -> Iterator[Settings]:
    settings = webhook_settings(tmp_path)
    initialise(settings, SEED)
    yield settings
    fsck(settings.repo)


@pytest.fixture
def hooks(hooks_settings: Settings) -> Iterator[tuple[Client, dict[str, Headers]]]:
    tokens = make_tokens(hooks_settings)
    with TestClient(app=create_app(hooks_settings)) as client:
        yield client, tokens
