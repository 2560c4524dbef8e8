"""Audit across the repository: the log of published verdict changes, and tamper evidence.

The verdict log follows main's first-parent history (the publication log) incrementally: each
publication is compared once with what main held before it, and the entries are kept in a cache
file keyed by the commit they reach, so a request never re-reads the whole history. Verification,
on the other hand, deliberately reads git and nothing else.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from pathlib import Path

import msgspec
from msgspec import Struct

from ..content.diff import compare
from ..content.model import Comparison
from ..editing.documents import Documents
from ..errors import CmsError
from ..store.repository import Commit, changed_files

_CACHE_VERSION = 1


class Person(Struct, frozen=True):
    name: str
    email: str


class VerdictChange(Struct, frozen=True, kw_only=True):
    commit: str
    time: datetime
    actor: Person
    approvers: list[str]
    slug: str
    title: str
    tool: str
    tool_name: str
    reviewer: str | None
    kind: str  # "verdict" or "panel_ship"
    before: str | float | None
    after: str | float | None
    before_label: str | None
    after_label: str | None


class _Cache(Struct):
    version: int
    head: str
    entries: list[VerdictChange]


class VerdictLog:
    def __init__(self, documents: Documents, cache: Path) -> None:
        self.documents = documents
        self.cache = cache
        self.head: str | None = None
        self.entries: list[VerdictChange] = []
        self._lock = threading.Lock()
        self._load()

    def changes(self, *, since: datetime | None = None, until: datetime | None = None,
                tool: str | None = None, slug: str | None = None) -> list[VerdictChange]:
        self.refresh()
        needle = tool.casefold() if tool else None
        return [
            entry for entry in self.entries
            if (since is None or entry.time >= since)
            and (until is None or entry.time <= until)
            and (slug is None or entry.slug == slug)
            and (needle is None or needle == entry.tool or needle in entry.tool_name.casefold())
        ]

    def refresh(self) -> None:
        head = self.documents.main_head()
        if head is None or head == self.head:
            return
        with self._lock:
            if head == self.head:
                return
            commits, connected = _first_parents(self.documents, head, self.head)
            entries = self.entries if connected else []
            added = [entry for commit in commits for entry in self._publication(commit)]
            self.entries = entries + added
            self.head = head
            self._save()

    def _publication(self, commit: Commit) -> list[VerdictChange]:
        if commit.message.first("Cms-Action") != "publish" or not commit.parents:
            return []
        slug = (commit.message.first("Cms-Document") or "").removeprefix("comparisons/")
        if not slug:
            return []
        after = _document(self.documents, commit.tree, slug)
        if after is None:
            return []
        parent = self.documents.repo.read_commit(commit.parents[0])
        before = _document(self.documents, parent.tree, slug)
        names = {tool.id: tool.name for tool in after.tools}
        return [
            VerdictChange(
                commit=commit.oid, time=commit.committer.at,
                actor=Person(commit.author.name, commit.author.email),
                approvers=commit.message.values("Approved-by"), slug=slug, title=after.title,
                tool=change.tool or "", tool_name=names.get(change.tool or "", change.tool or ""),
                reviewer=change.reviewer, kind=change.kind,
                before=_scalar(change.before), after=_scalar(change.after),
                before_label=change.before_label, after_label=change.after_label,
            )
            for change in compare(before, after).verdict_changes
        ]

    def _load(self) -> None:
        try:
            cache = msgspec.json.decode(self.cache.read_bytes(), type=_Cache)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return
        if cache.version == _CACHE_VERSION:
            self.head, self.entries = cache.head, cache.entries

    def _save(self) -> None:
        if self.head is None:
            return
        data = msgspec.json.encode(_Cache(version=_CACHE_VERSION, head=self.head,
                                          entries=self.entries))
        try:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            temp = self.cache.with_suffix(".tmp")
            temp.write_bytes(data)
            os.replace(temp, self.cache)
        except OSError:
            pass  # a cache: the next refresh rebuilds what it could not keep


def _first_parents(documents: Documents, head: str, stop: str | None
                   ) -> tuple[list[Commit], bool]:
    """Commits from ``head`` back to ``stop`` (excluded), oldest first; whether ``stop`` was met."""
    found: list[Commit] = []
    current: str | None = head
    while current is not None and current != stop:
        commit = documents.repo.read_commit(current)
        found.append(commit)
        current = commit.parents[0] if commit.parents else None
    found.reverse()
    return found, stop is not None and current == stop


def _document(documents: Documents, tree: str, slug: str) -> Comparison | None:
    blob = documents.repo.blob_at(tree, documents.path(slug))
    return documents.decode_blob(blob) if blob else None


def _scalar(value: str | float | int | None) -> str | float | None:
    return float(value) if isinstance(value, int) else value


class Finding(Struct, kw_only=True):
    sha: str
    author: str
    subject: str
    problems: list[str]


class Verification(Struct, kw_only=True):
    head: str | None
    checked: int
    ok: bool
    findings: list[Finding]


_EXPECTED_STATE = {"publish": "published", "unpublish": "unpublished", "seed": "published",
                   "votes": "published"}


def verify(documents: Documents) -> Verification:
    """Check that main is a chain of CMS-made publications carrying the approvals required."""
    head = documents.main_head()
    findings: list[Finding] = []
    checked = 0
    current = head
    settings = documents.settings
    while current is not None:
        commit = documents.repo.read_commit(current)
        checked += 1
        problems = _check(documents, commit)
        if (commit.committer.name, commit.committer.email) != (settings.committer_name,
                                                                settings.committer_email):
            problems.insert(0, f"committed by {commit.committer.name} <{commit.committer.email}>, "
                               "not by the CMS")
        if problems:
            findings.append(Finding(
                sha=commit.oid, author=f"{commit.author.name} <{commit.author.email}>",
                subject=commit.message.subject, problems=problems,
            ))
        current = commit.parents[0] if commit.parents else None
    findings.reverse()
    return Verification(head=head, checked=checked, ok=not findings, findings=findings)


def _check(documents: Documents, commit: Commit) -> list[str]:
    action = commit.message.first("Cms-Action")
    if action is None:
        return ["no Cms-Action trailer: not written by the CMS workflow"]
    if action not in _EXPECTED_STATE:
        return [f"Cms-Action `{action}` is not a publication; main holds publications only"]
    problems = []
    state = commit.message.first("Cms-State")
    if state != _EXPECTED_STATE[action]:
        problems.append(f"Cms-State is `{state}`, expected `{_EXPECTED_STATE[action]}`")
    if action == "seed":
        if commit.parents:
            problems.append("a seed commit must be the first commit")
        return problems
    if action == "votes":
        return [*problems, *_check_votes(documents, commit)]
    document = commit.message.first("Cms-Document") or ""
    slug = document.removeprefix("comparisons/")
    if not document.startswith("comparisons/") or not slug:
        return [*problems, "no Cms-Document trailer naming the comparison"]
    path = documents.path(slug)
    parent = documents.repo.read_commit(commit.parents[0]) if commit.parents else None
    changed = changed_files(documents.repo, parent.tree if parent else None, commit.tree, "")
    if set(changed) != {path}:
        others = sorted(set(changed) - {path}) or ["nothing"]
        problems.append(f"changes {', '.join(others[:3])} besides {path}")
    if action == "unpublish":
        if changed.get(path, "") is not None:
            problems.append(f"an unpublish must remove {path}")
        return problems
    if len(commit.parents) != 2:
        problems.append("a publication must merge the comparison's review branch")
    approvers = commit.message.values("Approved-by")
    required = documents.workflow.approvals_required
    if len(set(approvers)) < required:
        problems.append(f"carries {len(set(approvers))} approval(s); the workflow requires "
                        f"{required}")
    blob = changed.get(path)
    if blob:
        try:
            published = documents.decode_blob(blob)
        except CmsError as exc:
            return [*problems, f"the published file is invalid: {exc.message}"]
        if sorted(published.workflow.approved_by) != sorted(approvers):
            problems.append("the file's approvers differ from the Approved-by trailers")
        own = sorted(set(approvers) & set(published.workflow.authors))
        if own and not documents.workflow.allow_self_approval:
            problems.append(f"approved by its own author {own[0]}")
    return problems


def _check_votes(documents: Documents, commit: Commit) -> list[str]:
    """A fold of community votes may change tallies, and nothing else."""
    if len(commit.parents) != 1:
        return ["a fold of votes must have one parent"]
    parent = documents.repo.read_commit(commit.parents[0])
    problems = []
    for path, blob in changed_files(documents.repo, parent.tree, commit.tree, "").items():
        slug = documents.slug_at(path)
        before = None if slug is None else _document(documents, parent.tree, slug)
        if blob is None or before is None:
            problems.append(f"a fold of votes changes {path} beyond a tally")
            continue
        after = documents.decode_blob(blob)
        kinds = {change.kind for change in compare(before, after).changes}
        if kinds - {"community"}:
            problems.append(f"a fold of votes changes more than tallies in {path}")
        elif any(new.community.ship < old.community.ship or new.community.skip < old.community.skip
                 for old, new in zip(before.tools, after.tools, strict=False)):
            problems.append(f"a fold of votes lowers a tally in {path}")
    return problems
