"""Releases: several comparisons published together, in one commit on main.

A release is a commit (``Cms-Action: release``, a ``Cms-Release`` id, a ``Cms-Document`` per
comparison) indexed by ``refs/cms/releases/<id>``; its title is the commit's subject. Publishing
it is one merge into main of every comparison's review branch and of the release's own commit:
``Cms-Action: publish`` with a ``Cms-Document`` per comparison, the ``Approved-by`` of every one of
them and ``Cms-Release``. It is all or nothing: unless every comparison may be published now by
the person publishing, nothing is written and the answer names each one that may not. A release
is published once its commit is in main's history.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

import msgspec
from msgspec import Struct

from ..content.model import Comparison
from ..errors import CmsError, Conflict, InvalidContent, NotFound
from ..identity.actors import Actor
from ..store.documents import Documents, Revision
from ..store.layout import RELEASES_PREFIX, SCHEDULED_RELEASES_PREFIX
from ..store.messages import subject_line
from .commands import _with_tallies_of
from .events import AT_TRAILER, RELEASE_TRAILER, parse_at
from .pipeline import Change, CommitPipeline, RefMove
from .scheduled import ScheduledRun, voided
from .workflow import decide
from .workflows import Workflows

RELEASE_ID = r"^r_[0-9a-f]{12}\Z"
MAX_SLUGS = 100
PUBLISH = "publish"


class Release(Struct, kw_only=True):
    id: str
    title: str
    slugs: list[str]
    created_by: str
    created_at: datetime
    commit: str
    # Whether it was published (its commit is in main's history).
    published: bool = False
    # When it is to be published, if that is scheduled.
    scheduled_at: datetime | None = None


class Releases:
    def __init__(self, documents: Documents, pipeline: CommitPipeline,
                 workflows: Workflows) -> None:
        self.documents = documents
        self.pipeline = pipeline
        self.workflows = workflows

    def create(self, title: str, slugs: list[str], actor: Actor) -> Release:
        if not title.strip():
            raise InvalidContent("a release needs a title", field="title")
        wanted = list(dict.fromkeys(slugs))
        if not wanted:
            raise InvalidContent("a release holds at least one comparison", field="slugs")
        if len(wanted) > MAX_SLUGS:
            raise InvalidContent(f"a release holds at most {MAX_SLUGS} comparisons",
                                 field="slugs")
        for slug in wanted:
            if self.documents.current(slug) is None:
                raise NotFound(f"no comparison with slug `{slug}`", field="slugs")
        release_id = "r_" + secrets.token_hex(6)

        def plan() -> Change:
            head = self.documents.main_head()
            tree = self.documents.repo.read_commit(head).tree if head else None
            return Change(
                # The title in full, as the body: the subject may shorten it.
                action="release", subject=subject_line("Release", title), comment=title,
                slugs=tuple(wanted), state="open", author=actor.as_person,
                parents=(head,) if head else (), base_tree=tree, files={},
                moves=(RefMove(ref=RELEASES_PREFIX + release_id, expected=None),),
                extra_trailers=((RELEASE_TRAILER, release_id),))

        self.pipeline.run(plan)
        return self.get(release_id)

    def get(self, release_id: str) -> Release:
        if not re.match(RELEASE_ID, release_id):
            raise NotFound(f"no release `{release_id}`", field="release_id")
        oid = self.documents.repo.refs.read(RELEASES_PREFIX + release_id)
        if oid is None:
            raise NotFound(f"no release `{release_id}`", field="release_id")
        return self._read(release_id, oid, self.documents.main_head())

    def all(self) -> list[Release]:
        main = self.documents.main_head()
        repo = self.documents.repo
        # Which are published, in one look rather than one per release.
        merged = set(repo.git("for-each-ref", "--format=%(refname)", f"--merged={main}",
                              RELEASES_PREFIX).split()) if main else set()
        found = [self._read(ref[len(RELEASES_PREFIX):], oid, None, published=ref in merged)
                 for ref, oid in repo.refs.under(RELEASES_PREFIX).items()]
        return sorted(found, key=lambda release: (release.created_at, release.id), reverse=True)

    def publish(self, release_id: str, actor: Actor, comment: str = "", *,
                run: ScheduledRun | None = None,
                revisions: dict[str, str] | None = None) -> Release:
        """Publish every comparison of the release in one commit, or none; ``run`` when a
        schedule does it, which then must still be pending, with the ``revisions`` it was made
        for (slug -> revision): a comparison changed since is not published unseen."""
        release = self.get(release_id)
        refs = self.documents.repo.refs

        def plan() -> Change:
            if run is not None:
                run.check(refs)
            main = self.documents.main_head()
            drafts = self.require_publishable(release, actor)
            changed = [draft.comparison.slug for draft, _ in drafts if revisions is not None
                       and revisions.get(draft.comparison.slug) != draft.revision]
            if changed:
                raise Conflict(f"changed since the release was scheduled: {', '.join(changed)}",
                               field="slugs")
            head = refs.read(RELEASES_PREFIX + release.id)
            assert head is not None
            change = self._merge(release, drafts, main, head, actor, comment)
            # The release's ref holds what was read (a schedule made meanwhile is not
            # published past); its schedule, carried out or made moot, goes with it.
            index_ref = SCHEDULED_RELEASES_PREFIX + release.id
            index = refs.read(index_ref)
            moves = [*change.moves,
                     RefMove(ref=RELEASES_PREFIX + release.id, expected=head, verify=True)]
            if run is not None:
                moves.append(RefMove(ref=run.ref, expected=run.commit, delete=True))
            elif index is not None:
                moves.append(RefMove(ref=index_ref, expected=index, delete=True))
            change = msgspec.structs.replace(change, moves=tuple(moves))
            if run is None:
                return change
            return msgspec.structs.replace(
                change, extra_trailers=(*change.extra_trailers, *run.trailers),
                after=run.not_before)

        self.pipeline.run(plan)
        return self.get(release_id)

    def require_publishable(self, release: Release, actor: Actor
                            ) -> list[tuple[Revision, Comparison]]:
        """Each comparison's draft as ``actor`` would publish it now; else a 409 naming each
        that may not be published, and why."""
        main = self.documents.main_head()
        if main is not None and self.documents.is_ancestor(release.commit, main):
            raise Conflict(f"release `{release.id}` is published already", field="release_id")
        drafts, refused = self._publishable(release, actor)
        if refused:
            raise Conflict("nothing was published: " + "; ".join(
                f"`{slug}`: {reason}" for slug, reason in refused.items()),
                field="slugs", refused=refused)
        return drafts

    # Plans

    def _publishable(self, release: Release, actor: Actor
                     ) -> tuple[list[tuple[Revision, Comparison]], dict[str, str]]:
        at = datetime.now(UTC).replace(microsecond=0)
        drafts: list[tuple[Revision, Comparison]] = []
        refused: dict[str, str] = {}
        main = self.documents.main_head()
        for slug in release.slugs:
            draft = self.documents.work_in_progress(slug)
            if draft is None or self.documents.merged(draft, main):
                refused[slug] = "has no draft to publish"
                continue
            workflow = self.workflows.of(draft.comparison.workflow)
            if PUBLISH not in workflow.transitions:
                refused[slug] = f"its workflow `{workflow.name}` has no `{PUBLISH}`"
                continue
            try:
                record = decide(workflow, draft.comparison.workflow, PUBLISH, actor, at=at)
            except CmsError as exc:
                refused[slug] = exc.message
                continue
            if not workflow.states[record.state].public:
                refused[slug] = f"`{PUBLISH}` does not make it public"
                continue
            drafts.append((draft, msgspec.structs.replace(draft.comparison, workflow=record)))
        return drafts, refused

    def _merge(self, release: Release, drafts: list[tuple[Revision, Comparison]],
               main: str | None, head: str, actor: Actor, comment: str) -> Change:
        """The merge of main, each comparison's branch and ``head``, the release's ref (its
        own commit, or the latest schedule or cancellation of it on top)."""
        documents, layout = self.documents, self.documents.layout
        refs = documents.repo.refs
        tree = documents.repo.read_commit(main).tree if main else None
        files: dict[str, bytes | None] = {}
        approvers: list[str] = []
        moves = [RefMove(ref=layout.main_ref, expected=main)]
        for draft, document in drafts:
            slug = document.slug
            live = documents.in_tree(tree, slug)
            files[layout.path(slug)] = documents.encode(
                _with_tallies_of(document, live) if live else document)
            approvers += [p for p in document.workflow.approved_by if p not in approvers]
            moves.append(RefMove(ref=draft.ref, expected=draft.commit, delete=True))
        for draft, _ in drafts:
            slug = draft.comparison.slug
            moves += [*voided(refs, slug, "draft"), *voided(refs, slug, "live")]
        return Change(
            action=PUBLISH, subject=subject_line("Publish the release", release.title),
            # The title first: what the release's webhook event names it by.
            comment="\n\n".join(part for part in (release.title, comment) if part),
            slugs=tuple(release.slugs), state="published",
            author=actor.as_person, approvers=tuple(approvers),
            parents=tuple(dict.fromkeys(p for p in (
                main, *(draft.commit for draft, _ in drafts), head) if p)),
            base_tree=tree, files=files, moves=tuple(moves),
            extra_trailers=((RELEASE_TRAILER, release.id),))

    def _read(self, release_id: str, oid: str, main: str | None, *,
              published: bool | None = None) -> Release:
        repo = self.documents.repo
        commit = repo.read_commit(oid)
        # Back over its schedules and their cancellations to the release's own commit.
        while commit.message.first("Cms-Action") != "release" and commit.parents:
            commit = repo.read_commit(commit.parents[0])
        oid = commit.oid
        message = commit.message
        index = repo.refs.read(SCHEDULED_RELEASES_PREFIX + release_id)
        scheduled_at = parse_at(repo.read_commit(index).message.first(AT_TRAILER)) \
            if index else None
        # The body keeps the title whole (the subject may shorten it); a line of it that git
        # would read as something else was indented, which the title never is.
        title = (message.comment or message.subject.removeprefix("Release: ")).strip()
        slugs = [value.removeprefix("comparisons/") for value in message.values("Cms-Document")]
        return Release(id=release_id, title=title, slugs=slugs,
                       created_by=f"{commit.author.name} <{commit.author.email}>",
                       created_at=commit.author.at, commit=oid, scheduled_at=scheduled_at,
                       published=published if published is not None else
                       main is not None and self.documents.is_ancestor(oid, main))

