"""The write side assembled from settings: the repository, its layout, reads of revisions, the
commit pipeline with its (empty) list of listeners, and the commands. Whoever serves wires the
listeners (see ``cms.api.services``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..bundled import default_workflow
from ..config import Settings
from ..identity.actors import Person
from ..store.documents import Documents
from ..store.layout import Layout
from ..store.repository import Repository
from .commands import Editor
from .events import Listeners
from .pipeline import CommitPipeline
from .workflow import Workflow, load_workflow


@dataclass(frozen=True)
class WriteSide:
    repo: Repository
    documents: Documents
    listeners: Listeners
    pipeline: CommitPipeline
    editor: Editor
    workflow: Workflow

    @property
    def layout(self) -> Layout:
        return self.documents.layout


def layout_of(settings: Settings) -> Layout:
    return Layout(content_dir=settings.content_dir, main_branch=settings.branch)


def open_write_side(settings: Settings, *, workflow: Workflow | None = None,
                 repo: Repository | None = None) -> WriteSide:
    repo = repo or Repository(settings.repo, durable=settings.durable)
    workflow = workflow or load_workflow(settings.workflow or default_workflow())
    documents = Documents(repo, layout_of(settings))
    listeners = Listeners()
    pipeline = CommitPipeline(
        repo, documents.layout,
        Person(name=settings.committer_name, email=settings.committer_email), listeners)
    return WriteSide(repo=repo, documents=documents, listeners=listeners, pipeline=pipeline,
                   editor=Editor(documents, pipeline, workflow), workflow=workflow)
