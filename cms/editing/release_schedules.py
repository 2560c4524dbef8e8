"""Scheduled releases: a release published at a set time, once, by whichever server looks.

The schedule is a commit on the release's ref (``Cms-Action: schedule``, ``Cms-Release``,
``Cms-Scheduled-At``, a ``Cms-Document`` per comparison), indexed while pending by
``refs/cms/scheduled-releases/<id>``; a cancellation is a commit there too. When it falls due the
release is published through ``Releases.publish`` as the person who scheduled it, naming the
schedule (``Cms-Schedule``) and dropping the index in the same ref transaction. Whether every
comparison may be published is checked when it is scheduled and again when it falls due: what
cannot be published then is not, and the schedule is dropped and logged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from msgspec import Struct

from ..errors import CmsError, Conflict, Forbidden, StoreError
from ..identity.actors import Actor
from ..store.layout import RELEASES_PREFIX, SCHEDULED_RELEASES_PREFIX
from ..store.messages import subject_line
from ..store.refs import Move, RefConflict
from .events import (
    ACTION_TRAILER,
    AT_TRAILER,
    CANCEL,
    RELEASE_TRAILER,
    RUN_TRAILER,
    SCHEDULE,
    format_at,
)
from .pipeline import Change, RefMove
from .releases import Release, Releases
from .scheduled import ScheduledRun, ScheduleGone, author_of, due_time, parse_at
from .workflow import permitted_roles

log = logging.getLogger("cms")

RolesOf = Callable[[str], frozenset[str]]


class ReleaseSchedule(Struct, kw_only=True):
    release: str
    title: str
    slugs: list[str]
    at: datetime
    scheduled_by: str
    scheduled_on: datetime
    commit: str
    revisions: dict[str, str]  # slug -> the revision it was scheduled to publish


class ReleaseSchedules:
    def __init__(self, releases: Releases) -> None:
        self.releases = releases
        self.documents = releases.documents
        self.pipeline = releases.pipeline
        self.changed: list[Callable[[], None]] = []

    def schedule(self, release_id: str, at: datetime, actor: Actor, comment: str = "", *,
                 now: datetime | None = None) -> ReleaseSchedule:
        release = self.releases.get(release_id)
        due = due_time(at, now or datetime.now(UTC), "publish the release")
        refs = self.documents.repo.refs
        same: list[ReleaseSchedule] = []

        def plan() -> Change | None:
            drafts = self.releases.require_publishable(release, actor)
            head = refs.read(RELEASES_PREFIX + release.id)
            index = refs.read(SCHEDULED_RELEASES_PREFIX + release.id)
            assert head is not None
            pending = self._at(index) if index else None
            if pending is not None and (pending.at, pending.scheduled_by) == (due, actor.person):
                same[:] = [pending]
                return None  # scheduled so already: the same request again writes nothing
            return self._note(release, head, actor, SCHEDULE, "Schedule the release", comment,
                              RefMove(ref=SCHEDULED_RELEASES_PREFIX + release.id,
                                      expected=index),
                              ((ACTION_TRAILER, "publish"), (AT_TRAILER, format_at(due)),
                               # What is to be published: an edit since voids the schedule.
                               *(("Cms-Revision", f"{draft.comparison.slug} {draft.revision}")
                                 for draft, _ in drafts)))

        event = self.pipeline.run(plan)
        if event is None:
            return same[0]
        for wake in self.changed:
            wake()
        made = self._at(event.commit)
        assert made is not None
        return made

    def cancel(self, release_id: str, actor: Actor, comment: str = "") -> Release:
        release = self.releases.get(release_id)
        refs = self.documents.repo.refs
        index_ref = SCHEDULED_RELEASES_PREFIX + release.id
        pending = refs.read(index_ref)
        if pending is None:
            raise Conflict(f"nothing is scheduled for release `{release.id}`",
                           field="release_id")
        # Who may take it back is who may publish each of its comparisons.
        for slug in release.slugs:
            current = self.documents.current(slug)
            workflow = self.releases.workflows.of(current.comparison.workflow if current
                                                  else None)
            if not actor.has_any(permitted_roles(workflow, "publish")):
                raise Forbidden(f"cancelling needs a role that may publish `{slug}`",
                                field="release_id")

        def plan() -> Change:
            if refs.read(index_ref) != pending:
                raise ScheduleGone(f"the schedule of release `{release.id}` was carried out or "
                                   "replaced meanwhile; read the release again",
                                   field="release_id")
            head = refs.read(RELEASES_PREFIX + release.id)
            assert head is not None
            return self._note(release, head, actor, CANCEL, "Cancel the schedule of", comment,
                              RefMove(ref=index_ref, expected=pending, delete=True),
                              ((RUN_TRAILER, pending),))

        self.pipeline.run(plan)
        return self.releases.get(release.id)

    def pending(self) -> list[ReleaseSchedule]:
        found = [made for oid in self.documents.repo.refs.under(
            SCHEDULED_RELEASES_PREFIX).values() if (made := self._at(oid))]
        return sorted(found, key=lambda made: (made.at, made.release))

    def run_due(self, roles_of: RolesOf, now: datetime | None = None) -> list[str]:
        now = now or datetime.now(UTC)
        made = []
        for pending in self.pending():
            if pending.at > now:
                break
            try:
                commit = self.fire(pending, roles_of)
            except StoreError as exc:
                log.warning("the scheduled release %s waits: %s", pending.release, exc.message)
                continue
            except Exception:
                # One schedule that fails must not keep the others from running.
                log.exception("the scheduled release %s failed; it is tried again",
                              pending.release)
                continue
            if commit is not None:
                made.append(commit)
        return made

    def fire(self, pending: ReleaseSchedule, roles_of: RolesOf) -> str | None:
        actor = author_of(pending.scheduled_by, roles_of)
        index_ref = SCHEDULED_RELEASES_PREFIX + pending.release
        try:
            self.releases.publish(pending.release, actor, run=ScheduledRun(
                ref=index_ref, commit=pending.commit, due=pending.at),
                revisions=pending.revisions)
        except ScheduleGone:
            return None
        except StoreError:
            raise
        except CmsError as exc:
            with contextlib.suppress(RefConflict):
                self.documents.repo.move([Move(index_ref, None, pending.commit)])
            log.warning("the scheduled release %s (%s) was not published: %s", pending.release,
                        pending.commit[:12], exc.message)
            return None
        return self.documents.main_head()

    def _note(self, release: Release, head: str, actor: Actor, action: str, verb: str,
              comment: str, index: RefMove, extra: tuple[tuple[str, str], ...]) -> Change:
        """A commit on the release's ref with its parent's tree, moving the schedule's index."""
        return Change(
            action=action, subject=subject_line(verb, release.title), comment=comment,
            slugs=tuple(release.slugs), state="open", author=actor.as_person, parents=(head,),
            base_tree=self.documents.repo.read_commit(head).tree, files={},
            moves=(RefMove(ref=RELEASES_PREFIX + release.id, expected=head), index),
            extra_trailers=((RELEASE_TRAILER, release.id), *extra))

    def _at(self, oid: str) -> ReleaseSchedule | None:
        commit = self.documents.repo.read_commit(oid)
        message = commit.message
        at = parse_at(message.first(AT_TRAILER))
        release = message.first(RELEASE_TRAILER)
        if message.first("Cms-Action") != SCHEDULE or at is None or release is None:
            return None
        try:
            title = self.releases.get(release).title
        except CmsError:
            title = message.subject.removeprefix("Schedule the release: ")
        return ReleaseSchedule(
            release=release, title=title,
            slugs=[value.removeprefix("comparisons/") for value in message.values("Cms-Document")],
            revisions=dict(value.split(" ", 1) for value in message.values("Cms-Revision")
                           if " " in value),
            at=at, scheduled_by=f"{commit.author.name} <{commit.author.email}>",
            scheduled_on=commit.author.at, commit=oid)
