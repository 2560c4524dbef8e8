"""What the event loop may ask of the live tallies: only what needs nothing of git."""

from __future__ import annotations

from typing import Any, cast

from cms.store.documents import Documents
from cms.votes.live import LiveTallies
from cms.votes.store import Ledger, Pending, VoteStore


class Ledgered:
    """A vote store that is only a ledger (the loop's questions need nothing else)."""

    def __init__(self, seen: int, folded: int) -> None:
        self.ledger_now = Ledger(seen=seen, folded=folded)
        self.ledger_id = "ledger"

    def ledger(self) -> Ledger:
        return self.ledger_now

    def pending(self, through: int) -> Pending:
        return Pending(through=through, seen=self.ledger_now.seen)


class NoGit:
    """Documents that must not be read: a read of git would be a walk on the event loop."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"git was read ({name})")


def live(seen: int, folded: int) -> LiveTallies:
    return LiveTallies(cast(Documents, NoGit()), cast(VoteStore, Ledgered(seen, folded)))


def test_the_loop_gets_tallies_only_for_a_head_seen_that_holds_every_fold() -> None:
    assert live(0, 0).pending_known("head") == Pending(through=0, seen=0)  # no vote ever
    tallies = live(10, 3)
    assert tallies.pending_known("head") is None  # not seen yet: which votes it holds is git's
    tallies._known["head"] = 3
    assert tallies.pending_known("head") == Pending(through=3, seen=10)
    # Votes marked folded that this head does not hold: whether main holds them is git's.
    behind = live(10, 5)
    behind._known["head"] = 3
    assert behind.pending_known("head") is None
