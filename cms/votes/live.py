"""What a reader shows: the tallies of the commit of main it reads, plus exactly the votes that
commit does not hold yet.

A fold commit names the newest vote it holds (``Cms-Votes-Through``), so which votes a commit
holds is read from git, not from any process's memory or bookkeeping: a reader adds the votes
recorded after that one, whichever process recorded or folded them. A fold made by another
process, or one this process's index has not followed yet, is therefore neither counted twice
nor missed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping

from ..store.documents import Documents
from .store import Pending, VoteStore

# Commits read back from a head looking for the newest fold; past this, the ledger is believed.
WALK_LIMIT = 10_000
_HEADS_KEPT = 16  # heads whose answer is kept: readers of the last few heads all find theirs


def newest_fold(documents: Documents, head: str | None, known: Mapping[str, int],
                ledger: str) -> tuple[int, str | None] | None:
    """The newest vote held by ``head``, and the fold commit that names it (None when the answer
    came from ``known``, answers for earlier heads, or when no fold precedes ``head``); None when
    none was found within ``WALK_LIMIT`` commits."""
    current = head
    for _ in range(WALK_LIMIT):
        if current is None:
            return 0, None
        if current in known:
            return known[current], None
        commit = documents.repo.read_commit(current)
        # Only folds of this vote database count: another's (a CMS_DATA replaced, or another
        # instance's) numbers other votes. A fold naming none predates the naming: this one's.
        if commit.message.first("Cms-Action") == "votes" and commit.message.first(
                "Cms-Votes-Ledger") in (None, ledger):
            through = commit.message.first("Cms-Votes-Through")
            if through and through.isdigit():
                return int(through), commit.oid
        current = commit.parents[0] if commit.parents else None
    return None


# What is pending before any vote: made once, as a Pending never changes.
NO_VOTES_YET = Pending(through=0, seen=0)


class LiveTallies:
    def __init__(self, documents: Documents, store: VoteStore) -> None:
        self.documents = documents
        self.store = store
        self._known: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()  # guards _known only, never held over a read of git

    @property
    def version(self) -> str:
        return self.store.version

    def pending(self, head: str | None) -> Pending:
        """The votes to add to the tallies of ``head``, main's commit as the reader sees it."""
        ledger = self.store.ledger()
        if ledger.seen == 0:
            return NO_VOTES_YET  # no vote ever: no history to read
        through = self.held_by(head)
        if ledger.folded > through and self.held_by(self.documents.main_head()) < ledger.folded:
            # Votes marked folded that no commit on main holds: dropped by a fold because their
            # comparison was unpublished, or marked by a fold that never landed. No fold will
            # count them any more, so they are not pending either. (Marked votes that main does
            # hold, and ``head`` not yet, are pending on top of ``head``.)
            through = ledger.folded
        return self.store.pending(through)

    def pending_known(self, head: str | None) -> Pending | None:
        """``pending``, when it needs nothing of git (for the event loop): ``head`` was seen
        before and holds every vote marked folded. Else None."""
        ledger = self.store.ledger()
        if ledger.seen == 0:
            return NO_VOTES_YET
        through = 0
        if head is not None:
            with self._lock:
                known = self._known.get(head)
            if known is None:
                return None
            through = known
        if ledger.folded > through:
            return None  # which of them main holds is a question for git
        return self.store.pending(through)

    def held_by(self, head: str | None) -> int:
        """The newest vote that commit ``head`` holds."""
        if head is None:
            return 0
        with self._lock:
            through = self._known.get(head)
            known = dict(self._known) if through is None else {}
        if through is not None:
            return through
        found = newest_fold(self.documents, head, known, self.store.ledger_id)
        through = found[0] if found is not None else self.store.ledger().folded
        with self._lock:
            self._known[head] = through
            self._known.move_to_end(head)
            while len(self._known) > _HEADS_KEPT:
                self._known.popitem(last=False)
        return through
