"""Creating a content repository and seeding it from a folder of comparison files."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from ..bundled import default_workflow
from ..config import Settings
from ..content import codec
from ..content.model import Comparison
from ..errors import CmsError, Conflict, InvalidContent, NotFound
from ..identity.actors import Person
from ..store.repository import Repository
from .pipeline import Change, RefMove
from .workflow import load_workflow
from .write_side import open_write_side


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
    create the repository and publish the seed in one first commit. A failure part-way leaves
    nothing behind, so the same command can simply be run again."""
    load_workflow(settings.workflow or default_workflow())
    comparisons = [] if seed is None else seed_comparisons(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    files = {comparison.slug: codec.encode(as_published(comparison, now)).encode("utf-8")
             for comparison in comparisons}
    existed = settings.repo.exists()
    try:
        return create_repository(settings, files), len(files)
    except BaseException:
        _undo_creation(settings.repo, existed)
        raise


def seed_comparisons(seed: Path) -> list[Comparison]:
    """The comparisons of a seed folder, every file checked; an error names each bad file."""
    if not seed.is_dir():
        raise NotFound(f"the seed folder {seed} does not exist", field="seed")
    comparisons, problems = check_folder(seed)
    if problems:
        lines = "\n".join(f"  {problem.path}: {problem.message}" for problem in problems)
        raise InvalidContent(f"the seed folder has bad files; nothing was created:\n{lines}",
                             field="seed")
    if not comparisons:
        raise InvalidContent(f"the seed folder {seed} holds no comparison files (*.md); use "
                             "--empty for a repository without content", field="seed")
    return comparisons


def _undo_creation(repo: Path, existed: bool) -> None:
    """Remove what a failed creation made: the folder, or what it put in an empty one."""
    if not existed:
        shutil.rmtree(repo, ignore_errors=True)
    elif repo.is_dir():
        for child in repo.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def as_published(comparison: Comparison, at: datetime) -> Comparison:
    record = msgspec.structs.replace(comparison.workflow, state="published",
                                     published_at=comparison.workflow.published_at or at)
    return msgspec.structs.replace(comparison, workflow=record)


def create_repository(settings: Settings, files: Mapping[str, bytes]) -> Repository:
    """A new repository whose first commit publishes ``files`` (slug -> encoded comparison,
    already in the published state); no commit at all when there are none."""
    repo = Repository.create(settings.repo, branch=settings.branch, durable=settings.durable)
    if not files:
        return repo
    content = open_write_side(settings, repo=repo)
    layout = content.layout
    cms = Person(name=settings.committer_name, email=settings.committer_email)

    def plan() -> Change:
        if content.documents.main_head() is not None:
            raise Conflict("the repository has published content already; seed a new one")
        return Change(
            action="seed", subject=f"Seed: {len(files)} comparisons", slugs=(),
            state="published", author=cms, parents=(), base_tree=None,
            files={layout.path(slug): data for slug, data in files.items()},
            moves=(RefMove(ref=layout.main_ref, expected=None),),
        )

    content.pipeline.run(plan)
    return repo
