"""Recovery: finish or undo the ref moves of a write that a crash interrupted.

A write moves its refs in an order chosen so that every state between them can be recognised
here (after the content refs come the indexes of schedules, which a publication drops last and
which, left behind, void themselves when they fall due): an unpublish commit on a branch that
never reached main, a branch already merged into main, a discard archived but whose branch is
still there. A live writer of another process holds the locks of all its refs from before its
first move to after its last, and
every step here is a compare-and-swap under those same locks that also checks main is still
what it was read as; so a state met here is a dead writer's, or else the step waits for the live
writer and then finds its refs moved and leaves them. That makes recovery safe at any moment,
beside any number of live servers: a supervisor's immediate restart blocks no comparison.

What is left on disk besides refs (lock files of git's, half-written objects) may be a live git's
(a push being received, a gc): those are removed only by a server that starts alone, and only
once far older than any git command takes.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from ..errors import CmsError
from ..periodic import Periodic
from .documents import Documents
from .layout import BRANCH_PREFIX, DISCARDED_PREFIX, Layout
from .refs import ABANDONED_AFTER_SECONDS, Move, RefConflict
from .repository import Repository

log = logging.getLogger("cms")

# How often a running server looks for what a dead one left half-done.
RECOVERY_INTERVAL_SECONDS = 30.0
# A half-written object file older than this is a dead writer's, not a live git's.
LEFTOVER_AGE_SECONDS = 3600.0


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


def remove_leftovers(repo: Repository) -> list[str]:
    """What dead writers left besides refs: lock files nobody holds, half-written objects.
    Only for a server that starts alone on the repository."""
    done = [f"removed the stale lock {lock}" for lock in repo.refs.remove_stale_locks()]
    done += [f"removed the unfinished object {temp}"
             for temp in repo.remove_stale_temporaries(LEFTOVER_AGE_SECONDS)]
    return done


def recover(documents: Documents, depth: int = 1000) -> list[str]:
    """Finish or undo ref moves that a crash interrupted; say what was done. A ref that another
    process moves meanwhile is left to it."""
    repo, layout = documents.repo, documents.layout
    done: list[str] = []
    try:
        main = documents.main_head()
        branches = repo.refs.under(BRANCH_PREFIX)
        # Main's publications are walked only when there is a branch to look for among them:
        # a start with no draft open reads no history.
        merged = _recently_merged(documents, main, depth) if branches else set()
    except (CmsError, OSError, ValueError) as exc:
        # Whatever the repository holds, a server must start: the next pass tries again.
        log.warning("recovery could not read the refs: %s", exc)
        return done
    for ref, head in branches.items():
        slug = ref[len(BRANCH_PREFIX) :]
        try:
            commit = repo.read_commit(head)
            if commit.message.first("Cms-Action") == "unpublish" and main is not None:
                if documents.in_tree(repo.read_commit(main).tree, slug) is not None:
                    if commit.parents and commit.parents[0] == main:
                        # Only while the branch still holds the unpublish (not discarded).
                        repo.refs.transaction([Move(ref, head, head),
                                               Move(layout.main_ref, head, main)])
                        main = head
                        done.append(f"finished unpublishing {slug}")
                    else:
                        # Only while main is still where it was read: a live unpublish that
                        # moved it since has left its branch where it belongs.
                        repo.refs.transaction([Move(layout.main_ref, main, main),
                                               Move(ref, None, head)])
                        done.append(f"dropped an unfinished unpublish of {slug}")
            elif head in merged and main is not None:
                # Only while main still holds the merge: a publish that failed and put main
                # back wants its branch kept.
                repo.refs.transaction([Move(layout.main_ref, main, main),
                                       Move(ref, None, head)])
                done.append(f"removed the branch of {slug}, already published")
        except RefConflict:
            log.info("recovery left %s to the writer that moved it meanwhile", ref)
        except (CmsError, ValueError) as exc:
            # One unreadable branch must not keep the server from starting.
            log.warning("recovery could not look at %s: %s", ref, exc)
    for ref, head in repo.refs.under(DISCARDED_PREFIX).items():
        slug = ref[len(DISCARDED_PREFIX) :].rsplit("/", 1)[0]
        branch_head = repo.refs.read(Layout.branch(slug))
        try:
            if branch_head is None or repo.read_commit(head).parents != (branch_head,):
                continue
            # Only while the archive is still there: a discard that failed and took it back
            # wants its branch kept.
            repo.refs.transaction([Move(ref, head, head),
                                   Move(Layout.branch(slug), None, branch_head)])
        except RefConflict:
            continue
        except (CmsError, ValueError) as exc:
            log.warning("recovery could not look at %s: %s", ref, exc)
            continue
        done.append(f"finished discarding {slug}")
    return done


def _recently_merged(documents: Documents, main: str | None, depth: int) -> set[str]:
    """The branch heads that main's last ``depth`` publications merged: a branch still pointing
    at one is a publication whose second step (dropping the branch) a crash prevented."""
    return {parent for commit in documents.publication_log(main, limit=depth)
            for parent in commit.parents[1:]}


class PeriodicRecovery(Periodic):
    """What a server that died and was not restarted left half-done is finished by the others
    within the interval; and packs that a repack deleted are let go."""

    name = "recovery"

    def __init__(self, documents: Documents, interval: float = RECOVERY_INTERVAL_SECONDS) -> None:
        # The first round soon after start: a lock that the process this one replaces left
        # just before it died was too young for start-up to call it abandoned, and nobody may
        # ever write that ref again (a discard's archive names a commit of its own).
        super().__init__(interval, first=min(interval, 2 * ABANDONED_AFTER_SECONDS))
        self.documents = documents

    def run_once(self) -> None:
        # Packs another process's repack (or a person's git gc) deleted, which this one may
        # hold open if none of its lookups has missed since.
        self.documents.repo.release_deleted_packs()
        # A dead writer's lock on a ref nobody writes again (a discard's archive) would stay.
        steps = [f"removed the stale lock {lock}"
                 for lock in self.documents.repo.refs.remove_stale_locks(gits=False)]
        if self.documents.repo.upstream is None:
            # With an upstream, a ref move is atomic there, and a clone left half-way by a
            # crash is put right by the next fetch.
            steps += recover(self.documents, depth=200)
        for step in steps:
            log.warning("recovery: %s", step)
