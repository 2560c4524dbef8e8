"""An app with its webhooks, for tests that need one set up differently from the shared fixture."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from cms.api.app import create_app
from cms.config import Settings
from cms.editing.seed import initialise

from ..conftest import SEED, fsck, make_tokens
from ..helpers import Headers
from .test_webhooks import Client, webhook_settings


@contextmanager
def serve(tmp_path: Path, **overrides: Any) -> Iterator[tuple[Client, dict[str, Headers], Settings]]:
    """A seeded repository and the app over it; ``overrides`` change the webhook settings."""
    settings = webhook_settings(tmp_path, **overrides)
    initialise(settings, SEED)
    tokens = make_tokens(settings)
    with TestClient(app=create_app(settings)) as client:
        yield client, tokens, settings
    fsck(settings.repo)
