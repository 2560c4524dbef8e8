"""The catalogue shipped with the content: a copy of a filled catalogue kept in the content
repository, so that a new replica fetches it beside the comparisons and starts from it.

Filling a catalogue from nothing means decoding every published file (most of a start-up at a
hundred thousand comparisons); copying one and bringing it from the tree it was made of to main
costs a read of one blob and the changes since. The copy is a commit outside the branches,
``refs/cms/catalogue/<fingerprint>``, whose tree holds the SQLite file: the fingerprint names
the code that made it (its schema and how rows are derived), so that a replica of another
version never takes it. Only the newest copy is referred to (superseded ones are garbage for
`git gc`). Clones do not mirror copies as they follow main; a starting replica fetches one.

A copy is a cache like the catalogue itself, and not taken on trust: it must say it was made
by this code and hold exactly this code's tables, and the replica that takes it checks every
row against main's tree by its blob before lists read it (see index.py). Anything else under
the ref is set aside and the catalogue filled from git.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from ..errors import CmsError, StoreError
from ..store.layout import CATALOGUE_PREFIX
from ..store.objects import MODE_TREE
from ..store.refs import Move, RefConflict
from ..store.repository import Repository
from .catalogue import SHIPPED, SHIPPING, Catalogue

log = logging.getLogger("cms")

FILE_NAME = "catalogue.sqlite"
_IDENTITY = {"GIT_AUTHOR_NAME": "CMS catalogue", "GIT_AUTHOR_EMAIL": "catalogue@cms.invalid",
             "GIT_COMMITTER_NAME": "CMS catalogue", "GIT_COMMITTER_EMAIL": "catalogue@cms.invalid"}
_PUSH_SECONDS = 300.0


def ref_name(fingerprint: str) -> str:
    return f"{CATALOGUE_PREFIX}{fingerprint}"


def fetch(repo: Repository, fingerprint: str) -> None:
    """Bring the upstream's copy for this code into the clone, when there is an upstream: clones
    do not mirror copies, which only a new replica wants."""
    upstream = repo.upstream
    if upstream is None:
        return
    try:
        upstream.fetch_ref_with_git(ref_name(fingerprint), seconds=_PUSH_SECONDS)
    except StoreError as exc:  # none there (the usual case for a first replica), or unreachable
        log.info("no shipped catalogue was fetched from the upstream: %s", exc)


def shipped_blob(repo: Repository, fingerprint: str) -> tuple[str, int] | None:
    """The blob of the copy shipped for this code and its size, if the repository has one
    that reads as such (anything else under the ref is set aside)."""
    try:
        commit = repo.refs.read(ref_name(fingerprint))
        if commit is None:
            return None
        entry = repo.read_tree(repo.read_commit(commit).tree).get(FILE_NAME.encode())
        if entry is None or entry[0] == MODE_TREE:
            raise StoreError(f"it holds no {FILE_NAME}")
        blob = entry[1].hex()
        kind, size = _header(repo, blob)
        if kind != "blob":
            raise StoreError(f"its {FILE_NAME} is not a file")
    except (CmsError, OSError) as exc:  # whatever was pushed there: not used
        log.warning("the shipped catalogue under %s cannot be read (%s); it is not used",
                    ref_name(fingerprint), exc)
        return None
    return blob, size


def unpack(repo: Repository, blob: str, path: Path) -> bool:
    """Write the shipped copy to ``path`` (whose catalogue's slot the caller holds); whether it
    is there. It streams from git to the file: the copy never passes through this process's
    memory."""
    temp = path.with_name(path.name + SHIPPED)
    try:
        with open(temp, "wb") as out:
            result = subprocess.run(["git", "--git-dir", str(repo.git_dir), "cat-file", "blob", blob],
                                    stdout=out, stderr=subprocess.PIPE, check=False)
        if result.returncode != 0:
            log.warning("the shipped catalogue could not be read from git: %s",
                        result.stderr.decode(errors="replace").strip()[:200])
            temp.unlink(missing_ok=True)
            return False
        os.replace(temp, path)
    except OSError as exc:  # a full disk, say: the catalogue is filled from git instead
        log.warning("the shipped catalogue could not be written to %s (%s)", path.name, exc.strerror)
        temp.unlink(missing_ok=True)
        return False
    return True


def ship(repo: Repository, catalogue: Catalogue, fingerprint: str) -> str | None:
    """Put a compact copy of the catalogue into the repository, and to the upstream first when
    there is one; the new copy's commit, or None when the catalogue is not complete."""
    temp = catalogue.path.with_name(catalogue.path.name + SHIPPING)
    temp.unlink(missing_ok=True)
    try:
        tree, complete = catalogue.copy_to(temp)
        if tree is None or not complete:
            return None
        blob = _git(repo, "hash-object", "-w", "--", str(temp))
    finally:
        temp.unlink(missing_ok=True)
    _never_deltified(repo)
    tree_of_copy = _git(repo, "mktree", stdin=f"100644 blob {blob}\t{FILE_NAME}\n")
    message = (f"The catalogue of main's tree {tree}\n\nA cache for new replicas, made by the "
               f"CMS; not content.\n")
    commit = _git(repo, "commit-tree", tree_of_copy, "-m", message)
    name = ref_name(fingerprint)
    upstream = repo.upstream
    if upstream is not None:
        # The objects go with git's own push, which streams them: the copy is large, and the
        # upstream's refs are what every clone mirrors.
        upstream.push_ref_with_git(commit, name, seconds=_PUSH_SECONDS)
    for _attempt in range(3):  # another process shipping at the same time: the later stands
        try:
            repo.refs.transaction([Move(name, commit, repo.refs.read(name))])
            break
        except RefConflict:
            continue
    else:
        raise StoreError(f"{name} kept moving while this copy was shipped; it was left as is")
    # Copies made by other versions of the code are of no use to this one's replicas, and
    # each holds hundreds of megabytes reachable.
    for other, oid in repo.refs.under(CATALOGUE_PREFIX).items():
        if other != name:
            try:
                repo.refs.delete(other, oid)
            except RefConflict:
                continue
    return commit


def _header(repo: Repository, oid: str) -> tuple[str, int]:
    """An object's type and size, without reading it."""
    found = _git(repo, "cat-file", "--batch-check", stdin=f"{oid}\n").split()
    if len(found) != 3 or found[1] == "missing":
        raise StoreError(f"no object {oid}")
    return found[1], int(found[2])


def _never_deltified(repo: Repository) -> None:
    """Have git's repacking store each copy whole: a delta between two copies of hundreds of
    megabytes costs a repack a gigabyte and minutes, to save space that is dropped with the
    older copy anyway."""
    attributes = repo.git_dir / "info" / "attributes"
    line = f"{FILE_NAME} -delta"
    try:
        present = attributes.read_text().splitlines()
    except FileNotFoundError:
        present = []
    if line not in present:
        attributes.parent.mkdir(exist_ok=True)
        with open(attributes, "a") as out:
            out.write(f"{line}\n")


def _git(repo: Repository, command: str, *args: str, stdin: str | None = None) -> str:
    # Objects on disk before the ref that names them moves, as the store's own writes are.
    durable = ["-c", "core.fsync=loose-object,pack"] if repo.refs.durable else []
    result = subprocess.run(["git", "--git-dir", str(repo.git_dir), *durable, command, *args],
                            input=stdin, capture_output=True, text=True, check=False,
                            env={**os.environ, **_IDENTITY})
    if result.returncode != 0:
        raise StoreError(f"git {command} failed: {result.stderr.strip()[:200]}")
    return result.stdout.strip()
