"""What a newcomer meets: the README's commands run as written, papermill reads every
parameters cell, an unknown parameter stops a chapter, setup code is folded and no line is
cut, the library's pieces fit (train -> plot, stored run -> Hessian -> R_med, short reprs),
and the README's findings are the scorecard's."""
from __future__ import annotations

import ast
import json
import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import lintf
from lintf import chapter

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
README = ROOT / "README.md"
CHAPTERS = sorted(p.stem for p in BOOK.glob("*.ipynb"))
MAX_LINE = 100
# Printed by jupyter_client when a kernel runs over TCP: the environment's, not the chapter's.
ENVIRONMENT_WARNINGS = ("Kernel is running over TCP without encryption",)


def _cells(name: str) -> list[dict]:
    return [c for c in json.loads((BOOK / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]
            if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _assigned(source: str) -> list[str]:
    """Names a parameters cell assigns, in order (Python's own parser)."""
    return [t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)]


# ---------------------------------------------------------------- parameters cells


@pytest.mark.parametrize("name", CHAPTERS)
def test_help_notebook_lists_exactly_the_parameters_cell(name, caplog):
    from click.testing import CliRunner
    from papermill.cli import papermill as cli

    declared = _assigned(_source(_cells(name)[0]))
    with caplog.at_level(logging.WARNING):
        out = CliRunner().invoke(cli, ["--help-notebook", str(BOOK / f"{name}.ipynb")])
    assert out.exit_code == 0, out.output
    listed = re.findall(r"^  (\w+): ", out.output, flags=re.M)
    assert listed == declared, (listed, declared)
    assert "Unable to parse" not in caplog.text + out.output
    assert chapter.declared_parameters(name) == declared


@pytest.mark.parametrize("name", CHAPTERS)
def test_setup_cells_are_folded_and_check_their_parameters(name):
    params, setup = _cells(name)[:2]
    assert "parameters" in params["metadata"]["tags"]
    tags = setup["metadata"].get("tags", [])
    assert {"hide-input", "remove-input"} & set(tags), (name, tags)
    assert f'chapter="{name}", namespace=globals()' in _source(setup)
    for cell in (params, setup):
        long = [ln for ln in _source(cell).splitlines() if len(ln) > MAX_LINE]
        assert not long, (name, long)


def test_code_lines_wrap_on_the_page():
    css = (BOOK / "_static" / "lintf.css").read_text()
    assert "white-space: pre-wrap" in css and "div.cell div.cell_input pre" in css
    assert "div.cell div.cell_output table" in css and "overflow-x: auto" in css   # wide tables scroll
    assert "font-size: 0.875em" in css      # at the code's size, tables a word too wide fit (no cut header)


def test_an_unknown_name_stops_the_chapter_and_names_its_parameters():
    ns = {"scale": "ci", "lr": "paper", "In": [], "Out": {}, "_": 3, "os": os, "f": len, "p": object()}
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['lr'\] for chapter 'adaptive_vs_sgd'.*'lrs'"):
        chapter.check_injected("adaptive_vs_sgd", ns)
    chapter.check_injected("adaptive_vs_sgd", {**ns, "lr": None, "lrs": "paper"} | {"lr": object()})
    # names the chapter assigns itself (re-running the setup cell by hand) are no error
    chapter.check_injected("intro", {"scale": None, "claims": [], "rows": [], "show": chapter.show})
    with pytest.raises(TypeError, match="namespace"):
        chapter.check_injected("intro", None)
    with pytest.raises(ValueError, match="chapter"):
        chapter.check_injected("../intro", {})


def test_a_papermill_run_with_an_unknown_parameter_fails(tmp_path):
    out = subprocess.run([sys.executable, "-m", "papermill", "book/intro.ipynb", str(tmp_path / "out.ipynb"),
                          "--cwd", "book", "-p", "scale", "ci", "-p", "lr", "paper"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    log = out.stdout + out.stderr
    assert "unknown parameter(s) ['lr'] for chapter 'intro'" in log
    # the report names the setup cell, In [3], as the README says, and ends with the error's one line
    assert 'Exception encountered at "In [3]":' in log and "`In [3]`" in README.read_text()
    assert log.strip().splitlines()[-1].startswith("ValueError: unknown parameter(s) ['lr']"), log[-2000:]
    errors = [o for c in json.loads((tmp_path / "out.ipynb").read_text())["cells"] for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert len(errors) == 1 and errors[0]["ename"] == "ValueError"
    assert errors[0]["traceback"] == [f"ValueError: {errors[0]['evalue']}"]   # one line, no frames of lintf


def test_a_bad_parameter_shows_as_one_line():
    """What IPython shows of a bad parameter: the error's one line (``_render_traceback_``); its
    type and message are unchanged for Python."""
    for bad, kind in ((dict(scale="huge"), ValueError), (dict(seeds=[-1]), ValueError),
                      (dict(settings=3), TypeError), (dict(device="tpu"), ValueError)):
        with pytest.raises(kind) as info:
            chapter.parameters(**{"scale": "ci", "device": "cpu", **bad})
        assert info.value._render_traceback_() == [f"{kind.__name__}: {info.value}"], bad


def test_ci_pages_say_they_are_a_smoke_test(monkeypatch):
    import IPython.display
    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    chapter.banner(chapter.parameters(scale="cpu", device="cpu"))
    assert shown == []
    chapter.banner(chapter.parameters(scale="ci", device="cpu"))
    assert "Smoke test" in shown[0].data and "`ci`" in shown[0].data


def test_a_wrong_lintf_scale_names_the_variable(monkeypatch):
    from lintf.compute.settings import default_scale
    monkeypatch.setenv("LINTF_SCALE", "gpu")
    with pytest.raises(ValueError, match=r"LINTF_SCALE must be one of 'paper', 'cpu', 'ci'.*'gpu'"):
        default_scale()
    monkeypatch.setenv("LINTF_SCALE", "ci")
    assert default_scale() == "ci"


def test_seeds_as_a_string_says_how_to_pass_a_list():
    from lintf.compute.checks import check_seeds
    with pytest.raises(TypeError, match=r'-y "seeds: \[0, 1'):
        check_seeds("seeds", "[0, 1, 2]")


# ---------------------------------------------------------------- progress bars


def test_progress_bars_only_on_a_terminal_unless_asked(monkeypatch):
    from lintf import progress

    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.delenv("LINTF_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "stderr", Stream(False))
    assert not progress.enabled()                       # a Jupyter kernel, papermill, a pipe
    assert progress.enabled(True) and not progress.enabled(False)
    monkeypatch.setattr(sys, "stderr", Stream(True))
    assert progress.enabled()                           # python -m lintf, a Python prompt
    monkeypatch.setenv("LINTF_PROGRESS", "0")
    assert not progress.enabled()
    monkeypatch.setenv("LINTF_PROGRESS", "1")
    monkeypatch.setattr(sys, "stderr", Stream(False))
    assert progress.enabled()


# ---------------------------------------------------------------- the library's pieces


@pytest.fixture(scope="module")
def small_run():
    model = lintf.Model(L=2, d=3, parametrization="block")
    return model, lintf.train(model, lintf.Prompts(6, 3), [("sgdm", 0.02), ("adam", 0.02)], seeds=[0, 1, 2],
                              steps=20, batch_size=50, eval_every=5, checkpoint_every=10, progress=False)


def test_plots_draw_train_history_directly(small_run):
    import matplotlib.pyplot as plt

    import lintf.book.plots
    _, res = small_run
    assert "setting" not in res.history.columns
    ax = lintf.plots.loss_curves(res.history)
    assert [ln.get_label() for ln in ax.get_lines()][:2] == ["SGDM", "Adam"]
    plt.close("all")


def test_reprs_are_short(small_run):
    _, res = small_run
    text = repr(res)
    assert len(text) < 300 and "tensor" not in text and "6 runs" in text and "[0, 10, 20]" in text, text
    t = lintf.stats.test([0.4, 0.9, 0.2, 0.7, 0.5, 1.1])
    assert "low=0.35," in repr(t) and "0.3499999" not in repr(t), repr(t)
    assert len(repr(t)) < 200


def test_a_run_is_found_by_optimizer_seed_and_rate(small_run):
    import torch

    from lintf import measure
    model, res = small_run
    i = res.run_index("adam", 1)
    assert tuple(res.runs.iloc[i][["optimizer", "seed"]]) == ("adam", 1)
    one = res.run_params(20, "adam", 1)
    assert all(torch.equal(one[k], v[i]) for k, v in res.params_at(20).items())
    with pytest.raises(ValueError, match=r"no run.*\('sgdm', 0.02, 0\)"):
        res.run_index("adam", 7)
    Z, y = lintf.sample_prompts(64, n=6, d=3)
    H = measure.hessian(model, res.params_at(20), Z, y)
    table = res.per_run(measure.robust_condition(H, "diag"), "R_med")
    plain = measure.robust_condition(measure.hessian(model, one, Z, y), "diag")   # one run alone
    assert torch.isclose(torch.as_tensor(table.loc[i, "R_med"], dtype=torch.float64), plain)
    with pytest.raises(ValueError, match="one value per run"):
        res.per_run([1.0, 2.0])


def _readme_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.slow
def test_readme_python_block_runs_at_ci(tmp_path):
    """The README's usage example (its Python block that starts with ``import lintf``), at scale
    ci and 20 steps instead of cpu and 500."""
    (code,) = [b for b in _readme_blocks("python") if b.startswith("import lintf")]
    small = code.replace('"cpu"', '"ci"').replace("steps=500", "steps=20")
    assert small != code
    env = {**os.environ, "MPLBACKEND": "Agg", "LINTF_PROGRESS": "0"}
    out = subprocess.run([sys.executable, "-c", small], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "TrainResult(6 runs" in out.stdout and "R_med" in out.stdout


# ---------------------------------------------------------------- the README's commands


def _rerun_lines() -> list[str]:
    return [ln.split("#")[0].strip() for block in _readme_blocks("bash") for ln in block.splitlines()
            if ln.startswith("papermill ")]


def test_readme_rerun_lines_name_every_chapter_and_real_parameters():
    lines = _rerun_lines()
    assert sorted(shlex.split(ln)[1] for ln in lines) == [f"book/{c}.ipynb" for c in CHAPTERS]
    for ln in lines:
        args = shlex.split(ln)
        name = Path(args[1]).stem
        given = [args[i + 1] for i, a in enumerate(args) if a in ("-p", "-r")]
        given += [args[i + 1].split(":")[0] for i, a in enumerate(args) if a == "-y"]
        assert set(given) <= set(chapter.declared_parameters(name)), (ln, given)
    assert '-p seeds "' not in README.read_text()                       # -p passes a string


def _at_ci(line: str, out: Path) -> list[str]:
    import torch
    args = shlex.split(line)
    args[2] = str(out)
    for i, a in enumerate(args[:-1]):
        if a == "-p" and args[i + 1] == "scale":
            args[i + 2] = "ci"
        if a == "-p" and args[i + 1] == "device" and not torch.cuda.is_available():
            args[i + 2] = "cpu"
    if "scale" not in args:
        args += ["-p", "scale", "ci"]
    return [sys.executable, "-m", *args]


@pytest.mark.slow
def test_readme_rerun_lines_run_at_ci_without_a_warning(tmp_path):
    """Every papermill line of the README, as written but at scale ci (and on the CPU without
    CUDA), in order (the scorecard last: it reads what the others stored)."""
    for i, line in enumerate(_rerun_lines()):
        cmd = _at_ci(line, tmp_path / f"out{i}.ipynb")
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
        log = out.stdout + out.stderr
        assert out.returncode == 0, (line, log[-3000:])
        warned = [ln for ln in log.splitlines() if re.search(r"warn", ln, flags=re.I)
                  and not any(w in ln for w in ENVIRONMENT_WARNINGS)]
        assert not warned, (line, warned)
        nb = json.loads((tmp_path / f"out{i}.ipynb").read_text())
        bars = [o for c in nb["cells"] for o in c.get("outputs", [])
                if o.get("name") == "stderr" and "%|" in "".join(o.get("text", ""))]
        assert not bars, (line, "progress-bar fragments in the output notebook")


# ---------------------------------------------------------------- the README's findings


def _scales_rows() -> dict:
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| T=(\d+), B=(\d+) \| (\d+) \|$", README.read_text(), flags=re.M)
    return {name: (int(t), int(b), int(n)) for name, t, b, n in rows}


def test_readme_scales_and_smoothness_spacing_are_the_code_s():
    rows = _scales_rows()
    assert set(rows) == set(lintf.SCALES)
    for name, (steps, batch, seeds) in rows.items():
        sc = lintf.SCALES[name]
        assert (steps, batch, seeds) == (sc.steps, sc.batch_size, len(sc.seeds)), name
    for doc in (README, ROOT / "DEVELOPMENT.md"):
        for n in re.findall(r"`cpu` scale measures it every (\d+)\w* step", doc.read_text()):
            assert int(n) == lintf.SCALES["cpu"].smoothness_every, doc


def _findings() -> tuple[str, dict]:
    """The README's findings table: its scale, and per claim (statement, chapter, the verdict
    under the paper's protocol, the alternatives' counts, robust or fragile)."""
    text = README.read_text(encoding="utf-8")
    scale = re.search(r"\| claim \| the paper says \| decided in \| verdict at scale `(\w+)`, the paper's "
                      r"protocol \| alternatives \| carries \|", text).group(1)
    rows = re.findall(r"^\| (\d+) \| (.+?) \| (.+?) \| (.+?) \| (.+?) \| (.+?) \|$", text, flags=re.M)
    return scale, {int(k): tuple(rest) for k, *rest in rows}


def test_readme_findings_list_every_claim():
    import lintf.book
    import lintf.book.claims
    scale, rows = _findings()
    assert scale in lintf.SCALES and scale != "ci"
    assert sorted(rows) == sorted(lintf.claims.CLAIMS)
    for k, statement in lintf.claims.CLAIMS.items():
        assert rows[k][0] == statement
        assert rows[k][1] == lintf.book.CHAPTER_TITLES[lintf.book.CLAIM_CHAPTER[k]]
        assert rows[k][2] in ("—", *lintf.stats.VERDICTS)
        assert rows[k][3] == "—" or rows[k][3].startswith("of ")
        assert rows[k][4] in ("—", "robust", "fragile")


def _glued(chapter: str) -> dict:
    """The values a built chapter glued (myst-nb writes them to ``<chapter>.glue.json`` beside
    the executed notebook), as plain text."""
    path = BOOK / "_build" / "jupyter_execute" / f"{chapter}.glue.json"
    if not path.is_file():
        return {}
    glued = json.loads(path.read_text(encoding="utf-8"))
    return {k: str(v.get("data", {}).get("text/plain", "")).strip("'\"") for k, v in glued.items()}


def test_readme_findings_match_the_scorecard():
    """When a build of the README's stated scale is in book/_build, its scorecard's verdicts
    are the README's (the failure prints the rows to paste)."""
    import lintf.book.claims
    glued = _glued("scorecard")
    if not glued:
        pytest.skip("no built scorecard in book/_build")
    scale, rows = _findings()
    if glued.get("scale") != scale:
        pytest.skip(f"the built scorecard is of scale {glued.get('scale')!r}, the README states {scale!r}")
    want = {k: tuple(glued.get(f"claim{k}{suffix}", "not computed") for suffix in ("", "_alternatives", "_carries"))
            for k in lintf.claims.CLAIMS}
    have = {k: rows[k][2:] for k in rows}
    paste = "\n".join(f"| {k} | {rows[k][0]} | {rows[k][1]} | {' | '.join(want[k])} |" for k in sorted(rows))
    assert have == want, f"README.md's findings differ from the built scorecard; its rows:\n{paste}"


def test_lr_grid_axis_ignores_blown_up_losses():
    import matplotlib.pyplot as plt
    import pandas as pd

    import lintf.book.plots
    rows = [("setting1", o, lr, seed, loss, False) for o in ("sgdm", "adam") for lr, loss in
            [(0.01, 0.5), (0.02, 0.3), (0.04, 0.2), (0.08, 1e12)] for seed in (0, 1)]
    rows.append(("setting1", "adam", 0.16, 0, 1e30, True))
    ax = lintf.plots.lr_grid(pd.DataFrame(rows, columns=["setting", "optimizer", "lr", "seed", "final_loss",
                                                         "diverged"]))
    low, high = ax.get_ylim()
    assert low < 0.2 and high < 0.2 * 10 ** (lintf.plots.MAX_DECADES + 1)
    assert any("off the axis" in t.get_text() for t in ax.get_legend().get_texts())
    plt.close("all")


def test_forest_says_why_a_part_has_no_bar_and_keeps_its_legend_off_the_rows():
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    import lintf.book.plots
    parts = pd.DataFrame([
        {"claim": 6, "part": "depth6", "statistic": 0.3, "low": -np.inf, "high": np.inf, "threshold": 0.0,
         "side": "greater", "verdict": "inconclusive", "n": 1},
        {"claim": 8, "part": "softmax", "statistic": 1.0, "low": 0.5, "high": 1.5, "threshold": 0.0,
         "side": "greater", "verdict": "holds", "n": 6}])
    ax = lintf.plots.forest(parts)
    bars = [ln for ln in ax.get_lines() if ln.get_linewidth() == 2.2]
    assert len(bars) == 1                                                  # only the bounded part
    assert any("too few seeds" in t.get_text() and "(1 seed)" in t.get_text() for t in ax.texts)
    anchor = ax.get_legend().get_bbox_to_anchor().transformed(ax.transAxes.inverted())
    assert anchor.y0 >= 1.0 - 1e-9                                         # above the axes
    plt.close("all")


def test_tables_and_prose_write_a_number_alike():
    from myst_nb.core.variables import format_plain_text
    for v in (1028.0, 0.0408, 1.5321, 0.35):
        assert chapter.number(v) == format_plain_text(repr(v), ".4g")      # the prose's {glue:text}`k:.4g`
    assert chapter.number(1028.0, digits=3) == "1028" and chapter.number(float("nan")) == "—"


def test_tail_table_shows_one_row_for_one_setting_under_two_names(monkeypatch):
    import pandas as pd

    import lintf.book
    import lintf.book.summaries
    fake = pd.DataFrame({"setting": ["gamma", "setting1", "setting3"], "n_seeds": 6, "kurtosis": [1.0, 0.1, 1.0],
                         "kurtosis_excess": [0.9, 0.0, 0.8]})
    monkeypatch.setattr(lintf.summaries, "noise_tail_table", lambda noise, spectrum=None: fake)
    table = lintf.book.tail_table(None)
    assert len(table) == 2 and "excess over the null" in table and "kurtosis excess" not in table
    both = [t for t in table["title"] if "gamma" in t]
    assert both == [f"{lintf.get_setting('setting3').title}; also {lintf.get_setting('gamma').title}"]


# ---------------------------------------------------------------- the prose of the pages


def _markdown(name: str) -> list[str]:
    return ["".join(c["source"]) for c in json.loads((BOOK / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]
            if c["cell_type"] == "markdown"]


def _ordered_lists(text: str) -> list[list[int]]:
    """The numbers of each ordered list of a Markdown text, as written: a list runs over its
    items, their indented continuation lines and blank lines, until a line at column 0 that is
    not an item (CommonMark numbers the items from the first one's number on)."""
    lists, current, fence = [], None, False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        if fence:
            continue
        item = re.match(r"^(\d{1,9})[.)](\s|$)", line)
        if item:
            if current is None:
                current = []
                lists.append(current)
            current.append(int(item[1]))
        elif line.strip() and not line.startswith((" ", "\t")):
            current = None
    return lists


def test_ordered_list_parser_sees_a_renumbered_list():
    assert _ordered_lists("Claims:\n\n2. one\n   more\n7. two\n\nText\n1. a\n") == [[2, 7], [1]]


@pytest.mark.parametrize("name", CHAPTERS)
def test_no_markdown_list_number_is_renumbered_on_the_page(name):
    """Markdown renumbers an ordered list from its first item, so "2. ... 7." shows "2. 3.":
    a list that names claims by number must not be an ordered list."""
    for text in _markdown(name):
        for numbers in _ordered_lists(text):
            assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), (name, numbers, text[:200])


@pytest.mark.parametrize("name", CHAPTERS)
def test_a_verdict_is_stated_once_by_its_badge(name):
    """The badge of ``C.show_verdict`` states the verdict, its deciding part and what was shown;
    the prose after it gives the numbers, not the same sentences again."""
    for text in _markdown(name):
        assert not re.search(r"\{glue:text\}`\w+_(headline|sentence)\b", text), (name, text[:200])
        assert "The verdict is **" not in text, (name, text[:200])


@pytest.mark.parametrize("name", CHAPTERS)
def test_the_rule_s_and_the_scale_s_numbers_are_glued_not_written(name):
    """The fewest seeds the rule decides on and the evaluation batches' size come from the code
    (:func:`lintf.stats.min_seeds`, ``Scale.eval_size``): written by hand, they are wrong at
    another level or scale."""
    for text in _markdown(name):
        flat = " ".join(text.split())
        assert not re.search(r"(fewer than|at least) \d+ (seeds|initialisations)", flat), (name, flat[:200])
        assert not re.search(r"batches of \d+ prompts|batches of 1000\b", flat), (name, flat[:200])


@pytest.mark.parametrize("number", [2, 6, 7, 8])
def test_parts_that_can_be_untested_are_glued_as_text(number):
    """A part of claims 2, 6, 7, 8 can be untested (a variant or depth not run, a run diverged):
    its statistic glued with a format prints "nan"; its ``_text`` key says "untested: why"."""
    from lintf.book.registry import REGISTRY
    claim = REGISTRY[number]
    ids = {i for scale in ("ci", "cpu", "paper") for i in claim.ids(scale)}
    used = 0
    for name in CHAPTERS:
        for text in _markdown(name):
            for k in re.findall(r"\{glue:text\}`(" + claim.key + r"_\w+?)(?::[^`]*)?`", text):
                part = next((i for i in ids if k == f"{claim.key}_{i}" or k.startswith(f"{claim.key}_{i}_")), None)
                if part is not None:
                    used += 1
                    assert k == f"{claim.key}_{part}_text", (name, k)
    assert used, f"no chapter states claim {number}'s parts"


def test_scorecard_rows_read_as_words_with_chapter_titles():
    import math

    import pandas as pd

    import lintf.book as B
    from lintf.book.claims import CLAIMS, Verdict
    parts = pd.DataFrame({"part": ["setting1", "setting2", "setting3"], "id": ["setting1", "setting2", "setting3"],
                          "statistic": [0.5, 0.4, math.nan], "low": [0.1, 0.1, math.nan],
                          "high": [math.inf, math.inf, math.nan], "n": [6, 5, 1],
                          "verdict": ["holds", "holds", "untested"], "extra": ["", "", "1 seed(s)"]})
    v = Verdict(1, CLAIMS[1], "inconclusive", 0.4, (0.1, math.inf), "line", {"parts": parts})
    row = B.card({1: v}, {1: CLAIMS[1]}, B.CLAIM_CHAPTER, scale="ci").iloc[0]
    assert row["parts, seeds"] == "3 parts, 5 to 6 seeds"
    assert B._parts_seeds(3, [6, 6, 6]) == "3 parts, 6 seeds each" and B._parts_seeds(1, []) == "1 part, none tested"
    assert row["could come out each way"].startswith("yes (")
    for text in (row["parts, seeds"], row["could come out each way"]):
        assert "(s)" not in text and "^" not in text and "<=" not in text
    html = B.styled_card({1: v}, {1: CLAIMS[1]}, B.CLAIM_CHAPTER, scale="ci").to_html()
    chapter_name = B.CLAIM_CHAPTER[1]
    assert f'<a href="{chapter_name}.html">{B.CHAPTER_TITLES[chapter_name]}</a>' in html
    missing = B.card({}, {1: CLAIMS[1]}, B.CLAIM_CHAPTER, scale="ci").iloc[0]
    assert missing["parts, seeds"] == f"build {B.CHAPTER_TITLES[chapter_name]} first"
    gone = B.evidence_html({}, [{"claim": 1, "reason": "not stored", "chapter": chapter_name}])
    assert B.CHAPTER_TITLES[chapter_name] in gone and f"chapter {chapter_name})" not in gone


def test_readme_share_of_the_paper_is_the_code_s():
    import lintf.plan
    rows = re.findall(r"^\| (.+?) \| (\d+) x (\d+) \| (\d+) x (\d+)(?: \(left to `paper`\))? \| ([\d.]+)% \|$",
                      README.read_text(), flags=re.M)
    cpu, paper = lintf.plan.paper_share("cpu"), lintf.plan.paper_share("paper")
    assert [r[0] for r in rows] == list(cpu.experiment)
    for (label, pit, pseeds, cit, cseeds, share), c, p in zip(rows, cpu.itertuples(), paper.itertuples()):
        assert (int(pit), int(pseeds), int(cit), int(cseeds)) == (p.iterations, p.seeds, c.iterations, c.seeds), label
        assert share == f"{100 * c.share:.3g}", label


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_code_cell_but_the_parameters_is_folded(name):
    """The pages show figures, tables and prose; the code that draws them (``C.figure(...)``,
    ``C.glue(...)``) is folded behind "Show code", and only the parameters cell, the page's
    interface, is open."""
    for cell in _cells(name):
        tags = set(cell["metadata"].get("tags", []))
        assert "parameters" in tags or tags & {"hide-input", "remove-input", "hide-cell", "remove-cell"}, \
            (name, _source(cell)[:80])
