"""lintf: linear transformers on in-context linear regression (Ahn et al., ICLR 2024).

Two sides, which the folders show, and the command line above both:

- :mod:`lintf.compute`, whatever changes a stored number: :mod:`~lintf.compute.data` (prompt
  distributions), :mod:`~lintf.compute.model` (eqs. (7)-(8) and the variants),
  :mod:`~lintf.compute.optim` and :mod:`~lintf.compute.engine` (many runs as one program;
  :mod:`~lintf.compute.fast`, :mod:`~lintf.compute.fast_variants`: derivatives by hand),
  :mod:`~lintf.compute.measure` (gradient noise, exact Hessians and ``R_med``, directional
  smoothness), :mod:`~lintf.compute.settings` (the paper's settings, the scales ``paper``,
  ``cpu``, ``ci``), :mod:`~lintf.compute.experiments` (the book's experiments, cached),
  :mod:`~lintf.compute.reductions` (the final loss and grid choice that experiments store) and
  :mod:`~lintf.compute.store` (results keyed on their configuration and the compute side's
  source only).
- :mod:`lintf.book`, whatever presents or decides from stored numbers: :mod:`~lintf.book.stats`
  (the one decision rule), :mod:`~lintf.book.summaries`, :mod:`~lintf.book.claims` and
  :mod:`~lintf.book.registry` (the claims, declared once), :mod:`~lintf.book.frames` (the
  chapters' experiments as frames), :mod:`~lintf.book.tables`, :mod:`~lintf.book.verdicts`
  (verdicts and the scorecard), :mod:`~lintf.book.plots`, :mod:`~lintf.book.chapter`.
- :mod:`lintf.plan`, :mod:`lintf.pack`, ``python -m lintf``: the declared plan of the book's
  experiments, computed in-process or on a Dask cluster, and carried as a checked tar.

The short names of earlier versions still resolve as attributes (``lintf.experiments`` is
:mod:`lintf.compute.experiments`, ``lintf.plots`` is :mod:`lintf.book.plots`, ...); a book-side
module is imported only when first asked for, so ``import lintf`` and every compute-side
import leave the book side unloaded. The names below (``lintf.train``, ``lintf.Model``, ...) are
looked up on first use too: ``import lintf`` loads neither torch nor pandas, so that
``python -m lintf --help`` answers at once.
"""
import importlib

__version__ = "0.1.0"

COMPUTE_MODULES = ("checks", "progress", "data", "model", "optim", "engine", "fast", "fast_variants", "measure",
                   "settings", "experiments", "reductions", "store")
"""The modules of :mod:`lintf.compute`: their source is what a stored result's key holds."""
BOOK_MODULES = ("stats", "summaries", "claims", "registry", "reads", "frames", "tables", "verdicts", "plots",
                "chapter")
"""The modules of :mod:`lintf.book`."""


_NAMES = {"COVARIATES": "data", "Prompts": "data", "authors_prompts": "data", "sample_covariates": "data",
          "sample_prompts": "data", "TrainResult": "engine", "train": "engine", "ATTENTIONS": "model",
          "Model": "model", "from_authors_block": "model", "loss": "model", "predict": "model",
          "ALL_OPTIMIZERS": "optim", "OPTIMIZERS": "optim", "OptimConfig": "optim", "SCALES": "settings",
          "SETTINGS": "settings", "get_scale": "settings", "get_setting": "settings"}
"""The compute side's names ``lintf`` offers, each with its module of :mod:`lintf.compute`."""


def __getattr__(name: str):
    """``lintf.<name>`` for a name of :data:`_NAMES` (e.g. ``lintf.train``), or for a module of
    either side (e.g. ``lintf.experiments``, ``lintf.plots``, ``lintf.stats``), imported on
    first use."""
    if name in _NAMES:
        value = getattr(importlib.import_module(f"{__name__}.compute.{_NAMES[name]}"), name)
        globals()[name] = value                     # looked up once
        return value
    if name in ("compute", "book", "plan", "pack"):
        return importlib.import_module(f"{__name__}.{name}")
    for side, modules in (("compute", COMPUTE_MODULES), ("book", BOOK_MODULES)):
        if name in modules:
            return importlib.import_module(f"{__name__}.{side}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_NAMES))


__all__ = ["COVARIATES", "ATTENTIONS", "ALL_OPTIMIZERS", "OPTIMIZERS", "SCALES", "SETTINGS", "Model", "OptimConfig", "Prompts",
           "TrainResult", "authors_prompts", "from_authors_block", "get_scale", "get_setting", "loss", "predict",
           "sample_covariates", "sample_prompts", "stats", "train"]
