"""Settings are checked when read: a value that would make a repository git refuses, or a commit
git cannot write, stops the command with a line naming the variable, before anything is made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cms.config import load_settings


@pytest.mark.parametrize("folder", ["../escape", "/abs", "a//b", ".git", ".", "x/../y", "a/",
                                    "content/.hidden", ""])
def test_a_content_folder_git_would_refuse_is_refused(folder: str) -> None:
    if folder == "":
        assert load_settings({"CMS_CONTENT_DIR": ""}).content_dir == "content"  # unset
        return
    with pytest.raises(SystemExit, match="CMS_CONTENT_DIR: a relative folder"):
        load_settings({"CMS_CONTENT_DIR": folder})


@pytest.mark.parametrize("folder", ["content", "site/data", "a.b/c_d-e"])
def test_plain_content_folders_pass(folder: str) -> None:
    assert load_settings({"CMS_CONTENT_DIR": folder}).content_dir == folder


@pytest.mark.parametrize(("variable", "value"), [
    ("CMS_BRANCH", "bad..branch"), ("CMS_BRANCH", "main.lock"), ("CMS_BRANCH", "-main"),
    ("CMS_BRANCH", "a//b"), ("CMS_BRANCH", "cms"), ("CMS_BRANCH", "cms/comparisons/foo"),
    ("CMS_BRANCH", "HEAD"), ("CMS_BRANCH", "refs/heads/main"), ("CMS_BRANCH", "b" * 101),
    ("CMS_CONTENT_DIR", "c" * 201), ("CMS_COMMITTER_NAME", "bad\nname"), ("CMS_COMMITTER_NAME", "a<b>"),
    ("CMS_COMMITTER_NAME", "A\u202eB"), ("CMS_COMMITTER_EMAIL", "no-at-sign"),
    ("CMS_COMMITTER_EMAIL", "a b@example.com")])
def test_identities_and_branches_git_cannot_write_are_refused(variable: str, value: str) -> None:
    with pytest.raises(SystemExit, match=f"bad setting {variable}: "):
        load_settings({variable: value})


def test_the_command_says_so_in_a_line_and_makes_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "CMS_DATA": str(tmp_path / "data"), "CMS_CONTENT_DIR": "../escape"}
    result = subprocess.run([sys.executable, "-m", "cms", "init", "--repo", "x.git"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("cms: bad setting CMS_CONTENT_DIR"), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.git").exists()


def test_a_path_that_cannot_be_used_is_a_line_not_a_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {**os.environ, "CMS_DATA": str(blocker)}
    result = subprocess.run([sys.executable, "-m", "cms", "token", "create", "--name", "Ada",
                             "--email", "ada@example.com", "--role", "admin"],
                            env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("cms: "), result.stderr
    assert "Traceback" not in result.stderr
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("url", ["mysql://cms:s3cret-pw@db/cms", "db.internal:6543",
                                 "sqlite://relative.sqlite3"])
def test_a_database_url_of_another_kind_is_refused_without_repeating_it(url: str) -> None:
    with pytest.raises(SystemExit, match="bad setting CMS_DATABASE_URL: a PostgreSQL URL") as bad:
        load_settings({"CMS_DATABASE_URL": url})
    assert url not in str(bad.value)


@pytest.mark.parametrize("url", ["postgresql://cms:pw@db.example.com:5432/cms",
                                 "postgres://cms@127.0.0.1/cms", "sqlite:////var/cms/state.sqlite3",
                                 ""])
def test_database_urls_of_either_engine_pass(url: str) -> None:
    assert load_settings({"CMS_DATABASE_URL": url}).database_url == url
