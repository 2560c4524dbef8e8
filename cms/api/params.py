"""The framework's annotations of handler parameters: what it injects, and how it documents a
path's slug. Apart from the helpers themselves, so that what serves reads before the framework is
imported (``starting``) can use those without it."""

from __future__ import annotations

from typing import Annotated

from litestar.di import NamedDependency
from litestar.params import PathParameter

from .services import Services

# Handlers ask for ``services: ServicesDep``; the app provides one shared instance.
ServicesDep = NamedDependency[Services]

SlugPath = Annotated[str, PathParameter(description="The comparison's slug, e.g. `cursor-vs-windsurf`")]
