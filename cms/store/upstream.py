"""The upstream git remote: the system of record when several instances share one repository.

Each instance keeps a local bare clone. A write reaches the upstream before it is acknowledged:
the new commit's objects and the ref moves go in one atomic push naming the value each ref must
have now, and only then do the local refs move. A push refused because a ref moved (another
instance wrote first) fetches, so that the write's plan runs again on what is there now; a push
that cannot reach the upstream writes nothing anywhere (the objects left behind are garbage).

The clone's refs only ever take values the upstream had: a fetch mirrors all of the upstream's
`refs/` into it and prunes what the upstream no longer has. Fetching and moving the local refs
after a push exclude each other (in this process and in any other on the same clone), or a fetch
that listed the upstream just before a push could prune the ref the push just made.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..errors import StoreError
from . import wire
from .layout import CATALOGUE_PREFIX
from .refs import Move, RefConflict

log = logging.getLogger("cms")

TIMEOUT_SECONDS = 10.0
# Sends of one push's commands, when answers are lost: the same commands each time.
PUSH_ATTEMPTS = 3
_GIT_QUIET = ("-c", "gc.auto=0", "-c", "maintenance.auto=false")


class UpstreamUnavailable(StoreError):
    code = "upstream_unavailable"
    # For the log only: what happened, naming the upstream (never told to a client).
    detail = ""


def shown(url: str) -> str:
    """The URL without who connects (a user, a password, a token in the user's place), for
    logs: ``https://***@host/path``, ``***@host:path``. Everything up to the last ``@`` goes,
    since a secret typed unescaped may hold ``/``, ``?``, ``#`` or ``:`` itself; a path with an
    ``@`` in it is shown short rather than a secret shown whole."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    if "@" not in rest:
        return url
    return f"{scheme}{separator}***@{rest.rpartition('@')[2]}"


class Upstream:
    def __init__(self, git_dir: Path, url: str, *, timeout: float = TIMEOUT_SECONDS,
                 durable: bool = True) -> None:
        self.url = url
        # Fetched packs flushed before the refs that need them move (as the clone's own are).
        self._indexing = ["-c", "core.fsync=pack,pack-metadata"] if durable else []
        self.shown = shown(url)
        self.git_dir = git_dir
        self.timeout = timeout
        self._where = wire.endpoint(url)
        self._lock = threading.Lock()
        self._lock_path = git_dir / "cms-upstream.lock"
        # Whether the last conversation with the upstream failed: an instance that cannot
        # write there leaves the work one instance does for all (leases) to the others.
        self.failing = False

    # Reading

    def refs(self) -> dict[str, str]:
        """Every ref the upstream has now that clones mirror (raises UpstreamUnavailable)."""
        try:
            if self._where.kind == "other":
                return mirrored(_parse_ls_remote(self._git("ls-remote", "--refs", self.url,
                                                           here=False)))
            refs = wire.list_refs(wire.connect(self._where, "git-upload-pack", self.timeout))
        except (wire.Unreachable, wire.Refused) as exc:
            raise self._unavailable(f"cannot be read ({exc})") from exc
        self.failing = False
        return mirrored(refs)

    def fetch_with_git(self) -> None:
        """Mirror the upstream's refs into the clone with the git command (a first clone, and
        transports not spoken here). Under ``synchronised``."""
        self._git(*_GIT_QUIET, "fetch", "--quiet", "--prune", "--no-tags",
                  "--no-write-fetch-head", self.url, "+refs/*:refs/*",
                  f"^{CATALOGUE_PREFIX}*", seconds=self.timeout * wire.CONVERSATION_TIMEOUTS)

    def fetch_ref_with_git(self, name: str, *, seconds: float) -> None:
        """Bring one ref that clones do not mirror, and its objects, from the upstream (raises
        StoreError)."""
        self._one_ref(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", self.url,
                       f"+{name}:{name}"], f"send {name}", seconds)

    def _one_ref(self, command: list[str], what: str, seconds: float) -> None:
        """A fetch or push of one ref with git's own command, which streams the objects."""
        try:
            result = subprocess.run(["git", "--git-dir", str(self.git_dir), *_GIT_QUIET, *command],
                                    capture_output=True, text=True, check=False, timeout=seconds)
        except subprocess.TimeoutExpired as exc:
            raise StoreError(f"the upstream {self.shown} took too long to {what}") from exc
        if result.returncode != 0:
            said = _last_line(result.stderr).replace(self.url, self.shown)
            raise StoreError(f"the upstream {self.shown} did not {what}: {said}")

    def fetch_objects(self, choose: wire.Choice) -> dict[str, str]:
        """The upstream's refs, and the objects ``choose`` wants of them (and what they need
        that what it has lacks) brought into the clone as one pack, indexed by git as it
        arrives."""
        indexer: subprocess.Popen[bytes] | None = None

        def sink(data: bytes) -> None:
            nonlocal indexer
            if indexer is None:
                indexer = subprocess.Popen(
                    ["git", "--git-dir", str(self.git_dir), *self._indexing, "index-pack",
                     "--stdin"],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            assert indexer.stdin is not None
            indexer.stdin.write(data)

        try:
            refs = mirrored(wire.fetch_pack(
                wire.connect(self._where, "git-upload-pack", self.timeout),
                lambda advertised: choose(mirrored(advertised)), sink))
        except (wire.Unreachable, wire.Refused) as exc:
            if indexer is not None:
                indexer.kill()
                indexer.wait()
            raise self._unavailable(f"could not be fetched from ({exc})") from exc
        if indexer is not None:
            self._indexed(indexer)
        self.failing = False
        return refs

    def _indexed(self, indexer: subprocess.Popen[bytes]) -> None:
        assert indexer.stdin is not None
        assert indexer.stderr is not None
        with contextlib.suppress(OSError):
            indexer.stdin.close()
        errors = indexer.stderr.read()
        indexer.stderr.close()
        try:
            status = indexer.wait(timeout=self.timeout * 6)
        except subprocess.TimeoutExpired as exc:
            indexer.kill()
            indexer.wait()
            raise self._unavailable("sent objects that took too long to store") from exc
        if status != 0:
            said = _last_line(errors.decode("utf-8", "replace"))
            raise self._unavailable(f"sent objects that could not be stored ({said})")

    @property
    def spoken(self) -> bool:
        """Whether this side speaks git's protocol to the upstream itself."""
        return self._where.kind != "other"

    # Writing

    def push(self, moves: Sequence[Move], pack: bytes, *,
             fetch: Callable[[], dict[str, str]],
             stood: Callable[[str, str], bool]) -> None:
        """Make ``moves`` on the upstream, all or none. RefConflict when a ref is not where its
        move expects it (the clone is then fetched); UpstreamUnavailable when the upstream
        cannot be reached or will not take the write (``uncertain`` when it may yet stand).
        ``stood(new, now)`` says whether commit ``new`` is part of what a ref is at ``now``
        (an ancestor), for a push whose answer was lost.

        A push whose answer was lost while every ref still reads as it expected may not have
        landed, or not yet: the upstream may still be unpacking it or running its hooks. Only
        the same commands are sent again (never a write planned anew, which would land
        twice): as each names the old values, whichever of the two comes second finds the
        refs moved, and the write lands once."""
        commands = [wire.Command(old=move.expected or wire.ZERO, new=move.new or wire.ZERO,
                                 ref=move.name) for move in moves]
        for attempt in range(PUSH_ATTEMPTS):
            try:
                refused = self._send(moves, commands, pack)
            except UpstreamUnavailable:
                if attempt:
                    raise self._uncertain() from None  # the first may yet land
                raise
            except wire.Interrupted as exc:
                log.warning("the push to %s was cut short (%s); reading where it stands",
                            self.shown, exc)
                try:
                    standing = self._standing(moves, fetch(), stood)
                except UpstreamUnavailable as lost:
                    raise self._uncertain() from lost
                if standing == "stood":
                    return
                if standing == "uncertain":
                    raise self._uncertain() from exc
                continue
            if refused is None:
                self.failing = False
                return
            now = fetch()
            if attempt and self._standing(moves, now, stood) == "stood":
                return  # an earlier try, whose answer was lost, landed after all
            for move in moves:
                if now.get(move.name) != move.expected:
                    raise RefConflict(move.name, move.expected, now.get(move.name))
            if attempt:
                raise self._uncertain()  # refused while an earlier try may still be landing
            error = self._unavailable(f"refused the write ({refused})",
                                      "refused the write; nothing was written")
            log.warning("a write was refused: %s", error.detail)
            raise error
        raise self._uncertain()

    def _send(self, moves: Sequence[Move], commands: list[wire.Command],
              pack: bytes) -> str | None:
        """One push: why the upstream refused it, or None when it took it."""
        try:
            if self._where.kind == "other":
                return self._push_with_git(moves)
            report = wire.push(wire.connect(self._where, "git-receive-pack", self.timeout),
                               commands, pack)
        except (wire.Unreachable, wire.Refused) as exc:
            error = self._unavailable(f"cannot be reached ({exc})",
                                      "could not be reached; nothing was written")
            log.warning("a write was refused: %s", error.detail)
            raise error from exc
        if report.unpacked != "ok":
            error = self._unavailable(f"refused the objects ({report.unpacked})",
                                      "refused the write; nothing was written")
            log.warning("a write was refused: %s", error.detail)
            raise error
        return next(iter(report.refused.values()), None)

    @staticmethod
    def _standing(moves: Sequence[Move], now: dict[str, str],
                  stood: Callable[[str, str], bool]) -> str:
        """Where a push whose answer was lost stands, read from the upstream's refs ``now``:
        "stood" (every ref it moves holds its commit, or has moved on from it), "unchanged"
        (every ref is where it expected: not landed, or not yet), or "uncertain"."""
        moving = [move for move in moves if move.new != move.expected]
        if all(now.get(move.name) == move.expected for move in moving):
            return "unchanged"
        for move in moving:
            actual = now.get(move.name)
            if move.new is None:
                if actual is None or actual != move.expected:
                    continue  # deleted (and perhaps made again since): the deletion stood
                return "uncertain"
            if actual == move.new or (actual is not None and stood(move.new, actual)):
                continue
            # Moved on elsewhere (a review branch published and deleted, say): the commit may
            # still be on the upstream, reachable from another ref.
            if not any(stood(move.new, tip) for tip in now.values()):
                return "uncertain"
        return "stood"

    def _uncertain(self) -> UpstreamUnavailable:
        self.failing = True
        return UpstreamUnavailable(
            "the upstream git remote stopped answering during the write, which may stand: "
            "read it again before retrying", uncertain=True)

    def _push_with_git(self, moves: Sequence[Move]) -> str | None:
        """A push through the git command (https and other transports it knows): the reason
        it was refused, or None. The lease is checked against what the upstream advertises, so
        a ref that is only to be checked (not moved) is compared there too."""
        leases = [f"--force-with-lease={move.name}:{move.expected or ''}" for move in moves]
        specs = [f"{move.new or ''}:{move.name}" for move in moves if move.new != move.expected]
        checked = {move.name: move.expected for move in moves if move.new == move.expected}
        if checked:
            now = self.refs()
            for name, expected in checked.items():
                if now.get(name) != expected:
                    return f"{name} moved"
        if not specs:
            return None
        try:
            result = subprocess.run(
                ["git", "--git-dir", str(self.git_dir), "push", "--atomic", "--porcelain",
                 "--quiet", *leases, self.url, *specs],
                capture_output=True, text=True, check=False, timeout=self.timeout * 3)
        except subprocess.TimeoutExpired as exc:
            raise wire.Interrupted("git push took too long") from exc
        if result.returncode == 0:
            return None
        if "[rejected]" in result.stdout or "[remote rejected]" in result.stdout:
            return "a ref moved"
        said = _last_line(result.stderr).replace(self.url, self.shown)
        if "unable to access" in said or "Could not resolve" in said or \
                "Connection refused" in said:
            raise wire.Unreachable(said)
        # Failing after it connected, git may have sent the whole push.
        raise wire.Interrupted(said)

    def push_ref_with_git(self, commit: str, name: str, *, seconds: float) -> None:
        """Point the upstream's ``name`` at ``commit`` whatever it holds now, sending what it
        lacks with git's own push (which streams it from the packs: for large objects, such as
        a shipped catalogue, that a write's pack in memory would not suit)."""
        self._one_ref(["push", "--quiet", "--force", self.url, f"{commit}:{name}"],
                      f"take {name}", seconds)

    # The clone

    @contextlib.contextmanager
    def synchronised(self) -> Iterator[None]:
        """Held while the clone's refs move to what the upstream has (a fetch, or a push's
        local moves), by this process or any other on the same clone."""
        with self._lock, open(self._lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _git(self, *args: str, here: bool = True, seconds: float | None = None) -> str:
        """Run git on the clone (``here``), or on no repository (which may not exist yet)."""
        where = ["--git-dir", str(self.git_dir)] if here else []
        try:
            result = subprocess.run(["git", *where, *args],
                                    capture_output=True, text=True, check=False,
                                    timeout=seconds or self.timeout * wire.CONVERSATION_TIMEOUTS)
        except subprocess.TimeoutExpired as exc:
            raise self._unavailable("did not answer in time") from exc
        if result.returncode != 0:
            said = _last_line(result.stderr).replace(self.url, self.shown)
            raise self._unavailable(f"could not be read ({said})")
        return result.stdout

    def _unavailable(self, what: str, told: str = "could not be reached") -> UpstreamUnavailable:
        """The error a client is told (``told``, without the upstream's address), carrying
        what happened for the log."""
        self.failing = True
        error = UpstreamUnavailable(f"the upstream git remote {told}")
        error.detail = f"the upstream {self.shown} {what}"
        return error


def mirrored(refs: dict[str, str]) -> dict[str, str]:
    """The refs clones mirror: all but the shipped catalogue's, which are hundreds of
    megabytes that only a new replica wants, fetched when it asks (see reading/shipped.py)."""
    return {name: oid for name, oid in refs.items() if not name.startswith(CATALOGUE_PREFIX)}


def _parse_ls_remote(text: str) -> dict[str, str]:
    refs: dict[str, str] = {}
    for line in text.splitlines():
        oid, _, name = line.partition("\t")
        if name and not name.endswith("^{}"):
            refs[name] = oid
    return refs


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "no message")[:300]
