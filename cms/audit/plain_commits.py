"""New commits of a history judged in process, exactly as ``git log`` would list them.

After a draft is saved, a history has moved on by a commit or two of one parent. Asking git
about them costs two processes, most of a history's time on a busy machine; reading them here
costs a few object reads. That is only done where the answer is certain to be git's: a commit
is *plain* when its header is exactly a tree, one parent, an author and a committer, written
as git writes them, and its text is UTF-8 without the bytes a log record is cut at. Anything
else (an encoding header, a signature, an identity git would read leniently) is left to git.

For a plain commit, ``git log -- <path>`` lists it when the entry at the path differs from its
parent's (modes compared as git canonicalises them), and ``git log --grep`` with line anchors
matches whole lines of the message after the header.
"""

from __future__ import annotations

import binascii
import re
from datetime import datetime, timedelta, timezone

from msgspec import Struct

from ..errors import CmsError
from ..store.objects import COMMIT, TREE, decode_tree, encode_tree
from ..store.repository import Repository

# A log record's fields, as the history asks git for them (``%H %P %an %ae %aI %cn %B``).
FIELD = "\x1f"
RECORD = "\x1e"
_HEX = re.compile(r"[0-9a-f]{40}")
# An identity as git writes one: a name without surrounding space, an email, seconds and a
# zone git would print as written (hours below 24, minutes below 60).
_IDENTITY = re.compile(
    r"([^<>\s](?:[^<>\n]*[^<>\s])?) <([^<>\n]*)> ([0-9]{1,10}) ([+-])([01][0-9]|2[0-3])([0-5][0-9])")
_CUT = re.compile(f"[\x00\r{FIELD}{RECORD}]")
_TREE_LINE = re.compile(rb"tree [0-9a-f]{40}")
_PARENT_LINE = re.compile(rb"parent [0-9a-f]{40}")
_TREE = 0o040000
# What git takes in a tree: octal digits for a mode, a name with no slash (git would match a
# path through one), nothing empty.
_MODE = re.compile(rb"[0-7]+")
_NAME = re.compile(rb"[^/\x00]+")
# Trees found as git writes them (their ids name their bytes, so that stays true).
_WELL_FORMED: set[str] = set()
_WELL_FORMED_MAX = 65_536


class Plain(Struct, frozen=True):
    oid: str
    tree: str
    parent: str
    record: str  # what ``git log --format=<the history's format>`` prints for it
    body: str


def read_plain(repo: Repository, oid: str) -> Plain | None:
    """The commit, when it is plain; else None (and git is asked)."""
    try:
        kind, data = repo.read_object(oid)
        text = data.decode("utf-8")
    except (CmsError, OSError, ValueError):
        return None
    if kind != COMMIT or _CUT.search(text):
        return None
    header, blank, body = text.partition("\n\n")
    lines = header.split("\n")
    if not blank or len(lines) != 4:
        return None
    tree, parent, author, committer = lines
    if not (tree.startswith("tree ") and parent.startswith("parent ")
            and author.startswith("author ") and committer.startswith("committer ")):
        return None
    tree, parent = tree[5:], parent[7:]
    by = _IDENTITY.fullmatch(author[7:])
    made = _IDENTITY.fullmatch(committer[10:])
    if not (_HEX.fullmatch(tree) and _HEX.fullmatch(parent) and by and made):
        return None
    zone = _zone(by)
    if _before_1970(by) or _before_1970(made):  # where it was made: git refuses those
        return None
    when = datetime.fromtimestamp(int(by[3]), timezone(zone))
    record = FIELD.join([oid, parent, by[1], by[2], when.isoformat(), made[1], body])
    return Plain(oid=oid, tree=tree, parent=parent, record=record, body=body)


def _zone(identity: re.Match[str]) -> timedelta:
    offset = timedelta(hours=int(identity[5]), minutes=int(identity[6]))
    return -offset if identity[4] == "-" else offset


def _before_1970(identity: re.Match[str]) -> bool:
    return int(identity[3]) + _zone(identity).total_seconds() < 0


def changes_path(repo: Repository, tree: str, parent_tree: str, path: str) -> bool | None:
    """Whether the entry at ``path`` differs between the two trees, as git's walk of the path
    decides for a commit of one parent; None when a tree cannot be read as git would."""
    parts = path.split("/")
    if "" in parts:
        return None
    ours: str | None = tree
    theirs: str | None = parent_tree
    try:
        for part in parts[:-1]:
            if ours == theirs:
                return False
            ours, theirs = _subtree(repo, ours, part), _subtree(repo, theirs, part)
        if ours == theirs:
            return False
        mine, its = _canonical(_entry(repo, ours, parts[-1])), \
            _canonical(_entry(repo, theirs, parts[-1]))
    except (CmsError, OSError, ValueError):
        return None
    if mine != its and _TREE in (mine and mine[0], its and its[0]):
        return None  # a folder at the path: git compares the files in it, so git says
    return mine != its


def tree_and_parents(repo: Repository, oid: str) -> tuple[str, list[str]] | None:
    """A commit's tree and parents, read as git reads them: the ``tree`` line first and the
    ``parent`` lines right after it; None when it is no commit of that form."""
    try:
        kind, data = repo.read_object(oid)
    except (CmsError, OSError, ValueError):
        return None
    lines = data.split(b"\n")
    if kind != COMMIT or not _TREE_LINE.fullmatch(lines[0]):
        return None
    parents: list[str] = []
    for line in lines[1:]:
        if not line.startswith(b"parent "):
            break
        if not _PARENT_LINE.fullmatch(line):
            return None  # git reads an id in capitals too: git's to walk
        parents.append(line[7:].decode())
    return lines[0][5:].decode(), parents


def names_in_lines(body: str, lines: frozenset[str], any_of: frozenset[str]) -> bool:
    """Whether every line of ``lines`` and one of ``any_of`` is a whole line of the message:
    what ``git log --all-match --grep=^…$`` matches (each pattern against each line)."""
    found = set(body.split("\n"))
    return lines <= found and not any_of.isdisjoint(found)


def _entry(repo: Repository, tree: str | None, name: str) -> tuple[bytes, bytes] | None:
    if tree is None:
        return None
    if tree not in _WELL_FORMED:
        # Git reads a tree as written: the first of two entries of one name, entries out of
        # order where it looks. Judged here only if writing it again gives the same bytes.
        kind, data = repo.read_object(tree)
        entries = decode_tree(data) if kind == TREE else {}
        if kind != TREE or encode_tree(entries) != data or any(
                len(sha) != 20 or not _MODE.fullmatch(mode) or not _NAME.fullmatch(name)
                for name, (mode, sha) in entries.items()):
            raise ValueError(f"tree {tree} is not as git writes one")
        if len(_WELL_FORMED) >= _WELL_FORMED_MAX:
            _WELL_FORMED.clear()
        _WELL_FORMED.add(tree)
    return repo.read_tree(tree).get(name.encode())


def _subtree(repo: Repository, tree: str | None, name: str) -> str | None:
    entry = _canonical(_entry(repo, tree, name))
    # Git's walk of a path goes into trees only (not into a file or a submodule of that name).
    if entry is None or entry[0] != _TREE:
        return None
    return binascii.hexlify(entry[1]).decode()


def _canonical(entry: tuple[bytes, bytes] | None) -> tuple[int, bytes] | None:
    """The entry as git compares it: a file's mode is 644 or 755 by its owner's execute bit;
    a link, a tree and (any other mode) a submodule by their kind alone."""
    if entry is None:
        return None
    mode = int(entry[0], 8)
    kind = mode & 0o170000
    if kind == 0o100000:
        mode = 0o100755 if mode & 0o100 else 0o100644
    elif kind in (0o120000, _TREE):
        mode = kind
    else:
        mode = 0o160000
    return mode, entry[1]
