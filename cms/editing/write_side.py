"""The write side assembled from settings: the repository, its layout, reads of revisions, the
commit pipeline with its (empty) list of listeners, and the commands. Whoever serves wires the
listeners (see ``cms.api.services``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..bundled import folder
from ..config import Settings
from ..identity.actors import Person
from ..store.clone import attach, open_clone
from ..store.documents import Documents
from ..store.layout import Layout
from ..store.repository import Repository
from .commands import Editor
from .events import Listeners
from .pipeline import CommitPipeline
from .workflows import Workflows, definitions, load_workflows
from .workflows_in_force import WorkflowsInForce


@dataclass(frozen=True)
class WriteSide:
    repo: Repository
    documents: Documents
    listeners: Listeners
    pipeline: CommitPipeline
    editor: Editor
    workflows: WorkflowsInForce

    @property
    def layout(self) -> Layout:
        return self.documents.layout


def layout_of(settings: Settings) -> Layout:
    return Layout(content_dir=settings.content_dir, main_branch=settings.branch)


def workflows_of(settings: Settings) -> Workflows:
    """The shipped definitions (or those of ``CMS_WORKFLOWS``), and ``CMS_WORKFLOW``'s file if
    set, which is then the default unless ``CMS_DEFAULT_WORKFLOW`` names another."""
    files = {path.stem: path for path in definitions(settings.workflows or folder("workflows"))}
    default = settings.default_workflow
    if settings.workflow is not None:
        files[settings.workflow.stem] = settings.workflow
        default = settings.default_workflow if settings.default_workflow != "default" \
            else settings.workflow.stem
    return load_workflows(files.values(), default)


def open_repository(settings: Settings) -> Repository:
    """The content repository: with ``CMS_UPSTREAM``, a clone of it, made if missing and
    brought up to date."""
    if settings.upstream:
        return open_clone(settings.repo, settings.upstream, branch=settings.branch,
                          durable=settings.durable)
    return Repository(settings.repo, durable=settings.durable)


def open_write_side(settings: Settings, *, workflows: Workflows | None = None,
                    repo: Repository | None = None) -> WriteSide:
    if repo is None:
        repo = open_repository(settings)
    elif settings.upstream and repo.upstream is None:
        attach(repo, settings.upstream)
    documents = Documents(repo, layout_of(settings))
    # The definitions on main decide once it holds some; until then, the configured ones.
    workflows = WorkflowsInForce(documents, workflows or workflows_of(settings))
    listeners = Listeners()
    pipeline = CommitPipeline(
        repo, documents.layout,
        Person(name=settings.committer_name, email=settings.committer_email), listeners)
    return WriteSide(repo=repo, documents=documents, listeners=listeners, pipeline=pipeline,
                     editor=Editor(documents, pipeline, workflows), workflows=workflows)
