"""Folding pending votes into the tallies on main, one commit per batch.

The commit names the last vote it includes (``Cms-Votes-Through``), which is what makes folding
idempotent: after a crash between the commit and the bookkeeping, the votes already in git are
recognised and never counted twice.
"""

from __future__ import annotations

import logging
import threading

import msgspec

from ..editing.pipeline import Change, CommitPipeline, RefMove
from ..shared.leases import LEASE_SECONDS, Leases
from ..store.documents import Documents
from .live import LiveTallies, newest_fold
from .store import VoteStore

log = logging.getLogger("cms")
LEASE = "vote-fold"  # one instance at a time folds on its timer


def fold(documents: Documents, pipeline: CommitPipeline, store: VoteStore) -> str | None:
    """Commit every pending vote into the tallies on main; the commit, or None if none pending."""
    layout = documents.layout
    dropped: list[int] = []

    def plan() -> Change | None:
        # Read again on every try: if main moved, it may be another instance's fold of these
        # very votes, and reconciling marks them before they could be counted twice.
        reconcile(documents, store)
        through, tallies = store.batch()
        if not tallies:
            return None
        head = documents.main_head()
        if head is None:
            return None
        tree = documents.repo.read_commit(head).tree
        changes: dict[str, bytes | None] = {}
        counted = 0
        folded = []
        for slug, tools in sorted(tallies.items()):
            blob = documents.repo.blob_at(tree, layout.path(slug))
            if blob is None:
                continue  # unpublished since the vote: there is no public tally to add it to
            comparison = documents.decode_blob(blob)
            updated = []
            for tool in comparison.tools:
                ship, skip = tools.get(tool.id, (0, 0))
                counted += ship + skip
                community = msgspec.structs.replace(tool.community, ship=tool.community.ship + ship,
                                                    skip=tool.community.skip + skip)
                updated.append(msgspec.structs.replace(tool, community=community))
            document = msgspec.structs.replace(comparison, tools=updated)
            changes[layout.path(slug)] = documents.encode(document)
            folded.append(slug)
        if not changes:
            dropped.append(through)
            return None
        return Change(
            action="votes", subject=f"Fold community votes: {counted} on {len(folded)} comparisons",
            slugs=tuple(folded), state="published", author=pipeline.committer,
            votes_through=through, votes_ledger=store.ledger_id, parents=(head,),
            base_tree=tree, files=changes,
            moves=(RefMove(ref=layout.main_ref, expected=head),),
        )

    if not store.batch()[1]:
        return None  # nothing pending: no need to wait for the write lock or read main
    event = pipeline.run(plan)
    if event is None:
        if dropped:
            store.mark_folded(dropped[0], "dropped")
        return None
    return event.commit


def reconcile(documents: Documents, store: VoteStore) -> None:
    """Mark as folded the votes a fold commit already holds (after a crash before bookkeeping)."""
    found = newest_fold(documents, documents.main_head(), {}, store.ledger_id)
    if found is not None and found[1] is not None:
        store.mark_folded(found[0], found[1])


class VoteFolder:
    """Folds pending votes every ``interval`` seconds in a background thread, on the instance
    that holds the fold's lease (with ``leases``; others skip their rounds)."""

    def __init__(self, documents: Documents, pipeline: CommitPipeline, store: VoteStore,
                 interval: float, leases: Leases | None = None) -> None:
        self.documents = documents
        self.pipeline = pipeline
        self.store = store
        self.interval = interval
        self.leases = leases
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._folding = threading.Lock()
        # What readers show: main's tallies plus the votes it does not hold yet.
        self.live = LiveTallies(documents, store)

    def fold_now(self) -> str | None:
        with self._folding:
            return fold(self.documents, self.pipeline, self.store)

    def round(self) -> bool:
        """One timed fold, if this instance holds the lease (kept from one round to the next,
        while it lives); False when another instance holds it."""
        if self.leases is not None and not self.leases.take(LEASE, self.interval + LEASE_SECONDS):
            return False
        self.fold_now()
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vote-folder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.store.close()
        if self.leases is not None:
            self.leases.give_up(LEASE)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.round()
            except Exception:
                log.exception("folding votes failed; they stay pending")
