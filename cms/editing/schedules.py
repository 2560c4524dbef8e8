"""Scheduled publication and takedown, kept in git.

Scheduling a publication writes a commit on the comparison's review branch; scheduling a
takedown writes one on main (both with their parent's tree: nothing changes yet). Each commit
says what will happen and when (``Cms-Scheduled-Action``, ``Cms-Scheduled-At``) to which revision
(``Cms-Revision``), and a ref indexes it while it is pending. When it falls due, any server on the
repository takes the transition through the editor's one write path, as the person who scheduled
it (with the roles their tokens hold then), naming the schedule in a ``Cms-Schedule`` trailer; the
ref goes in the same transaction, so of several servers exactly one carries it out. A schedule
whose revision changed meanwhile (an edit, a change of state) was dropped by that write; a
schedule that can no longer be carried out when due (its author lost the role, say) is dropped
and logged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from msgspec import Struct

from ..errors import (
    CmsError,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    StoreError,
)
from ..identity.actors import Actor
from ..store.documents import Documents, Revision
from ..store.layout import SCHEDULE_PLACES, SCHEDULED_PREFIX, Layout
from ..store.messages import subject_line
from ..store.refs import Move, RefConflict
from .commands import Editor
from .pipeline import Change, CommitPipeline, RefMove
from .scheduled import (
    ACTION_TRAILER,
    AT_TRAILER,
    CANCEL,
    RUN_TRAILER,
    SCHEDULE,
    ScheduledRun,
    ScheduleGone,
    author_of,
    due_time,
    format_at,
    parse_at,
    voided,
)
from .workflow import decide
from .workflows import Workflows

log = logging.getLogger("cms")


RolesOf = Callable[[str], frozenset[str]]


class Schedule(Struct, kw_only=True):
    slug: str
    action: str
    at: datetime
    revision: str  # the revision it publishes or takes down
    scheduled_by: str
    scheduled_on: datetime
    commit: str  # the schedule's own commit
    # What it acts on: the work in progress (a publication) or what is live (a takedown).
    place: str


class Schedules:
    def __init__(self, documents: Documents, pipeline: CommitPipeline, editor: Editor,
                 workflows: Workflows) -> None:
        self.documents = documents
        self.pipeline = pipeline
        self.editor = editor
        self.workflows = workflows
        # Called after each schedule this process makes, so the scheduler thread wakes for it.
        self.changed: list[Callable[[], None]] = []

    def schedule(self, slug: str, action: str, at: datetime, actor: Actor,
                 if_match: str | None, comment: str = "", *,
                 now: datetime | None = None) -> Schedule:
        """Schedule ``action`` on the revision ``if_match`` for ``at`` (a later schedule of the
        same kind replaces an earlier one)."""
        at = due_time(at, now or datetime.now(UTC), action)
        editor = self.editor
        workflow, on_live = editor.transition_spec(slug, action)
        places: list[str] = []
        same: list[Schedule] = []

        def plan() -> Change | None:
            current = editor.require(slug, if_match, live=on_live)
            record = decide(workflow, current.comparison.workflow, action, actor, at=None)
            public = workflow.states[record.state].public
            if current.work_in_progress and self.documents.repo.blob_at(
                    self.documents.repo.read_commit(current.commit).tree,
                    self.documents.layout.path(slug)) is None:
                raise Conflict(f"`{slug}` has no revision to publish: edit it to start one",
                               field="action")
            if current.work_in_progress != public:
                raise Conflict(f"only a publication or a takedown can be scheduled, and "
                               f"`{action}` of `{slug}` now is neither", field="action")
            places[:] = ["draft" if public else "live"]
            pending = self._pending_at(slug, places[0])
            if pending is not None and (pending.action, pending.at, pending.revision,
                                        pending.scheduled_by) == (action, at, current.revision,
                                                                  actor.person):
                same[:] = [pending]
                return None  # scheduled so already: the same request again writes nothing
            return self._note(current, actor, SCHEDULE, "Schedule", comment, place=places[0],
                              extra=((ACTION_TRAILER, action), (AT_TRAILER, format_at(at)),
                                     ("Cms-Revision", current.revision)))

        event = self.pipeline.run(plan)
        if event is None:
            return same[0]
        for wake in self.changed:
            wake()
        made = self._schedule_at(event.commit, places[0])
        assert made is not None
        return made

    def cancel(self, slug: str, actor: Actor, if_match: str | None,
               comment: str = "") -> list[Schedule]:
        """Cancel the pending schedule of ``slug`` made for the revision ``if_match`` (the
        draft's, to cancel its publication; what is live, to cancel its takedown); a 409 when
        nothing is scheduled."""
        pendings = [pending for place in SCHEDULE_PLACES
                    if (pending := self._pending_at(slug, place)) is not None]
        if not pendings:
            if self.documents.current(slug) is None:
                raise NotFound(f"no comparison with slug `{slug}`", field="slug")
            raise Conflict(f"nothing is scheduled for `{slug}`", field="action")
        if if_match is None:
            raise PreconditionRequired(
                "send the revision the schedule is for in an If-Match header: " + ", ".join(
                    f"{pending.revision} ({pending.action})" for pending in pendings),
                field="If-Match")
        chosen = [pending for pending in pendings if if_match in (
            pending.revision, self._current_revision(slug, pending.place))]
        if not chosen:
            raise PreconditionFailed(
                f"revision {if_match} has no schedule; scheduled: " + ", ".join(
                    f"{pending.action} of {pending.revision}" for pending in pendings),
                field="If-Match")
        cancelled: list[Schedule] = []
        for pending in chosen:
            place = pending.place
            current = self.documents.current(slug)
            workflow = self.workflows.of(current.comparison.workflow if current else None)
            roles = workflow.transitions[pending.action].roles \
                if pending.action in workflow.transitions else []
            if not actor.has_any({*roles, *workflow.superuser_roles}):
                raise Forbidden(f"cancelling a scheduled `{pending.action}` needs a role that "
                                f"may take it: {', '.join(roles)}", field="action")
            if self.pipeline.run(self._cancel_plan(pending, place, actor, comment)) is None:
                # Carried out, replaced or cancelled since it was read: nothing was cancelled.
                raise ScheduleGone(f"the scheduled `{pending.action}` of `{slug}` was carried "
                                   "out or replaced meanwhile; read the schedule again",
                                   field="action")
            cancelled.append(pending)
        return cancelled

    def _current_revision(self, slug: str, place: str) -> str | None:
        """What a schedule at ``place`` acts on now: its revision, as a read shows it."""
        found = self.documents.work_in_progress(slug) if place == "draft" \
            else self.documents.published(slug)
        return found.revision if found else None

    def pending(self) -> list[Schedule]:
        """Every pending schedule, soonest first."""
        refs = self.documents.repo.refs.under(SCHEDULED_PREFIX)
        found = [schedule for ref, oid in refs.items()
                 if (schedule := self._schedule_at(oid, ref.rsplit("/", 1)[-1]))]
        return sorted(found, key=lambda s: (s.at, s.slug))

    def run_due(self, roles_of: RolesOf, now: datetime | None = None) -> list[str]:
        """Carry out every schedule due at ``now``; the commits made."""
        now = now or datetime.now(UTC)
        made = []
        for schedule in self.pending():
            if schedule.at > now:
                break
            try:
                commit = self.fire(schedule, roles_of)
            except StoreError as exc:
                log.warning("the scheduled %s of %s waits: %s", schedule.action, schedule.slug,
                            exc.message)
                continue
            except Exception:
                # One schedule that fails must not keep the others from running.
                log.exception("the scheduled %s of %s failed; it is tried again",
                              schedule.action, schedule.slug)
                continue
            if commit is not None:
                made.append(commit)
        return made

    def fire(self, schedule: Schedule, roles_of: RolesOf) -> str | None:
        """Take the scheduled transition now; its commit, or None when it was carried out
        already (by another server, say) or could not be and was dropped."""
        ref = Layout.scheduled(schedule.slug, schedule.place)
        actor = author_of(schedule.scheduled_by, roles_of)
        try:
            revision = self.editor.transition(
                schedule.slug, schedule.action, actor, schedule.revision,
                run=ScheduledRun(ref=ref, commit=schedule.commit, due=schedule.at))
        except ScheduleGone:
            return None
        except StoreError:
            raise  # the repository refused for now: the schedule stays, and is tried again
        except CmsError as exc:
            self._drop(ref, schedule.commit)
            log.warning("the scheduled %s of %s (%s) was not carried out: %s", schedule.action,
                        schedule.slug, schedule.commit[:12], exc.message)
            return None
        return revision.commit

    # Reading

    def _schedule_at(self, oid: str, place: str) -> Schedule | None:
        """The schedule commit ``oid`` records, indexed at ``place``; None if it is none."""
        if place not in SCHEDULE_PLACES:
            return None
        # The repository keeps parsed commits (bounded): reading one again is cheap.
        commit = self.documents.repo.read_commit(oid)
        message = commit.message
        at = parse_at(message.first(AT_TRAILER))
        slug = Layout.slug_of_document(message.first("Cms-Document") or "")
        action = message.first(ACTION_TRAILER)
        if at is None or slug is None or action is None \
                or message.first("Cms-Action") != SCHEDULE:
            return None
        return Schedule(slug=slug, action=action, at=at,
                        revision=message.first("Cms-Revision") or "",
                        scheduled_by=f"{commit.author.name} <{commit.author.email}>",
                        scheduled_on=commit.author.at, commit=oid, place=place)

    def _pending_at(self, slug: str, place: str) -> Schedule | None:
        oid = self.documents.repo.refs.read(Layout.scheduled(slug, place))
        return None if oid is None else self._schedule_at(oid, place)

    # Writing

    def _note(self, current: Revision, actor: Actor, action: str, verb: str, comment: str, *,
              place: str, extra: tuple[tuple[str, str], ...],
              cancelled: str | None = None) -> Change:
        """A commit with its parent's tree on the ref ``current`` was read from, indexed by the
        schedule ref at ``place``: made or replaced, or dropped for the cancellation of the
        schedule ``cancelled`` (only while it is still that one)."""
        head = self.documents.repo.read_commit(current.commit)
        ref = Layout.scheduled(current.comparison.slug, place)
        if cancelled is not None:
            index: tuple[RefMove, ...] = (RefMove(ref=ref, expected=cancelled, delete=True),)
        else:
            pending = voided(self.documents.repo.refs, current.comparison.slug, place)
            index = (RefMove(ref=ref, expected=pending[0].expected if pending else None),)
        return Change(
            action=action, subject=subject_line(verb, current.comparison.title), comment=comment,
            slugs=(current.comparison.slug,), state=current.comparison.workflow.state,
            author=actor.as_person, parents=(current.commit,), base_tree=head.tree, files={},
            moves=(RefMove(ref=current.ref, expected=current.commit), *index),
            extra_trailers=extra)

    def _cancel_plan(self, pending: Schedule, place: str, actor: Actor,
                     comment: str) -> Callable[[], Change | None]:
        def plan() -> Change | None:
            if self.documents.repo.refs.read(Layout.scheduled(pending.slug, place)) \
                    != pending.commit:
                return None  # carried out or cancelled meanwhile
            current = self.documents.work_in_progress(pending.slug) if place == "draft" \
                else self.documents.published(pending.slug)
            if current is None:
                self._drop(Layout.scheduled(pending.slug, place), pending.commit)
                return None
            return self._note(current, actor, CANCEL, "Cancel the schedule of", comment,
                              place=place, extra=((ACTION_TRAILER, pending.action),
                                                  (RUN_TRAILER, pending.commit)),
                              cancelled=pending.commit)
        return plan

    def _drop(self, ref: str, commit: str) -> None:
        # A ref moved meanwhile is no longer this schedule's.
        with contextlib.suppress(RefConflict):
            self.documents.repo.move([Move(ref, None, commit)])
