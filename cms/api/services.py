"""The parts the routes work with, built once per app and handed to handlers by injection.

This is where the write side's listeners are wired: every commit the pipeline makes reaches the
vote ledger, the published index, the audit cache, the webhook outbox and repository
maintenance, in that order, before the editor's request returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from ..audit.verdicts import VerdictLog
from ..config import Settings
from ..editing.assignments import Assignments
from ..editing.commands import Editor
from ..editing.comments import Comments
from ..editing.pipeline import CommitPipeline
from ..editing.release_schedules import ReleaseSchedules
from ..editing.releases import Releases
from ..editing.review_branch import ReviewBranch
from ..editing.scheduler import Scheduler
from ..editing.schedules import Schedules
from ..editing.workflows_in_force import WorkflowsInForce
from ..editing.write_side import open_write_side
from ..errors import NotFound
from ..identity.keys import signing_key
from ..identity.previews import Previews
from ..identity.tokens import TokenStore
from ..lru import EmptiedCache, WeighedCache
from ..reading.index import PublishedIndex
from ..reading.sync import Sync
from ..shared.leases import Leases
from ..store.documents import Documents
from ..store.following import Follower
from ..store.maintenance import Maintenance
from ..store.recovery import Instances, PeriodicRecovery, recover, remove_leftovers
from ..votes.folding import VoteFolder
from ..votes.limits import RateLimit, vote_secret
from ..votes.store import VoteStore
from ..webhooks.service import Webhooks, build_webhooks
from .http import body_cache


@dataclass(frozen=True)
class Services:
    settings: Settings
    workflows: WorkflowsInForce
    documents: Documents
    pipeline: CommitPipeline
    editor: Editor
    comments: Comments
    assignments: Assignments
    schedules: Schedules
    releases: Releases
    release_schedules: ReleaseSchedules
    scheduler: Scheduler
    index: PublishedIndex
    sync: Sync
    tokens: TokenStore
    webhooks: Webhooks
    verdicts: VerdictLog
    maintenance: Maintenance
    previews: Previews
    votes: VoteStore
    vote_folder: VoteFolder
    vote_limit: RateLimit
    bodies: WeighedCache[str, bytes]
    instances: Instances
    recovery: PeriodicRecovery
    # Fetches what other instances wrote; None without an upstream.
    follower: Follower | None
    # A list's entries, encoded, by what they are made from (see ``public._summaries``).
    summaries: EmptiedCache[tuple[object, ...], msgspec.Raw] = field(
        default_factory=lambda: EmptiedCache(8 * 1024 * 1024, lambda key, body: len(body) + 200))
    # Pages of them, encoded as one array, by their entries' blobs and slugs
    # (``public._entries``); a key is weighed with its strings, which it keeps alive once the
    # rows that held them are let go.
    pages: EmptiedCache[tuple[str, ...], msgspec.Raw] = field(
        default_factory=lambda: EmptiedCache(4 * 1024 * 1024,
                                             lambda key, body: len(body) + 100 * len(key)))


def build_services(settings: Settings) -> Services:
    content = open_write_side(settings)
    content.repo.read_only = settings.read_only
    # A read-only replica keeps what it needs besides git (which must exist for the services
    # to be built, and stays empty: no route or thread of a replica writes to it) under its own
    # CMS_DATA, never in the shared database.
    own = msgspec.structs.replace(settings, database_url="") if settings.read_only else settings
    # Definitions on main that do not hold (pushed around the CMS) keep the server from starting.
    content.workflows.check()
    documents = content.documents
    # Whatever a crash left half-done in the refs is recovered now, beside other servers too,
    # so that a supervisor's immediate restart leaves no comparison blocked. Files a live git
    # may be writing are cleared only by a server alone on the repository.
    instances = Instances(content.repo.git_dir)
    alone = instances.alone()
    if alone:
        remove_leftovers(content.repo)
    upstream = content.repo.upstream
    if upstream is None:
        if not settings.read_only:
            recover(documents)
    elif documents.main_head() is None:
        raise NotFound(f"the upstream {upstream.shown} holds no content yet: run `cms init` "
                       "on one instance first", field="CMS_UPSTREAM")
    index = PublishedIndex(documents, settings.data)
    index.ship_from = settings.catalogue_ship_from or None
    index.load()
    votes = VoteStore.open(own)
    vote_secret(own)  # made now, not by the first anonymous vote
    verdicts = VerdictLog(documents, settings.data / "verdict-log.json")
    webhooks = build_webhooks(own, documents, content.workflows)
    # Deliveries claimed by a process that died are due again at once; not on a database that
    # other machines' instances share, whose claims are theirs (they run out by themselves).
    if alone and not own.database_url:
        webhooks.store.release_claims()
    instances.join()
    maintenance = Maintenance(content.repo)
    for listener in (votes.on_committed, index.on_committed, verdicts.on_committed,
                     webhooks.on_committed, lambda _event: maintenance.note_commit()):
        content.listeners.subscribe(listener)
    upstream = documents.repo.upstream

    def able() -> bool:  # an instance cut off from the upstream leaves the leased work
        return upstream is None or not upstream.failing

    vote_folder = VoteFolder(documents, content.pipeline, votes, settings.vote_fold_seconds,
                             leases=Leases.open(own, able))
    # Which votes main holds is read back through history to the newest fold (thousands of
    # commits, in a repository that never had one): found once by the index's filling thread,
    # not by the first public read on the event loop.
    def find_newest_fold() -> None:
        vote_folder.live.held_by(documents.main_head())

    index.filled.append(find_newest_fold)
    review = ReviewBranch(documents, content.pipeline)
    tokens = TokenStore.open(own)
    schedules = Schedules(documents, content.pipeline, content.editor, content.workflows)
    releases = Releases(documents, content.pipeline, content.workflows)
    release_schedules = ReleaseSchedules(releases)
    return Services(
        settings=settings, workflows=content.workflows, documents=documents,
        pipeline=content.pipeline, editor=content.editor,
        comments=Comments(review), assignments=Assignments(review, content.workflows),
        schedules=schedules, releases=releases, release_schedules=release_schedules,
        scheduler=Scheduler(schedules, release_schedules, tokens.roles_of,
                            leases=Leases.open(own, able)),
        index=index,
        # A replica checks the sync tokens of every instance: the key of the shared database.
        sync=Sync(documents, signing_key(
            settings, "sync", make=not (settings.read_only and settings.database_url))),
        tokens=tokens, webhooks=webhooks, verdicts=verdicts,
        maintenance=maintenance, previews=Previews.open(own), votes=votes,
        vote_folder=vote_folder,
        vote_limit=RateLimit(settings.vote_rate), bodies=body_cache(), instances=instances,
        recovery=PeriodicRecovery(documents),
        follower=None if upstream is None else Follower(content.repo, settings.fetch_interval),
    )

