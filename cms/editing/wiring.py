"""The write side assembled from settings: repository, layout, reads, pipeline and commands."""

from __future__ import annotations

from dataclasses import dataclass

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
class Content:
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


def open_content(settings: Settings, *, workflow: Workflow | None = None,
                 repo: Repository | None = None) -> Content:
    repo = repo or Repository(settings.repo, durable=settings.durable)
    workflow = workflow or load_workflow(settings.workflow)
    documents = Documents(repo, layout_of(settings))
    listeners = Listeners()
    pipeline = CommitPipeline(
        repo, documents.layout,
        Person(name=settings.committer_name, email=settings.committer_email), listeners)
    return Content(repo=repo, documents=documents, listeners=listeners, pipeline=pipeline,
                   editor=Editor(documents, pipeline, workflow), workflow=workflow)
