"""Comparisons as documents in git: the one code path for every edit and workflow transition.

Published content lives on the main branch; work in progress lives on a branch per comparison
(``refs/heads/cms/comparisons/<slug>``). Every state change is one commit; publishing merges the
branch into main with one commit and deletes the branch. The revision a client reads (the blob id
of the document) is the precondition of its next write.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
from msgspec import Struct

from ..config import Settings
from ..content import codec
from ..content.model import Community, Comparison
from ..errors import (
    BadRequest,
    Conflict,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    StoreError,
)
from ..identity.actors import Actor
from ..store.messages import format_message, subject_line
from ..store.objects import BLOB, object_id
from ..store.refs import RefConflict
from ..store.repository import Repository, Signature
from .workflow import Workflow, decide

log = logging.getLogger("cms")

BRANCH_PREFIX = "refs/heads/cms/comparisons/"
DISCARDED_PREFIX = "refs/cms/discarded/comparisons/"
_MAIN_RETRIES = 8
_REMOVALS = {"unpublish": "unpublished", "discard": "discarded"}

MainMoved = Callable[[str | None, str], None]
Committed = Callable[[str], None]


class Revision(Struct, frozen=True):
    """A comparison as stored at one point, and where it was read from."""

    comparison: Comparison
    revision: str  # the ETag: blob id of the file, or the unpublish commit for an unpublished one
    commit: str  # head of the ref it was read from
    ref: str
    work_in_progress: bool

    @property
    def state(self) -> str:
        return self.comparison.workflow.state


def shard(slug: str) -> str:
    """The folder a comparison's file lives in: two hex digits of a hash of its slug.

    256 folders of even size keep every tree small, so a commit rewrites a few small trees rather
    than one listing every comparison. Slugs themselves cluster (many start with the same tool's
    name), so their first letters would not spread them. Find a file by name with
    ``git log -- '*/<slug>.md'``.
    """
    return hashlib.sha1(slug.encode(), usedforsecurity=False).hexdigest()[:2]


class Documents:
    def __init__(self, repo: Repository, workflow: Workflow, settings: Settings) -> None:
        self.repo = repo
        self.workflow = workflow
        self.settings = settings
        self.main_ref = f"refs/heads/{settings.branch}"
        self._write_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._decoded: OrderedDict[str, Comparison] = OrderedDict()
        # Called after a ref moved, inside the write, so listeners finish before the response.
        self.main_moved: list[MainMoved] = []
        self.committed: list[Committed] = []

    # Paths and refs

    def path(self, slug: str) -> str:
        return f"{self.settings.content_dir}/comparisons/{shard(slug)}/{slug}.md"

    def slug_at(self, path: str) -> str | None:
        """The slug whose file lives at ``path``; None where no comparison's file would be."""
        slug = path.rsplit("/", 1)[-1].removesuffix(".md")
        return slug if path == self.path(slug) else None

    def folder(self) -> str:
        return f"{self.settings.content_dir}/comparisons"

    @staticmethod
    def branch(slug: str) -> str:
        return BRANCH_PREFIX + slug

    def main_head(self) -> str | None:
        return self.repo.refs.read(self.main_ref)

    # Reading

    def decode_blob(self, blob: str) -> Comparison:
        """The comparison stored in a blob; a blob id names its content for ever, so cache it."""
        with self._cache_lock:
            cached = self._decoded.get(blob)
        if cached is not None:
            return cached
        try:
            text = self.repo.read_blob(blob).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StoreError(f"document {blob} is not UTF-8") from exc
        comparison = codec.decode(text)
        with self._cache_lock:
            self._decoded[blob] = comparison
            if len(self._decoded) > 2048:
                self._decoded.popitem(last=False)
        return comparison

    def _encode(self, document: Comparison) -> bytes:
        """The file for a document; the document is remembered under the file's blob id, since
        decoding the file would give it back exactly (the codec round-trips)."""
        content = codec.encode(document).encode("utf-8")
        blob = object_id(BLOB, content)
        with self._cache_lock:
            self._decoded[blob] = document
            if len(self._decoded) > 2048:
                self._decoded.popitem(last=False)
        return content

    def published(self, slug: str) -> Revision | None:
        head = self.main_head()
        if head is None:
            return None
        blob = self.repo.blob_at(self.repo.read_commit(head).tree, self.path(slug))
        if blob is None:
            return None
        return Revision(
            comparison=self.decode_blob(blob), revision=blob, commit=head, ref=self.main_ref,
            work_in_progress=False,
        )

    def work_in_progress(self, slug: str) -> Revision | None:
        head = self.repo.refs.read(self.branch(slug))
        if head is None:
            return None
        return self._branch_revision(slug, head)

    def _branch_revision(self, slug: str, head: str) -> Revision:
        return self.at(slug, head, ref=self.branch(slug))

    def at(self, slug: str, commit_id: str, *, ref: str | None = None) -> Revision:
        """The comparison as it stood at a commit of any branch, even one that removed it."""
        commit = self.repo.read_commit(commit_id)
        blob = self.repo.blob_at(commit.tree, self.path(slug))
        if blob is not None:
            return Revision(
                comparison=self.decode_blob(blob), revision=blob, commit=commit_id,
                ref=ref or commit_id, work_in_progress=ref is not None and ref != self.main_ref,
            )
        action = commit.message.first("Cms-Action")
        removed = commit.message.first("Cms-Document") == f"comparisons/{slug}"
        if action not in _REMOVALS or not removed or not commit.parents:
            raise NotFound(f"`{slug}` is not in commit {commit_id}", field="slug")
        # An unpublish or discard is one commit that removes the file; the document as it
        # stood is in the commit's parent, and its state is the commit's.
        before = self.repo.blob_at(self.repo.read_commit(commit.parents[0]).tree, self.path(slug))
        if before is None:
            raise StoreError(f"{action} of {slug} at {commit_id} has no previous document")
        comparison = self.decode_blob(before)
        record = msgspec.structs.replace(comparison.workflow, state=_REMOVALS[action])
        return Revision(
            comparison=msgspec.structs.replace(comparison, workflow=record),
            revision=commit_id, commit=commit_id, ref=ref or commit_id,
            work_in_progress=ref is not None and ref != self.main_ref,
        )

    def current(self, slug: str) -> Revision | None:
        """What an editor works on: the work in progress if any, else the published version."""
        return self.work_in_progress(slug) or self.published(slug)

    def drafts(self) -> list[Revision]:
        found = []
        for ref, head in sorted(self.repo.refs.under(BRANCH_PREFIX).items()):
            found.append(self._branch_revision(ref[len(BRANCH_PREFIX) :], head))
        return found

    # Writing

    def create(self, comparison: Comparison, actor: Actor, comment: str = "") -> Revision:
        slug = comparison.slug
        with self._write_lock:
            if self.current(slug) is not None:
                raise Conflict(
                    f"a comparison with slug `{slug}` already exists; update it with PUT",
                    field="slug",
                )
            record = decide(self.workflow, None, "create", actor, at=None)
            document = msgspec.structs.replace(_with_tallies_of(comparison, None),
                                               workflow=record)
            return self._commit_to_branch(slug, None, document, "create", "Create", actor, comment)

    def save(
        self, slug: str, comparison: Comparison, actor: Actor, if_match: str | None,
        comment: str = "",
    ) -> Revision:
        with self._write_lock:
            current = self._require(slug, if_match)
            record = decide(self.workflow, current.comparison.workflow, "edit", actor, at=None)
            document = msgspec.structs.replace(_with_tallies_of(comparison, current.comparison),
                                               workflow=record)
            if document == current.comparison and current.work_in_progress:
                return current
            base = current if current.work_in_progress else None
            return self._commit_to_branch(slug, base, document, "edit", "Edit", actor, comment)

    def transition(
        self, slug: str, action: str, actor: Actor, if_match: str | None, comment: str = ""
    ) -> Revision:
        with self._write_lock:
            # An action that only applies to published content (unpublish) acts on what is
            # live, even while a next revision is being drafted.
            spec = self.workflow.transitions.get(action)
            on_live = spec is not None and all(
                self.workflow.states[state].public for state in spec.from_states)
            current = self._require(slug, if_match, live=on_live)
            now = datetime.now(UTC).replace(microsecond=0)
            record = decide(self.workflow, current.comparison.workflow, action, actor, at=now)
            document = msgspec.structs.replace(current.comparison, workflow=record)
            transition = self.workflow.transitions[action]
            public = self.workflow.states[record.state].public
            label = transition.label
            if current.work_in_progress and public:
                return self._publish(slug, current, document, action, label, actor, comment)
            if not current.work_in_progress and not public:
                return self._unpublish(slug, current, document, action, label, actor, comment)
            if not current.work_in_progress:
                raise Conflict(f"`{action}` would change published content outside a revision")
            approvers = record.approved_by if transition.approval else None
            return self._commit_to_branch(slug, current, document, action, label, actor, comment,
                                          approvers)

    def revert(self, slug: str, to: str, actor: Actor, if_match: str | None,
               comment: str = "") -> Revision:
        """A new draft revision with the content the comparison had at commit ``to``."""
        target = self.at(slug, self.resolve(to))
        with self._write_lock:
            current = self._require(slug, if_match)
            record = decide(self.workflow, current.comparison.workflow, "edit", actor, at=None)
            document = msgspec.structs.replace(target.comparison, workflow=record)
            base = current if current.work_in_progress else None
            note = comment or f"Revert to the version of {target.commit[:12]}."
            return self._commit_to_branch(slug, base, document, "revert", "Revert", actor, note)

    def resolve(self, commit: str) -> str:
        """A full commit id from a full or abbreviated one."""
        if not 4 <= len(commit) <= 40 or any(c not in "0123456789abcdef" for c in commit):
            raise BadRequest("a commit is 4 to 40 lowercase hexadecimal digits", field="commit")
        if len(commit) < 40:
            try:
                commit = self.repo.git("rev-parse", "--verify", "--quiet",
                                       f"{commit}^{{commit}}").strip()
            except StoreError as exc:
                raise NotFound(f"no commit {commit} in the content repository",
                               field="commit") from exc
        kind, _ = self.repo.read_object(commit)
        if kind != b"commit":
            raise NotFound(f"{commit} is not a commit", field="commit")
        return commit

    def discard(self, slug: str, actor: Actor, if_match: str | None, comment: str = "") -> None:
        with self._write_lock:
            current = self._require(slug, if_match)
            if not current.work_in_progress:
                raise Conflict(
                    f"`{slug}` has no work in progress to discard; unpublish it instead",
                    field="slug",
                )
            decide(self.workflow, current.comparison.workflow, "discard", actor, at=None)
            head = self.repo.read_commit(current.commit)
            message = self._message("discard", "Discard", "discarded", current.comparison,
                                    comment)
            discard = self.repo.commit(
                parents=[current.commit], base_tree=head.tree, changes={self.path(slug): None},
                author=self._author(actor), committer=self._committer(), message=message,
            )
            # Keep the discarded work reachable for auditors, then drop the branch.
            archive = f"{DISCARDED_PREFIX}{slug}/{discard}"
            self.repo.refs.update(archive, discard, None)
            try:
                self.repo.refs.delete(current.ref, current.commit)
            except RefConflict as exc:
                self.repo.refs.delete(archive, discard)
                raise PreconditionFailed(
                    "the draft changed while it was being discarded; read it again"
                ) from exc

    # Internals

    def _require(self, slug: str, if_match: str | None, *, live: bool = False) -> Revision:
        current = (self.published(slug) or self.current(slug)) if live else self.current(slug)
        if current is None:
            raise NotFound(f"no comparison with slug `{slug}`", field="slug")
        if if_match is None:
            raise PreconditionRequired(
                "send the revision you read in an If-Match header; "
                f"the current revision is {current.revision}",
                field="If-Match",
            )
        if if_match != current.revision:
            raise PreconditionFailed(
                f"revision {if_match} is not current (it is {current.revision}): "
                "someone changed this comparison since you read it; read it again",
                field="If-Match",
                current=current.revision,
            )
        return current

    def _commit_to_branch(
        self, slug: str, base: Revision | None, document: Comparison, action: str, label: str,
        actor: Actor, comment: str, approvers: list[str] | None = None,
    ) -> Revision:
        ref = self.branch(slug)
        if base is None:
            parent = self.main_head()
            expected = None
        else:
            parent = base.commit
            expected = base.commit
        tree = self.repo.read_commit(parent).tree if parent else None
        content = self._encode(document)
        commit = self.repo.commit(
            parents=[parent] if parent else [], base_tree=tree,
            changes={self.path(slug): content},
            author=self._author(actor), committer=self._committer(),
            message=self._message(action, label, document.workflow.state, document, comment,
                                  approvers),
        )
        try:
            self.repo.refs.update(ref, commit, expected)
        except RefConflict as exc:
            raise PreconditionFailed(
                "someone changed this comparison since you read it; read it again", field="If-Match"
            ) from exc
        self._notify_commit(commit)
        return self._branch_revision(slug, commit)

    def _publish(
        self, slug: str, current: Revision, document: Comparison, action: str, label: str,
        actor: Actor, comment: str,
    ) -> Revision:
        message = self._message(action, label, document.workflow.state, document, comment,
                                approvers=document.workflow.approved_by)
        for _ in range(_MAIN_RETRIES):
            head = self.main_head()
            tree = self.repo.read_commit(head).tree if head else None
            content = self._encode(self._with_live_tallies(document, tree, slug))
            merge = self.repo.commit(
                parents=[p for p in (head, current.commit) if p], base_tree=tree,
                changes={self.path(slug): content}, author=self._author(actor),
                committer=self._committer(), message=message,
            )
            try:
                self.repo.refs.update(self.main_ref, merge, head)
            except RefConflict:
                continue  # another publication landed first: merge onto it
            self._drop_branch(current)
            self.notify_main_moved(head, merge)
            self._notify_commit(merge)
            published = self.published(slug)
            assert published is not None
            return published
        raise StoreError("main kept moving while publishing; try again")

    def _unpublish(
        self, slug: str, current: Revision, document: Comparison, action: str, label: str,
        actor: Actor, comment: str,
    ) -> Revision:
        message = self._message(action, label, document.workflow.state, document, comment)
        branch = self.branch(slug)
        branch_at: str | None = None
        draft = self.work_in_progress(slug)
        for _ in range(_MAIN_RETRIES):
            head = self.main_head()
            assert head is not None
            if self.repo.blob_at(self.repo.read_commit(head).tree, self.path(slug)) is None:
                raise PreconditionFailed("the comparison was unpublished meanwhile")
            unpublish = self.repo.commit(
                parents=[head], base_tree=self.repo.read_commit(head).tree,
                changes={self.path(slug): None}, author=self._author(actor),
                committer=self._committer(), message=message,
            )
            # The branch first: if the process dies before main moves, start-up recovery sees an
            # unpublish that never reached main and finishes or drops it. A branch holding a
            # next revision is left alone: that draft stays the work in progress.
            if draft is None:
                self.repo.refs.update(branch, unpublish, branch_at)
                branch_at = unpublish
            try:
                self.repo.refs.update(self.main_ref, unpublish, head)
            except RefConflict:
                continue
            self.notify_main_moved(head, unpublish)
            self._notify_commit(unpublish)
            return self.at(slug, unpublish, ref=self.branch(slug)) if draft is None else draft
        if branch_at is not None:
            self.repo.refs.delete(branch, branch_at)
        raise StoreError("main kept moving while unpublishing; try again")

    def _with_live_tallies(self, document: Comparison, tree: str | None, slug: str) -> Comparison:
        """Community tallies belong to main, where votes are folded in; a revision drafted
        before the latest fold must not carry its older tallies back onto main."""
        blob = self.repo.blob_at(tree, self.path(slug)) if tree else None
        if blob is None:
            return document
        live = {tool.id: tool.community for tool in self.decode_blob(blob).tools}
        tools = [msgspec.structs.replace(tool, community=live.get(tool.id, tool.community))
                 for tool in document.tools]
        return msgspec.structs.replace(document, tools=tools)

    def _drop_branch(self, current: Revision) -> None:
        # If someone wrote to the branch after it was merged, their work stays as a new draft.
        with contextlib.suppress(RefConflict):
            self.repo.refs.delete(current.ref, current.commit)

    def notify_main_moved(self, old: str | None, new: str) -> None:
        for listener in self.main_moved:
            _call(listener, old, new)

    def _notify_commit(self, commit: str) -> None:
        for listener in self.committed:
            _call(listener, commit)

    def _message(
        self, action: str, label: str, state: str, document: Comparison, comment: str,
        approvers: list[str] | None = None,
    ) -> str:
        trailers = [
            ("Cms-Action", action),
            ("Cms-State", state),
            ("Cms-Document", f"comparisons/{document.slug}"),
        ]
        trailers += [("Approved-by", person) for person in approvers or []]
        return format_message(subject_line(label, document.title), comment, trailers)

    def _author(self, actor: Actor) -> Signature:
        return Signature(name=actor.name, email=actor.email, at=datetime.now(UTC))

    def _committer(self) -> Signature:
        return Signature(
            name=self.settings.committer_name, email=self.settings.committer_email,
            at=datetime.now(UTC),
        )

    # Start-up recovery

    def recover(self, stale_after: float = 30.0) -> list[str]:
        """Finish or undo ref moves that a crash interrupted; say what was done."""
        done = [f"removed the stale lock {lock}"
                for lock in self.repo.refs.remove_stale_locks(stale_after)]
        done += [f"removed the unfinished object {temp}"
                 for temp in self.repo.remove_stale_temporaries(stale_after)]
        main = self.main_head()
        settled = datetime.now(UTC).timestamp() - stale_after
        for ref, head in self.repo.refs.under(BRANCH_PREFIX).items():
            slug = ref[len(BRANCH_PREFIX) :]
            commit = self.repo.read_commit(head)
            if commit.committer.at.timestamp() > settled:
                continue  # maybe another instance, still between its two ref moves
            if commit.message.first("Cms-Action") == "unpublish" and main is not None:
                on_main = self.repo.blob_at(self.repo.read_commit(main).tree, self.path(slug))
                if on_main is not None:
                    if commit.parents and commit.parents[0] == main:
                        self.repo.refs.update(self.main_ref, head, main)
                        main = head
                        done.append(f"finished unpublishing {slug}")
                    else:
                        self.repo.refs.delete(ref, head)
                        done.append(f"dropped an unfinished unpublish of {slug}")
            elif main is not None and self.is_ancestor(head, main):
                self.repo.refs.delete(ref, head)
                done.append(f"removed the branch of {slug}, already published")
        for ref, head in self.repo.refs.under(DISCARDED_PREFIX).items():
            slug = ref[len(DISCARDED_PREFIX) :].rsplit("/", 1)[0]
            branch_head = self.repo.refs.read(self.branch(slug))
            if branch_head is not None and self.repo.read_commit(head).parents == (branch_head,):
                self.repo.refs.delete(self.branch(slug), branch_head)
                done.append(f"finished discarding {slug}")
        return done

    def is_ancestor(self, commit: str, main: str) -> bool:
        try:
            self.repo.git("merge-base", "--is-ancestor", commit, main)
        except StoreError:
            return False
        return True



def _call(listener: Callable[..., None], *args: str | None) -> None:
    # The commit has landed whatever a listener does; a listener that fails (a full disk under
    # the webhook outbox, say) catches up from git on its next call, so it must not turn a
    # completed write into an error for the editor.
    try:
        listener(*args)
    except Exception:
        log.exception("a listener failed after a commit; it will catch up from git")


def _with_tallies_of(document: Comparison, source: Comparison | None) -> Comparison:
    """Community tallies come from votes, never from an editor: keep those of ``source``
    (zero for a new comparison or a new tool), whatever the request said."""
    tallies = {tool.id: tool.community for tool in source.tools} if source else {}
    tools = [msgspec.structs.replace(tool, community=tallies.get(tool.id, Community()))
             for tool in document.tools]
    return msgspec.structs.replace(document, tools=tools)
