"""The two sides of lintf: the compute side never imports the book side, and a stored result's
key follows the compute side's source only (an edit to a plot or a claim's rule keeps every
stored result; an edit to the training engine invalidates every one)."""
import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lintf
from lintf.compute import store

PACKAGE = Path(lintf.__file__).resolve().parent
ROOT = PACKAGE.parent


def _imports(path: Path, module: str) -> set[str]:
    """Every lintf module ``path`` (the module ``module``) imports, at the top or inside a
    function, resolved to dotted names (``from . import x``: ``pkg.x`` when that is a module)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "lintf"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "lintf":
                continue
            out.add(target)
            for a in node.names:            # `from pkg import module`
                if _path_of(f"{target}.{a.name}") is not None:
                    out.add(f"{target}.{a.name}")
    return out


def _path_of(module: str) -> Path | None:
    if module == "lintf":
        return PACKAGE / "__init__.py"
    rel = Path(*module.split(".")[1:])
    for p in (PACKAGE / rel / "__init__.py", PACKAGE / rel.with_suffix(".py")):
        if p.is_file():
            return p
    return None


def _closure(start: set[str]) -> set[str]:
    """The modules ``start`` reaches through imports, their parent packages included (Python
    runs a package's ``__init__`` before any of its modules)."""
    seen, todo = set(), list(start)
    while todo:
        m = todo.pop()
        if m in seen or _path_of(m) is None:
            continue
        seen.add(m)
        parts = m.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(_imports(_path_of(m), m))
    return seen


COMPUTE = {f"lintf.compute.{p.stem}" for p in (PACKAGE / "compute").glob("*.py") if p.stem != "__init__"}


def test_the_modules_lists_match_the_folders():
    assert COMPUTE == {f"lintf.compute.{m}" for m in lintf.COMPUTE_MODULES}
    book = {p.stem for p in (PACKAGE / "book").glob("*.py") if p.stem != "__init__"}
    assert book == set(lintf.BOOK_MODULES)


def test_import_closure_of_the_compute_side_holds_no_book_module():
    reached = _closure(COMPUTE)
    outside = sorted(m for m in reached if not (m in ("lintf", "lintf.compute") or m.startswith("lintf.compute.")))
    assert outside == [], f"the compute side imports {outside}"
    assert COMPUTE <= reached


def test_the_closure_walker_sees_imports_inside_functions(tmp_path):
    """The reference the test above relies on: an import inside a function counts."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from ..book import plots\n    from .. import plan\n")
    assert _imports(f, "lintf.compute.m") == {"lintf.book", "lintf.book.plots", "lintf", "lintf.plan"}


def test_importing_the_compute_side_loads_no_book_module():
    code = ("import sys, lintf.compute.experiments, lintf.compute.store, lintf.compute.measure; "
            "print(sorted(m for m in sys.modules if m.startswith('lintf.') and not m.startswith('lintf.compute')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _copy(tmp_path) -> Path:
    copy = tmp_path / "lintf"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.mark.parametrize("module", ["book/plots.py", "book/claims.py", "book/registry.py", "plan.py", "__main__.py"])
def test_an_edit_outside_the_compute_side_keeps_every_key(tmp_path, module):
    copy = _copy(tmp_path)
    with open(copy / module, "a") as f:
        f.write("\n# an edit of the book side\n")
    assert store._hash_tree(copy / "compute") == store.compute_hash()
    assert store._hash_tree(copy) != store.source_hash()


@pytest.mark.parametrize("module", ["compute/engine.py", "compute/reductions.py", "compute/checks.py"])
def test_an_edit_of_the_compute_side_changes_every_key(tmp_path, module):
    copy = _copy(tmp_path)
    with open(copy / module, "a") as f:
        f.write("\n# an edit of the compute side\n")
    assert store._hash_tree(copy / "compute") != store.compute_hash()


def _plan_missing(copy_root: Path, results: Path) -> str:
    env = {**os.environ, "LINTF_RESULTS": str(results), "LINTF_PROGRESS": "0", "PYTHONPATH": str(copy_root)}
    env.pop("LINTF_READ_ONLY", None)
    proc = subprocess.run([sys.executable, "-m", "lintf", "plan", "--scale", "ci", "--only", "smoothness",
                           "--no-estimate"], cwd=copy_root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    where = subprocess.run([sys.executable, "-c", "import lintf; print(lintf.__file__)"], cwd=copy_root, env=env,
                           capture_output=True, text=True).stdout
    assert where.startswith(str(copy_root)), where      # the copy runs, not the installed package
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_stored_results_outlive_book_edits_and_not_compute_edits(tmp_path):
    """The issue's own check, end to end on a copy of the package: compute a chapter's plan, then
    a comment appended to the module of ``loss_curves`` and to that of claim 4's rule leaves
    nothing missing; one appended to the module of ``train`` leaves everything missing."""
    results = tmp_path / "store"
    env = {**os.environ, "LINTF_RESULTS": str(results), "LINTF_PROGRESS": "0"}
    env.pop("LINTF_READ_ONLY", None)
    proc = subprocess.run([sys.executable, "-m", "lintf", "compute", "--scale", "ci", "--only", "smoothness"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "copy"
    root.mkdir()
    copy = _copy(root)
    n = _plan_missing(root, results)
    assert n.startswith("missing: 0 of "), n
    total = n.split(" of ")[1]
    for module in (lintf.book.plots.loss_curves.__module__, lintf.book.claims.claim4.__module__):
        with open(copy / (module.split(".", 1)[1].replace(".", "/") + ".py"), "a") as f:
            f.write("\n# a comment\n")
    assert _plan_missing(root, results) == n
    with open(copy / (lintf.train.__module__.split(".", 1)[1].replace(".", "/") + ".py"), "a") as f:
        f.write("\n# a comment\n")
    assert _plan_missing(root, results) == f"missing: {total.split()[0]} of {total}"
