"""New commits judged in process give exactly the entries git's walks give, or are left to git.

Commits are written byte for byte (``hash-object --literally``), so identities, zones, headers
and messages git itself would never write are among them: each is either judged as git lists
it, or left to git.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from cms.audit import history as history_module
from cms.audit.history import history
from cms.audit.plain_commits import read_plain
from cms.config import Settings
from cms.editing.seed import initialise
from cms.editing.write_side import open_write_side
from cms.identity.actors import Actor
from cms.store.layout import Layout, shard
from cms.store.repository import Repository

from ..conftest import HAIKU, SEED, git
from .test_audit import recorded_walks

PATH = f"content/comparisons/{shard(HAIKU)}/{HAIKU}.md"
DOC = Layout.document(HAIKU)
EDITOR = Actor(name="Ada Editor", email="ada@example.com", roles=frozenset({"editor"}))

# Identities: those git writes itself, and some it would read leniently (left to git).
IDENTITIES = [
    ("Ada Editor <ada@example.com> {t} +0000", True),
    ("Zoë Ünïcode <zoe@example.com> {t} -0000", True),
    ("Tab\tInside <tab@example.com> {t} +0530", True),
    ("Empty Mail <> {t} -1200", True),
    ("East <east@example.com> {t} +1400", True),
    ("Future <f@example.com> 9999999999 -0930", True),
    ("O'Neil, Jr. <o@example.com> {t} +0100", True),
    (" Leading <l@example.com> {t} +0000", False),
    ("Trailing  <tr@example.com> {t} +0000", False),
    ("<nobody@example.com> {t} +0000", False),
    ("Bad Zone <b@example.com> {t} +0099", False),
    ("Two <a@x> <b@example.com> {t} +0000", False),
    ("No Date <n@example.com>", False),
    ("Before 1970 There <e@example.com> 3599 -0930", False),
    ("At 1970 <e@example.com> 0 +0000", True),
]
# Messages, by whether a commit that carries them is plain.
MESSAGES = [
    ("Save a draft\n\nCms-Action: save\nCms-State: draft\nCms-Document: {doc}\n", True),
    ("Comment\n\nA remark.\n\nCms-Action: comment\nCms-Document: {doc}\nCms-Comment-Id: 7\n", True),
    ("Assign\n\nCms-Action: assign\nCms-Document: comparisons/another\n", True),
    ("Quoted\n\nCms-Action: comment\nCms-Document: {doc}\n\nin the body, not trailers\n", True),
    ("Lower\n\ncms-action: comment\ncms-document: {doc}\n", True),
    ("Spaced\n\nCms-Action: comment \nCms-Document: {doc}\n", True),
    ("Both\n\nCms-Action: release\nCms-Document: comparisons/x\nCms-Document: {doc}\n", True),
    ("Ünïcode subject ✓\n\nBody — with dashes.\n", True),
    ("", True),
    ("\n\n\nLeading blank lines\n\n\n", True),
    ("No trailing newline", True),
    ("Carriage\r\n\r\nCms-Action: comment\r\nCms-Document: {doc}\r\n", False),
    ("Field\x1fseparator\n", False),
]


def write(repo: Path, kind: str, data: bytes) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), "hash-object", "--literally", "-w",
                           "-t", kind, "--stdin"], input=data, capture_output=True,
                          check=True).stdout.decode().strip()


def tree_with(repo: Path, base: str, *entries: str) -> str:
    """``base`` with index entries (``mode sha\tpath``; mode 0 removes) set in order."""
    env = {**os.environ, "GIT_INDEX_FILE": str(repo / "test-index")}
    subprocess.run(["git", "--git-dir", str(repo), "read-tree", base], env=env, check=True)
    for entry in entries:
        subprocess.run(["git", "--git-dir", str(repo), "update-index", "--index-info"],
                       input=entry + "\n", text=True, env=env, check=True)
    tree = subprocess.run(["git", "--git-dir", str(repo), "write-tree"], env=env,
                          capture_output=True, text=True, check=True).stdout.strip()
    (repo / "test-index").unlink()
    return tree


def trees(repo: Path) -> tuple[list[str], list[str]]:
    """Main's tree, and trees where the comparison's file changed, lost its place, changed
    mode, became a submodule, or where only another file changed; and trees where a folder
    stands at its path (git compares the files in it: left to git)."""
    main = git(repo, "rev-parse", "main^{tree}").strip()
    blob = git(repo, "rev-parse", f"main:{PATH}").strip()
    other = next(path for path in git(repo, "ls-tree", "-r", "--name-only", "main").split()
                 if path.endswith(".md") and path != PATH)
    edits = [write(repo, "blob", f"edit {number}\n".encode()) for number in range(3)]
    gone = f"0 {'0' * 40}\t{PATH}"
    return [
        main,
        *(tree_with(repo, main, f"100644 {edit}\t{PATH}") for edit in edits),
        tree_with(repo, main, f"100755 {blob}\t{PATH}"),
        tree_with(repo, main, gone),
        tree_with(repo, main, f"100644 {edits[0]}\t{other}"),
        tree_with(repo, main, gone, f"160000 {'1' * 40}\t{PATH}"),
    ], [tree_with(repo, main, gone, f"{mode} {blob}\t{PATH}/inside")
        for mode in ("100644", "100755")]


def commit(repo: Path, tree: str, parent: str, author: str, committer: str, message: str,
           extra: str = "") -> str:
    header = f"tree {tree}\nparent {parent}\nauthor {author}\ncommitter {committer}\n{extra}"
    return write(repo, "commit", f"{header}\n{message}".encode())


def walked_by_git(repo: Path, oid: str, parent: str) -> tuple[list[str], list[str]]:
    """What the history's two walks print for ``oid`` alone, as it asks git."""
    records = []
    for args in (["--", PATH], ["--extended-regexp", f"--grep=^Cms-Document: {DOC}$",
                                "--grep=^Cms-Action: (" + "|".join(history_module.NOTES) + ")$",
                                "--all-match"]):
        out = subprocess.run(
            ["git", "--git-dir", str(repo), "--no-replace-objects", "log",
             f"--format={history_module._FORMAT}", "--date-order", oid, "--not", parent,
             *args], capture_output=True, check=True).stdout.decode()
        records.append([record for record in out.split(history_module._RECORD)
                        if record.strip()])
    return records[0], records[1]


def entries(records: list[str]) -> bytes:
    """As the API encodes them: equal datetimes in other zones are told apart."""
    return msgspec.json.encode([history_module._entry(record) for record in records])


@pytest.fixture
def seeded(settings: Settings) -> tuple[Path, tuple[list[str], list[str]], str]:
    """The seeded repository, the trees new commits take (see ``trees``), and main's commit."""
    initialise(settings, SEED)
    return settings.repo, trees(settings.repo), git(settings.repo, "rev-parse", "main").strip()


def test_commits_judged_here_give_git_s_entries_and_the_rest_is_left_to_git(
        seeded: tuple[Path, tuple[list[str], list[str]], str]) -> None:
    repo, (files, folders), parent = seeded
    parent_tree = git(repo, "rev-parse", f"{parent}^{{tree}}").strip()
    reader = Repository(repo)
    rng = random.Random(17)
    judged = left = 0
    extras = [("", True), ("encoding ISO-8859-1\n", False),
              ("gpgsig -----BEGIN-----\n x\n", False)]

    def pick(choices: list[tuple[str, bool]], spoilt: bool) -> str:
        """A plain choice, or (when ``spoilt``) one git must judge."""
        return rng.choice([text for text, plain in choices if plain != spoilt])

    for number in range(200):
        # Half the commits plain; of the rest, each spoilt in one way.
        spoil = rng.choice([None] * 4 + ["author", "committer", "message", "extra"])
        tree = rng.choice(files + folders)
        oid = commit(repo, tree, parent,
                     pick(IDENTITIES, spoil == "author").format(t=1_700_000_000 + number),
                     pick(IDENTITIES, spoil == "committer").format(t=1_700_000_000),
                     pick(MESSAGES, spoil == "message").format(doc=DOC),
                     pick(extras, spoil == "extra"))
        at_folder = tree != parent_tree and bool({tree, parent_tree} & set(folders))
        plain = spoil is None and not at_folder
        here = history_module._judged_here(reader, PATH, HAIKU, {oid}, {oid})
        assert (here is not None) == plain, git(repo, "cat-file", "commit", oid)
        if here is None:
            left += 1
        else:
            judged += 1
            changed, noted = walked_by_git(repo, oid, parent)
            assert entries(here[0]) == entries(changed)
            assert entries(here[1]) == entries(noted)
            assert read_plain(reader, oid) is not None
        parent, parent_tree = oid, tree
    assert judged > 60
    assert left > 60


def raw_tree(repo: Path, oid: str) -> bytes:
    return subprocess.run(["git", "--git-dir", str(repo), "cat-file", "tree", oid],
                          capture_output=True, check=True).stdout


def with_folder_rewritten(repo: Path, rewrite: Callable[[bytes, bytes], bytes]) -> str:
    """Main's tree with the raw bytes of the file's folder rewritten (given the file's entry
    as ``mode name\0sha``), and each folder above it rewritten to hold the new one."""
    parts = PATH.split("/")
    folders = ["/".join(parts[:depth]) for depth in range(len(parts))]
    ids = [git(repo, "rev-parse", f"main:{folder}").strip() for folder in folders]
    raw = raw_tree(repo, ids[-1])
    name = f" {parts[-1]}\x00".encode()
    start = raw.index(b"100644" + name)
    tree = write(repo, "tree", rewrite(raw, raw[start:start + 6 + len(name) + 20]))
    for old, inner in zip(reversed(ids[:-1]), reversed(ids[1:]), strict=True):
        tree = write(repo, "tree", raw_tree(repo, old).replace(bytes.fromhex(inner),
                                                               bytes.fromhex(tree)))
    assert tree != ids[0]
    return tree


@pytest.mark.parametrize(("case", "judged_here"), [
    ("a file mode git does not write", True),
    ("entries out of order", False),
    ("one name twice", False),
    ("an id cut short", False),
    ("a name with a slash", False),
    ("a mode git refuses", False),
])
def test_a_tree_git_would_not_write_is_judged_as_git_reads_it_or_left_to_git(
        settings: Settings, case: str, judged_here: bool) -> None:
    """A mode git would not write (100664) compares as git canonicalises it (100644: no change
    to the file). A tree git reads otherwise than written again (the first of two names, an
    order it relies on) is git's to judge."""
    initialise(settings, SEED)
    repo = settings.repo
    reader = Repository(repo)
    main = git(repo, "rev-parse", "main").strip()
    other_blob = bytes.fromhex(write(repo, "blob", b"another\n"))
    rewrites: dict[str, Callable[[bytes, bytes], bytes]] = {
        "a file mode git does not write": lambda raw, entry: raw.replace(
            entry, b"100664" + entry[6:]),
        "entries out of order": lambda raw, entry: raw.replace(
            entry, b"100644 zzz.md\x00" + other_blob + entry),
        "one name twice": lambda raw, entry: raw.replace(entry, entry[:-20] + other_blob + entry),
        "an id cut short": lambda raw, entry: raw.replace(entry, b"") + entry[:-4],
        "a name with a slash": lambda raw, entry: b"100644 a/b\x00" + other_blob + raw,
        "a mode git refuses": lambda raw, entry: raw.replace(entry, b"+100644" + entry[6:]),
    }
    tree = with_folder_rewritten(repo, rewrites[case])
    oid = commit(repo, tree, main, "A <a@example.com> 1700000000 +0000",
                 "A <a@example.com> 1700000000 +0000", "Odd tree\n")
    here = history_module._judged_here(reader, PATH, HAIKU, {oid}, {oid})
    assert (here is not None) == judged_here
    if here is not None:
        assert here[0] == [] == walked_by_git(repo, oid, main)[0]


def test_a_parent_s_tree_is_read_as_git_reads_it(settings: Settings) -> None:
    """A parent with a second ``tree`` line after its identities: git reads the first."""
    initialise(settings, SEED)
    repo = settings.repo
    main = git(repo, "rev-parse", "main").strip()
    tree = git(repo, "rev-parse", "main^{tree}").strip()
    empty = write(repo, "tree", b"")
    who = "A <a@example.com> 1700000000 +0000"
    odd = commit(repo, tree, main, who, who, "Odd parent\n", extra=f"tree {empty}\n")
    child = commit(repo, tree, odd, who, who, "Child\n")
    here = history_module._judged_here(Repository(repo), PATH, HAIKU, {child}, {child})
    assert here is not None
    assert here[0] == [] == walked_by_git(repo, child, odd)[0]


def test_the_walks_read_alike_whatever_git_s_configuration_says(settings: Settings) -> None:
    """Log output in another encoding, or following renames, would change what git prints."""
    initialise(settings, SEED)
    side = open_write_side(settings)
    published = side.documents.published(HAIKU)
    assert published is not None
    zoe = Actor(name="Zoë Editor", email="zoe@example.com", roles=frozenset({"editor"}))
    side.editor.save(HAIKU, published.comparison, zoe, published.revision)
    before = history(side.documents, HAIKU)
    git(settings.repo, "config", "i18n.logOutputEncoding", "ISO-8859-1")
    git(settings.repo, "config", "log.follow", "true")
    history_module._kept.put((str(settings.repo), PATH), history_module._Kept((), [], frozenset()))
    assert msgspec.json.encode(history(side.documents, HAIKU)) == msgspec.json.encode(before)
    assert before[0].actor.name == "Zoë Editor"


def test_a_history_after_a_draft_asks_git_nothing_and_is_a_fresh_walk_s(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    initialise(settings, SEED)
    side = open_write_side(settings)
    walks = recorded_walks(side, monkeypatch)
    history(side.documents, HAIKU)
    published = side.documents.published(HAIKU)
    assert published is not None
    revision = published.revision
    for _ in range(3):
        walks.clear()
        revision = side.editor.save(HAIKU, published.comparison, EDITOR, revision).revision
        kept = history(side.documents, HAIKU)
        assert walks == []
        monkeypatch.setattr(history_module, "_kept", history_module.WeighedCache(
            history_module._KEPT_BYTES, history_module._weight))
        assert history(side.documents, HAIKU) == kept
        assert walks  # the fresh walk is git's


def test_a_history_kept_across_plain_commits_of_any_time_is_a_fresh_walk_s(
        settings: Settings, seeded: tuple[Path, tuple[list[str], list[str]], str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Commits of one parent added one by one to a draft's branch, with author times before,
    in and after the seconds already walked: the kept history, ordered again only from the
    oldest new second on, is what a fresh walk gives after each."""
    repo, (choices, _folders), parent = seeded
    side = open_write_side(settings)
    rng = random.Random(5)
    branch = f"refs/heads/cms/comparisons/{HAIKU}"
    walks = recorded_walks(side, monkeypatch)
    history(side.documents, HAIKU)
    base = 1_800_000_000
    in_process = 0
    used: set[int] = set()
    when = base
    for _ in range(40):
        # Its parent's second, or one no other commit has, before or after the others: one
        # second shared by commits that are not parent and child would be ordered by git's walk.
        if not used or rng.random() < 0.7:
            when = rng.choice([second for second in range(base - 50, base + 50)
                               if second not in used])
            used.add(when)
        author = f"Ada Editor <ada@example.com> {when} +0000"
        parent = commit(repo, rng.choice(choices), parent, author, author,
                        "Save a draft\n\nCms-Action: save\nCms-State: draft\n")
        git(repo, "update-ref", branch, parent)
        walks.clear()
        kept = msgspec.json.encode(history(side.documents, HAIKU))
        in_process += not walks
        place = (str(repo), PATH)
        state = history_module._kept.get(place)
        assert state is not None
        history_module._kept.put(place, history_module._Kept((), [], frozenset()))
        assert kept == msgspec.json.encode(history(side.documents, HAIKU))
        history_module._kept.put(place, state)  # walked on from here, not afresh
    assert in_process == 40


def test_a_merge_naming_a_parent_in_capitals_is_walked_as_git_walks_it(
        settings: Settings, seeded: tuple[Path, tuple[list[str], list[str]], str]) -> None:
    """Git reads a second parent written in capitals: the commit is a merge, which brings in
    a side the kept history had skipped (a merge that kept main's file)."""
    repo, (files, _folders), main = seeded
    side = open_write_side(settings)
    main_tree, changed, other = files[0], files[1], files[2]
    who = "A <a@example.com> {} +0000"
    aside = commit(repo, changed, main, who.format(1_800_000_100), who.format(1_800_000_100),
                   "A side\n")
    merge = write(repo, "commit", (
        f"tree {main_tree}\nparent {main}\nparent {aside}\nauthor {who.format(1_800_000_200)}\n"
        f"committer {who.format(1_800_000_200)}\n\nMerge keeping main's file\n").encode())
    git(repo, "update-ref", "refs/heads/main", merge)
    history(side.documents, HAIKU)
    branch = f"refs/heads/cms/comparisons/{HAIKU}"
    draft = commit(repo, other, merge, who.format(1_800_000_300), who.format(1_800_000_300),
                   "A draft\n")
    git(repo, "update-ref", branch, draft)
    history(side.documents, HAIKU)
    capitals = write(repo, "commit", (
        f"tree {changed}\nparent {draft}\nparent {aside.upper()}\n"
        f"author {who.format(1_800_000_400)}\ncommitter {who.format(1_800_000_400)}\n\n"
        "Two parents\n").encode())
    assert git(repo, "log", "-1", "--format=%P", capitals).split() == [draft, aside]
    git(repo, "update-ref", branch, capitals)
    kept = [entry.sha for entry in history(side.documents, HAIKU)]
    assert aside in kept
    assert kept == git(repo, "log", "--format=%H", "--date-order", "main", branch, "--",
                       PATH).split()


def test_a_message_in_another_encoding_than_it_says_is_read(settings: Settings) -> None:
    """Latin-1 text with no encoding header, as an editor set to Latin-1 writes it: git's walk
    prints it as it is, and the history reads it with a replacement character."""
    initialise(settings, SEED)
    repo = settings.repo
    side = open_write_side(settings)
    main = git(repo, "rev-parse", "main").strip()
    blob = write(repo, "blob", b"changed\n")
    tree = tree_with(repo, main, f"100644 {blob}\t{PATH}")
    who = "A <a@example.com> 1800000000 +0000"
    latin = write(repo, "commit", f"tree {tree}\nparent {main}\nauthor {who}\ncommitter {who}\n\n"
                  .encode() + "Zoë's change\n".encode("latin-1"))
    git(repo, "update-ref", "refs/heads/main", latin)
    assert history(side.documents, HAIKU)[0].subject == "Zo\ufffd's change"


def test_a_new_draft_commit_in_the_second_of_a_newer_main_commit_is_ordered_as_git_walks(
        settings: Settings, seeded: tuple[Path, tuple[list[str], list[str]], str]) -> None:
    """The mirror of main moving on in a draft's second: the draft moves on in main's. Neither
    commit is the other's parent, so their order is the walk's, and the history is walked
    again rather than added to."""
    repo, (files, _folders), main = seeded
    side = open_write_side(settings)
    branch = f"refs/heads/cms/comparisons/{HAIKU}"
    who = "A <a@example.com> {} +0000"
    draft = commit(repo, files[1], main, who.format(1_800_000_000), who.format(1_800_000_000),
                   "A draft\n")
    git(repo, "update-ref", branch, draft)
    on_main = commit(repo, files[2], main, who.format(1_800_000_500), who.format(1_800_000_500),
                     "On main\n")
    git(repo, "update-ref", "refs/heads/main", on_main)
    history(side.documents, HAIKU)
    later = commit(repo, files[3], draft, who.format(1_800_000_500), who.format(1_800_000_500),
                   "The draft again\n")
    git(repo, "update-ref", branch, later)
    kept = [entry.sha for entry in history(side.documents, HAIKU)]
    history_module._kept.put((str(repo), PATH), history_module._Kept((), [], frozenset()))
    assert kept == [entry.sha for entry in history(side.documents, HAIKU)]
    assert set(kept[:2]) == {on_main, later}
