"""lintf: linear transformers on in-context linear regression (Ahn et al., ICLR 2024).

One concept per module, data flowing one way (settings -> runs -> results -> figures):

- :mod:`lintf.data`: prompt distributions (:func:`sample_prompts`, :class:`~lintf.data.Prompts`).
- :mod:`lintf.model`: eqs. (7)-(8) (:func:`predict`, :func:`loss`) and the variants (:class:`Model`).
- :mod:`lintf.optim`, :mod:`lintf.engine`: SGDM, Adam and the ablation's optimizers over a run axis;
  many runs as one program (:mod:`lintf.fast`: the plain model's derivatives by hand, ``LINTF_BACKEND``).
- :mod:`lintf.measure`: gradient noise, exact Hessians and ``R_med``, directional smoothness.
- :mod:`lintf.settings`: the paper's named settings and the scales ``paper``, ``cpu``, ``ci``.
- :mod:`lintf.store`, :mod:`lintf.experiments`: cached, tidy results of every experiment.
- :mod:`lintf.plan`, :mod:`lintf.pack`: the declared plan of the book's experiments, computed with
  ``python -m lintf compute`` (in-process or on a Dask cluster) and carried as a checked tar.
- :mod:`lintf.stats`: the one decision rule (an exact sign-flip test over seeds) and the
  statistics the claims reduce their data to.
- :mod:`lintf.summaries`: final losses, grid choices, noise tails, the condition-number table.
- :mod:`lintf.registry`: one :class:`~lintf.registry.Claim` per claim of the paper (statement,
  chapter, parts with stable ids, inputs, rule); :mod:`lintf.claims` the rules and the ablation's
  hypotheses; :mod:`lintf.book` the chapters' verdicts through the registry (the scorecard reads
  the same).
- :mod:`lintf.plots`, :mod:`lintf.chapter`: figures; a chapter's parameters, figures with their
  captions, verdicts, and the numbers glued into its prose.
"""
from .data import COVARIATES, Prompts, authors_prompts, sample_covariates, sample_prompts
from . import stats
from .engine import TrainResult, train
from .model import ATTENTIONS, Model, from_authors_block, loss, predict
from .optim import ALL_OPTIMIZERS, OPTIMIZERS, OptimConfig
from .settings import SCALES, SETTINGS, get_scale, get_setting

__version__ = "0.1.0"

__all__ = ["COVARIATES", "ATTENTIONS", "ALL_OPTIMIZERS", "OPTIMIZERS", "SCALES", "SETTINGS", "Model", "OptimConfig", "Prompts",
           "TrainResult", "authors_prompts", "from_authors_block", "get_scale", "get_setting", "loss", "predict",
           "sample_covariates", "sample_prompts", "stats", "train"]
