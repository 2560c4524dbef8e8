"""Community votes: recorded at once outside git, folded into the tallies in git in batches.

A vote is one durable SQLite insert, so the public can vote as fast as they like without a
commit each. A fold turns every pending vote into one commit on main that updates the affected
tallies; the commit names the last vote it includes (``Cms-Votes-Through``), which is what makes
folding idempotent: after a crash between the commit and the bookkeeping, the votes already in
git are recognised and never counted twice.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections import defaultdict, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec

from ..content import codec
from ..editing.documents import Documents
from ..errors import CmsError, StoreError
from ..statefiles import private_file
from ..store.messages import format_message
from ..store.refs import RefConflict
from ..store.repository import Signature

log = logging.getLogger("cms")

Vote = Literal["ship", "skip"]
Tallies = dict[str, dict[str, list[int]]]  # slug -> tool -> [ship, skip]
_WALK_LIMIT = 10_000


class TooManyVotes(CmsError):
    status = 429
    code = "too_many_votes"


class VoteStore:
    def __init__(self, path: Path) -> None:
        private_file(path)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS votes (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "slug TEXT NOT NULL, tool TEXT NOT NULL, vote TEXT NOT NULL, client TEXT NOT NULL, "
                "at REAL NOT NULL, folded_in TEXT)")
            self._db.execute("CREATE INDEX IF NOT EXISTS pending ON votes (folded_in, id)")
        self._pending: Tallies = self._load_pending()
        # Moves whenever the pending tallies change (a vote, or a fold's bookkeeping): part of
        # the ETag of pages showing tallies.
        self.version = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record(self, slug: str, tool: str, vote: Vote, client: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO votes (slug, tool, vote, client, at) VALUES (?, ?, ?, ?, ?)",
                             (slug, tool, vote, client, time.time()))
            counts = self._pending.setdefault(slug, {}).setdefault(tool, [0, 0])
            counts[0 if vote == "ship" else 1] += 1
            self.version += 1

    def pending(self, slug: str) -> dict[str, list[int]]:
        with self._lock:
            return {tool: list(counts) for tool, counts in self._pending.get(slug, {}).items()}

    def batch(self) -> tuple[int, Tallies]:
        """The id of the newest pending vote and every pending vote up to it, summed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT slug, tool, vote, COUNT(*), MAX(id) FROM votes WHERE folded_in IS NULL "
                "GROUP BY slug, tool, vote").fetchall()
        through = 0
        tallies: Tallies = {}
        for slug, tool, vote, count, newest in rows:
            counts = tallies.setdefault(slug, {}).setdefault(tool, [0, 0])
            counts[0 if vote == "ship" else 1] += count
            through = max(through, newest)
        return through, tallies

    def mark_folded(self, through: int, commit: str) -> None:
        with self._lock:
            marked = self._db.execute(
                "UPDATE votes SET folded_in = ? WHERE folded_in IS NULL AND id <= ?",
                (commit, through)).rowcount
            self._pending = self._load_pending_locked()
            if marked:
                self.version += 1

    def _load_pending(self) -> Tallies:
        with self._lock:
            return self._load_pending_locked()

    def _load_pending_locked(self) -> Tallies:
        pending: Tallies = {}
        for slug, tool, vote, count in self._db.execute(
                "SELECT slug, tool, vote, COUNT(*) FROM votes WHERE folded_in IS NULL "
                "GROUP BY slug, tool, vote"):
            counts = pending.setdefault(slug, {}).setdefault(tool, [0, 0])
            counts[0 if vote == "ship" else 1] += count
        return pending


class RateLimit:
    """At most ``per_minute`` votes from one client on one comparison in any sixty seconds."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: defaultdict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def check(self, client: str, slug: str) -> None:
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        with self._lock:
            seen = self._seen[(client, slug)]
            while seen and seen[0] <= now - 60:
                seen.popleft()
            if len(seen) >= self.per_minute:
                retry = int(61 - (now - seen[0]))
                raise TooManyVotes(f"at most {self.per_minute} votes a minute on one comparison; "
                                   f"try again in {retry} s", retry_after=retry)
            seen.append(now)


def client_key(host: str) -> str:
    # Only a digest of the address is stored: enough to rate-limit, not to identify a voter.
    return hashlib.sha256(host.encode()).hexdigest()[:16]


def fold(documents: Documents, store: VoteStore) -> str | None:
    """Commit every pending vote into the tallies on main; the commit, or None if none pending."""
    settings = documents.settings
    for _ in range(8):
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
        folded_slugs = []
        for slug, tools in sorted(tallies.items()):
            blob = documents.repo.blob_at(tree, documents.path(slug))
            if blob is None:
                continue  # unpublished since the vote: there is no public tally to add it to
            comparison = documents.decode_blob(blob)
            updated = []
            for tool in comparison.tools:
                ship, skip = tools.get(tool.id, [0, 0])
                counted += ship + skip
                community = msgspec.structs.replace(tool.community, ship=tool.community.ship + ship,
                                                    skip=tool.community.skip + skip)
                updated.append(msgspec.structs.replace(tool, community=community))
            document = msgspec.structs.replace(comparison, tools=updated)
            changes[documents.path(slug)] = codec.encode(document).encode("utf-8")
            folded_slugs.append(slug)
        if not changes:
            store.mark_folded(through, "dropped")
            return None
        now = datetime.now(UTC)
        bot = Signature(name=settings.committer_name, email=settings.committer_email, at=now)
        trailers = [("Cms-Action", "votes"), ("Cms-State", "published")]
        trailers += [("Cms-Document", f"comparisons/{slug}") for slug in folded_slugs]
        trailers.append(("Cms-Votes-Through", str(through)))
        message = format_message(
            f"Fold community votes: {counted} on {len(folded_slugs)} comparisons", "", trailers)
        commit = documents.repo.commit(parents=[head], base_tree=tree, changes=changes,
                                       author=bot, committer=bot, message=message)
        try:
            documents.repo.refs.update(documents.main_ref, commit, head)
        except RefConflict:
            continue  # a publication landed first: fold onto it
        store.mark_folded(through, commit)
        documents.notify_main_moved(head, commit)
        return commit
    raise StoreError("main kept moving while folding votes; they stay pending")


def reconcile(documents: Documents, store: VoteStore) -> None:
    """Mark as folded the votes a fold commit already holds (after a crash before bookkeeping)."""
    current = documents.main_head()
    walked = 0
    while current is not None and walked < _WALK_LIMIT:
        commit = documents.repo.read_commit(current)
        if commit.message.first("Cms-Action") == "votes":
            through = commit.message.first("Cms-Votes-Through")
            if through and through.isdigit():
                store.mark_folded(int(through), commit.oid)
            return
        current = commit.parents[0] if commit.parents else None
        walked += 1


class VoteFolder:
    """Folds pending votes every ``interval`` seconds in a background thread."""

    def __init__(self, documents: Documents, store: VoteStore, interval: float) -> None:
        self.documents = documents
        self.store = store
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._folding = threading.Lock()

    def fold_now(self) -> str | None:
        with self._folding:
            return fold(self.documents, self.store)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vote-folder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.store.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.fold_now()
            except Exception:
                log.exception("folding votes failed; they stay pending")
