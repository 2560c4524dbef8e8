"""The history of one comparison, read from git: who did what to it, when, and who approved.

Two walks make it: the commits that changed the comparison's file (whoever made them, the CMS or
someone with plain git), and the CMS's commits that name it in a ``Cms-Document`` trailer without
changing it: comments, assignments, schedules, releases.

A history is a function of the commits its refs name, and each entry of its commit alone: it is
kept, by slug, for as long as those refs stay where they were. When they only moved on by
commits of one parent (a draft saved, submitted or approved, a vote fold), only those commits
are judged and added, in process where they are plain (``plain_commits``), else by git; when
they moved otherwise (a publication is a merge, and drops the
branch), the walks run again but only the commits not seen before are parsed. An
auditor reading a history page by page, or again after a change, costs a walk of what changed,
not a thousand messages parsed again.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from datetime import datetime

from msgspec import Struct

from ..editing.events import STANDARD_TRAILERS
from ..identity.actors import Person
from ..lru import WeighedCache
from ..store.documents import Documents
from ..store.layout import DISCARDED_PREFIX, RELEASES_PREFIX, SCHEDULED_PREFIX, Layout
from ..store.messages import parse_message
from ..store.repository import Repository
from .plain_commits import FIELD as _FIELD
from .plain_commits import RECORD as _RECORD
from .plain_commits import Plain, changes_path, names_in_lines, read_plain, tree_and_parents

# The CMS's commits that concern a comparison without changing its file.
NOTES = ("comment", "resolve", "assign", "schedule", "cancel_schedule", "release")
_NOTE_LINES = frozenset(f"Cms-Action: {action}" for action in NOTES)
_FORMAT = _FIELD.join(["%H", "%P", "%an", "%ae", "%aI", "%cn", "%B"]) + _RECORD
# Histories kept, by what they weigh: an entry is about a kilobyte in memory.
_KEPT_BYTES = 16 * 2**20
_ENTRY_BYTES = 1024


class HistoryEntry(Struct, frozen=True):
    sha: str
    time: datetime
    actor: Person
    action: str
    state: str | None
    approvers: list[str]
    comment: str
    subject: str
    parents: list[str]
    committer: str
    # The trailers of the commit's own kind: a comment's id, a schedule's time, a release's id.
    details: dict[str, list[str]]


class HistoryFilter(Struct, frozen=True, kw_only=True):
    actions: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    def accepts(self, entry: HistoryEntry) -> bool:
        if self.actions and entry.action not in self.actions:
            return False
        if self.since is not None and entry.time < self.since:
            return False
        return self.until is None or entry.time <= self.until


def history(documents: Documents, slug: str,
            only: HistoryFilter | None = None) -> list[HistoryEntry]:
    """Every commit on main or on the comparison's branches that changed its file, newest first."""
    refs = [documents.layout.main_ref, documents.layout.branch(slug)]
    refs += list(documents.repo.refs.under(f"{DISCARDED_PREFIX}{slug}/"))
    # The commits, not the ref names: a branch merged or discarded meanwhile is then no error.
    heads = list(dict.fromkeys(head for ref in refs if (head := documents.repo.refs.read(ref))))
    if not heads:
        return []
    repo = documents.repo
    # Notes: on the branches above, and pending schedules and releases not yet merged.
    pending = [head for ref, head in repo.refs.under(SCHEDULED_PREFIX + slug + "/").items()]
    pending += [head for ref, head in repo.refs.under(RELEASES_PREFIX).items()]
    place = (str(repo.git_dir), documents.layout.path(slug))
    refs_now = (*heads, "", *pending)
    kept = _kept.get(place)
    if kept is not None and kept.refs == refs_now:
        found = kept.entries
    else:
        kept = _walk(documents, slug, heads, pending, kept or _Kept((), [], frozenset()))
        kept = _Kept(refs_now, kept.entries, kept.notes, kept.by_parents)
        _kept.put(place, kept)
        found = kept.entries
    if only is None or only == _EVERY:
        return list(found)
    return [entry for entry in found if only.accepts(entry)]


class _Kept(Struct, frozen=True):
    refs: tuple[str, ...]  # the commits the walks started from
    entries: list[HistoryEntry]
    notes: frozenset[str]  # the commits taken as notes naming the comparison
    # Every second's commits are ordered by their parents alone, none by the order git
    # walked them in: only then is a walk of new commits added to it what a fresh walk gives.
    by_parents: bool = False


_EVERY = HistoryFilter()


def _weight(_place: tuple[str, str], kept: _Kept) -> int:
    return sum(_ENTRY_BYTES + 2 * (len(entry.comment) + len(entry.subject))
               for entry in kept.entries) + _ENTRY_BYTES


_kept: WeighedCache[tuple[str, str], _Kept] = WeighedCache(_KEPT_BYTES, _weight)


def _walk(documents: Documents, slug: str, heads: list[str], pending: list[str],
          before: _Kept) -> _Kept:
    """The history as git walks it now; entries of the commits walked before are taken from
    there rather than parsed again."""
    known = {entry.sha: entry for entry in before.entries}
    repo = documents.repo
    starts = list(dict.fromkeys([*heads, *pending]))
    # Where the refs only moved on by commits of one parent, only those are walked: the history
    # of the rest is what was walked before (see ``_moved_on``).
    old_heads, old_starts = _split(before.refs)
    heads_between = starts_between = None
    if before.refs and before.by_parents and not _grafted(repo):
        heads_between = _moved_on(repo, old_heads, heads)
        if heads_between is not None:
            starts_between = _moved_on(repo, old_starts, starts)
    moved_on = heads_between is not None and starts_between is not None
    judged = _judged_here(repo, documents.layout.path(slug), slug, heads_between,
                          starts_between) if moved_on else None
    if judged is not None:
        changed, noted = judged
    else:
        since_heads, since_starts = (old_heads, old_starts) if moved_on else ([], [])
        # The two walks run side by side: each is a git process reading history on its own.
        # Replacement objects (refs/replace/) would show another history than the commits hold.
        # What configuration would change in what git prints: the records' encoding,
        # signatures shown before them, and (below) following a file renamed to the path.
        log = ["--no-replace-objects", "-c", "i18n.logOutputEncoding=UTF-8", "log",
               "--no-show-signature", f"--format={_FORMAT}", "--date-order"]
        walked = repo.git_together(
            [*log, "--no-follow", *heads, *_excluding(since_heads), "--",
             documents.layout.path(slug)],
            [*log,
             "--extended-regexp",
             f"--grep=^Cms-Document: {re.escape(Layout.document(slug))}$",
             "--grep=^Cms-Action: (" + "|".join(NOTES) + ")$", "--all-match",
             *starts, *_excluding(since_starts)])
        changed, noted = (output.split(_RECORD) for output in walked)
    entries: dict[str, HistoryEntry] = {}
    notes: set[str] = set()
    if moved_on:
        entries.update((entry.sha, entry) for entry in before.entries)
        notes.update(before.notes)
    for record in changed:
        if record.strip():
            entry = known.get(_sha(record)) or _entry(record)
            entries.setdefault(entry.sha, entry)
    for record in noted:
        # Git's grep reads every line of a message, a comment's too: only the trailers count.
        if not record.strip():
            continue
        sha = _sha(record)
        if sha in before.notes:  # taken as a note naming this comparison before: it still is
            notes.add(sha)
            entries.setdefault(sha, known[sha])
            continue
        entry = known.get(sha) or _entry(record)
        if entry.action in NOTES and Layout.document(slug) in parse_message(
                record.strip("\n").split(_FIELD, 6)[-1]).values("Cms-Document"):
            notes.add(sha)
            entries.setdefault(entry.sha, entry)
    if moved_on:
        new_seconds = {entry.time for sha, entry in entries.items() if sha not in known}
        if _unordered_seconds([entry for entry in entries.values()
                               if entry.time in new_seconds]):
            # A new commit shares its second with one it is not a parent or child of: their
            # order is the order git walked them in, which a walk of the new commits alone
            # does not know. Walked again as a whole, as a new process would.
            return _walk(documents, slug, heads, pending,
                         _Kept((), before.entries, before.notes))
        # The seconds walked before were ordered by their parents, and the new ones are. Only
        # those from the oldest new commit's on are ordered again: below, the order stands.
        added = [entry for sha, entry in entries.items() if sha not in known]
        older = before.entries
        top = 0
        if added:
            cut = min(entry.time for entry in added)
            while top < len(older) and older[top].time >= cut:
                top += 1
        return _Kept((), _newest_first(added + older[:top]) + older[top:], frozenset(notes),
                     True)
    # Where git's order of the seconds walked before would change with new starts.
    by_parents = not _unordered_seconds(entries.values())
    return _Kept((), _newest_first(list(entries.values())), frozenset(notes), by_parents)


# Commits a history follows from the refs it walked before to where they are now; past this
# many, everything is walked again (parsing is still saved for the commits seen before).
_MOVED_ON_MAX = 256


def _split(refs: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The heads and every start of the walks, as ``history`` records them."""
    if "" not in refs:
        return list(refs), list(refs)
    cut = refs.index("")
    return list(refs[:cut]), list(dict.fromkeys([*refs[:cut], *refs[cut + 1:]]))


def _grafted(repo: Repository) -> bool:
    """Whether git reads other parents than the commits hold (grafts, a shallow clone):
    ``_moved_on`` reads the commits themselves, so only a whole walk is git's."""
    return (repo.git_dir / "info" / "grafts").exists() or (repo.git_dir / "shallow").exists()


def _excluding(commits: list[str]) -> list[str]:
    return ["--not", *commits] if commits else []


def _moved_on(repo: Repository, old: list[str], new: list[str]) -> set[str] | None:
    """The commits in between, when a walk from ``new`` finds exactly what a walk from
    ``old`` found plus those (else None, and everything is walked again).

    That holds when every commit in between has one parent and leads back to a commit of
    ``old``, and every commit of ``old`` is still a start or the parent of one of them: then
    git's walk reaches exactly the commits ``old`` did, and decides about each merge among
    them as it did before (a path's history skips a merge's side that left the file as it
    was, so a walk that began inside such a side would show more). A ref moved elsewhere or
    gone, a merge, a new root: walked again."""
    known = set(old)
    walked: set[str] = set()
    reached: set[str] = set()
    waiting = [oid for oid in new if oid not in known]
    while waiting:
        oid = waiting.pop()
        if oid in walked or oid in known:
            reached.add(oid)
            continue
        if len(walked) == _MOVED_ON_MAX:
            return None
        # Read as git reads them: a walk of everything says more of a commit read otherwise.
        header = tree_and_parents(repo, oid)
        if header is None or len(header[1]) != 1:
            return None
        parents = header[1]
        walked.add(oid)
        waiting.append(parents[0])
    return walked if known <= (set(new) | reached) else None


def _judged_here(repo: Repository, path: str, slug: str, heads_between: set[str] | None,
                 starts_between: set[str] | None) -> tuple[list[str], list[str]] | None:
    """What the two walks of ``git log`` would print for the commits in between, judged in
    process; None when one is not plain (see ``plain_commits``) and git must say."""
    if heads_between is None or starts_between is None:
        return None
    plain: dict[str, Plain] = {}
    for oid in sorted(heads_between | starts_between):
        commit = read_plain(repo, oid)
        if commit is None:
            return None
        plain[oid] = commit
    changed: list[str] = []
    for oid in sorted(heads_between):
        commit = plain[oid]
        parent = tree_and_parents(repo, commit.parent)
        if parent is None:
            return None
        differs = changes_path(repo, commit.tree, parent[0], path)
        if differs is None:
            return None
        if differs:
            changed.append(commit.record)
    naming = frozenset({f"Cms-Document: {Layout.document(slug)}"})
    noted = [plain[oid].record for oid in sorted(starts_between)
             if names_in_lines(plain[oid].body, naming, _NOTE_LINES)]
    return changed, noted


def _sha(record: str) -> str:
    return record.lstrip("\n").partition(_FIELD)[0]


def _unordered_seconds(entries: Iterable[HistoryEntry]) -> set[datetime]:
    """The seconds in which ``_newest_first`` orders some commits by the order they came in
    (neither is a parent of the other) rather than by their parents."""
    by_time: dict[datetime, list[HistoryEntry]] = {}
    for entry in entries:
        by_time.setdefault(entry.time, []).append(entry)
    return {time for time, group in by_time.items()
            if len(group) > 1 and len(_children_first(group, ambiguous=True)) != len(group)}


def _newest_first(entries: list[HistoryEntry]) -> list[HistoryEntry]:
    """By time, and within one second (commit times have whole seconds) children before their
    parents, as git lists them."""
    ordered: list[HistoryEntry] = []
    by_time: dict[datetime, list[HistoryEntry]] = {}
    for entry in entries:
        by_time.setdefault(entry.time, []).append(entry)
    for time in sorted(by_time, reverse=True):
        ordered += _children_first(by_time[time])
    return ordered


def _children_first(group: list[HistoryEntry], *, ambiguous: bool = False
                    ) -> list[HistoryEntry]:
    """The commits of one second, each before its parents, else in the order they came in.
    With ``ambiguous``, stop short (a shorter list) where that order is all there is."""
    shas = {entry.sha for entry in group}
    # How many of the group name each commit as a parent: those come after them.
    waiting = {entry.sha: 0 for entry in group}
    for entry in group:
        for parent in entry.parents:
            if parent in shas:
                waiting[parent] += 1
    by_sha = {entry.sha: entry for entry in group}
    ready = deque(entry for entry in group if waiting[entry.sha] == 0)
    ordered: list[HistoryEntry] = []
    while ready:
        if ambiguous and len(ready) > 1:
            break
        entry = ready.popleft()
        ordered.append(entry)
        for parent in entry.parents:
            if parent in waiting:
                waiting[parent] -= 1
                if waiting[parent] == 0:
                    ready.append(by_sha[parent])
    return ordered


def publications(documents: Documents, slug: str) -> list[HistoryEntry]:
    """The commits that put a version of the comparison on main, newest first."""
    return history(documents, slug, HistoryFilter(actions=frozenset({"publish", "seed"})))


def _first(found: dict[str, list[str]], key: str) -> str | None:
    values = found.get(key)
    return values[0] if values else None


def _entry(record: str) -> HistoryEntry:
    sha, parents, name, email, when, committer, body = record.strip("\n").split(_FIELD, 6)
    message = parse_message(body)
    # The trailers' values by name in any case, gathered in one pass: a history has a
    # thousand entries, and asking for each name again walked them all each time.
    found: dict[str, list[str]] = {}
    for key, value in message.trailers:
        found.setdefault(key.lower(), []).append(value)
    return HistoryEntry(
        sha=sha,
        time=datetime.fromisoformat(when),
        actor=Person(name=name, email=email),
        action=_first(found, "cms-action") or "import",
        state=_first(found, "cms-state"),
        approvers=list(found.get("approved-by", [])),
        comment=message.comment,
        subject=message.subject,
        parents=parents.split(),
        committer=committer,
        details={key: list(found[key.lower()]) for key, _ in message.trailers
                 if key.lower() not in STANDARD_TRAILERS},
    )
