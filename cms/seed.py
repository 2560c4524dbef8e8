"""Creating a content repository and seeding it from a folder of comparison files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec

from . import codec
from .config import Settings
from .documents import Documents
from .errors import CmsError
from .gitstore.messages import format_message
from .gitstore.repository import Repository, Signature
from .model import Comparison
from .workflow import load_workflow


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
    """Create the repository and commit the seed as published content, in one first commit."""
    comparisons: list[Comparison] = []
    if seed is not None:
        comparisons, problems = check_folder(seed)
        if problems:
            lines = "\n".join(f"  {p.path}: {p.message}" for p in problems)
            raise SystemExit(f"cms: the seed folder has bad files; nothing was created:\n{lines}")
    repo = Repository.create(settings.repo, branch=settings.branch, durable=settings.durable)
    if not comparisons:
        return repo, 0
    documents = Documents(repo, load_workflow(settings.workflow), settings)
    now = datetime.now(UTC).replace(microsecond=0)
    changes: dict[str, bytes | None] = {}
    for comparison in comparisons:
        record = msgspec.structs.replace(
            comparison.workflow, state="published",
            published_at=comparison.workflow.published_at or now,
        )
        document = msgspec.structs.replace(comparison, workflow=record)
        changes[documents.path(comparison.slug)] = codec.encode(document).encode("utf-8")
    cms = Signature(name=settings.committer_name, email=settings.committer_email, at=now)
    message = format_message(
        f"Seed: {len(comparisons)} comparisons", "",
        [("Cms-Action", "seed"), ("Cms-State", "published")],
    )
    commit = repo.commit(parents=[], base_tree=None, changes=changes, author=cms, committer=cms,
                         message=message)
    repo.refs.update(documents.main_ref, commit, None)
    return repo, len(comparisons)
