"""Progress bars for long work: one place decides whether they show.

``progress=None`` (the default everywhere) shows a bar when ``$LINTF_PROGRESS`` says so
(``"0"``: never, anything else: always), else only when standard error is a terminal
(``python -m lintf``, a Python or IPython prompt). A Jupyter kernel's standard error is no
terminal, so papermill's output notebooks, the book's pages and nbval's runs hold no bar
fragments; ``LINTF_PROGRESS=1`` (or ``progress=True``) brings the bars back in Jupyter. The
bars are tqdm's text bars: no ipywidgets needed.
"""
from __future__ import annotations

import os
import sys

from tqdm import tqdm


def enabled(progress: bool | None = None) -> bool:
    """Whether to draw a bar: ``progress`` if given, else ``$LINTF_PROGRESS != "0"`` when it
    is set, else whether standard error is a terminal."""
    if progress is not None:
        return bool(progress)
    env = os.environ.get("LINTF_PROGRESS")
    if env is not None and env != "":
        return env != "0"
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):   # no stderr, or a closed one
        return False


def bar(iterable=None, *, desc: str, total: int | None = None, progress: bool | None = None, unit: str = "it"):
    """A tqdm bar with the run count in ``desc``, a rate and an estimate of time left."""
    return tqdm(iterable, desc=desc, total=total, disable=not enabled(progress), unit=unit,
                mininterval=1.0, dynamic_ncols=True)
