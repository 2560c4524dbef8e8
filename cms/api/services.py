"""The parts the routes work with, built once per app and handed to handlers by injection."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.di import NamedDependency

from ..audit.verdicts import VerdictLog
from ..config import Settings
from ..editing.documents import Documents
from ..editing.workflow import Workflow, load_workflow
from ..identity.previews import Previews
from ..identity.tokens import TokenStore
from ..reading.index import PublishedIndex
from ..store.maintenance import Maintenance
from ..store.repository import Repository
from ..votes.ballots import RateLimit, VoteFolder, VoteStore
from ..webhooks.service import Webhooks, build_webhooks
from .http import BodyCache


@dataclass(frozen=True)
class Services:
    settings: Settings
    workflow: Workflow
    documents: Documents
    index: PublishedIndex
    tokens: TokenStore
    webhooks: Webhooks
    verdicts: VerdictLog
    maintenance: Maintenance
    previews: Previews
    votes: VoteStore
    vote_folder: VoteFolder
    vote_limit: RateLimit
    bodies: BodyCache


def build_services(settings: Settings) -> Services:
    workflow = load_workflow(settings.workflow)
    repo = Repository(settings.repo, durable=settings.durable)
    documents = Documents(repo, workflow, settings)
    documents.recover()
    index = PublishedIndex(documents, settings.data / "index.snapshot")
    index.load()
    documents.main_moved.append(index.on_main_moved)
    maintenance = Maintenance(repo)
    votes = VoteStore(settings.data / "votes.sqlite3")
    documents.committed.append(maintenance.note_commit)
    return Services(
        settings=settings, workflow=workflow, documents=documents, index=index,
        tokens=TokenStore(settings.data), webhooks=build_webhooks(settings, documents),
        verdicts=VerdictLog(documents, settings.data / "verdict-log.json"),
        maintenance=maintenance, previews=Previews(settings.data),
        votes=votes, vote_folder=VoteFolder(documents, votes, settings.vote_fold_seconds),
        vote_limit=RateLimit(settings.vote_rate), bodies=BodyCache(),
    )


# Handlers ask for ``services: ServicesDep``; the app provides one shared instance.
ServicesDep = NamedDependency[Services]
