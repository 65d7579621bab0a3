"""Session fixtures: the book built once at ci scale, and a local server for it.

`built_site` first computes the plan of the ci scale (`python -m lintf compute --scale ci
--workers 2`) into an empty results store, then runs the same command a reader types
(`jupyter-book build book/ -W -n --keep-going`) with LINTF_SCALE=ci and LINTF_READ_ONLY=1, from
an empty `book/_build`, once per pytest session: a chapter that reads an experiment the plan
does not hold fails the build, so plan and book cannot drift. Tests that use it are slow: mark
them `@pytest.mark.slow`.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
BUILD = BOOK / "_build"
HTML = BUILD / "html"
BUILD_COMMAND = ["jupyter-book", "build", "book/", "-W", "-n", "--keep-going"]
COMPUTE_COMMAND = ["-m", "lintf", "compute", "--scale", "ci", "--workers", "2"]

# myst-nb logs one of these per executed chapter; the terminal summary repeats them.
_EXECUTED = re.compile(r"^(?P<path>.+?\.ipynb): Executed notebook in (?P<seconds>[0-9.]+) seconds")
_FAILED = re.compile(r"^(?P<path>.+?\.ipynb): WARNING: Executing notebook failed")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# Filled by `built_site`, read by `pytest_terminal_summary` (same session, same process).
_BUILD_REPORT: dict[str, object] = {}


def _jupyter_book() -> str:
    """The `jupyter-book` script of the interpreter running pytest, else the one on PATH."""
    beside = Path(sys.executable).with_name("jupyter-book")
    return str(beside) if beside.exists() else shutil.which("jupyter-book") or "jupyter-book"


@pytest.fixture(scope="session")
def book_build_command() -> list[str]:
    """argv of `jupyter-book build book/ -W -n --keep-going`, run from the repository root."""
    return [_jupyter_book(), *BUILD_COMMAND[1:]]


def chapter_times(log: str) -> list[tuple[str, str]]:
    """Per-chapter execution times from a build log.

    Returns [(chapter name, "12.34 s" or "FAILED")] in the order the build ran them.
    """
    rows = []
    for line in _ANSI.sub("", log).splitlines():
        if m := _EXECUTED.match(line):
            rows.append((Path(m["path"]).stem, f"{float(m['seconds']):.2f} s"))
        elif m := _FAILED.match(line):
            rows.append((Path(m["path"]).stem, "FAILED"))
    return rows


def _error_reports(html: Path) -> str:
    """The tracebacks myst-nb saved for failed chapters (html/reports/*.err.log)."""
    reports = sorted((html / "reports").glob("*.log")) if html.is_dir() else []
    return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')}" for p in reports)


@pytest.fixture(scope="session")
def built_site(book_build_command, tmp_path_factory) -> Path:
    """Compute the ci plan into an empty store, then build the whole book from scratch at ci
    scale reading that store only (LINTF_READ_ONLY=1); return book/_build/html.

    The build directory is removed first: Sphinx re-reads (and so re-executes) only
    changed notebooks, and an edit to lintf changes none of them.
    """
    shutil.rmtree(BUILD, ignore_errors=True)
    store = tmp_path_factory.mktemp("results") / "store"
    env = {**os.environ, "LINTF_SCALE": "ci", "LINTF_RESULTS": str(store), "LINTF_PROGRESS": "0"}
    env.pop("LINTF_READ_ONLY", None)
    start = time.perf_counter()
    compute = subprocess.run([sys.executable, *COMPUTE_COMMAND], cwd=ROOT, env=env, capture_output=True, text=True,
                             check=False)
    _BUILD_REPORT.update(compute_seconds=time.perf_counter() - start, compute=compute.stdout.strip(), store=store)
    if compute.returncode != 0:
        pytest.fail(f"`python {' '.join(COMPUTE_COMMAND)}` exited with {compute.returncode}:\n"
                    f"{compute.stdout[-3000:]}\n{compute.stderr[-3000:]}", pytrace=False)
    env["LINTF_READ_ONLY"] = "1"
    start = time.perf_counter()
    proc = subprocess.run(
        book_build_command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    log = proc.stdout + proc.stderr
    _BUILD_REPORT.update(seconds=time.perf_counter() - start, chapters=chapter_times(log), rc=proc.returncode)
    if proc.returncode != 0:
        # Printed output is shown by pytest for the failing tests; the message keeps the tail.
        print(log)
        print(_error_reports(HTML))
        tail = "\n".join(_ANSI.sub("", log).splitlines()[-60:])
        pytest.fail(
            f"`{' '.join(BUILD_COMMAND)}` (LINTF_SCALE=ci) exited with {proc.returncode}:\n{tail}",
            pytrace=False,
        )
    return HTML


@pytest.fixture(scope="session")
def ci_store(built_site: Path) -> Path:
    """The results store :func:`built_site` computed the ci plan into (read it with
    ``LINTF_RESULTS`` or :class:`lintf.compute.store.ResultStore`)."""
    return _BUILD_REPORT["store"]


@pytest.fixture(scope="session")
def site_url(built_site: Path):
    """Serve the built site on 127.0.0.1 (random port) from a thread; yield its base URL."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - the base class's signature
            pass

    handler = functools.partial(QuietHandler, directory=str(built_site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="site-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def pytest_terminal_summary(terminalreporter):
    """After the run, one line per chapter with its execution time in the ci-scale build."""
    if not _BUILD_REPORT:
        return
    terminalreporter.section("book build (LINTF_SCALE=ci)")
    if "compute_seconds" in _BUILD_REPORT:
        terminalreporter.write_line(f"python {' '.join(COMPUTE_COMMAND)}: {_BUILD_REPORT['compute_seconds']:.1f} s "
                                    f"wall ({_BUILD_REPORT['compute'].splitlines()[-1] if _BUILD_REPORT['compute'] else ''})")
    if "rc" not in _BUILD_REPORT:
        return
    terminalreporter.write_line(
        f"{' '.join(BUILD_COMMAND)} (LINTF_READ_ONLY=1): exit {_BUILD_REPORT['rc']}, "
        f"{_BUILD_REPORT['seconds']:.1f} s wall"
    )
    for name, took in _BUILD_REPORT["chapters"]:
        terminalreporter.write_line(f"  {name:<20} {took}")
