"""Sphinx extension of the lintf book.

- Every chapter is re-read (and so re-executed) on every build. Sphinx re-reads only
  notebooks whose file changed, and an edit to ``lintf`` changes none of them; re-executing
  is cheap because ``lintf``'s results store serves every result whose configuration and
  ``lintf`` source are unchanged, and recomputes exactly those that are not. No page ever
  shows a figure from stale code.
- The scorecard is read (executed) last: it only reads what the other chapters stored,
  and Sphinx would otherwise read the chapters in alphabetical order.
- Before any chapter runs, what the store lacks is computed from the plan of the book's
  experiments, ``python -m lintf compute`` (:mod:`lintf.plan`), on ``$LINTF_BUILD_WORKERS``
  worker processes: default 2 on a CPU with at least 2 cores (independent experiments on both
  cores), else in one process (a GPU); ``0`` skips it and lets each chapter compute what it
  reads. The same numbers either way (one torch thread per task); the chapters then read the
  store. If it fails the build goes on and the chapters compute what is still missing. Not
  with ``LINTF_READ_ONLY=1``, where nothing is computed.
- Progress bars are turned off in the kernels the build starts (``LINTF_PROGRESS=0``): a
  page is no place for a half-drawn bar (a kernel draws none anyway unless
  ``LINTF_PROGRESS=1``: :mod:`lintf.progress`).
"""
import os
import subprocess
import sys

from sphinx.util import logging

LOG = logging.getLogger(__name__)
WORKERS_VAR = "LINTF_BUILD_WORKERS"


def build_workers(environ=os.environ, cpus=None, cuda=None) -> int:
    """Worker processes of the build's compute step: ``$LINTF_BUILD_WORKERS`` (an integer >= 0,
    0: none), else 2 on a CPU with at least 2 cores, else 1 (in-process)."""
    text = environ.get(WORKERS_VAR)
    if text is not None and text.strip() != "":
        try:
            n = int(text)
        except ValueError:
            n = -1
        if n < 0:
            raise ValueError(f"the environment variable {WORKERS_VAR} must be an integer >= 0 (0: no compute step, "
                             f"the chapters compute what they read), got {text!r}")
        return n
    if cuda is None:
        import torch
        cuda = torch.cuda.is_available()
    cpus = (os.cpu_count() or 1) if cpus is None else cpus
    return 1 if cuda or cpus < 2 else 2


def _compute_first(app):
    if os.environ.get("LINTF_READ_ONLY", "") not in ("", "0"):
        return
    n = build_workers()
    if n == 0:
        return
    command = [sys.executable, "-m", "lintf", "compute"] + (["--workers", str(n)] if n > 1 else [])
    LOG.info(f"lintf: computing what the store lacks: {' '.join(command[1:])}")
    done = subprocess.run(command, cwd=app.srcdir, env={**os.environ, "LINTF_PROGRESS": "0"})
    if done.returncode != 0:
        LOG.info(f"lintf: `{' '.join(command[1:])}` exited with {done.returncode}; the chapters compute what "
                 f"is still missing")


def _all_outdated(app, env, added, changed, removed):
    return [doc for doc in env.found_docs if doc not in added and doc not in changed]


def _scorecard_last(app, env, docnames):
    docnames.sort(key=lambda doc: doc == "scorecard")               # stable: the others keep their order


def setup(app):
    os.environ.setdefault("LINTF_PROGRESS", "0")
    app.connect("builder-inited", _compute_first)
    app.connect("env-get-outdated", _all_outdated)
    app.connect("env-before-read-docs", _scorecard_last)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
