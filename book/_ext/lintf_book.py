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
  worker processes: by default one per core this process may use (``os.sched_getaffinity``,
  else ``os.cpu_count()``) on a CPU with at least 2 of them (independent experiments on every
  core), else in one process (a GPU, or one core); ``0`` skips it and lets each chapter
  compute what it reads. The same numbers either way (one torch thread per task); the
  chapters then read the store. If it fails the build goes on and the chapters compute what
  is still missing. Not with ``LINTF_READ_ONLY=1``, where nothing is computed. The compute
  step writes one line per finished experiment to the build's log (the time so far and an
  estimate of the time left), not a bar: a build's output is often a file.
- Progress bars are turned off in the kernels the build starts (``LINTF_PROGRESS=0``): a
  page is no place for a half-drawn bar (a kernel draws none anyway unless
  ``LINTF_PROGRESS=1``: :mod:`lintf.progress`).
- The kernels' ZeroMQ traffic is encrypted (CurveZMQ, jupyter_client's
  ``KernelManager.transport_encryption = "auto"``) where pyzmq and the kernelspec support it:
  ipykernel otherwise logs "Kernel is running over TCP without encryption" for every chapter,
  a warning a reader of the log can do nothing about.
"""
import os
import subprocess
import sys

from sphinx.util import logging

LOG = logging.getLogger(__name__)
WORKERS_VAR = "LINTF_BUILD_WORKERS"


def available_cpus() -> int:
    """The cores this process may run on: ``len(os.sched_getaffinity(0))`` where the platform
    has it (a container's or ``taskset``'s limit), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def build_workers(environ=os.environ, cpus=None, cuda=None) -> int:
    """Worker processes of the build's compute step: ``$LINTF_BUILD_WORKERS`` (an integer >= 0,
    0: none), else one per available core (:func:`available_cpus`) on a CPU with at least 2,
    else 1 (in-process: a GPU, or a single core)."""
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
    cpus = available_cpus() if cpus is None else cpus
    return 1 if cuda or cpus < 2 else cpus


def compute_command(workers: int) -> list[str]:
    """The compute step's argv (``sys.executable -m lintf compute [--workers N]``)."""
    return [sys.executable, "-m", "lintf", "compute"] + (["--workers", str(workers)] if workers > 1 else [])


def shown(command) -> str:
    """``command`` as a reader would type it: ``python -m lintf compute ...``."""
    return " ".join(["python", *command[1:]])


def _compute_first(app):
    if os.environ.get("LINTF_READ_ONLY", "") not in ("", "0"):
        return
    n = build_workers()
    if n == 0:
        return
    command = compute_command(n)
    LOG.info(f"lintf: computing what the store lacks: {shown(command)} (one line per finished experiment)")
    # the child writes its lines on standard error as each experiment ends: LINTF_PROGRESS=0 asks
    # for lines, never a bar, whatever the build's output is
    done = subprocess.run(command, cwd=app.srcdir, env={**os.environ, "LINTF_PROGRESS": "0"})
    if done.returncode != 0:
        LOG.info(f"lintf: `{shown(command)}` exited with {done.returncode}; the chapters compute what "
                 f"is still missing")


def encrypt_kernels() -> bool:
    """Make the kernels this process starts use CurveZMQ transport encryption where pyzmq and
    the kernelspec support it (jupyter_client's ``transport_encryption`` policy ``"auto"``; its
    default is ``"disabled"``, and no configuration reaches the kernel managers myst-nb
    creates). Whether the policy was set: False with a jupyter_client or pyzmq without it."""
    try:
        import zmq
        from jupyter_client.manager import KernelManager
    except ImportError:
        return False
    trait = KernelManager.class_traits().get("transport_encryption")
    if trait is None or not zmq.has("curve"):
        return False
    trait.default_value = "auto"
    return True


def _all_outdated(app, env, added, changed, removed):
    return [doc for doc in env.found_docs if doc not in added and doc not in changed]


def _scorecard_last(app, env, docnames):
    docnames.sort(key=lambda doc: doc == "scorecard")               # stable: the others keep their order


def setup(app):
    os.environ.setdefault("LINTF_PROGRESS", "0")
    encrypt_kernels()
    app.connect("builder-inited", _compute_first)
    app.connect("env-get-outdated", _all_outdated)
    app.connect("env-before-read-docs", _scorecard_last)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
