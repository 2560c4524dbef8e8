"""Creating a content repository and seeding it from a folder of comparison files."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from ..config import Settings
from ..content import codec
from ..content.model import Comparison
from ..errors import CmsError, Conflict, InvalidContent, NotFound
from ..identity.actors import Person
from ..statefiles import fsync_dir
from ..store.clone import open_clone
from ..store.repository import Repository
from ..store.upstream import Upstream
from .pipeline import Change, RefMove
from .workflows_in_force import files_of
from .write_side import layout_of, open_write_side, workflows_of


class FileProblem(msgspec.Struct, frozen=True):
    path: Path
    message: str


def check_folder(folder: Path) -> tuple[list[Comparison], list[FileProblem]]:
    """Decode every ``*.md`` under ``folder``; report each bad file rather than the first."""
    good: list[Comparison] = []
    problems: list[FileProblem] = []
    slugs: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.md")):
        try:
            comparison = codec.decode(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            problems.append(FileProblem(path, "the file is not UTF-8 text"))
            continue
        except CmsError as exc:
            where = f"{exc.field}: " if exc.field else ""
            problems.append(FileProblem(path, f"{where}{exc.message}"))
            continue
        if path.stem != comparison.slug:
            problems.append(FileProblem(
                path, f"slug: `{comparison.slug}` does not match the file name `{path.name}`"))
            continue
        if comparison.slug in slugs:
            problems.append(FileProblem(path, f"slug: `{comparison.slug}` is also used by "
                                              f"{slugs[comparison.slug]}"))
            continue
        slugs[comparison.slug] = path
        good.append(comparison)
    return good, problems


def initialise(settings: Settings, seed: Path | None) -> tuple[Repository, int]:
    """Check everything first (the workflow, the seed folder and each of its files), then
    build the repository beside its place and move it there in one rename. A failure leaves
    nothing behind, so the same command can simply be run again; a folder that is not empty,
    or that another run fills meanwhile, is never touched."""
    workflows_of(settings)
    comparisons = [] if seed is None else seed_comparisons(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    files = {comparison.slug: codec.encode(as_published(comparison, now)).encode("utf-8")
             for comparison in comparisons}
    target = settings.repo
    if _occupied(target):
        raise Conflict(f"{target} already exists and is not empty; refusing to touch it",
                       field="repo")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.init-{secrets.token_hex(6)}")
    try:
        create_repository(msgspec.structs.replace(settings, repo=staging), files)
        try:
            # Onto nothing or an empty folder only: the check above may be stale by now.
            os.rename(staging, target)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise
            raise Conflict(f"{target} was filled by someone else meanwhile; it was left as it "
                           "is", field="repo") from None
        if settings.durable:
            fsync_dir(target.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Repository(target, durable=settings.durable), len(files)


def clone_if_seeded(settings: Settings) -> Repository | None:
    """With ``CMS_UPSTREAM``: the new clone of an upstream that has content already, or None
    when it is empty (and ``initialise`` seeds it, pushing the first commit only if it is
    still empty then)."""
    if not settings.upstream:
        return None
    refs = Upstream(settings.repo, settings.upstream).refs()
    if layout_of(settings).main_ref not in refs:
        return None
    if _occupied(settings.repo):
        raise Conflict(f"{settings.repo} already exists and is not empty; refusing to touch it",
                       field="repo")
    return open_clone(settings.repo, settings.upstream, branch=settings.branch,
                      durable=settings.durable)


def _occupied(path: Path) -> bool:
    return path.is_symlink() or (path.exists() and (not path.is_dir() or any(path.iterdir())))


def seed_comparisons(seed: Path) -> list[Comparison]:
    """The comparisons of a seed folder, every file checked; an error names each bad file."""
    if not seed.exists():
        raise NotFound(f"the seed folder {seed} does not exist", field="seed")
    if not seed.is_dir():
        raise InvalidContent(f"the seed {seed} is a file; name the folder that holds the "
                             "comparison files", field="seed")
    comparisons, problems = check_folder(seed)
    if problems:
        lines = "\n".join(f"  {problem.path}: {problem.message}" for problem in problems)
        raise InvalidContent(f"the seed folder has bad files; nothing was created:\n{lines}",
                             field="seed")
    if not comparisons:
        raise InvalidContent(f"the seed folder {seed} holds no comparison files (*.md); use "
                             "--empty for a repository without content", field="seed")
    return comparisons


def as_published(comparison: Comparison, at: datetime) -> Comparison:
    record = msgspec.structs.replace(comparison.workflow, state="published",
                                     published_at=comparison.workflow.published_at or at)
    return msgspec.structs.replace(comparison, workflow=record)


def create_repository(settings: Settings, files: Mapping[str, bytes]) -> Repository:
    """A new repository whose first commit publishes ``files`` (slug -> encoded comparison,
    already in the published state), none or many, with the workflow definitions in force: main
    exists from the start, so every publication is a merge into it."""
    repo = Repository.create(settings.repo, branch=settings.branch, durable=settings.durable)
    content = open_write_side(settings, repo=repo)
    layout = content.layout
    cms = Person(name=settings.committer_name, email=settings.committer_email)

    def plan() -> Change:
        if content.documents.main_head() is not None:
            raise Conflict("the repository has published content already; seed a new one")
        return Change(
            action="seed", subject=f"Seed: {len(files)} comparisons", slugs=(),
            state="published", author=cms, parents=(), base_tree=None,
            # The workflow definitions in force, kept with what they govern.
            files={**{layout.path(slug): data for slug, data in files.items()},
                   **files_of(content.workflows.configured)},
            moves=(RefMove(ref=layout.main_ref, expected=None),),
        )

    content.pipeline.run(plan)
    return repo
