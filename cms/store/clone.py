"""The local clone of the upstream remote that an instance reads from and writes through."""

from __future__ import annotations

from pathlib import Path

from .repository import Repository
from .upstream import TIMEOUT_SECONDS, Upstream


def attach(repo: Repository, url: str, *, timeout: float = TIMEOUT_SECONDS) -> Upstream:
    """Make every ref move of ``repo`` go to ``url`` first."""
    upstream = Upstream(repo.git_dir, url, timeout=timeout, durable=repo.refs.durable)
    repo.upstream = upstream
    return upstream


def open_clone(path: Path, url: str, *, branch: str, durable: bool = True) -> Repository:
    """The clone at ``path``, made if missing, brought up to the upstream's refs (raises
    UpstreamUnavailable when the upstream cannot be read: an instance does not start on a
    clone that may be behind without saying so)."""
    if not (path / "HEAD").is_file():
        Repository.create(path, branch=branch, durable=durable)
    repo = Repository(path, durable=durable)
    attach(repo, url)
    repo.fetch()
    return repo
