"""Every page of the ci-scale site in headless Chromium, served from 127.0.0.1.

Per page: images load, MathJax (served by the site itself) typesets every formula, the
console shows no error, and no request leaves the local server. A full-page screenshot of
each page lands in book/_build/screenshots/<page>.png for a human to look at.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urljoin

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
# The flags keep Chromium from calling Google's services, which a closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "book" / "_build" / "screenshots"
# Sphinx's own pages beside the chapters; index.html only redirects to the root chapter.
EXTRA_PAGES = ["genindex", "search"]
# TeX that MathJax should have replaced; code blocks are removed before looking.
RAW_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\$[^$\n]*\\[A-Za-z]+[^$\n]*\$")
# Local schemes that never touch the network.
LOCAL_SCHEMES = ("data:", "blob:", "about:")

PAGE_STATE_JS = """async () => {
  // MathJax 3 resolves startup.promise once the first typesetting pass is done.
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const article = document.querySelector('article.bd-article') || document.body;
  const prose = article.cloneNode(true);
  prose.querySelectorAll('pre, code, script, style, mjx-container, .cell_input').forEach(e => e.remove());
  const math = Array.from(document.querySelectorAll('.math'));
  return {
    images: Array.from(document.images).map(i => ({src: i.currentSrc || i.src, complete: i.complete, width: i.naturalWidth})),
    prose: prose.textContent,
    math: math.length,
    untypeset: math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80)),
    containers: document.querySelectorAll('mjx-container').length,
    mathjaxVersion: window.MathJax && MathJax.version || null,
  };
}"""


def _pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    return [toc["root"], *(c["file"] for c in toc["chapters"]), *EXTRA_PAGES]


PAGES = _pages()


@pytest.fixture(scope="module")
def browser():
    """One headless Debian Chromium for the module, driven by Playwright."""
    if not CHROMIUM.exists():
        if not os.environ.get("CI"):
            pytest.skip(f"{CHROMIUM} missing (apt-get install -y chromium); CI installs it and runs this test")
        pytest.fail(f"{CHROMIUM} missing in CI: .ci/run should have installed Debian's chromium")
    if os.environ.get("CI"):
        from playwright.sync_api import sync_playwright
    else:
        sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


class Recorder:
    """Every request, failed request, error response, console error and page exception."""

    def __init__(self, page):
        self.requests: list[str] = []
        self.failed: list[str] = []
        self.console_errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.url} (HTTP {r.status})"))
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(f"{m.text} @ {m.location}"))
        page.on("pageerror", lambda e: self.console_errors.append(f"uncaught: {e}"))


@pytest.mark.slow
@pytest.mark.parametrize("name", PAGES)
def test_page_renders_offline(site_url, page, name):
    seen = Recorder(page)
    response = page.goto(urljoin(site_url, f"{name}.html"), wait_until="networkidle")
    assert response is not None and response.ok, f"{name}.html: {response and response.status}"
    state = page.evaluate(PAGE_STATE_JS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    broken = [i["src"] for i in state["images"] if not (i["complete"] and i["width"] > 0)]
    assert not broken, f"{name}: images that did not load: {broken}"
    if state["math"]:
        assert state["mathjaxVersion"], f"{name}: has math but MathJax did not load"
        assert any(u.startswith(site_url) and u.endswith("/_static/mathjax/tex-chtml.js") for u in seen.requests)
        assert not state["untypeset"], f"{name}: formulas MathJax left as TeX: {state['untypeset']}"
        assert state["containers"] >= state["math"]
    raw = RAW_TEX.findall(state["prose"])
    assert not raw, f"{name}: raw TeX in the visible text: {raw[:5]}"
    assert not seen.console_errors, f"{name}: console errors: {seen.console_errors}"
    assert not seen.failed, f"{name}: failed requests: {seen.failed}"
    foreign = [u for u in seen.requests if not (u.startswith(site_url) or u.startswith(LOCAL_SCHEMES))]
    assert not foreign, f"{name}: requests to other hosts: {foreign}"


@pytest.mark.slow
def test_every_built_page_is_checked(built_site):
    built = {p.stem for p in built_site.glob("*.html")}
    assert built == {*PAGES, "index"}, "a page is built but not opened in the browser, or the reverse"


@pytest.mark.slow
def test_index_redirects_to_root_chapter(site_url, page):
    seen = Recorder(page)
    page.goto(site_url, wait_until="load")
    page.wait_for_url(f"**/{PAGES[0]}.html")
    page.wait_for_load_state("networkidle")
    assert not seen.console_errors, seen.console_errors
    assert not [u for u in seen.requests if not (u.startswith(site_url) or u.startswith(LOCAL_SCHEMES))]
