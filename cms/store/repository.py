"""A git repository used as a database: read objects, write commits, move refs.

No working tree and no index file are involved, so the repository may be bare, writes do not
touch anything a concurrent reader looks at until the final ref update, and a crash before that
update leaves only unreferenced objects behind.
"""

from __future__ import annotations

import binascii
import logging
import re
import subprocess
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from gitdb.exc import BadObject
from gitdb.util import mman
from msgspec import Struct

from ..errors import Forbidden, InvalidContent, NotFound, StoreError
from ..lru import WeighedCache
from .messages import Message, parse_message
from .object_db import (
    MAPPED_PER_READ,
    RELEASE_AFTER_BYTES,
    CompletePacks,
    ObjectDB,
    release_mapped_pages,
)
from .objects import (
    BLOB,
    COMMIT,
    MODE_FILE,
    MODE_TREE,
    TREE,
    TreeEntries,
    decode_tree,
    encode_commit,
    encode_tree,
    object_id,
)
from .packs import PackWriter
from .refs import Move, RefConflict, Refs
from .upstream import Upstream, UpstreamUnavailable, mirrored
from .wire import EMPTY_PACK

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
# A lookup that misses reads the pack folder again; a repack racing it can take a few tries.
log = logging.getLogger("cms")

_LOOKUPS = 4
# At most this many objects the clone has are named to the upstream on a fetch.
_HAVES = 256
_REVIEW = "refs/heads/cms/"  # the review branches: the rest of refs/heads/ is published
# What git cannot take in an identity of a commit header.
_UNWRITABLE = re.compile(r"[<>\x00\n\r]")
# Bounds in bytes, as entries weigh: one tree of 10,000 files is a megabyte raw and four in
# memory, one of ten files a few hundred bytes.
_TREE_BYTES = 64 * 1024 * 1024
_COMMIT_BYTES = 8 * 1024 * 1024
_RECENT_BYTES = 16 * 1024 * 1024


class Signature(Struct, frozen=True):
    name: str
    email: str
    at: datetime

    def line(self) -> str:
        seconds = int(self.at.timestamp())
        offset = self.at.utcoffset()
        minutes = int(offset.total_seconds() // 60) if offset else 0
        sign = "-" if minutes < 0 else "+"
        minutes = abs(minutes)
        return f"{self.name} <{self.email}> {seconds} {sign}{minutes // 60:02d}{minutes % 60:02d}"


class Commit(Struct, frozen=True):
    oid: str
    tree: str
    parents: tuple[str, ...]
    author: Signature
    committer: Signature
    message: Message


class Repository:
    def __init__(self, path: Path, *, durable: bool = True) -> None:
        git_dir = path / ".git" if (path / ".git").is_dir() else path
        if not (git_dir / "objects").is_dir() or not (git_dir / "HEAD").is_file():
            raise NotFound(f"no git repository at {path}; create one with `cms init`", field="repo")
        self.path = path
        self.git_dir = git_dir
        self.refs = Refs(git_dir, durable=durable)
        # The remote every ref move goes to first, when instances share one (see upstream.py).
        self.upstream: Upstream | None = None
        # A read-only replica's: no ref ever moves through it (fetches aside).
        self.read_only = False
        self._writer = PackWriter(git_dir / "objects", durable=durable)
        self._db = ObjectDB(str(git_dir / "objects"))
        self._read_lock = threading.Lock()
        self._read_bytes = 0  # mapped by reads since the packs' pages were last handed back
        self._trees: WeighedCache[str, tuple[TreeEntries, int]] = WeighedCache(
            _TREE_BYTES, lambda oid, entry: 4 * entry[1] + 256)
        self._commits: WeighedCache[str, tuple[Commit, int]] = WeighedCache(
            _COMMIT_BYTES, lambda oid, entry: 3 * entry[1] + 600)
        # Objects this process just wrote: the next reads are almost always of them, and the
        # object database would otherwise have to rescan its packs to find a new one.
        self._recent: WeighedCache[str, tuple[bytes, bytes]] = WeighedCache(
            _RECENT_BYTES, lambda oid, entry: len(entry[1]) + 200)

    @classmethod
    def create(cls, path: Path, *, branch: str, durable: bool = True) -> Repository:
        import git  # only here: GitPython's import is a tenth of a server's start-up

        git.Repo.init(path, mkdir=True, bare=True, initial_branch=branch)
        return cls(path, durable=durable)

    # Reading

    def read_object(self, oid: str) -> tuple[bytes, bytes]:
        recent = self._recent.get(oid)
        if recent is not None:
            return recent
        try:
            binsha = binascii.unhexlify(oid)
        except binascii.Error as exc:
            raise NotFound(f"no object {oid} in the content repository") from exc
        with self._read_lock:
            for _ in range(_LOOKUPS):
                try:
                    stream = self._db.stream(binsha)
                    found = stream.type, stream.read()
                    self._read_bytes += len(found[1]) + MAPPED_PER_READ
                    if self._read_bytes > RELEASE_AFTER_BYTES:
                        self._read_bytes = 0
                        release_mapped_pages()
                    return found
                except (BadObject, FileNotFoundError):
                    # Packs come and go: a commit of another process adds one, a repack merges
                    # them and deletes the old ones (perhaps between listing and opening).
                    # Look again only while the folder changes: an id that is nowhere costs
                    # one reading of it.
                    if not self._reload_packs():
                        break
                except OSError as exc:
                    # Out of descriptors or memory, a disk error: not a missing object.
                    raise StoreError(f"could not read the content repository: {exc.strerror}"
                                     ) from exc
        raise NotFound(f"no object {oid} in the content repository")

    def release_deleted_packs(self) -> None:
        """Let go of packs a repack deleted. Reads that miss do it anyway; a process that only
        writes (its reads all of objects it wrote itself) would otherwise hold every pack a
        repack deleted, and the disk space they take, until it stops."""
        with self._read_lock:
            try:
                self._reload_packs()
            except OSError as exc:
                log.warning("could not read the pack folder again: %s", exc.strerror)

    def _reload_packs(self) -> bool:
        """Read the pack folder again, and let go of the packs that are gone: their mappings
        would otherwise keep every deleted pack open, and its disk space taken, for as long as
        the server runs. Whether there may be something new to look in."""
        packed = next((db for db in self._db._dbs if isinstance(db, CompletePacks)), None)
        before = [item[1] for item in packed._entities] if packed is not None else []
        try:
            self._db.update_cache(force=True)
            interrupted = False
        except FileNotFoundError:
            interrupted = True  # a pack deleted while the folder was read: read it again
        after = [item[1] for item in packed._entities] if packed is not None else []
        kept = {id(entity) for entity in after}
        gone = [entity for entity in before if id(entity) not in kept]
        for entity in gone:
            entity.close()
        mman.collect()
        # Loose objects (plain git's) need no reload: they are looked up afresh each time.
        return interrupted or bool(gone) or len(after) != len(before)

    def read_blob(self, oid: str) -> bytes:
        kind, data = self.read_object(oid)
        if kind != BLOB:
            raise NotFound(f"{oid} is a {kind.decode()}, not a file")
        return data

    def read_tree(self, oid: str) -> TreeEntries:
        cached = self._trees.get(oid)
        if cached is not None:
            return cached[0]
        kind, data = self.read_object(oid)
        if kind != TREE:
            raise NotFound(f"{oid} is a {kind.decode()}, not a tree")
        entries = decode_tree(data)
        self._trees.put(oid, (entries, len(data)))
        return entries

    def read_commit(self, oid: str) -> Commit:
        # A commit never changes, and the write path reads the same few (main's head, a
        # branch's) several times a write: keep the parsed ones.
        cached = self._commits.get(oid)
        if cached is not None:
            return cached[0]
        kind, data = self.read_object(oid)
        if kind != COMMIT:
            raise NotFound(f"{oid} is a {kind.decode()}, not a commit")
        commit = parse_commit(oid, data)
        self._commits.put(oid, (commit, len(data)))
        return commit

    def blob_at(self, tree: str, path: str) -> str | None:
        """The blob id at ``path`` in ``tree``, or None when nothing is there."""
        current = tree
        parts = path.split("/")
        for depth, part in enumerate(parts):
            entry = self.read_tree(current).get(part.encode())
            if entry is None:
                return None
            mode, binsha = entry
            is_last = depth == len(parts) - 1
            if (mode == MODE_TREE) == is_last:
                return None
            current = binascii.hexlify(binsha).decode()
        return current

    def files(self, tree: str, prefix: str) -> dict[str, str]:
        """Every file under the folder ``prefix`` in ``tree``: path -> blob id."""
        folder = self.subtree(tree, prefix)
        found: dict[str, str] = {}
        if folder is None:
            return found
        stack = [(prefix, folder)]
        while stack:
            base, oid = stack.pop()
            for name, (mode, binsha) in self.read_tree(oid).items():
                path = f"{base}/{name.decode()}"
                if mode == MODE_TREE:
                    stack.append((path, binascii.hexlify(binsha).decode()))
                else:
                    found[path] = binascii.hexlify(binsha).decode()
        return found

    def subtree(self, tree: str, path: str) -> str | None:
        current = tree
        for part in path.split("/"):
            entry = self.read_tree(current).get(part.encode())
            if entry is None or entry[0] != MODE_TREE:
                return None
            current = binascii.hexlify(entry[1]).decode()
        return current

    # Writing

    def write_commit(
        self,
        *,
        parents: list[str],
        base_tree: str | None,
        changes: dict[str, bytes | None],
        author: Signature,
        committer: Signature,
        message: str,
    ) -> tuple[str, bytes]:
        """Write a commit that applies ``changes`` (path -> content, None deletes) to
        ``base_tree``; its id, and the pack of the objects written.

        Objects are written and flushed; no ref moves. Unchanged subtrees are shared, so a commit
        costs a few small objects however large the repository is. The pack holds every object
        of the new tree that ``base_tree`` lacks, which is what an upstream lacks (it has every
        commit the clone's refs point at).
        """
        for who, field in ((author, "author"), (committer, "committer")):
            if _UNWRITABLE.search(who.name) or _UNWRITABLE.search(who.email):
                # Tokens refuse such names, but one made by an earlier version may carry one:
                # a NUL or line break in a header makes a commit git itself rejects.
                raise InvalidContent(f"the {field} {who.name!r} <{who.email!r}> cannot be "
                                     "written into a commit; make a new token", field=field)
        objects: list[tuple[bytes, bytes]] = []
        blobs: dict[tuple[str, ...], str | None] = {}
        for path, content in changes.items():
            blob = None
            if content is not None:
                blob = object_id(BLOB, content)
                objects.append((BLOB, content))
            blobs[tuple(path.split("/"))] = blob
        root = self._apply(base_tree, blobs, objects)
        if root is None:
            root = EMPTY_TREE
            objects.append((TREE, b""))
        data = encode_commit(root, parents, author.line(), committer.line(), message)
        objects.append((COMMIT, data))
        try:
            ids, pack = self._writer.write(objects)
        except OSError as exc:
            raise StoreError(f"could not write to the content repository: {exc.strerror}") from exc
        for oid, (kind, data) in zip(ids, objects, strict=True):
            self._recent.put(oid, (kind, data))
        return ids[-1], pack

    # Moving refs

    def move(self, moves: Sequence[Move], pack: bytes = EMPTY_PACK) -> None:
        """Move refs together or not at all (RefConflict). With an upstream, the moves (and
        ``pack``, the objects they need) are pushed first, and the clone follows."""
        if self.read_only:
            raise Forbidden("this instance is a read-only replica: write through an instance "
                            "that writes")
        upstream = self.upstream
        if upstream is None:
            self.refs.transaction(moves)
            return
        upstream.push(moves, pack, fetch=self.fetch, stood=self.is_ancestor)
        with upstream.synchronised():
            try:
                self.refs.transaction(moves)
                return
            except RefConflict:
                pass  # a fetch brought the write already, or more: the upstream decides
        try:
            self.fetch()
        except Exception as exc:
            # The write stands on the upstream: it is acknowledged whatever this fetch met,
            # and the follower brings the clone up to date.
            log.warning("a write stands on the upstream; the clone will follow: %s",
                        getattr(exc, "detail", "") or exc)

    def fetch(self) -> dict[str, str]:
        """Bring the refs to the upstream's (it must have one); the upstream's refs. One
        conversation lists them and asks for the objects missing here, if any; then each ref
        moves from where it was read, unless a write of this clone moved it meanwhile (to
        something newer)."""
        upstream = self.upstream
        assert upstream is not None
        ours = self.local_refs()
        if not ours or not upstream.spoken:
            theirs = upstream.refs()
            if ours != theirs:
                with upstream.synchronised():
                    upstream.fetch_with_git()
            return theirs

        def choose(refs: dict[str, str]) -> tuple[list[str], list[str]]:
            changed = [name for name, oid in refs.items() if ours.get(name) != oid]
            wants = sorted({refs[name] for name in changed if not self.has_object(refs[name])})
            # What the upstream need not send: the objects of the published branch and of
            # the refs that moved, as this clone has them.
            main = [oid for name, oid in ours.items()
                    if name.startswith("refs/heads/") and not name.startswith(_REVIEW)]
            haves = sorted({*main, *(ours[name] for name in changed if name in ours)})
            return wants, haves[:_HAVES]

        # The objects come outside the lock: a slow upstream must not hold up the local moves
        # of writes that it has already taken.
        theirs = upstream.fetch_objects(choose)
        if theirs == ours:
            return theirs  # the usual answer when polling: one short conversation, no git run
        self._check_complete(sorted({oid for name, oid in theirs.items()
                                     if ours.get(name) != oid}))
        with upstream.synchronised():
            now = self.local_refs()
            # A ref that moved here since it was read was moved by a write this clone made
            # meanwhile, which the upstream has taken: it is newer than what was read there.
            moves = [Move(name, theirs.get(name), now.get(name))
                     for name in {*theirs, *ours}
                     if theirs.get(name) != ours.get(name) and now.get(name) == ours.get(name)]
            try:
                self.refs.transaction(sorted(moves, key=lambda move: move.name))
            except RefConflict:
                # Another process on this clone moved a ref meanwhile (to what the upstream
                # has, as every move here is): the next fetch sees where things stand.
                log.info("a fetch found the clone moving under it; the next one catches up")
        return theirs

    def _check_complete(self, tips: list[str]) -> None:
        """Refuse to point refs at commits whose objects are not all here: an upstream that
        sent something else than it advertised would leave refs that lead nowhere."""
        result = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), "rev-list", "--objects", "--quiet",
             "--stdin", "--not", "--all"],
            input="".join(f"{tip}\n" for tip in tips), capture_output=True, text=True,
            check=False)
        if result.returncode != 0:
            assert self.upstream is not None
            error = UpstreamUnavailable("the upstream git remote sent objects that do not "
                                        "hold what its refs name")
            error.detail = (f"the upstream {self.upstream.shown} advertised refs whose objects "
                            f"it did not send: {result.stderr.strip()[:300]}")
            raise error

    def local_refs(self) -> dict[str, str]:
        """The refs that mirror the upstream's (see upstream.mirrored)."""
        return mirrored(self.refs.under("refs/"))

    def has_object(self, oid: str) -> bool:
        try:
            self.read_object(oid)
        except NotFound:
            return False
        return True

    def is_ancestor(self, commit: str, of: str) -> bool:
        result = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), "merge-base", "--is-ancestor", commit, of],
            capture_output=True, check=False)
        return result.returncode == 0

    def _apply(
        self, tree: str | None, changes: dict[tuple[str, ...], str | None],
        out: list[tuple[bytes, bytes]],
    ) -> str | None:
        """Apply blob changes below ``tree``, writing each touched tree once; None if empty."""
        entries = dict(self.read_tree(tree)) if tree and tree != EMPTY_TREE else {}
        below: dict[bytes, dict[tuple[str, ...], str | None]] = {}
        for parts, blob in changes.items():
            name = parts[0].encode()
            if len(parts) > 1:
                below.setdefault(name, {})[parts[1:]] = blob
            elif blob is None:
                entries.pop(name, None)
            else:
                entries[name] = (MODE_FILE, binascii.unhexlify(blob))
        for name, sub_changes in below.items():
            current = entries.get(name)
            subtree = _hex(current) if current is not None and current[0] == MODE_TREE else None
            new_subtree = self._apply(subtree, sub_changes, out)
            if new_subtree is None:
                entries.pop(name, None)
            else:
                entries[name] = (MODE_TREE, binascii.unhexlify(new_subtree))
        if not entries:
            return None
        data = encode_tree(entries)
        oid = object_id(TREE, data)
        self._trees.put(oid, (entries, len(data)))
        out.append((TREE, data))
        return oid

    def remove_stale_temporaries(self, older_than: float) -> list[str]:
        """Half-written objects of a writer that died before renaming them into place."""
        cutoff = time.time() - older_than
        removed = []
        objects = self.git_dir / "objects"
        # A pack renamed into place without its index (a crash between the two renames) holds
        # objects nothing refers to, like a temporary file.
        orphans = [pack for pack in objects.glob("pack/pack-*.pack")
                   if not pack.with_suffix(".idx").exists()]
        for temp in [*objects.glob("??/tmp_obj_*"), *objects.glob("pack/tmp_*"), *orphans]:
            try:
                if temp.stat().st_mtime > cutoff:
                    continue
                temp.unlink()
            except FileNotFoundError:
                continue  # its writer finished (or gave up) meanwhile
            removed.append(temp.name)
        return removed

    # Plain git, for what is rare or read in bulk

    def git_together(self, *commands: list[str]) -> list[str]:
        """The output of several read-only git commands, run at the same time."""
        running: list[subprocess.Popen[str]] = []
        try:
            for args in commands:
                # A message in another encoding than it says (or none) is read, not refused.
                running.append(subprocess.Popen(
                    ["git", "--git-dir", str(self.git_dir), *args],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8",
                    errors="replace"))
        except OSError as exc:
            for process in running:
                process.kill()
                process.communicate()
            raise StoreError(f"git could not be started: {exc.strerror}") from exc
        finished = [process.communicate() for process in running]  # every one waited for
        for args, process, (_out, err) in zip(commands, running, finished, strict=True):
            if process.returncode != 0:
                raise StoreError(f"git {args[0]} failed: {err.strip()[:200]}")
        return [out for out, _err in finished]

    def git(self, *args: str, input_text: str | None = None) -> str:
        result = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), *args],
            capture_output=True, text=True, input=input_text, check=False,
        )
        if result.returncode != 0:
            raise StoreError(f"git {args[0]} failed: {result.stderr.strip()[:200]}")
        return result.stdout


def _signature_or_raw(line: str) -> Signature:
    """A commit made elsewhere may carry a malformed identity: shown as written, never a fault."""
    try:
        return parse_signature(line)
    except (ValueError, IndexError):
        return Signature(name=line, email="", at=datetime.fromtimestamp(0, UTC))


def parse_signature(line: str) -> Signature:
    name_end = line.rindex(" <")
    email_end = line.rindex("> ")
    seconds, offset = line[email_end + 2 :].split()
    sign = -1 if offset.startswith("-") else 1
    minutes = sign * (int(offset[1:3]) * 60 + int(offset[3:5]))
    zone = timezone(timedelta(minutes=minutes)) if minutes else UTC
    return Signature(
        name=line[:name_end],
        email=line[name_end + 2 : email_end],
        at=datetime.fromtimestamp(int(seconds), zone),
    )


def parse_commit(oid: str, data: bytes) -> Commit:
    text = data.decode("utf-8", errors="replace")
    header, _, message = text.partition("\n\n")
    tree = ""
    parents: list[str] = []
    author = committer = None
    for line in header.split("\n"):  # as git reads it: only a newline ends a line
        key, _, value = line.partition(" ")
        if key == "tree":
            tree = value
        elif key == "parent":
            parents.append(value)
        elif key == "author":
            author = _signature_or_raw(value)
        elif key == "committer":
            committer = _signature_or_raw(value)
    if author is None or committer is None:
        raise StoreError(f"commit {oid} has no author or committer")
    return Commit(
        oid=oid, tree=tree, parents=tuple(parents), author=author, committer=committer,
        message=parse_message(message),
    )


def changed_files(repo: Repository, old: str | None, new: str | None, prefix: str) -> dict[str, str | None]:
    """Files under ``prefix`` that differ between two trees: path -> new blob id (None: removed).

    Equal subtree ids are skipped without reading them, so the cost follows the size of the
    change, not the size of the repository.
    """
    if prefix:
        old_folder = repo.subtree(old, prefix) if old else None
        new_folder = repo.subtree(new, prefix) if new else None
    else:
        old_folder, new_folder = old, new
    changes: dict[str, str | None] = {}
    _diff(repo, old_folder, new_folder, prefix, changes)
    return changes


def _diff(
    repo: Repository, old: str | None, new: str | None, base: str, out: dict[str, str | None]
) -> None:
    if old == new:
        return
    old_entries = repo.read_tree(old) if old else {}
    new_entries = repo.read_tree(new) if new else {}
    for name in old_entries.keys() | new_entries.keys():
        before = old_entries.get(name)
        after = new_entries.get(name)
        if before == after:
            continue
        path = f"{base}/{name.decode()}" if base else name.decode()
        before_tree = _hex(before) if before and before[0] == MODE_TREE else None
        after_tree = _hex(after) if after and after[0] == MODE_TREE else None
        if before_tree or after_tree:
            _diff(repo, before_tree, after_tree, path, out)
        if after is not None and after[0] != MODE_TREE:
            out[path] = _hex(after)
        elif before is not None and before[0] != MODE_TREE:
            out[path] = None


def _hex(entry: tuple[bytes, bytes] | None) -> str:
    assert entry is not None
    return binascii.hexlify(entry[1]).decode()
