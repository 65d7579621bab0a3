"""The book's configuration and its ci-scale build: every chapter, its figures, no errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"

TITLE = "Linear attention is (maybe) all you need — recomputed"
# Chapter -> fewest <img> its page must show. The intro and the scorecard may be prose and
# tables only; every other chapter exists to show figures.
MIN_FIGURES = {
    "intro": 0,
    "adaptive_vs_sgd": 4,     # Fig 2, the lr grid, Fig 7, Fig 8
    "heavy_tails": 3,         # Fig 3, Figs 9-10, Fig 11
    "conditioning": 3,        # R_med against batch size (diagonal, eigenvalues), per-seed ratios
    "smoothness": 2,          # Fig 5, Fig 16
    "depth": 3,               # Figs 12, 13, 14
    "nonlinear": 1,           # Fig 15
    "ablation": 2,            # loss curves, directional smoothness (beyond the paper)
    "scorecard": 0,
}
CHAPTERS = list(MIN_FIGURES)
BACK_MATTER = ["bibliography"]
"""Pages after the chapters: Markdown, no code."""
GLUE_ROLE = re.compile(r"\{glue(?::text)?\}`([^`]+)`")
"""A ``{glue:text}`key:spec``` role in a chapter's Markdown."""
# Class tokens myst-nb gives a cell output that is not a clean result.
ERROR_CLASSES = {"stderr", "traceback", "error"}


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


class _ArticleParser(HTMLParser):
    """Image sources, class lists and text of one page's article."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.images: list[str] = []
        self.class_lists: list[list[str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        if attrs.get("class"):
            self.class_lists.append(attrs["class"].split())

    def handle_data(self, data):
        self.text.append(data)


def _article(page: Path) -> _ArticleParser:
    """Parse the page's <article class="bd-article">, where the chapter's content lives."""
    html = page.read_text(encoding="utf-8")
    match = re.search(r'<article class="bd-article"[^>]*>(.*?)</article>', html, re.S)
    assert match, f"{page.name}: no <article class='bd-article'> (theme changed?)"
    parser = _ArticleParser()
    parser.feed(match.group(1))
    return parser


# ---------------------------------------------------------------- configuration (fast)


def test_book_dir_uses_the_root_config_and_toc():
    for name in ("_config.yml", "_toc.yml"):
        link = BOOK / name
        assert link.is_symlink(), f"book/{name} should be a symlink to the root {name}"
        # Relative, so that it survives a clone to another path.
        assert os.readlink(link) == f"../{name}"
        assert link.resolve() == (ROOT / name).resolve()


def test_toc_lists_the_chapters_in_order():
    toc = _load(ROOT / "_toc.yml")
    assert toc["format"] == "jb-book"
    assert [toc["root"]] + [c["file"] for c in toc["chapters"]] == CHAPTERS + BACK_MATTER
    for chapter in CHAPTERS:
        assert (BOOK / f"{chapter}.ipynb").is_file(), chapter
    for page in BACK_MATTER:
        assert (BOOK / f"{page}.md").is_file(), page


def test_config_builds_offline_and_executes_every_chapter():
    from jupyter_book.config import get_final_config

    raw = _load(ROOT / "_config.yml")
    assert raw["title"] == TITLE
    assert "repository" not in raw, "a repository URL adds links that need the network"
    # What Sphinx receives when `jupyter-book build book/` reads book/_config.yml.
    config, _ = get_final_config(
        user_yaml=BOOK / "_config.yml",
        cli_config={"latex_individualpages": False},  # what `build` passes for html
        sourcedir=BOOK,
        raise_on_invalid=True,
    )
    assert config["html_title"] == TITLE
    assert config["nb_execution_mode"] == "force"
    assert config["nb_execution_timeout"] >= 3600
    assert config["nb_execution_allow_errors"] is False
    assert "sphinx-mathjax-offline" in config["extensions"]
    assert "sphinx_thebe" not in config["extensions"]
    assert config["html_context"]["default_mode"] == "light"
    assert (BOOK / config["html_favicon"]).is_file()
    launch = config["html_theme_options"]["launch_buttons"]
    assert not any(launch.get(k) for k in ("binderhub_url", "jupyterhub_url", "colab_url", "deepnote_url", "thebe"))


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_has_parameters_cell_and_no_outputs(chapter):
    nb = nbformat.read(BOOK / f"{chapter}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert any("parameters" in c.metadata.get("tags", []) for c in code), f"{chapter}: no `parameters` cell"
    assert not any(c.outputs for c in code), f"{chapter}: committed with outputs"


# ---------------------------------------------------------------- the built site (slow)


@pytest.mark.slow
def test_site_uses_root_title_and_toc_order(built_site):
    intro = (built_site / "intro.html").read_text(encoding="utf-8")
    assert f"<title>{TITLE}" in intro.replace("&#8212;", "—")
    nav = re.search(r'<nav class="bd-links[^"]*"[^>]*>(.*?)</nav>', intro, re.S)
    assert nav, "no sidebar navigation in intro.html"
    linked = re.findall(r'<li class="toctree-l1"><a class="reference internal" href="([^"#]+)\.html"', nav.group(1))
    assert linked == CHAPTERS[1:] + BACK_MATTER
    assert "intro.html" in (built_site / "index.html").read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_page_has_figures_and_no_errors(built_site, chapter):
    page = built_site / f"{chapter}.html"
    assert page.is_file(), f"{page} was not built"
    article = _article(page)
    assert len(article.images) >= MIN_FIGURES[chapter], f"{chapter}: {len(article.images)} <img>"
    for src in article.images:
        assert (page.parent / src).is_file(), f"{chapter}: <img src={src!r}> points to no file"
    bad = [c for c in article.class_lists if ERROR_CLASSES & set(c) and ("output" in c or "traceback" in c)]
    assert not bad, f"{chapter}: error or stderr output cells: {bad}"
    assert "Traceback" not in "".join(article.text), f"{chapter}: a traceback is shown"


@pytest.mark.slow
def test_site_root_has_a_favicon(built_site):
    """index.html (the redirect) has no icon link, so browsers ask for /favicon.ico."""
    assert (built_site / "favicon.ico").read_bytes()[:4] == b"\x00\x00\x01\x00"


@pytest.mark.slow
def test_mathjax_is_served_from_the_site(built_site):
    assert (built_site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    pages = sorted(built_site.glob("*.html"))
    with_math = [p for p in pages if 'class="math' in p.read_text(encoding="utf-8")]
    assert with_math, "no page has math: the intro's formula should be one"
    for page in pages:
        html = page.read_text(encoding="utf-8")
        external = re.findall(r'<(?:script|link|img)\b[^>]*(?:src|href)="((?:https?:)?//[^"]+)"', html)
        assert not external, f"{page.name} loads from another host: {external}"
        if page in with_math:
            assert '<script defer="defer" src="_static/mathjax/tex-chtml.js"></script>' in html, page.name


@pytest.mark.slow
def test_failing_chapter_fails_the_build(tmp_path, book_build_command):
    """-W turns a chapter's exception into a failed build; the other chapters still run."""
    book = tmp_path / "book"
    book.mkdir()
    shutil.copy(ROOT / "_config.yml", book / "_config.yml")
    shutil.copy(BOOK / "references.bib", book / "references.bib")
    shutil.copytree(BOOK / "_static", book / "_static")
    shutil.copytree(BOOK / "_ext", book / "_ext")
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: broken\n")
    shutil.copy(BOOK / "intro.ipynb", book / "intro.ipynb")
    broken = nbformat.v4.new_notebook()
    broken.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    broken.cells = [
        nbformat.v4.new_markdown_cell("# Broken"),
        nbformat.v4.new_code_cell("raise RuntimeError('deliberately broken chapter')"),
    ]
    nbformat.write(broken, book / "broken.ipynb")
    proc = subprocess.run(
        book_build_command,
        cwd=tmp_path,
        env={**os.environ, "LINTF_SCALE": "ci", "LINTF_BUILD_WORKERS": "0"},   # no plan: the chapters compute
        capture_output=True,
        text=True,
        check=False,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log
    assert "deliberately broken chapter" in log
    assert "computing what the store lacks" not in log
    assert (book / "_build" / "html" / "reports" / "broken.err.log").is_file()
    assert "intro.ipynb: Executed notebook" in log
    assert "without encryption" not in log                                  # the kernels' transport is encrypted


KERNEL_RUN = """
import importlib.util, sys
import nbformat
from nbclient import NotebookClient
if sys.argv[1] == "extension":
    spec = importlib.util.spec_from_file_location("lintf_book", sys.argv[2])
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    assert ext.encrypt_kernels()
nb = nbformat.v4.new_notebook()
nb.cells.append(nbformat.v4.new_code_cell("print(6 * 7)"))
NotebookClient(nb, timeout=120, kernel_name="python3").execute()
print(nb.cells[0].outputs[0]["text"].strip())
"""


def test_kernels_of_the_build_log_no_encryption_warning():
    """A kernel started after the book's extension loaded runs over CurveZMQ: ipykernel's "Kernel is
    running over TCP without encryption", which a build logs once per chapter otherwise, is gone."""
    zmq = pytest.importorskip("zmq")
    manager = pytest.importorskip("jupyter_client.manager")
    if "transport_encryption" not in manager.KernelManager.class_traits() or not zmq.has("curve"):
        pytest.skip("this jupyter_client or pyzmq has no CurveZMQ transport encryption")
    logs = {}
    for how in ("plain", "extension"):
        proc = subprocess.run([sys.executable, "-c", KERNEL_RUN, how, str(BOOK / "_ext" / "lintf_book.py")],
                              capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0 and proc.stdout.strip().endswith("42"), proc.stderr[-2000:]
        logs[how] = proc.stdout + proc.stderr
    assert "without encryption" in logs["plain"]          # the warning this test is about, without the extension
    assert "without encryption" not in logs["extension"]


@pytest.mark.slow
def test_scorecard_is_executed_last(built_site):
    """The scorecard only reads what the other chapters stored, so the build runs it last
    (book/_ext/lintf_book.py reorders Sphinx's alphabetical reading)."""
    from conftest import _BUILD_REPORT
    order = [name for name, _ in _BUILD_REPORT["chapters"]]
    assert order[-1] == "scorecard" and sorted(order) == sorted(CHAPTERS), order


def _glue_refs(chapter: str) -> list[str]:
    """The glue keys a chapter's prose pastes, once per occurrence (the format spec dropped)."""
    nb = nbformat.read(BOOK / f"{chapter}.ipynb", as_version=4)
    return [ref.rsplit(":", 1)[0] if ":" in ref else ref
            for c in nb.cells if c.cell_type == "markdown" for ref in GLUE_ROLE.findall(c.source)]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_prose_glues_its_numbers(chapter):
    assert _glue_refs(chapter), f"{chapter}: no number of its prose is glued (lintf.chapter.glue, {{glue:text}})"


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_glued_key_is_present_and_pasted(built_site, chapter):
    refs = _glue_refs(chapter)
    glued = json.loads((built_site.parent / "jupyter_execute" / f"{chapter}.glue.json").read_text(encoding="utf-8"))
    assert set(refs) <= set(glued), f"{chapter}: prose pastes keys no cell glued: {sorted(set(refs) - set(glued))}"
    article = _article(built_site / f"{chapter}.html")
    pasted = sum("pasted-text" in classes for classes in article.class_lists)
    assert pasted == len(refs), f"{chapter}: {pasted} pasted values for {len(refs)} glue roles"
    assert "{glue" not in "".join(article.text), f"{chapter}: a glue role was left unrendered"


@pytest.mark.slow
def test_scorecard_read_every_chapters_results(built_site):
    glued = json.loads((built_site.parent / "jupyter_execute" / "scorecard.glue.json").read_text(encoding="utf-8"))
    counts = {k: glued[k]["data"]["text/plain"] for k in ("n_not_computed", "a_not_computed")}
    assert counts == {"n_not_computed": "0", "a_not_computed": "0"}, f"the scorecard found results missing: {counts}"


CITE_ROLE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_cites_references_of_the_bibliography(chapter):
    keys = set(re.findall(r"^@\w+\{([^,]+),", (BOOK / "references.bib").read_text(encoding="utf-8"), re.M))
    nb = nbformat.read(BOOK / f"{chapter}.ipynb", as_version=4)
    cited = {k.strip() for c in nb.cells if c.cell_type == "markdown" for ref in CITE_ROLE.findall(c.source)
             for k in ref.split(",")}
    assert cited, f"{chapter}: cites nothing"
    assert cited <= keys, f"{chapter}: cites keys not in references.bib: {sorted(cited - keys)}"


def _paragraphs(page: Path) -> list[str]:
    """The text of every <p> of a page's article, tags stripped, white space folded."""
    html = re.search(r'<article class="bd-article"[^>]*>(.*?)</article>', page.read_text(encoding="utf-8"), re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", p).split()) for p in re.findall(r"<p>(.*?)</p>", html.group(1), re.S)]


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_figure_caption_ends_with_its_provenance(built_site, chapter):
    """A figure's caption (lintf.book.chapter.caption: settings, scale, seeds, parametrization)
    ends with where its numbers come from: 'Computed at scale ... by lintf.compute.experiments...'."""
    captions = [p for p in _paragraphs(built_site / f"{chapter}.html")
                if "Settings:" in p and "parametrization" in p or p.startswith("The scorecard at a glance")]
    if MIN_FIGURES[chapter]:
        assert captions, f"{chapter}: no figure caption found"
    for text in captions:
        assert re.search(r"Computed at scale \w+ on .+ by lintf\.compute\.experiments\.\w+", text), \
            f"{chapter}: a caption lacks its provenance line: {text[:160]}"


@pytest.mark.slow
def test_captions_name_the_seeds_their_runs_trained(built_site):
    """The depth chapter's float32/float64 figures train the first PAIR_SEEDS seeds, SGDM and Adam:
    their captions say so (they once said the chapter's seeds and Adam only)."""
    import lintf.compute.experiments as E
    from lintf.compute.settings import get_scale, get_setting
    want = list(get_scale("ci").seeds_for(get_setting("depth8"))[:E.PAIR_SEEDS])
    captions = [p for p in _paragraphs(built_site / "depth.html") if "float64 (solid) and float32" in p]
    assert len(captions) == 2
    for text in captions:
        assert f"seeds {want}" in text and "SGDM and Adam" in text, text[:300]
