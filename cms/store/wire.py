"""Git's pack protocol (version 0), spoken to the upstream directly: its refs, and a push.

The `git` command would do both, but a push through it costs a few processes on this side and,
over `git://`, a wait on the network stack for every small write (it leaves Nagle's algorithm
on), which is most of the cost of a write. Here one connection sends the commands and the pack
in one piece. A push names the value each ref must have now (``old``) and the server checks it
under its own lock, all refs or none (the ``atomic`` capability): a compare-and-swap on the
upstream, refused when another instance moved a ref first.

Transports: `git://` (a TCP socket), a local path or `file://` URL (`git receive-pack` run
here), and `ssh://` or `host:path` (the same over `ssh`). Anything else (https) is left to the
`git` command (see ``upstream.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import shlex
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import IO, Protocol
from urllib.parse import unquote, urlsplit

from msgspec import Struct

ZERO = "0" * 40
FLUSH = b"0000"
# A pack of no objects: what a push that only checks or re-points refs sends.
EMPTY_PACK = b"PACK" + struct.pack(">II", 2, 0)
EMPTY_PACK += hashlib.sha1(EMPTY_PACK, usedforsecurity=False).digest()
_MAX_ADVERTISEMENT = 64 * 1024 * 1024
# A whole conversation may take this many timeouts (a fetch's pack, a push's, on a slow link).
CONVERSATION_TIMEOUTS = 3


class Unreachable(Exception):
    """Nothing reached the upstream: the connection failed before the commands were sent."""


class Interrupted(Exception):
    """The commands were sent but no full answer came back: the push may or may not stand."""


class Refused(Exception):
    """The upstream answered with an error of its own (a missing repository, say)."""


class Command(Struct, frozen=True):
    """Point ``ref`` at ``new`` if it is at ``old`` now; ZERO stands for "absent"."""

    old: str
    new: str
    ref: str


class Report(Struct, frozen=True):
    unpacked: str  # "ok", or why the pack was refused
    refused: dict[str, str]  # ref -> the reason, for each ref not moved

    @property
    def ok(self) -> bool:
        return self.unpacked == "ok" and not self.refused


class Channel(Protocol):
    def send(self, data: bytes) -> None: ...
    def receive(self) -> bytes: ...
    def close(self) -> None: ...


def pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


class Lines:
    """Packet lines read from a channel."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._buffer = b""

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            chunk = self.channel.receive()
            if not chunk:
                raise EOFError("the upstream closed the connection")
            self._buffer += chunk

    def next(self) -> bytes | None:
        """The next line's payload; None for a flush."""
        self._fill(4)
        try:
            size = int(self._buffer[:4], 16)
        except ValueError:
            raise Refused("the upstream does not speak git's protocol") from None
        if size == 0:
            self._buffer = self._buffer[4:]
            return None
        if size < 4:
            raise Refused("the upstream sent a malformed packet")
        self._fill(size)
        line, self._buffer = self._buffer[4:size], self._buffer[size:]
        if line.startswith(b"ERR "):
            raise Refused(line[4:].decode("utf-8", "replace").strip())
        return line

    def at_pack(self) -> bool:
        """Whether what comes next is a pack rather than a packet line."""
        self._fill(4)
        return self._buffer.startswith(b"PACK")

    def rest(self) -> bytes:
        """What was read past the last line (the start of a pack that follows them)."""
        rest, self._buffer = self._buffer, b""
        return rest

    def until_flush(self) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while (line := self.next()) is not None:
            total += len(line)
            if total > _MAX_ADVERTISEMENT:
                raise Refused("the upstream's answer is too large")
            lines.append(line)
        return lines


def advertised(lines: list[bytes]) -> tuple[dict[str, str], set[str]]:
    """The refs (all under `refs/`) and capabilities of an advertisement."""
    refs: dict[str, str] = {}
    capabilities: set[str] = set()
    for index, line in enumerate(lines):
        if index == 0 and b"\0" in line:
            line, _, caps = line.partition(b"\0")
            capabilities = set(caps.decode("ascii", "replace").split())
        oid, _, name = line.decode("utf-8", "replace").rstrip("\n").partition(" ")
        if name.endswith("^{}") or oid == ZERO or not name.startswith("refs/"):
            continue  # peeled tags, an empty repository's placeholder, HEAD
        refs[name] = oid
    return refs, capabilities


def list_refs(channel: Channel) -> dict[str, str]:
    """The refs an upload-pack or receive-pack conversation opens with; the conversation is
    then ended cleanly."""
    try:
        lines = Lines(channel)
        refs, _ = advertised(lines.until_flush())
        with contextlib.suppress(OSError):
            channel.send(FLUSH)
        return refs
    except (OSError, EOFError) as exc:
        raise Unreachable(str(exc)) from exc
    finally:
        channel.close()


def _opened(lines: Lines) -> set[str]:
    """The capabilities the conversation opens with (its refs are not needed)."""
    try:
        return advertised(lines.until_flush())[1]
    except (OSError, EOFError) as exc:
        raise Unreachable(str(exc)) from exc


def push(channel: Channel, commands: Sequence[Command], pack: bytes) -> Report:
    """Send ``commands`` and ``pack`` to a receive-pack conversation, all or nothing."""
    try:
        lines = Lines(channel)
        capabilities = _opened(lines)
        missing = {"report-status", "atomic"} - capabilities
        if any(command.new == ZERO for command in commands):
            missing |= {"delete-refs"} - capabilities
        if missing:
            raise Refused(f"the upstream cannot take an all-or-nothing push (it lacks "
                          f"{', '.join(sorted(missing))}); use git 2.4 or later")
        asked = _asked(capabilities, "report-status", "atomic", "delete-refs", "quiet")
        message = b"".join(
            pkt(f"{c.old} {c.new} {c.ref}".encode() + (b"\0" + asked.encode() if i == 0 else b""))
            for i, c in enumerate(commands)) + FLUSH
        if any(command.new != ZERO for command in commands):
            message += pack
        # From the first byte sent, whatever goes wrong leaves the push's outcome unknown: the
        # upstream may have taken all of it.
        try:
            channel.send(message)
            answer = lines.until_flush()
        except (OSError, EOFError, Refused) as exc:
            raise Interrupted(str(exc)) from exc
    finally:
        channel.close()
    return _report(answer, [command.ref for command in commands])


Choice = Callable[[dict[str, str]], tuple[list[str], list[str]]]


def fetch_pack(channel: Channel, choose: Choice, sink: Callable[[bytes], None]
               ) -> dict[str, str]:
    """Read the refs an upload-pack conversation opens with, ask for the objects ``choose``
    wants of them (it is given the refs and says what to want and what this side has), and
    hand the pack that comes, as it arrives, to ``sink``; the refs. The wants are taken from the
    same conversation's refs: the upstream sends only objects its refs lead to, and a ref read
    on an earlier connection may have moved since. The pack is whole (not thin)."""
    try:
        lines = Lines(channel)
        try:
            refs, capabilities = advertised(lines.until_flush())
        except (OSError, EOFError) as exc:
            raise Unreachable(str(exc)) from exc
        wants, haves = choose(refs)
        if not wants:
            with contextlib.suppress(OSError):
                channel.send(FLUSH)
            return refs
        asked = _asked(capabilities, "ofs-delta", "no-progress")
        message = b"".join(pkt(f"want {oid}".encode() + (f" {asked}".encode() if i == 0 else b"")
                               + b"\n") for i, oid in enumerate(wants)) + FLUSH
        message += b"".join(pkt(f"have {oid}\n".encode()) for oid in haves) + pkt(b"done\n")
        try:
            channel.send(message)
            # Without multi_ack: the first common object found (ACK) and, after "done", NAK
            # if none was; then the pack, which is not in packet lines.
            while not lines.at_pack():
                answer = lines.next()
                if answer is None or not answer.startswith((b"ACK ", b"NAK")):
                    raise Refused("the upstream did not answer the request for objects")
            sink(lines.rest())
            while chunk := channel.receive():
                sink(chunk)
        except (OSError, EOFError) as exc:
            raise Unreachable(str(exc)) from exc
        return refs
    finally:
        channel.close()


def _asked(capabilities: set[str], *wanted: str) -> str:
    """The capabilities to ask for: only those the upstream offers."""
    agent = " agent=cms" if any(name.startswith("agent=") for name in capabilities) else ""
    return " ".join(name for name in wanted if name in capabilities) + agent


def _report(lines: list[bytes], refs: list[str]) -> Report:
    """The push's report, which must say something of every ref pushed: one it leaves out
    makes the outcome unknown."""
    if not lines or not lines[0].startswith(b"unpack "):
        raise Interrupted("the upstream's answer is not a push report")
    unpacked = lines[0][7:].decode("utf-8", "replace").strip()
    refused: dict[str, str] = {}
    reported: set[str] = set()
    for line in lines[1:]:
        text = line.decode("utf-8", "replace").rstrip("\n")
        status, _, rest = text.partition(" ")
        ref, _, reason = rest.partition(" ")
        reported.add(ref)
        if status == "ng":
            refused[ref] = reason
    if unpacked == "ok" and not set(refs) <= reported:
        raise Interrupted("the upstream's report leaves refs out")
    return Report(unpacked=unpacked, refused=refused)


# Transports


class Endpoint(Struct, frozen=True):
    """Where an upstream URL leads, for one of the services (``git-receive-pack`` or
    ``git-upload-pack``)."""

    kind: str  # "git", "local", "ssh", or "other" (left to the git command)
    host: str = ""
    port: int | None = None
    user: str = ""
    path: str = ""


def endpoint(url: str) -> Endpoint:
    if url.startswith("git://"):
        parts = urlsplit(url)
        return Endpoint("git", host=parts.hostname or "", port=parts.port or 9418,
                        path=unquote(parts.path) or "/")
    if url.startswith("ssh://"):
        parts = urlsplit(url)
        return Endpoint("ssh", host=parts.hostname or "", port=parts.port,
                        user=parts.username or "", path=unquote(parts.path))
    if url.startswith("file://"):
        return Endpoint("local", path=unquote(urlsplit(url).path))
    if "://" in url:
        return Endpoint("other")
    head, colon, rest = url.partition(":")
    if colon and "/" not in head and head:  # scp-like: [user@]host:path
        user, _, host = head.rpartition("@")
        return Endpoint("ssh", host=host, user=user, path=rest)
    return Endpoint("local", path=url)


def connect(where: Endpoint, service: str, timeout: float) -> Channel:
    if where.kind == "git":
        return _Socket(where, service, timeout)
    if where.kind == "local":
        return _Process(["git", service.removeprefix("git-"), where.path], timeout)
    if where.kind == "ssh":
        target = f"{where.user}@{where.host}" if where.user else where.host
        port = ["-p", str(where.port)] if where.port else []
        return _Process(["ssh", "-o", "BatchMode=yes", *port, "--", target,
                         f"{service} {shlex.quote(where.path)}"], timeout)
    raise Unreachable("this transport is left to the git command")


def _deadline(timeout: float) -> float:
    """When a whole conversation must be over: an upstream that answers a byte at a time
    never lets a per-read timeout expire."""
    return time.monotonic() + timeout * CONVERSATION_TIMEOUTS


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the upstream took too long to answer")
    return left


class _Socket:
    def __init__(self, where: Endpoint, service: str, timeout: float) -> None:
        self._deadline = _deadline(timeout)
        try:
            self._socket = socket.create_connection((where.host, where.port or 9418),
                                                    timeout=timeout)
        except OSError as exc:
            raise Unreachable(exc.strerror or str(exc)) from exc
        try:
            # The commands and the pack go in one write, and the answer is awaited at once.
            self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.send(pkt(f"{service} {where.path}\0host={where.host}\0".encode()))
        except OSError as exc:
            self._socket.close()
            raise Unreachable(exc.strerror or str(exc)) from exc

    def send(self, data: bytes) -> None:
        self._socket.settimeout(_left(self._deadline))
        self._socket.sendall(data)

    def receive(self) -> bytes:
        self._socket.settimeout(_left(self._deadline))
        return self._socket.recv(65536)

    def close(self) -> None:
        self._socket.close()


class _Process:
    """A service run as a child process, spoken to over its standard input and output."""

    def __init__(self, argv: list[str], timeout: float) -> None:
        self._timeout = timeout
        self._deadline = _deadline(timeout)
        # Kept until close(): what the service said on failing is read from it.
        self._errors: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        env = {key: value for key, value in os.environ.items() if key != "GIT_PROTOCOL"}
        try:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors,
                env=env)
        except OSError as exc:
            self._errors.close()
            raise Unreachable(exc.strerror or str(exc)) from exc

    def send(self, data: bytes) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        stdin.write(data)
        stdin.flush()

    def receive(self) -> bytes:
        stdout = self._process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], min(self._timeout, _left(self._deadline)))
        if not ready:
            raise TimeoutError("the upstream did not answer in time")
        chunk = os.read(stdout.fileno(), 65536)
        if not chunk:
            # The end of the output: a failure if the service says so by its exit status (what
            # it wrote to stderr may be a banner or a warning of ssh's).
            try:
                status = self._process.wait(timeout=self._timeout)
            except subprocess.TimeoutExpired:
                return chunk
            if status != 0:
                self._errors.seek(0)
                said = self._errors.read(2000).decode("utf-8", "replace").strip()
                raise Refused(said.splitlines()[-1] if said else f"it exited with {status}")
        return chunk

    def close(self) -> None:
        process = self._process
        for stream in (process.stdin, process.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        try:
            process.wait(timeout=self._timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._errors.close()
