"""The built site in a real browser (Debian's Chromium, driven by Playwright), served over HTTP
on 127.0.0.1: each kind of page renders, holds its layout at a phone's width and a desktop's,
and axe-core finds no serious accessibility violation in it."""

from __future__ import annotations

import functools
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from litestar.testing import TestClient
from playwright.sync_api import Browser, Page, sync_playwright

from cms.site import pages
from cms.site.build import build
from cms.site.source import Source

from ..conftest import HAIKU
from ..helpers import Headers
from .test_build import republish

AWKWARD = "langgraph-vs-crewai"

PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 900}


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium is not None, "Chromium is installed by `make services` (Debian's package)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


def awkward(document: dict[str, Any]) -> None:
    """Content that strains a phone's width: a long unbroken word in a tool's name and its
    category, a long line of code and a wide table in the body."""
    document["tools"][1]["name"] = "Supercalifragilisticexpialidocious" * 2
    document["tools"][1]["category"] = "Hyperparameteroptimisationplatforms"
    document["body"] = ("## Setup\n\n```\n" + "client.configure(" + "option=True, " * 12 +
                        ")\n```\n\n| " + " | ".join(f"column {n}" for n in range(14)) +
                        " |\n|" + "---|" * 14 + "\n| " + " | ".join("value" for _ in range(14)) +
                        " |\n")


@pytest.fixture
def site(client: TestClient, tmp_path: Path,  # type: ignore[type-arg]
         tokens: dict[str, Headers]) -> Iterator[str]:
    republish(client, tokens, AWKWARD, awkward)
    out = tmp_path / "public"
    build(Source("http://testserver.local", client=client), out, tmp_path / "public.state")
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(_Quiet, directory=str(out)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


PAGES = ["", f"comparisons/{HAIKU}/", f"comparisons/{HAIKU}/verdicts.html", "verdicts.html",
         "category/developer-tools/", f"comparisons/{AWKWARD}/"]


def opened(browser: Browser, url: str, viewport: dict[str, int]) -> Page:
    page = browser.new_page(viewport=viewport)  # type: ignore[arg-type]
    answer = page.goto(url)
    assert answer is not None
    assert answer.status == 200, url
    return page


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_every_kind_of_page_renders_fits_and_passes_axe(browser: Browser, site: str,
                                                        viewport: dict[str, int],
                                                        tmp_path: Path) -> None:
    for path in PAGES:
        page = opened(browser, site + path, viewport)
        try:
            assert page.locator("h1").count() == 1, path
            assert page.locator("h1").is_visible(), path
            # Nothing wider than the screen: no sideways scrolling on a phone.
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, (path, overflow)
            # The stylesheet applied (the only one, from the site itself).
            assert page.evaluate("document.styleSheets.length") == 1
            assert page.evaluate("getComputedStyle(document.body).marginTop") == "0px"
            results = Axe().run(page)
            serious = [(violation["id"], violation["impact"])
                       for violation in results.response["violations"]
                       if violation["impact"] in ("serious", "critical")]
            assert serious == [], (path, serious)
            names = {violation["id"] for violation in results.response["violations"]}
            assert not names & {"heading-order", "landmark-one-main", "region",
                                "page-has-heading-one", "html-has-lang"}, (path, names)
            page.screenshot(path=str(tmp_path / f"{path.replace('/', '_') or 'index'}-"
                                                f"{viewport['width']}.png"), full_page=True)
        finally:
            page.close()


def test_the_two_tools_stand_side_by_side_on_a_desktop_and_stack_on_a_phone(
        browser: Browser, site: str) -> None:
    url = site + pages.comparison_path(HAIKU).removesuffix("index.html")
    for viewport, side_by_side in ((DESKTOP, True), (PHONE, False)):
        page = opened(browser, url, viewport)
        try:
            first, second = (page.locator("section.tool").nth(index).bounding_box()
                             for index in (0, 1))
            assert first is not None
            assert second is not None
            if side_by_side:
                assert abs(first["y"] - second["y"]) < 1
                assert second["x"] >= first["x"] + first["width"]
            else:
                assert second["y"] >= first["y"] + first["height"]
                assert abs(first["x"] - second["x"]) < 1
        finally:
            page.close()


def test_links_between_pages_lead_somewhere(browser: Browser, site: str) -> None:
    page = opened(browser, site, DESKTOP)
    try:
        page.locator(f'a[href="comparisons/{HAIKU}/"]').first.click()
        page.wait_for_load_state()
        assert page.locator("h1").inner_text().startswith("Claude Haiku Open Weights")
        page.get_by_role("link", name="History of verdict changes").click()
        page.wait_for_load_state()
        assert page.locator("h1").inner_text().startswith("Verdict changes:")
        page.get_by_role("link", name="All comparisons").click()
        page.wait_for_load_state()
        assert page.url == site
    finally:
        page.close()
