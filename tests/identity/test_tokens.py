"""Tokens shared by the server and the command line through one file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cms import statefiles
from cms.identity.tokens import TokenStore
from cms.statefiles import replace_file


def test_a_change_within_one_clock_tick_and_of_the_same_size_is_seen(tmp_path: Path) -> None:
    server, cli = TokenStore(tmp_path), TokenStore(tmp_path)
    record, token = cli.create("Ada Editor", "ada@example.com", ["editor"])
    assert server.authenticate(token) is not None
    before = os.stat(server.path)
    # Another process rewrites the file within the same tick, to the same size: here the
    # revocation is made by hand so that its size is exactly the old one.
    text = server.path.read_bytes()
    revoked = text.replace(record.hash.encode(), b"0" * len(record.hash))
    assert len(revoked) == len(text)
    replace_file(server.path, revoked)
    os.utime(server.path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert server.authenticate(token) is None



def test_replacing_a_state_file_flushes_its_folder(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A rename is in the folder, not the file: without flushing it a revocation may be lost."""
    flushed: list[Path] = []
    monkeypatch.setattr(statefiles, "fsync_dir", flushed.append)
    TokenStore(tmp_path).create("Ada Editor", "ada@example.com", ["editor"])
    assert tmp_path in flushed


def test_revocations_in_quick_succession_are_each_seen_at_once(tmp_path: Path) -> None:
    """Another process revokes tokens back to back, each rewrite the same size as the last and
    within one tick of the file system's clock: the reader sees every one at its next request,
    since it keeps the file it read open and so no later file can share its inode."""
    reader, writer = TokenStore(tmp_path), TokenStore(tmp_path)
    made = [writer.create(f"Person {n:02d}", f"p{n:02d}@example.com", ["editor"])
            for n in range(30)]
    for _, token in made:
        assert reader.authenticate(token) is not None
    for record, token in made:
        writer.revoke(record.id)
        assert reader.authenticate(token) is None, record.id
