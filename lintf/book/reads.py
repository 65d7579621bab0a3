"""What each chapter reads, declared: the experiments of :mod:`lintf.compute.experiments` a
chapter's figures read at its default parameters, beside the claims' own (:attr:`Claim.reads
<lintf.book.registry.Claim.reads>`). :func:`reads` puts both together; :func:`lintf.plan.plan`
turns them, with each experiment's own declaration (:data:`lintf.compute.experiments.DECLARED`),
into the list ``python -m lintf compute`` computes.

A read is ``(function, setting, kwargs, chapters)``: a declared experiment function's name, a
setting's name, keyword arguments, and the chapters that read it.
"""
from __future__ import annotations

from ..compute.experiments import VARIANTS
from ..compute.settings import Scale, get_setting
from . import frames as B
from . import registry
from .claims import ABLATION_SETTINGS
from .tables import TABLE_PROTOCOLS


LEFT_TO_PAPER = {
    "precision_pair": "the float32 against float64 figure, which trains the deepest models' runs twice,",
    "depth_checkpoints": "Fig 14 at every checkpoint, rather than at the condition-number table's iterations "
                         "(whose Hessians claim 3 computes anyway),",
}
"""What a page says where its scale leaves a figure extra
(:data:`lintf.compute.settings.FIGURE_EXTRAS`) to ``paper``: "At scale cpu <words> is left to
the paper scale"."""


def depth_hessians_at(scale: Scale) -> str:
    """Where Fig 14 (the depth chapter) takes its Hessians: every checkpoint the scale chooses
    (``"checkpoints"``), or, at a scale that leaves the ``depth_checkpoints`` extra to ``paper``
    (:attr:`lintf.compute.settings.Scale.figure_extras`), the condition-number table's iterations
    (``"table"``), whose Hessians claim 3 computes anyway."""
    return "checkpoints" if scale.computes("depth_checkpoints") else "table"


def precision_settings(scale: Scale) -> tuple:
    """The depths of the float32 against float64 figure (the models of 6 layers or more), none
    at a scale that leaves the ``precision_pair`` extra to ``paper``."""
    if not scale.computes("precision_pair"):
        return ()
    return tuple(s for s in B.DEPTHS if get_setting(s).model.L >= 6) or B.DEPTHS[-1:]


def figures(sc: Scale) -> list[tuple]:
    """The experiments the chapters' figures read besides the claims' (:func:`reads`)."""
    out = []
    # Adam against SGD: Fig 2 (and Figs 5, 16 in the smoothness chapter), Table 2's grids, Fig 8
    for s in B.BASE:
        out += [("training", s, {}, ("adaptive_vs_sgd", "smoothness")), ("lr_sweep", s, {}, ("adaptive_vs_sgd",))]
    out += [("training", v, {"lrs": B.variant_lrs(sc, v)}, ("adaptive_vs_sgd",))
            for v in VARIANTS if v not in sc.skip_variants]
    # heavy tails: Fig 9's runs, and the R_med curves of Fig 11 on the authors' batch where their
    # sampler draws the covariates
    out += [("training", s, {}, ("heavy_tails",)) for s in B.TAILS]
    out += [("conditioning", s, {"eval_batch": "authors"}, ("heavy_tails",)) for s in B.on_authors_batch(B.TAILS)]
    # condition numbers: the batch-size figure and the table's three protocols
    for s in B.BASE:
        out.append(("batch_size_curve", s, {}, ("conditioning",)))
        out += [("table_conditioning", s, {"eval_batch": pr}, ("conditioning", "scorecard")) for pr in TABLE_PROTOCOLS]
    # depth: the stable rule, Figs 12-14, the noise of Fig 13, the float32 against float64 figure
    for s in B.DEPTHS:
        out += [("stable_search", s, {}, ("depth",)), ("training", s, {"lrs": "stable"}, ("depth",)),
                ("training", s, {"lrs": "paper"}, ("depth",)), ("noise_at_seeds", s, {}, ("depth",)),
                ("conditioning", s, {"eval_batch": "authors", "lrs": "stable", "at": depth_hessians_at(sc)},
                 ("depth",))]
    out += [("precision_pair", s, {}, ("depth",)) for s in precision_settings(sc)]
    # nonlinear regression: Fig 15
    out += [("training", "nonlinear", {}, ("nonlinear",)),
            ("conditioning", "nonlinear", {"eval_batch": "fixed"}, ("nonlinear",)),
            ("noise_at_seeds", "nonlinear", {}, ("nonlinear",))]
    # the ablation and its hypotheses (on the scorecard too)
    for s in ABLATION_SETTINGS:
        out += [("ablation", s, {}, ("ablation", "scorecard")), ("ablation_conditioning", s, {}, ("ablation",))]
    return out


def reads(scale: Scale) -> list[tuple]:
    """Every experiment the book reads at ``scale`` at its chapters' default parameters: each
    claim's and each of its alternatives' (:mod:`lintf.book.registry`; read by the claim's
    chapter and the scorecard), then the figures' (:func:`figures`)."""
    out = []
    for claim in registry.REGISTRY.values():
        chapters = (claim.chapter, "scorecard")
        out += [(f, s, kw, chapters) for f, s, kw in claim.reads(scale)]
        for alt in claim.alternatives:
            if alt.reads is not None:
                out += [(f, s, kw, chapters) for f, s, kw in alt.reads(scale)]
    return out + figures(scale)
