"""lintf: linear transformers on in-context linear regression (Ahn et al., ICLR 2024).

Data (:mod:`lintf.data`), model (:mod:`lintf.model`), a batched training engine
(:mod:`lintf.engine`, :mod:`lintf.optim`) and exact measurements (:mod:`lintf.measure`).
"""
from .data import COVARIATES, sample_prompts, sample_covariates
from .model import ATTENTIONS, Model, predict, loss, from_authors_block

__all__ = ["COVARIATES", "ATTENTIONS", "sample_prompts", "sample_covariates", "Model", "predict",
           "loss", "from_authors_block"]
