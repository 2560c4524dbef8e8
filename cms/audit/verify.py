"""Tamper evidence: check main's history against the rules, reading git and nothing else.

Main must be a chain of commits the CMS made, each a publication (a merge of a review branch
carrying the approvals the workflow requires, by people other than its authors), an
unpublication, a fold of community votes that only raises tallies, a schedule of a takedown (or
its cancellation) that changes nothing, a change of the workflow definitions (which must hold),
or the seed. Each is held to the definitions in force when it was made.
"""

from __future__ import annotations

from msgspec import Struct

from ..content.diff import compare
from ..editing.events import (
    ACTION_TRAILER,
    AT_TRAILER,
    CANCEL,
    DEFINITIONS,
    RELEASE_TRAILER,
    RUN_TRAILER,
    SCHEDULE,
    parse_at,
)
from ..editing.workflow import address_of
from ..editing.workflows import Workflows
from ..errors import CmsError
from ..identity.actors import Person
from ..store.documents import Documents
from ..store.layout import WORKFLOWS_FOLDER as DEFINITIONS_FOLDER
from ..store.layout import Layout
from ..store.repository import Commit, changed_files


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
# Commits that record something about what is published (a takedown scheduled) and change
# nothing.
_NOTES = (SCHEDULE, CANCEL)
# What leaves a schedule standing: notes about the revision, and folds of votes (tallies only).
_UNCHANGING = frozenset({"comment", "resolve", "assign", CANCEL, "votes"})


def verify(documents: Documents, workflows: Workflows, committer: Person) -> Verification:
    """Check that main is a chain of CMS-made publications carrying the approvals required."""
    head = documents.main_head()
    findings: list[Finding] = []
    checked = 0
    for commit in documents.publication_log(head):
        checked += 1
        # Each commit is held to the definitions in force when it was made: its parent's.
        problems = _check(documents, workflows.in_force_at(
            commit.parents[0] if commit.parents else None), commit)
        if (commit.committer.name, commit.committer.email) != (committer.name, committer.email):
            problems.insert(0, f"committed by {commit.committer.name} <{commit.committer.email}>, "
                               "not by the CMS")
        if problems:
            findings.append(Finding(
                sha=commit.oid, author=f"{commit.author.name} <{commit.author.email}>",
                subject=commit.message.subject, problems=problems,
            ))
    findings.reverse()
    return Verification(head=head, checked=checked, ok=not findings, findings=findings)


def _check(documents: Documents, workflows: Workflows, commit: Commit) -> list[str]:
    action = commit.message.first("Cms-Action")
    if action is None:
        return ["no Cms-Action trailer: not written by the CMS workflow"]
    if action in _NOTES:
        return _check_note(documents, commit)
    if action == DEFINITIONS:
        return _check_definitions(documents, commit)
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
    slugs = [slug for value in commit.message.values("Cms-Document")
             if (slug := Layout.slug_of_document(value))]
    if not slugs:
        return [*problems, "no Cms-Document trailer naming the comparison"]
    release = commit.message.first(RELEASE_TRAILER)
    if len(slugs) > 1 and (release is None or action != "publish"):
        return [*problems, "names several comparisons but is no release's publication"]
    paths = {documents.layout.path(slug): slug for slug in slugs}
    parent = documents.repo.read_commit(commit.parents[0]) if commit.parents else None
    changed = changed_files(documents.repo, parent.tree if parent else None, commit.tree, "")
    # A publication may change nothing: publishing again, within the same second, the content
    # that is published already records the approvals and changes no file.
    if others := sorted(set(changed) - set(paths)):
        problems.append(f"changes {', '.join(others[:3])} besides {', '.join(sorted(paths))}")
    if (schedule := commit.message.first(RUN_TRAILER)) is not None:
        problems += _check_scheduled(documents, commit, action, slugs, schedule)
    if action == "unpublish":
        path = next(iter(paths))
        if changed.get(path, "") is not None:
            problems.append(f"an unpublish must remove {path}")
        return problems
    approvers = commit.message.values("Approved-by")
    if release is not None:
        # One merge of main, every comparison's branch (none for one republished from its
        # takedown, whose branch is main itself) and the release's own commit.
        if len(commit.parents) < 2:
            problems.append("a release's publication must merge its comparisons' branches "
                            "and the release")
        else:
            problems += _check_release(documents, commit, slugs, release)
    elif len(commit.parents) != 2 and not _republishes(documents, commit,
                                                       Layout.document(slugs[0])):
        problems.append("a publication must merge the comparison's review branch")
    for path in paths:
        problems += _check_published(documents, workflows, changed.get(path), approvers,
                                     alone=release is None)
    return problems


def _check_published(documents: Documents, workflows: Workflows, blob: str | None,
                     approvers: list[str], *, alone: bool) -> list[str]:
    """One comparison's publication: the approvals its workflow requires, by people other than
    its authors, as its file records them and the Approved-by trailers name them (a release's
    trailers name the approvers of all its comparisons)."""
    problems = []
    published = None
    if blob:
        try:
            published = documents.decode_blob(blob)
        except CmsError as exc:
            return [f"the published file is invalid: {exc.message}"]
    try:
        workflow = workflows.of(published.workflow if published else None)
    except CmsError as exc:
        return [exc.message]
    required = workflow.approvals_to_publish
    recorded = published.workflow.approved_by if published and not alone else approvers
    people = {address_of(person) for person in recorded}
    if len(people) < required:
        problems.append(f"carries approvals of {len(people)} different people; the workflow "
                        f"`{workflow.name}` requires {required}")
    if published is not None:
        # A trailer's value has its whitespace collapsed; the file keeps the name as it was.
        mine = sorted(" ".join(person.split()) for person in published.workflow.approved_by)
        if (mine != sorted(approvers)) if alone else not set(mine) <= set(approvers):
            problems.append("the file's approvers differ from the Approved-by trailers")
        authors = {address_of(person) for person in published.workflow.authors}
        own = sorted(person for person in recorded if address_of(person) in authors)
        if own and not workflow.allow_self_approval:
            problems.append(f"approved by its own author {own[0]}")
    return problems


def _check_scheduled(documents: Documents, commit: Commit, action: str, slugs: list[str],
                     schedule: str) -> list[str]:
    """A publication a schedule made: the schedule is a commit in its history, of the same
    comparison, action and author, due by the publication's time."""
    try:
        made = documents.repo.read_commit(schedule) if len(schedule) == 40 else None
    except CmsError:
        made = None
    if made is None or made.message.first("Cms-Action") != SCHEDULE:
        return [f"names a schedule {schedule[:12]} that is no schedule"]
    problems = []
    if made.message.values("Cms-Document") != [Layout.document(slug) for slug in slugs]:
        problems.append("was scheduled for another comparison")
    if made.message.first(ACTION_TRAILER) != action:
        problems.append(f"was scheduled as `{made.message.first(ACTION_TRAILER)}`")
    due = parse_at(made.message.first(AT_TRAILER))
    if due is None or commit.committer.at < due:
        problems.append("was made before its schedule fell due")
    if (made.author.name, made.author.email) != (commit.author.name, commit.author.email):
        problems.append("was made in the name of someone other than who scheduled it")
    if made.message.first(RELEASE_TRAILER) != commit.message.first(RELEASE_TRAILER):
        problems.append("was scheduled for another release")
    line = next((parent for parent in commit.parents
                 if documents.is_ancestor(schedule, parent)), None)
    if line is None:
        return [*problems, "names a schedule that is not in its history"]
    return [*problems, *_still_standing(documents, schedule, line, slugs)]


def _still_standing(documents: Documents, schedule: str, line: str,
                    slugs: list[str]) -> list[str]:
    """Whether the schedule still stood when carried out: nothing after it on its line (the
    review branch, main for a takedown, the release's ref) cancelled, replaced or changed what
    it was for."""
    repo = documents.repo
    named = {Layout.document(slug) for slug in slugs}
    for oid in repo.git("rev-list", "--first-parent", f"{schedule}..{line}").split():
        message = repo.read_commit(oid).message
        if not named & set(message.values("Cms-Document")):
            continue  # another comparison's publication, on main
        action = message.first("Cms-Action")
        if action == CANCEL and message.first(RUN_TRAILER) == schedule:
            return ["names a schedule that was cancelled before it ran"]
        if action not in _UNCHANGING:
            return [f"names a schedule that a later `{action}` replaced or voided"]
    return []


def _check_release(documents: Documents, commit: Commit, slugs: list[str],
                   release: str) -> list[str]:
    """A release's publication merges the release's own commit, which named the same
    comparisons."""
    found = documents.repo.read_commit(commit.parents[-1])
    # Back over the release's schedules and their cancellations, to its own commit.
    while found.message.first("Cms-Action") in _NOTES and found.parents and \
            found.message.first(RELEASE_TRAILER) == release:
        found = documents.repo.read_commit(found.parents[0])
    gathered = found.message
    if gathered.first("Cms-Action") != "release" or gathered.first(RELEASE_TRAILER) != release:
        return [f"does not merge the commit of release {release}"]
    if sorted(gathered.values("Cms-Document")) != sorted(Layout.document(s) for s in slugs):
        return [f"publishes other comparisons than release {release} gathered"]
    return []


def _republishes(documents: Documents, commit: Commit, document: str) -> bool:
    """Publishing an unpublished comparison again starts from its unpublish commit, which is
    main's head: there is no branch to merge, only that one parent."""
    if len(commit.parents) != 1:
        return False
    parent = documents.repo.read_commit(commit.parents[0])
    return (parent.message.first("Cms-Action") == "unpublish"
            and parent.message.first("Cms-Document") == document)


def _check_definitions(documents: Documents, commit: Commit) -> list[str]:
    """A change of the workflow definitions: only they change, and they hold."""
    if len(commit.parents) != 1:
        return ["a change of the workflows must have one parent"]
    repo = documents.repo
    changed = changed_files(repo, repo.read_commit(commit.parents[0]).tree, commit.tree, "")
    problems = [f"a change of the workflows changes {path}" for path in sorted(changed)
                if not path.startswith(f"{DEFINITIONS_FOLDER}/")][:3]
    folder = repo.subtree(commit.tree, DEFINITIONS_FOLDER)
    texts = {name.decode(): repo.read_blob(entry[1].hex())
             for name, entry in (repo.read_tree(folder).items() if folder else ())}
    try:
        Workflows.parse(texts, where=DEFINITIONS_FOLDER)
    except CmsError as exc:
        problems.append(f"puts invalid definitions in force: {exc.message}")
    return problems


def _check_note(documents: Documents, commit: Commit) -> list[str]:
    if len(commit.parents) != 1:
        return ["a schedule must have one parent"]
    if documents.repo.read_commit(commit.parents[0]).tree != commit.tree:
        return ["a schedule must change no file"]
    return []


def _check_votes(documents: Documents, commit: Commit) -> list[str]:
    """A fold of community votes may change tallies, and nothing else."""
    if len(commit.parents) != 1:
        return ["a fold of votes must have one parent"]
    parent = documents.repo.read_commit(commit.parents[0])
    problems = []
    for path, blob in changed_files(documents.repo, parent.tree, commit.tree, "").items():
        slug = documents.layout.slug_at(path)
        before = None if slug is None else documents.in_tree(parent.tree, slug)
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
