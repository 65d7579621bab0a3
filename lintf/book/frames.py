"""The experiments the chapters read, as frames: a chapter's :class:`Context` (scale, device,
seeds, horizon) in, the stored results of :mod:`lintf.compute.experiments` out, several
settings concatenated into one tidy frame with their provenance.

The groups of settings the chapters and claims compare (:data:`BASE`, :data:`TAILS`,
:data:`DEPTHS`, ...) are views of the settings' own ``groups`` (:class:`lintf.compute.settings.Setting`).
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from ..compute import experiments as E
from ..compute.data import AUTHORS_COVARIATES
from ..compute.checks import check_choice
from ..compute.optim import ALL_OPTIMIZERS
from ..compute.settings import EVAL_PROTOCOLS, Scale, default_scale, get_scale, get_setting, members
from . import claims

BASE = members("base")
"""The paper's Settings 1-3 (group ``base`` of :attr:`lintf.compute.settings.Setting.groups`)."""
TAILS = tuple(s for s in members("tails") if s not in BASE)
"""The covariate settings of Sec. 4.1 beside Setting 1: sphere, then gamma (group ``tails``)."""
DEPTHS = members("depths")
"""The depth settings of Sec. 4.2 (group ``depths``)."""
SMOOTH = members("smooth")
"""Settings whose directional smoothness claims 4 and 5 are decided on (group ``smooth``)."""
NOISE = members("noise")
"""Settings whose gradient noise claim 2 compares (group ``noise``)."""
TABLE2 = members("table2")
"""The settings of the paper's Table 2 (learning rates): group ``table2``."""


def builder(kind: str, setting: str, scale=None) -> str:
    """The chapter whose build computes experiment ``kind`` of ``setting`` (the first of
    :func:`lintf.plan.plan` that reads it)."""
    from ..plan import chapter_of
    return chapter_of(kind, setting, scale)


PAPER_EVAL_BATCH = "authors"
"""The batch the paper's condition numbers are measured on: the authors' seed-99 batch, shared by
every seed and checkpoint (their ``plot_condition_number.ipynb``); claim 3's primary protocol."""


@dataclasses.dataclass(frozen=True)
class Context:
    """What every chapter passes on: the scale, device, and the seeds and horizon of the
    long runs (None: the scale's)."""

    scale: Scale
    device: str = "auto"
    seeds: tuple | None = None
    steps: int | None = None
    cached_only: bool = False
    progress: bool | None = None
    eval_batch: str | None = None

    @classmethod
    def of(cls, p, *, cached_only: bool = False, progress=None, eval_batch=None) -> "Context":
        """From a chapter's :class:`lintf.book.chapter.Parameters` (``eval_batch``: the protocol
        claim 3 is decided on, None: the scale's)."""
        return cls(p.scale, p.device, p.seeds, p.steps, cached_only, progress, eval_batch)

    @property
    def protocol(self) -> str:
        """The evaluation protocol claim 3's primary verdict is decided on: ``eval_batch`` if
        given, else the paper's (:data:`PAPER_EVAL_BATCH`)."""
        return check_choice("eval_batch", self.eval_batch or PAPER_EVAL_BATCH, EVAL_PROTOCOLS)

    def kw(self) -> dict:
        return dict(device=self.device, cached_only=self.cached_only, progress=self.progress)


def provenance(*frames) -> list:
    """The provenance records (:func:`lintf.compute.store.provenance`, ``attrs["provenance"]``) of
    ``frames``, merged in order, each record once: what a caption names when one figure draws
    several frames (:func:`lintf.book.chapter.caption`'s ``provenance``)."""
    records = []
    for f in frames:
        for r in (getattr(f, "attrs", {}) or {}).get("provenance", []) if f is not None else []:
            if r not in records:
                records.append(r)
    return records


def concat(frames):
    """The frames, one below the other, with their merged :func:`provenance`."""
    frames = [f for f in frames if f is not None and len(f)] or [f for f in frames if f is not None]
    if not frames:
        return None
    out = pd.concat(frames, ignore_index=True)
    out.attrs["provenance"] = provenance(*frames)
    return out


def training(ctx: Context, settings, lrs="default", steps=None) -> dict:
    """The runs of ``settings`` (:func:`lintf.compute.experiments.training` at ``lrs``, the context's
    seeds, ``steps`` or the context's horizon), as one ``history`` and one ``runs`` frame."""
    got = [E.training(s, ctx.scale, lrs=lrs, seeds=ctx.seeds, steps=steps or ctx.steps, **ctx.kw())
           for s in ([settings] if isinstance(settings, str) else settings)]
    return {"history": concat([g.frames["history"] for g in got]),
            "runs": concat([g.frames["runs"] for g in got])}


def noise(ctx: Context, settings, seeds=None) -> dict:
    """The gradient noise at initialisation of ``settings`` (:func:`lintf.compute.experiments.noise_at_seeds`
    at ``seeds``, None: the scale's), as one ``noise`` and one ``spectrum`` frame."""
    got = [E.noise_at_seeds(s, ctx.scale, seeds=seeds, **ctx.kw()) for s in settings]
    return {k: concat([g[k] for g in got]) for k in ("noise", "spectrum")}


def sweeps(ctx: Context, settings, points: int | None = None, steps: int | None = None) -> pd.DataFrame:
    """The learning-rate grids of ``settings`` (:func:`lintf.compute.experiments.lr_sweep`), one frame."""
    return concat([E.lr_sweep(s, ctx.scale, points=points, steps=steps, **ctx.kw()).frames["sweep"]
                    for s in settings])


def batch_curves(ctx: Context, settings) -> pd.DataFrame:
    """``R_med`` against the evaluation batch's size (:func:`lintf.compute.experiments.batch_size_curve`)
    of ``settings``, one frame."""
    return concat([E.batch_size_curve(s, ctx.scale, **ctx.kw()).frames["curve"] for s in settings])


def conditioning(ctx: Context, settings, eval_batch: str = "authors", lrs="default", at="checkpoints") -> pd.DataFrame:
    """``R_med`` at the training checkpoints of ``settings`` (:func:`lintf.compute.experiments.conditioning`
    on ``eval_batch`` at ``at``), one frame; a model the scale gives no Hessian adds no row."""
    got = [E.conditioning(s, ctx.scale, eval_batch=eval_batch, at=at, lrs=lrs, seeds=ctx.seeds, steps=ctx.steps,
                          **ctx.kw()).frames["conditioning"] for s in settings]
    return concat(got)


def on_authors_batch(settings) -> list:
    """The settings among ``settings`` whose covariates the authors' sampler draws
    (:data:`lintf.compute.data.AUTHORS_COVARIATES`): those their evaluation batch exists for, in order."""
    return [s for s in settings if get_setting(s).prompts.covariates in AUTHORS_COVARIATES]


def variant_lrs(scale: Scale, setting: str) -> str:
    """The ``lrs`` a model variant of the adaptive-vs-SGD chapter trains at: its own grid's
    best, except the figure-only variants where the scale says ``figure_lrs="default"``."""
    return "default" if get_setting(setting).role == "figure" and scale.figure_lrs == "default" else "grid"


def variant_training(ctx: Context, settings) -> dict:
    """The model variants' runs, each at its :func:`variant_lrs`, as one ``history`` and one
    ``runs`` frame."""
    got = [training(ctx, [s], lrs=variant_lrs(ctx.scale, s)) for s in settings]
    return {k: concat([g[k] for g in got]) for k in ("history", "runs")}


def claim8_sweep(ctx: Context) -> dict:
    """Claim 8's grid, the same for every attention so that neither is favoured by a finer or
    longer search: ``scale.variant_grid_points`` rates, ``variant_sweep_steps`` iterations."""
    points, steps = ctx.scale.sweep_for(get_setting(claims.ATTENTION["softmax"]))
    return {"points": points, "steps": steps}


def claim8_rates(ctx: Context, setting: str) -> dict:
    """Claim 8's rate of ``setting``: the best of :func:`claim8_sweep`'s grid."""
    grid = claim8_sweep(ctx)
    return E.learning_rates(setting, ctx.scale, lrs="grid", points=grid["points"], sweep_steps=grid["steps"],
                            **ctx.kw())


def ablation_runs(ctx: Context, settings=claims.ABLATION_SETTINGS, optimizers=ALL_OPTIMIZERS, clip=True) -> dict:
    """The ablation's runs (:func:`lintf.compute.experiments.ablation`, every optimizer at its own best
    rate) on ``settings``: frames ``history``, ``runs`` and ``best`` (the grids' best rates)."""
    got = {s: E.ablation(s, ctx.scale, optimizers=optimizers, clip=clip, seeds=ctx.seeds, steps=ctx.steps,
                         **ctx.kw())
           for s in settings}
    return {"history": concat([r.frames["history"] for r, _ in got.values()]),
            "runs": concat([r.frames["runs"] for r, _ in got.values()]),
            "best": concat([b.assign(setting=s) for s, (_, b) in got.items()])}


def context(scale=None, **kw) -> Context:
    """A :class:`Context` for ``scale`` (None: :func:`lintf.compute.settings.default_scale`)."""
    return Context(get_scale(default_scale() if scale is None else scale), **kw)


def compare_steps(scale: Scale, steps: int | None = None) -> tuple:
    """The table iterations at which claim 3 compares covariates and depths: those the sphere
    and depth runs reach (``steps``, else the scale's horizon of each)."""
    reach = min(steps or scale.steps_for(get_setting(s)) for s in TAILS + DEPTHS)
    return tuple(t for t in scale.table_steps if t <= reach)
