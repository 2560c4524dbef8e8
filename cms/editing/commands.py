"""What editors and reviewers do to a comparison: create, save, take a workflow action, revert,
discard. Each command is a plan for the commit pipeline: it reads the comparison, checks the
revision the client read and the workflow's rules, and describes one commit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from ..content.model import Community, Comparison
from ..errors import CmsError, Conflict, InvalidContent, NotFound, PreconditionFailed, PreconditionRequired
from ..identity.actors import Actor
from ..store.documents import Documents, Revision
from ..store.messages import subject_line
from .pipeline import NEW_COMMIT, Change, CommitPipeline, RefMove
from .scheduled import ScheduledRun, voided
from .workflow import Workflow, decide
from .workflows import Workflows


class Editor:
    def __init__(self, documents: Documents, pipeline: CommitPipeline,
                 workflows: Workflows) -> None:
        self.documents = documents
        self.pipeline = pipeline
        self.workflows = workflows
        self.layout = documents.layout

    def create(self, comparison: Comparison, actor: Actor, comment: str = "",
               workflow: str | None = None) -> Revision:
        """A new draft following ``workflow`` (by name; the default one if None), for good."""
        slug = comparison.slug
        chosen = self.workflows.named(workflow)

        def plan() -> Change:
            if self.documents.current(slug) is not None:
                raise Conflict(
                    f"a comparison with slug `{slug}` already exists; update it with PUT",
                    field="slug",
                )
            record = decide(chosen, None, "create", actor, at=None)
            document = msgspec.structs.replace(_with_tallies_of(comparison, None),
                                               workflow=record)
            return self._on_branch(None, document, "create", "Create", actor, comment)

        return self._branch_result(slug, plan)

    def save(self, slug: str, comparison: Comparison, actor: Actor, if_match: str | None,
             comment: str = "", workflow: str | None = None) -> Revision:
        unchanged: list[Revision] = []

        def plan() -> Change | None:
            current = self.require(slug, if_match)
            follows = self._of(current).name
            if workflow is not None and workflow != follows:
                raise InvalidContent(f"a comparison keeps the workflow it was created with "
                                     f"(`{follows}`), not `{workflow}`", field="workflow")
            record = decide(self._of(current), current.comparison.workflow, "edit", actor,
                            at=None)
            document = msgspec.structs.replace(_with_tallies_of(comparison, current.comparison),
                                               workflow=record)
            if document == current.comparison and current.work_in_progress:
                unchanged.append(current)
                return None
            return self._on_branch(current, document, "edit", "Edit", actor, comment)

        return self._branch_result(slug, plan, unchanged)

    def revert(self, slug: str, to: str, actor: Actor, if_match: str | None,
               comment: str = "") -> Revision:
        """A new draft revision with the content the comparison had at commit ``to``."""
        target = self.documents.at(slug, self.documents.resolve(to, "to"))
        note = comment or f"Revert to the version of {target.commit[:12]}."
        unchanged: list[Revision] = []

        def plan() -> Change | None:
            current = self.require(slug, if_match)
            record = decide(self._of(current), current.comparison.workflow, "edit", actor,
                            at=None)
            # Whoever wrote the content it goes back to wrote this revision too: they may not
            # approve it (a revert must not launder authorship).
            record = msgspec.structs.replace(record, authors=list(dict.fromkeys(
                [*record.authors, *target.comparison.workflow.authors])))
            document = msgspec.structs.replace(target.comparison, workflow=record)
            if document == current.comparison and current.work_in_progress:
                # Nothing would change, so the revision would stay the same and a retry of this
                # very request (its answer lost) would pass If-Match and commit it again.
                unchanged.append(current)
                return None
            return self._on_branch(current, document, "revert", "Revert", actor, note)

        return self._branch_result(slug, plan, unchanged)

    def transition(self, slug: str, action: str, actor: Actor, if_match: str | None,
                   comment: str = "", *, run: ScheduledRun | None = None) -> Revision:
        """Take ``action``; ``run`` when a schedule takes it, which then must still be
        pending."""
        workflow, on_live = self.transition_spec(slug, action)
        draft_kept: list[Revision] = []

        def plan() -> Change:
            draft_kept.clear()
            if run is not None:
                run.check(self.documents.repo.refs)
            current = self.require(slug, if_match, live=on_live)
            # The rules main holds now, read with the head a publication moves from: a change
            # of them landing meanwhile makes the move fail and the plan run again.
            main = self.documents.main_head()
            rules = self.workflows.in_force_at(main).of(current.comparison.workflow)
            at = datetime.now(UTC).replace(microsecond=0)
            record = decide(rules, current.comparison.workflow, action, actor, at=at)
            document = msgspec.structs.replace(current.comparison, workflow=record)
            transition = rules.transitions[action]
            public = rules.states[record.state].public
            if current.work_in_progress and public:
                return _as_run(self._publish(
                    current, document, action, transition.label, actor, comment, main), run)
            if not current.work_in_progress and not public:
                draft = self.documents.work_in_progress(slug)
                draft_kept[:] = [draft] if draft else []
                return _as_run(self._unpublish(
                    current, document, draft, action, transition.label, actor, comment), run)
            if not current.work_in_progress:
                raise Conflict(f"`{action}` would change published content outside a revision")
            approvers = record.approved_by if transition.approval else []
            return self._on_branch(current, document, action, transition.label, actor, comment,
                                   approvers)

        event = self.pipeline.run(plan)
        assert event is not None
        if event.main_moved and public_state(workflow, event.state):
            return self.documents.at(slug, event.commit, ref=self.layout.main_ref)
        if draft_kept:
            return draft_kept[0]
        return self.documents.at(slug, event.commit, ref=self.layout.branch(slug))

    def transition_spec(self, slug: str, action: str) -> tuple[Workflow, bool]:
        """The workflow ``slug`` follows, which has ``action``, and whether the action acts on
        what is live; else the error that names what is wrong with the request."""
        # Before the revision is looked at: these are wrong whatever the revision.
        if action not in self.workflows.transitions():
            known = ", ".join(self.workflows.transitions())
            raise InvalidContent(f"`{action}` is not a transition of any workflow; the "
                                 f"transitions: {known}", field="action")
        found = self.documents.current(slug)
        if found is None and self.pipeline.caught_up():
            found = self.documents.current(slug)  # made through another instance just now
        if found is None:
            raise NotFound(f"no comparison with slug `{slug}`", field="slug")
        workflow = self.workflows.of(found.comparison.workflow)
        spec = workflow.transitions.get(action)
        if spec is None:
            raise Conflict(f"`{slug}` follows the workflow `{workflow.name}`, which has no "
                           f"`{action}`; its transitions: {', '.join(workflow.transitions)}",
                           field="action")
        # An action that only applies to published content (unpublish) acts on what is live,
        # even while a next revision is being drafted.
        on_live = all(workflow.states[state].public for state in spec.from_states)
        return workflow, on_live

    def discard(self, slug: str, actor: Actor, if_match: str | None, comment: str = "") -> None:
        def plan() -> Change:
            current = self.require(slug, if_match)
            if not current.work_in_progress:
                raise Conflict(
                    f"`{slug}` has no work in progress to discard; unpublish it instead",
                    field="slug",
                )
            decide(self._of(current), current.comparison.workflow, "discard", actor, at=None)
            head = self.documents.repo.read_commit(current.commit)
            return Change(
                action="discard", subject=subject_line("Discard", current.comparison.title),
                comment=comment, slugs=(slug,), state="discarded", author=actor.as_person,
                parents=(current.commit,), base_tree=head.tree,
                files={self.layout.path(slug): None},
                # Keep the discarded work reachable for auditors, then drop the branch.
                moves=(RefMove(ref=self.layout.archive(slug, NEW_COMMIT), expected=None),
                       RefMove(ref=current.ref, expected=current.commit, delete=True),
                       *voided(self.documents.repo.refs, slug, "draft")),
            )

        self.pipeline.run(plan)

    def _of(self, current: Revision) -> Workflow:
        return self.workflows.of(current.comparison.workflow)

    # Plans

    def require(self, slug: str, if_match: str | None, *, live: bool = False) -> Revision:
        documents = self.documents
        current = (documents.published(slug) or documents.current(slug)) if live \
            else documents.current(slug)
        if current is None:
            raise NotFound(f"no comparison with slug `{slug}`", field="slug")
        if documents.merged(current, documents.main_head()):
            raise PreconditionFailed(
                "this revision was published meanwhile; read the comparison again",
                field="If-Match")
        if if_match is None:
            raise PreconditionRequired(
                "send the revision you read in an If-Match header; "
                f"the current revision is {current.revision}",
                field="If-Match",
            )
        if if_match != current.revision and not self._only_tallies_differ(if_match, current):
            raise PreconditionFailed(
                f"revision {if_match} is not current (it is {current.revision}): "
                "someone changed this comparison since you read it; read it again",
                field="If-Match",
                current=current.revision,
            )
        return current

    def _only_tallies_differ(self, if_match: str, current: Revision) -> bool:
        """Whether the revision the client read is the published one as it was before folds of
        community votes: those change the file, not what an editor edits."""
        if current.work_in_progress or len(if_match) != 40 or current.ref != self.layout.main_ref:
            return False
        try:
            read = self.documents.decode_blob(if_match)
        except CmsError:
            return False
        return read.slug == current.comparison.slug and (
            _with_tallies_of(read, current.comparison) == current.comparison)

    def _on_branch(self, current: Revision | None, document: Comparison, action: str,
                   label: str, actor: Actor, comment: str,
                   approvers: list[str] | None = None) -> Change:
        """A commit on the comparison's branch.

        A new branch starts from the main commit the plan read (the published revision's, or
        main's head for a new comparison), and main must still be there when the branch is
        made: a publication of this slug landing in between would otherwise be overwritten
        unseen by the next one.
        """
        branch = self.layout.branch(document.slug)
        if current is not None and current.work_in_progress:
            parent: str | None = current.commit
            moves: tuple[RefMove, ...] = (RefMove(ref=branch, expected=current.commit),)
        else:
            parent = current.commit if current is not None else self.documents.main_head()
            moves = (RefMove(ref=branch, expected=None),
                     RefMove(ref=self.layout.main_ref, expected=parent, verify=True))
        tree = self.documents.repo.read_commit(parent).tree if parent else None
        return Change(
            after=None if moves[0].expected is not None else self._last_discarded(document.slug),
            action=action, subject=subject_line(label, document.title), comment=comment,
            slugs=(document.slug,), state=document.workflow.state, author=actor.as_person,
            approvers=tuple(approvers or ()), parents=(parent,) if parent else (),
            base_tree=tree, files={self.layout.path(document.slug): self.documents.encode(document)},
            # The revision a publication was scheduled for is gone: so is its schedule.
            moves=(*moves, *voided(self.documents.repo.refs, document.slug, "draft")),
        )

    def _publish(self, current: Revision, document: Comparison, action: str, label: str,
                 actor: Actor, comment: str, head: str | None) -> Change:
        """A merge of the branch into ``head``, main as the plan read it, then the branch
        dropped."""
        slug = document.slug
        tree = self.documents.repo.read_commit(head).tree if head else None
        live = self.documents.in_tree(tree, slug)
        content = self.documents.encode(_with_tallies_of(document, live) if live else document)
        return Change(
            action=action, subject=subject_line(label, document.title), comment=comment,
            slugs=(slug,), state=document.workflow.state, author=actor.as_person,
            approvers=tuple(document.workflow.approved_by),
            # Republishing an unpublished comparison starts from main's head itself: one parent.
            parents=tuple(dict.fromkeys(p for p in (head, current.commit) if p)), base_tree=tree,
            files={self.layout.path(slug): content},
            # Both refs are checked before either moves: a second publication of the same
            # revision (from another process) finds the branch gone and is refused.
            # Last, the schedules it carries out or makes moot: a crash before they go leaves
            # schedules whose revision is no longer there to publish, which void themselves.
            moves=(RefMove(ref=self.layout.main_ref, expected=head),
                   RefMove(ref=current.ref, expected=current.commit, delete=True),
                   *voided(self.documents.repo.refs, slug, "draft"),
                   *voided(self.documents.repo.refs, slug, "live")),
        )

    def _unpublish(self, current: Revision, document: Comparison, draft: Revision | None,
                   action: str, label: str, actor: Actor, comment: str) -> Change:
        slug = document.slug
        head = current.commit
        branch = self.layout.branch(slug)
        moves = [RefMove(ref=self.layout.main_ref, expected=head)]
        if draft is None:
            # The branch first: if the process dies before main moves, start-up recovery sees
            # an unpublish that never reached main and finishes or drops it. A branch holding a
            # next revision is left alone: that draft stays the work in progress.
            moves.insert(0, RefMove(ref=branch, expected=None))
        return Change(
            action=action, subject=subject_line(label, document.title), comment=comment,
            slugs=(slug,), state=document.workflow.state, author=actor.as_person,
            parents=(head,), base_tree=self.documents.repo.read_commit(head).tree,
            files={self.layout.path(slug): None},
            moves=(*moves, *voided(self.documents.repo.refs, slug, "live")),
        )

    def _last_discarded(self, slug: str) -> datetime | None:
        """When the newest discard of ``slug``'s drafts was committed, if there was one."""
        repo = self.documents.repo
        archived = repo.refs.under(self.layout.archive(slug, ""))
        return max((repo.read_commit(head).committer.at for head in archived.values()),
                   default=None)

    def _branch_result(self, slug: str, plan: Callable[[], Change | None],
                       unchanged: list[Revision] | None = None) -> Revision:
        event = self.pipeline.run(plan)
        if event is None:
            assert unchanged
            return unchanged[0]
        return self.documents.at(slug, event.commit, ref=self.layout.branch(slug))


def _as_run(change: Change, run: ScheduledRun | None) -> Change:
    """The change as a schedule makes it: naming the schedule, dated no earlier than it was
    due, and dropping its ref only if it still holds this very schedule (one that replaced it
    meanwhile, in another process, makes the transaction fail and the plan run again)."""
    if run is None:
        return change
    moves = tuple(RefMove(ref=move.ref, expected=run.commit, delete=True)
                  if move.ref == run.ref else move for move in change.moves)
    return msgspec.structs.replace(change, moves=moves, after=run.not_before,
                                   extra_trailers=(*change.extra_trailers, *run.trailers))


def public_state(workflow: Workflow, state: str | None) -> bool:
    return state is not None and state in workflow.states and workflow.states[state].public


def _with_tallies_of(document: Comparison, source: Comparison | None) -> Comparison:
    """Community tallies come from votes, never from an editor, and belong to main, where votes
    are folded in: keep those of ``source`` (zero for a new comparison or a new tool)."""
    tallies = {tool.id: tool.community for tool in source.tools} if source else {}
    tools = [msgspec.structs.replace(tool, community=tallies.get(tool.id, Community()))
             for tool in document.tools]
    return msgspec.structs.replace(document, tools=tools)
