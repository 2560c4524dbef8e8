"""Recovery: finish or undo the ref moves of a write that a crash interrupted.

A write moves at most two refs, in an order chosen so that every state between them can be
recognised here: an unpublish commit on a branch that never reached main, a branch already
merged into main, a discard archived but whose branch is still there. A state younger than
``stale_after`` seconds is left alone, since a live writer of another process may be between its
two moves; a server that finds no other server on the repository recovers everything at once.
"""

from __future__ import annotations

import fcntl
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from .documents import Documents
from .layout import BRANCH_PREFIX, DISCARDED_PREFIX, Layout
from .refs import RefConflict

log = logging.getLogger("cms")

# Longer than any live writer takes between the two ref moves of one write.
STALE_AFTER_SECONDS = 30.0


class Instances:
    """Every server on a repository holds a shared lock on one file in it while it runs, so a
    starting server can tell whether it is alone."""

    def __init__(self, git_dir: Path) -> None:
        self._fd = os.open(git_dir / "cms-servers.lock", os.O_RDWR | os.O_CREAT, 0o644)

    def alone(self) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def join(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def close(self) -> None:
        os.close(self._fd)


def recover(documents: Documents, stale_after: float = STALE_AFTER_SECONDS) -> list[str]:
    """Finish or undo ref moves that a crash interrupted; say what was done. A ref that another
    process moves meanwhile is left to it."""
    repo, layout = documents.repo, documents.layout
    done = [f"removed the stale lock {lock}" for lock in repo.refs.remove_stale_locks()]
    done += [f"removed the unfinished object {temp}"
             for temp in repo.remove_stale_temporaries(stale_after)]
    main = documents.main_head()
    settled = datetime.now(UTC).timestamp() - stale_after
    for ref, head in repo.refs.under(BRANCH_PREFIX).items():
        slug = ref[len(BRANCH_PREFIX) :]
        try:
            commit = repo.read_commit(head)
            if commit.committer.at.timestamp() > settled:
                continue  # maybe another instance, still between its two ref moves
            if commit.message.first("Cms-Action") == "unpublish" and main is not None:
                if documents.in_tree(repo.read_commit(main).tree, slug) is not None:
                    if commit.parents and commit.parents[0] == main:
                        repo.refs.update(layout.main_ref, head, main)
                        main = head
                        done.append(f"finished unpublishing {slug}")
                    else:
                        repo.refs.delete(ref, head)
                        done.append(f"dropped an unfinished unpublish of {slug}")
            elif main is not None and documents.is_ancestor(head, main):
                repo.refs.delete(ref, head)
                done.append(f"removed the branch of {slug}, already published")
        except RefConflict:
            log.info("recovery left %s to the writer that moved it meanwhile", ref)
    for ref, head in repo.refs.under(DISCARDED_PREFIX).items():
        slug = ref[len(DISCARDED_PREFIX) :].rsplit("/", 1)[0]
        branch_head = repo.refs.read(Layout.branch(slug))
        if branch_head is not None and repo.read_commit(head).parents == (branch_head,):
            try:
                repo.refs.delete(Layout.branch(slug), branch_head)
            except RefConflict:
                continue
            done.append(f"finished discarding {slug}")
    return done
