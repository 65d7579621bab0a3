"""The book side of lintf: whatever presents or decides from stored numbers.

:mod:`~lintf.book.stats` (the one decision rule), :mod:`~lintf.book.summaries`,
:mod:`~lintf.book.claims` and :mod:`~lintf.book.registry` (each claim declared once),
:mod:`~lintf.book.reads` (the experiments the claims and figures read, for the plan),
:mod:`~lintf.book.frames` (the experiments a chapter reads, as frames),
:mod:`~lintf.book.tables` (display tables), :mod:`~lintf.book.verdicts` (verdicts and the
scorecard), :mod:`~lintf.book.plots` and :mod:`~lintf.book.chapter` (a chapter's parameters,
figures, glue). It imports :mod:`lintf.compute`, never the other way.

The chapters' helpers are also reachable here by name, as ``lintf.book.<name>`` (e.g.
``lintf.book.training``, ``lintf.book.rate_table``, ``lintf.book.scorecard``): each is looked
up in :mod:`~lintf.book.frames`, :mod:`~lintf.book.tables`, :mod:`~lintf.book.verdicts` and
:mod:`~lintf.book.reads`, in that order, on first use.
"""
import importlib

from .. import BOOK_MODULES as _MODULES

_HELPERS = ("frames", "tables", "verdicts", "reads")


def __getattr__(name: str):
    """``lintf.book.<name>``: a module of the book side, else the chapters' helper ``name`` from
    frames, tables, verdicts or reads."""
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if not name.startswith("__"):
        for module in _HELPERS:
            mod = importlib.import_module(f"{__name__}.{module}")
            if hasattr(mod, name):
                return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
