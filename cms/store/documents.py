"""Comparisons as stored in git: read any revision of one, from main, its branch or any commit.

The revision a client reads (the blob id of the file, or the commit that removed it) is the
precondition of its next write.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
from msgspec import Struct

from ..content import codec
from ..content.model import Comparison
from ..errors import BadRequest, NotFound, StoreError
from ..lru import WeighedCache
from .layout import BRANCH_PREFIX, Layout
from .objects import BLOB, object_id
from .repository import Commit, Repository

# A commit that removes a file still describes it: its state is the one the removal put it in.
REMOVALS = {"unpublish": "unpublished", "discard": "discarded"}
# A decoded comparison takes about one and a half times its file's bytes in memory.
_DECODED_BYTES = 48 * 1024 * 1024


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


class Documents:
    def __init__(self, repo: Repository, layout: Layout) -> None:
        self.repo = repo
        self.layout = layout
        self._decoded: WeighedCache[str, tuple[Comparison, int]] = WeighedCache(
            _DECODED_BYTES, lambda blob, entry: 2 * entry[1] + 512)

    def main_head(self) -> str | None:
        return self.repo.refs.read(self.layout.main_ref)

    def decode_blob(self, blob: str) -> Comparison:
        """The comparison stored in a blob; a blob id names its content for ever, so cache it."""
        cached = self._decoded.get(blob)
        if cached is not None:
            return cached[0]
        content = self.repo.read_blob(blob)
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StoreError(f"document {blob} is not UTF-8") from exc
        comparison = codec.decode(text)
        self._decoded.put(blob, (comparison, len(content)))
        return comparison

    def encode(self, document: Comparison) -> bytes:
        """The file for a document; the document is remembered under the file's blob id, since
        decoding the file would give it back exactly (the codec round-trips)."""
        content = codec.encode(document).encode("utf-8")
        self._decoded.put(object_id(BLOB, content), (document, len(content)))
        return content

    def in_tree(self, tree: str | None, slug: str) -> Comparison | None:
        blob = self.repo.blob_at(tree, self.layout.path(slug)) if tree else None
        return None if blob is None else self.decode_blob(blob)

    def published(self, slug: str) -> Revision | None:
        head = self.main_head()
        if head is None:
            return None
        blob = self.repo.blob_at(self.repo.read_commit(head).tree, self.layout.path(slug))
        if blob is None:
            return None
        return Revision(
            comparison=self.decode_blob(blob), revision=blob, commit=head,
            ref=self.layout.main_ref, work_in_progress=False,
        )

    def work_in_progress(self, slug: str) -> Revision | None:
        ref = self.layout.branch(slug)
        head = self.repo.refs.read(ref)
        return None if head is None else self.at(slug, head, ref=ref)

    def current(self, slug: str) -> Revision | None:
        """What an editor works on: the work in progress if any, else the published version."""
        return self.work_in_progress(slug) or self.published(slug)

    def drafts(self) -> list[Revision]:
        return [self.at(ref[len(BRANCH_PREFIX) :], head, ref=ref)
                for ref, head in sorted(self.repo.refs.under(BRANCH_PREFIX).items())]

    def at(self, slug: str, commit_id: str, *, ref: str | None = None) -> Revision:
        """The comparison as it stood at a commit of any branch, even one that removed it."""
        commit = self.repo.read_commit(commit_id)
        work_in_progress = ref is not None and ref != self.layout.main_ref
        blob = self.repo.blob_at(commit.tree, self.layout.path(slug))
        if blob is not None:
            return Revision(comparison=self.decode_blob(blob), revision=blob, commit=commit_id,
                            ref=ref or commit_id, work_in_progress=work_in_progress)
        action = commit.message.first("Cms-Action")
        removed = commit.message.first("Cms-Document") == self.layout.document(slug)
        if action not in REMOVALS or not removed or not commit.parents:
            raise NotFound(f"`{slug}` is not in commit {commit_id}", field="slug")
        # An unpublish or discard is one commit that removes the file; the document as it
        # stood is in the commit's parent, and its state is the commit's.
        before = self.in_tree(self.repo.read_commit(commit.parents[0]).tree, slug)
        if before is None:
            raise StoreError(f"{action} of {slug} at {commit_id} has no previous document")
        record = msgspec.structs.replace(before.workflow, state=REMOVALS[action])
        return Revision(
            comparison=msgspec.structs.replace(before, workflow=record), revision=commit_id,
            commit=commit_id, ref=ref or commit_id, work_in_progress=work_in_progress,
        )

    def resolve(self, commit: str, field: str = "commit") -> str:
        """A full commit id from a full or abbreviated one; errors name ``field``, the
        parameter that carried it."""
        if not 4 <= len(commit) <= 40 or any(c not in "0123456789abcdef" for c in commit):
            raise BadRequest("a commit is 4 to 40 lowercase hexadecimal digits", field=field)
        if len(commit) < 40:
            try:
                commit = self.repo.git("rev-parse", "--verify", "--quiet",
                                       f"{commit}^{{commit}}").strip()
            except StoreError as exc:
                raise NotFound(f"no commit {commit} in the content repository",
                               field=field) from exc
        try:
            kind, _ = self.repo.read_object(commit)
        except NotFound as exc:
            raise NotFound(exc.message, field=field) from None
        if kind != b"commit":
            raise NotFound(f"{commit} is not a commit", field=field)
        return commit

    def publication_log(self, head: str | None, *, stop: str | None = None,
                        limit: int | None = None) -> Iterator[Commit]:
        """Main's first-parent history (the publication log) from ``head`` back, newest first,
        up to ``stop`` (left out), at most ``limit`` commits."""
        current = head
        count = 0
        while current is not None and current != stop and (limit is None or count < limit):
            commit = self.repo.read_commit(current)
            yield commit
            count += 1
            current = commit.parents[0] if commit.parents else None

    def merged(self, revision: Revision, main: str | None, *, depth: int = 100) -> bool:
        """Whether main merged this branch revision already: a publication whose second step
        (dropping the branch) a crash prevented. Looks at main's recent first parents only,
        back to the revision's own time, since such a branch is at most minutes old."""
        if not revision.work_in_progress or main is None:
            return False
        since = self.repo.read_commit(revision.commit).committer.at
        for commit in self.publication_log(main, limit=depth):
            if revision.commit in commit.parents[1:]:
                return True
            if commit.committer.at < since:
                return False
        return False

    def is_ancestor(self, commit: str, of: str) -> bool:
        try:
            self.repo.git("merge-base", "--is-ancestor", commit, of)
        except StoreError:
            return False
        return True
