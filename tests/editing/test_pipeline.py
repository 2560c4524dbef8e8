"""The commit pipeline under races between processes: the precondition is checked again before
any retry, and the refs of one change move together or not at all.

Each "process" is an instance of the write side of its own (its own write lock), sharing the
repository; the interleavings are forced with hooks, not left to timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cms.audit.verify import verify
from cms.config import Settings
from cms.editing.write_side import WriteSide, open_write_side
from cms.errors import PreconditionFailed
from cms.identity.actors import Actor, Person
from cms.store.documents import Revision
from cms.store.refs import Move, Refs

from ..conftest import HAIKU, fsck, git
from ..helpers import approved_draft

EDITOR = Actor(name="Ada Editor", email="ada@example.com", roles=frozenset({"editor"}))
REVIEWER = Actor(name="Rita Reviewer", email="rita@example.com", roles=frozenset({"reviewer"}))
PUBLISHER = Actor(name="Paul Publisher", email="paul@example.com", roles=frozenset({"publisher"}))


def publications(repo: Path) -> list[str]:
    return git(repo, "log", "--first-parent", "--format=%H",
               "--grep=^Cms-Action: publish$", "main").split()


def before_commit(content: WriteSide, hook: Callable[[], None]) -> None:
    """Run ``hook`` once, after ``content``'s next plan has read and checked, before it writes."""
    original = content.repo.write_commit
    done: list[bool] = []

    def write_commit(**kwargs: Any) -> tuple[str, bytes]:
        if not done:
            done.append(True)
            hook()
        return original(**kwargs)

    content.repo.write_commit = write_commit  # type: ignore[method-assign]


def test_a_publish_that_lost_the_race_is_refused_not_merged_again(
        settings: Settings, repo_path: Path) -> None:
    first, second = open_write_side(settings), open_write_side(settings)
    approved = approved_draft(first, HAIKU, "A summary to publish.")
    before = len(publications(repo_path))
    # The second process reads and checks the same revision, then the first publishes it.
    before_commit(second, lambda: first.editor.transition(HAIKU, "publish", PUBLISHER,
                                                          approved.revision))
    with pytest.raises(PreconditionFailed):
        second.editor.transition(HAIKU, "publish", PUBLISHER, approved.revision)
    assert len(publications(repo_path)) == before + 1
    fsck(repo_path)


def test_a_publish_reading_between_the_others_two_moves_is_refused(
        settings: Settings, repo_path: Path) -> None:
    """Main has moved, the branch is not deleted yet: a reader then still sees the revision."""
    first, second = open_write_side(settings), open_write_side(settings)
    approved = approved_draft(first, HAIKU, "A summary to publish.")
    before = len(publications(repo_path))
    main_moved, second_read = threading.Event(), threading.Event()
    original_apply = Refs._commit

    def apply(self: Refs, move: Move, lock: Any, done: list[Move]) -> None:
        original_apply(self, move, lock, done)
        if self is first.repo.refs and move.name == "refs/heads/main":
            main_moved.set()
            assert second_read.wait(10)

    outcome: list[str] = []

    def second_publishes() -> None:
        assert main_moved.wait(10)
        before_commit(second, second_read.set)
        try:
            second.editor.transition(HAIKU, "publish", PUBLISHER, approved.revision)
            outcome.append("published")
        except PreconditionFailed:
            outcome.append("refused")
        finally:
            second_read.set()  # refused at once, or after waiting for the first's locks

    thread = threading.Thread(target=second_publishes)
    thread.start()
    try:
        Refs._commit = apply  # type: ignore[method-assign]
        first.editor.transition(HAIKU, "publish", PUBLISHER, approved.revision)
    finally:
        Refs._commit = original_apply  # type: ignore[method-assign]
        second_read.set()
        thread.join(timeout=30)
    assert outcome == ["refused"]
    assert len(publications(repo_path)) == before + 1
    fsck(repo_path)


def test_a_publish_whose_draft_was_edited_meanwhile_is_refused(
        settings: Settings, repo_path: Path) -> None:
    first, second = open_write_side(settings), open_write_side(settings)
    approved = approved_draft(first, HAIKU, "A summary to publish.")
    main_before = first.documents.main_head()

    def request_changes() -> None:
        # Another process withdraws the approved revision.
        first.editor.transition(HAIKU, "request_changes", REVIEWER, approved.revision)

    before_commit(second, request_changes)
    with pytest.raises(PreconditionFailed):
        second.editor.transition(HAIKU, "publish", PUBLISHER, approved.revision)
    assert first.documents.main_head() == main_before
    fsck(repo_path)


def test_an_unpublish_checks_the_revision_it_names(settings: Settings, repo_path: Path) -> None:
    first, second = open_write_side(settings), open_write_side(settings)
    live = first.documents.published(HAIKU)
    assert live is not None
    # Between the second process's read and its write, the first republishes a new revision.
    approved: list[Revision] = []

    def republish() -> None:
        approved.append(approved_draft(first, HAIKU, "A summary to publish."))
        first.editor.transition(HAIKU, "publish", PUBLISHER, approved[0].revision)

    before_commit(second, republish)
    with pytest.raises(PreconditionFailed):
        second.editor.transition(HAIKU, "unpublish", PUBLISHER, live.revision)
    assert first.documents.published(HAIKU) is not None
    fsck(repo_path)


def test_a_first_save_over_a_publication_that_landed_meanwhile_is_refused(
        settings: Settings, repo_path: Path) -> None:
    """The branch is absent before and after the other publication: main must be checked too."""
    first, second = open_write_side(settings), open_write_side(settings)
    live = first.documents.published(HAIKU)
    assert live is not None
    edited = msgspec.structs.replace(live.comparison, summary="Ada's summary.")

    def publish_a_new_version() -> None:
        approved = approved_draft(first, HAIKU, "A summary to publish.")
        first.editor.transition(HAIKU, "publish", PUBLISHER, approved.revision)

    before_commit(second, publish_a_new_version)
    with pytest.raises(PreconditionFailed):
        second.editor.save(HAIKU, edited, EDITOR, live.revision)
    assert first.documents.work_in_progress(HAIKU) is None
    published = first.documents.published(HAIKU)
    assert published is not None
    assert published.comparison.summary == "A summary to publish."
    fsck(repo_path)


def test_a_branch_a_crash_left_after_its_publication_cannot_be_published_again(
        settings: Settings, repo_path: Path) -> None:
    """Main moved, the branch was not dropped (a SIGKILL between the two), and another server
    runs, so recovery leaves the branch alone for now: the revision is still refused."""
    content = open_write_side(settings)
    approved = approved_draft(content, HAIKU, "A summary to publish.")
    before = len(publications(repo_path))
    content.editor.transition(HAIKU, "publish", PUBLISHER, approved.revision)
    content.repo.refs.update(content.layout.branch(HAIKU), approved.commit, None)
    with pytest.raises(PreconditionFailed):
        content.editor.transition(HAIKU, "publish", PUBLISHER, approved.revision)
    assert len(publications(repo_path)) == before + 1


def test_publishing_again_after_an_unpublish_merges_no_parent_twice(
        settings: Settings, repo_path: Path) -> None:
    content = open_write_side(settings)
    published = content.documents.published(HAIKU)
    assert published is not None
    unpublished = content.editor.transition(HAIKU, "unpublish", PUBLISHER, published.revision)
    assert unpublished.state == "unpublished"
    republished = content.editor.transition(HAIKU, "publish", PUBLISHER, unpublished.revision)
    assert republished.state == "published"
    parents = git(repo_path, "rev-list", "--parents", "-n", "1", "main").split()[1:]
    assert parents == [unpublished.commit]  # the unpublish commit, once
    verification = verify(content.documents, content.workflows, Person(
        name=settings.committer_name, email=settings.committer_email))
    assert verification.ok, verification.findings
    assert git(repo_path, "for-each-ref", "--format=%(refname)").split() == ["refs/heads/main"]
    fsck(repo_path)
