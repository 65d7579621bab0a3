"""Progress bars for long work: one place decides whether they show.

``progress=None`` (the default everywhere) shows a bar unless ``LINTF_PROGRESS=0``, which
the book's build sets so that pages hold no half-drawn bars. The bars are tqdm's text
bars: they work in a terminal, in Jupyter and under papermill without ipywidgets.
"""
from __future__ import annotations

import os

from tqdm import tqdm


def enabled(progress: bool | None = None) -> bool:
    """Whether to draw a bar: ``progress`` if given, else ``$LINTF_PROGRESS != "0"``."""
    if progress is None:
        return os.environ.get("LINTF_PROGRESS", "1") != "0"
    return bool(progress)


def bar(iterable=None, *, desc: str, total: int | None = None, progress: bool | None = None, unit: str = "it"):
    """A tqdm bar with the run count in ``desc``, a rate and an estimate of time left."""
    return tqdm(iterable, desc=desc, total=total, disable=not enabled(progress), unit=unit,
                mininterval=1.0, dynamic_ncols=True)
