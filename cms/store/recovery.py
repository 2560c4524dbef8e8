"""Start-up recovery: finish or undo the ref moves of a write that a crash interrupted.

A write moves at most two refs, in an order chosen so that every state between them can be
recognised here: an unpublish commit on a branch that never reached main, a branch already
merged into main, a discard archived but whose branch is still there.
"""

from __future__ import annotations

from datetime import UTC, datetime

from .documents import Documents
from .layout import BRANCH_PREFIX, DISCARDED_PREFIX, Layout


def recover(documents: Documents, stale_after: float = 30.0) -> list[str]:
    """Finish or undo ref moves that a crash interrupted; say what was done."""
    repo, layout = documents.repo, documents.layout
    done = [f"removed the stale lock {lock}" for lock in repo.refs.remove_stale_locks(stale_after)]
    done += [f"removed the unfinished object {temp}"
             for temp in repo.remove_stale_temporaries(stale_after)]
    main = documents.main_head()
    settled = datetime.now(UTC).timestamp() - stale_after
    for ref, head in repo.refs.under(BRANCH_PREFIX).items():
        slug = ref[len(BRANCH_PREFIX) :]
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
    for ref, head in repo.refs.under(DISCARDED_PREFIX).items():
        slug = ref[len(DISCARDED_PREFIX) :].rsplit("/", 1)[0]
        branch_head = repo.refs.read(Layout.branch(slug))
        if branch_head is not None and repo.read_commit(head).parents == (branch_head,):
            repo.refs.delete(Layout.branch(slug), branch_head)
            done.append(f"finished discarding {slug}")
    return done
