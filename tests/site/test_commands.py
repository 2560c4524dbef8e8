"""`cms site` refuses what it cannot use in one line, before it writes anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cms.webhooks.signing import new_secret


def cms_site(*args: str, secret: str = "") -> subprocess.CompletedProcess[str]:
    env = {"CMS_SITE_SECRET": secret} if secret else {}
    return subprocess.run([sys.executable, "-m", "cms", "site", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env})


@pytest.mark.parametrize(("args", "said"), [
    (["build", "--api", "http://[::1", "--out", "OUT"], "--api"),
    (["build", "--api", "ftp://example.com", "--out", "OUT"], "--api"),
    (["build", "--api", "http://127.0.0.1:99999", "--out", "OUT"], "--api"),
    (["build", "--api", "http://127.0.0.1:1", "--out", "FILE"], "--out"),
    (["watch", "--api", "http://127.0.0.1:1", "--out", "OUT", "--listen", "127.0.0.1:99999"],
     "--listen"),
    (["watch", "--api", "http://127.0.0.1:1", "--out", "OUT", "--listen", "nowhere"],
     "--listen"),
    (["watch", "--api", "http://127.0.0.1:1", "--out", "OUT", "--listen", "127.0.0.1:0",
      "--settle", "1e12"], "--settle"),
    (["watch", "--api", "http://127.0.0.1:1", "--out", "FILE", "--listen", "127.0.0.1:0"],
     "--out"),
    (["watch", "--api", "http://127.0.0.1:1", "--out", "OUT", "--listen", "127.0.0.1:0",
      "--secret", "whsec_"], "--secret"),
])
def test_bad_arguments_get_one_line_and_nothing_is_written(
        tmp_path: Path, args: list[str], said: str) -> None:
    (tmp_path / "FILE").write_text("not a folder")
    paths = [str(tmp_path / arg) if arg in ("OUT", "FILE") else arg for arg in args]
    result = cms_site(*paths, secret=new_secret())
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"cms: {said}")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["FILE"]


def test_an_api_that_cannot_be_reached_is_said_in_a_line(tmp_path: Path) -> None:
    result = cms_site("build", "--api", "http://127.0.0.1:1", "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "could not be reached" in result.stderr
    assert "Traceback" not in result.stderr


def test_other_commands_do_not_load_the_site_builder() -> None:
    """`cms serve` and `cms token` start without importing the builder, its HTTP client and
    the receiver (about 140 ms of imports)."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, cms.cli; "
         "print(sorted(m for m in sys.modules if m.startswith('cms.site.')))"],
        capture_output=True, text=True, check=True, timeout=60).stdout
    assert loaded.strip() == "['cms.site.commands']"
