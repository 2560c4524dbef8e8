"""The CMS as someone installs it: the wheel built from this checkout, installed with its declared
dependencies into a fresh virtualenv, and run from a folder that is not the checkout.

Nothing here may lean on the checkout: the workflow and the sample comparisons must come from
inside the installed package, and every import from a declared dependency.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                            env=env, timeout=timeout, check=False)
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The `cms` command of a fresh virtualenv holding only the wheel and its dependencies."""
    work = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", work / "dist",
        ROOT, cwd=work)
    wheel = next((work / "dist").glob("cms-*.whl"))
    run(sys.executable, "-m", "venv", work / "venv", cwd=work)
    run(work / "venv/bin/python", "-m", "pip", "install", "--quiet", wheel, cwd=work)
    # What a new user's shell has: no settings of ours, nothing pointing into the checkout.
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("CMS_", "PYTHON", "VIRTUAL_ENV"))}
    return work / "venv/bin/cms", env


def test_init_serve_and_export_from_another_folder(installed: tuple[Path, dict[str, str]],
                                                   tmp_path: Path) -> None:
    cms, env = installed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**env, "CMS_DATA": str(elsewhere / "data")}
    samples = len(list((ROOT / "content").rglob("*.md")))
    created = run(cms, "init", "--repo", "site.git", cwd=elsewhere, env=env)
    assert f"with {samples} published comparisons" in created.stdout

    exported = run(cms, "export", "--repo", "site.git", "--out", "out", cwd=elsewhere, env=env)
    assert f"Exported {samples} comparisons" in exported.stdout
    assert len(list((elsewhere / "out").rglob("*.json"))) >= samples

    log = elsewhere / "serve.log"
    with open(log, "w") as errors, subprocess.Popen(
            [cms, "serve", "--repo", "site.git", "--port", "0"], cwd=elsewhere, env=env,
            stdout=subprocess.PIPE, stderr=errors, text=True) as server:
        try:
            assert server.stdout is not None
            banner: queue.Queue[str] = queue.Queue()
            threading.Thread(target=lambda: banner.put(server.stdout.readline()),  # type: ignore[union-attr]
                             daemon=True).start()
            try:
                # A bound for a server that hangs before it binds, not a wait for an event.
                line = banner.get(timeout=120)
            except queue.Empty:
                line = ""
            assert line.startswith("CMS serving http://127.0.0.1:"), line + log.read_text()
            url = line.split()[2]
            listed = httpx.get(f"{url}/api/comparisons", params={"limit": 100}, timeout=30)
            assert listed.status_code == 200
            assert len(listed.json()["items"]) == samples
            assert httpx.get(f"{url}/schema/openapi.json", timeout=30).status_code == 200
        finally:
            server.terminate()
            server.wait(timeout=30)


def test_a_missing_seed_folder_is_an_error(installed: tuple[Path, dict[str, str]],
                                           tmp_path: Path) -> None:
    cms, env = installed
    result = subprocess.run([cms, "init", "--repo", "x.git", "--seed", "nowhere"], cwd=tmp_path,
                            env={**env, "CMS_DATA": str(tmp_path / "data")},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    assert not (tmp_path / "x.git").exists()
