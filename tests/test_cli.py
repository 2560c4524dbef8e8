"""The `cms` command as a person runs it: a real process, real files, real git."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cms.config import Settings

from .conftest import HAIKU, SEED, fsck, git

ROOT = Path(__file__).resolve().parents[1]


def cms(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "cms", *args], capture_output=True, text=True,
                            env={**os.environ, **env}, check=False, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_init_seeds_once_and_refuses_to_touch_an_existing_repository(tmp_path: Path) -> None:
    env = {"CMS_REPO": str(tmp_path / "content"), "CMS_DATA": str(tmp_path / "data")}
    created = cms("init", env=env)
    count = len(list((SEED / "comparisons").glob("*.md")))
    assert f"with {count} published comparisons" in created.stdout
    files = git(tmp_path / "content", "ls-tree", "-r", "--name-only", "main").split()
    # The comparisons, and the workflow definitions in force beside them.
    assert sorted(f for f in files if f.startswith(".cms/")) == [
        ".cms/workflows/default.toml", ".cms/workflows/two-step.toml"]
    assert len([f for f in files if f.startswith("content/comparisons/")]) == count
    assert len(files) == count + 2
    assert git(tmp_path / "content", "log", "--format=%s|%an", "main").strip() == \
        f"Seed: {count} comparisons|CMS"
    fsck(tmp_path / "content")

    again = cms("init", env=env, check=False)
    assert again.returncode == 1
    assert "refusing" in again.stderr
    assert len(git(tmp_path / "content", "rev-list", "--all").split()) == 1


def test_init_with_explicit_repo_and_seed(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    only = next((SEED / "comparisons").glob("*.md"))
    (seed / only.name).write_text(only.read_text())
    repo = tmp_path / "elsewhere.git"
    cms("init", "--repo", str(repo), "--seed", str(seed), env={"CMS_DATA": str(tmp_path)})
    assert git(repo, "ls-tree", "-r", "--name-only", "main").strip().endswith(only.name)


@pytest.mark.parametrize("case", ["missing seed", "empty seed", "bad file", "bad workflow",
                                  "seed is a file"])
def test_init_checks_everything_first_and_leaves_nothing_on_failure(
        tmp_path: Path, case: str) -> None:
    seed = tmp_path / "seed"
    env = {"CMS_DATA": str(tmp_path / "data")}
    if case == "seed is a file":
        seed.write_text("not a folder")
    elif case != "missing seed":
        seed.mkdir()
    if case == "bad file":
        (seed / "broken-vs-file.md").write_text("---\ntitle: [unclosed\n---\n")
    if case == "bad workflow":
        seed = SEED
        (tmp_path / "workflow.toml").write_text("initial_state = 'nowhere'\n")
        env["CMS_WORKFLOW"] = str(tmp_path / "workflow.toml")
    repo = tmp_path / "content.git"
    for _ in range(2):  # the same command again finds nothing in its way
        failed = cms("init", "--repo", str(repo), "--seed", str(seed), env=env, check=False)
        assert failed.returncode == 1
        assert failed.stderr.startswith("cms: "), failed.stderr
        assert "Traceback" not in failed.stderr
        assert not repo.exists()
    expected = {"missing seed": "does not exist", "empty seed": "no comparison files",
                "bad file": "broken-vs-file.md", "bad workflow": "workflow",
                "seed is a file": "is a file"}[case]
    assert expected in failed.stderr


@pytest.mark.parametrize("existed", [False, True])
def test_a_creation_failing_part_way_leaves_nothing_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existed: bool) -> None:
    """The repository is made, then the first commit fails (a full disk, say): what was made
    goes, and an empty folder that was there stays, empty."""
    from cms.config import load_settings
    from cms.editing import seed as seed_module
    from cms.errors import StoreError

    settings = load_settings({}, repo=tmp_path / "content.git", data=tmp_path / "data")
    if existed:
        settings.repo.mkdir()

    def full_disk(building: Settings, **kwargs: object) -> None:
        assert (building.repo / "objects").is_dir()  # the repository was made, beside its place
        raise StoreError("could not write to the content repository: No space left on device")

    monkeypatch.setattr(seed_module, "open_write_side", full_disk)
    with pytest.raises(StoreError):
        seed_module.initialise(settings, SEED)
    assert settings.repo.exists() == existed
    if existed:
        assert list(settings.repo.iterdir()) == []
    # No staging folder left beside it.
    assert [path.name for path in tmp_path.iterdir()] == (["content.git"] if existed else [])


def test_initialising_again_never_touches_the_repository_there(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs of `cms init` at once (two containers starting, say): the one that finds the
    place taken, before it starts or while it builds, leaves the other's repository alone."""
    from cms.config import load_settings
    from cms.editing import seed as seed_module
    from cms.errors import Conflict

    settings = load_settings({}, repo=tmp_path / "content.git", data=tmp_path / "data")
    seed_module.initialise(settings, SEED)
    first = git(settings.repo, "rev-parse", "main")
    with pytest.raises(Conflict):
        seed_module.initialise(settings, SEED)
    assert git(settings.repo, "rev-parse", "main") == first

    racing = load_settings({}, repo=tmp_path / "raced.git", data=tmp_path / "data")
    build = seed_module.create_repository

    def the_other_run_finishes_first(building: Settings, files: dict[str, bytes]) -> object:
        made = build(building, files)
        build(racing, {})  # the other run's repository lands in the place meanwhile
        (racing.repo / "theirs").write_text("kept")
        return made

    monkeypatch.setattr(seed_module, "create_repository", the_other_run_finishes_first)
    with pytest.raises(Conflict):
        seed_module.initialise(racing, SEED)
    assert (racing.repo / "theirs").read_text() == "kept"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["content.git", "raced.git"]
    fsck(settings.repo)


def stored_tokens(data: Path) -> str:
    """What the embedded default's database holds of tokens, as text."""
    with contextlib.closing(sqlite3.connect(data / "state.sqlite3")) as db:
        return repr(db.execute("SELECT * FROM tokens").fetchall())


def test_tokens_are_printed_once_and_stored_hashed(tmp_path: Path) -> None:
    env = {"CMS_REPO": str(tmp_path / "content"), "CMS_DATA": str(tmp_path / "data")}
    created = cms("token", "create", "--name", "Ada Editor", "--email", "ada@example.com",
                  "--role", "editor", "--role", "reviewer", env=env)
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("cms_")
    assert len(token) > 40
    stored = stored_tokens(tmp_path / "data")
    assert token not in stored
    assert "Ada Editor" in stored
    listing = cms("token", "list", env=env).stdout
    assert "Ada Editor <ada@example.com>  editor,reviewer" in listing
    assert token not in listing
    token_id = listing.split()[0]
    assert "Revoked" in cms("token", "revoke", token_id, env=env).stdout
    assert "revoked" in cms("token", "list", env=env).stdout
    missing = cms("token", "revoke", "nope", env=env, check=False)
    assert missing.returncode == 1
    assert "no active token" in missing.stderr


def test_token_create_rejects_bad_input(tmp_path: Path) -> None:
    env = {"CMS_DATA": str(tmp_path / "data")}
    bad_role = cms("token", "create", "--name", "X", "--email", "x@example.com", "--role", "king",
                   env=env, check=False)
    assert bad_role.returncode == 2
    assert "invalid choice" in bad_role.stderr
    bad_email = cms("token", "create", "--name", "X", "--email", "not-an-email", "--role", "editor",
                    env=env, check=False)
    assert bad_email.returncode == 1
    assert "email" in bad_email.stderr
    assert stored_tokens(tmp_path / "data") == "[]"


def test_validate_reports_every_bad_file(tmp_path: Path) -> None:
    good = SEED / "comparisons" / f"{HAIKU}.md"
    (tmp_path / good.name).write_text(good.read_text())
    (tmp_path / "broken-yaml.md").write_text("---\ntitle: [unclosed\n---\nbody\n")
    (tmp_path / "no-front-matter.md").write_text("just text\n")
    text = good.read_text().replace("verdict: skip", "verdict: maybe", 1)
    (tmp_path / "bad-verdict.md").write_text(text.replace(f"slug: {good.stem}", "slug: bad-verdict"))
    (tmp_path / "wrong-name.md").write_text(good.read_text())
    result = cms("validate", str(tmp_path), env={}, check=False)
    assert result.returncode == 1
    out = result.stdout
    assert "broken-yaml.md: front_matter: the front matter is not valid YAML (line 3" in out
    assert "no-front-matter.md: front_matter:" in out
    assert "bad-verdict.md: tools[0].reviews[1].verdict: Invalid enum value 'maybe'" in out
    assert "wrong-name.md: slug:" in out
    assert "1 valid, 4 invalid" in out
    assert cms("validate", str(SEED), env={}).stdout.strip().endswith("0 invalid")


def test_serve_explains_a_missing_repository(tmp_path: Path) -> None:
    result = cms("serve", "--repo", str(tmp_path / "missing"), "--port", "0",
                 env={"CMS_DATA": str(tmp_path)}, check=False)
    assert result.returncode == 1
    assert "no git repository" in result.stderr
    assert "cms init" in result.stderr
    assert "Traceback" not in result.stderr


def test_export_writes_static_files_and_rewrites_nothing_when_unchanged(tmp_path: Path) -> None:
    env = {"CMS_REPO": str(tmp_path / "content"), "CMS_DATA": str(tmp_path / "data"),
           "CMS_PUBLIC_URL": "https://cms.example.com"}
    cms("init", env=env)
    out = tmp_path / "site"
    first = cms("export", "--out", str(out), env=env).stdout
    count = len(list((SEED / "comparisons").glob("*.md")))
    assert f"Exported {count} comparisons" in first
    index = json.loads((out / "index.json").read_text())
    assert [item["slug"] for item in index["items"]] == sorted(item["slug"] for item in index["items"])
    assert index["commit"] == git(tmp_path / "content", "rev-parse", "main").strip()
    document = json.loads((out / "comparisons" / f"{HAIKU}.json").read_text())
    assert document["url"] == f"https://cms.example.com/api/comparisons/{HAIKU}"
    assert document["tools"][0]["panel_ship_label"] == "50%"
    assert (out / "comparisons" / f"{HAIKU}.html").read_text().startswith("<h2>")
    assert json.loads((out / "sync.json").read_text())["next_sync"]
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    contents = {p: p.read_bytes() for p in stamps}
    second = cms("export", "--out", str(out), env=env).stdout
    assert "0 written" in second
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps
    assert {p: p.read_bytes() for p in stamps} == contents
    (out / "comparisons" / "gone-comparison.json").write_text("{}")
    third = cms("export", "--out", str(out), env=env).stdout
    assert "1 removed" in third


def test_workflows_check_names_the_file_the_key_and_the_reason(tmp_path: Path) -> None:
    env = {"CMS_DATA": str(tmp_path / "data")}
    shipped = cms("workflows", "check", env=env)
    assert "ok: default (the default)" in shipped.stdout
    assert "ok: two-step: " in shipped.stdout
    assert "approve (reviewer) then final_approve (chief)" in shipped.stdout
    two_step = (ROOT / "workflows" / "two-step.toml").read_text()
    broken = tmp_path / "two-step.toml"
    broken.write_text(two_step.replace('roles = ["chief"]', 'roles = ["chef"]')
                      .replace('from = ["approved", "unpublished"]',
                               'from = ["in_review", "approved", "unpublished"]'))
    failed = cms("workflows", "check", str(broken), env=env, check=False)
    assert failed.returncode == 1
    assert "two-step.toml" in failed.stderr
    assert "transitions.final_approve.roles: `chef` is not a role" in failed.stderr
    # With the role fixed, the other fault shows: publication without an approval.
    broken.write_text(two_step.replace('from = ["approved", "unpublished"]',
                                       'from = ["in_review", "approved", "unpublished"]'))
    failed = cms("workflows", "check", str(broken), env=env, check=False)
    assert "states.published: public, yet reached from `draft` with 0 of 2" in failed.stderr
    # A server does not start on it either.
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "default.toml").write_text((ROOT / "workflows" / "default.toml").read_text())
    (folder / "two-step.toml").write_text(broken.read_text())
    refused = cms("init", "--repo", str(tmp_path / "x.git"),
                  env={**env, "CMS_WORKFLOWS": str(folder)}, check=False)
    assert refused.returncode == 1
    assert "two-step.toml" in refused.stderr
    assert not (tmp_path / "x.git").exists()


def test_workflows_push_puts_definitions_in_force(tmp_path: Path) -> None:
    env = {"CMS_REPO": str(tmp_path / "content"), "CMS_DATA": str(tmp_path / "data")}
    cms("init", env=env)
    definition = tmp_path / "default.toml"
    definition.write_text((ROOT / "workflows" / "default.toml").read_text()
                          .replace("approvals_required = 1", "approvals_required = 2"))
    pushed = cms("workflows", "push", str(definition), "--author", "Ann Admin <ann@example.com>",
                 "--comment", "Two reviewers.", env=env)
    assert pushed.stdout.startswith("in force from commit ")
    repo = tmp_path / "content"
    assert git(repo, "log", "-1", "--format=%an <%ae>|%(trailers:key=Cms-Action,valueonly)",
               "main").strip() == "Ann Admin <ann@example.com>|workflows"
    assert "approvals_required = 2" in git(repo, "show", "main:.cms/workflows/default.toml")
    again = cms("workflows", "push", str(definition), "--author", "Ann Admin <ann@example.com>",
                env=env)
    assert again.stdout.strip() == "already in force: default"
    broken = tmp_path / "two-step.toml"
    broken.write_text("name = 'two-step'\ninitial_state = 'nowhere'\n")
    refused = cms("workflows", "push", str(broken), "--author", "Ann Admin <ann@example.com>",
                  env=env, check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith("cms: ")
    assert "two-step.toml" in refused.stderr
    nobody = cms("workflows", "push", str(definition), "--author", "ann", env=env, check=False)
    assert nobody.returncode == 1
    assert "Name <email>" in nobody.stderr
    fsck(repo)


def test_ctrl_c_at_any_moment_of_a_command_stops_it_quietly(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C before `cms serve` listens (its imports, the services' build: the first third of
    a second) ends it as it does once the server runs: exit 130, no traceback."""
    from cms import cli

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_serve", interrupted)
    try:
        assert cli.main(["serve", "--port", "0"]) == 130
    except KeyboardInterrupt:  # else it would end the whole test session
        pytest.fail("Ctrl-C went through the command")
    captured = capsys.readouterr()
    assert captured.err + captured.out == ""
