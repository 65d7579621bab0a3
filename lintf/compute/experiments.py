"""The book's experiments: a setting and a scale in, tidy results out, computed once.

Each function returns a :class:`lintf.compute.store.Result` whose ``frames`` are tidy pandas
tables (with a ``setting`` column), served from the results store when its key (the whole
configuration and the source of ``lintf``) matches, computed otherwise. Settings 1-3 feed
four chapters; whichever chapter asks first computes them, the others read them. With
``cached_only=True`` a function only reads (the scorecard), and a missing result is a
``LookupError``.

- :func:`training`: SGDM and Adam from every seed; loss, gradient norm, directional
  smoothness, evaluation loss; parameter checkpoints.
- :func:`conditioning`: exact float64 Hessians at the checkpoints and ``R_med`` both ways, on
  an evaluation protocol (:data:`lintf.compute.settings.EVAL_PROTOCOLS`); :func:`table_conditioning`,
  the condition-number table's own many-seed experiment; :func:`batch_size_curve`, ``R_med``
  against the size of the evaluation batch.
- :func:`gradient_noise`, :func:`noise_at_seeds`: ``||g_B - g||`` at initialisation, with the
  spectrum of the deviations' covariance.
- :func:`lr_sweep`, :func:`learning_rates`, :func:`stable_search`: the learning-rate grid
  search, the rates a run uses, and the depth chapter's largest rate that trains.
- :func:`precision_pair`: the same runs in float32 and float64 arithmetic.
"""
from __future__ import annotations

import contextvars
import dataclasses
import inspect
import os
from typing import Callable

import numpy as np
import pandas as pd
import torch

from . import fast, measure
from .checks import check_choice, check_int, check_lrs, check_seeds
from .progress import bar
from .data import AUTHORS_COVARIATES, authors_prompts
from .engine import EVAL_SEED, initial_params, precision_flags, resolve_device, train
from .engine import eval_batch as eval_batch_of
from .optim import ALL_OPTIMIZERS, OPTIMIZERS, OptimConfig
from .settings import EVAL_PROTOCOLS, VARIANT_ROLES, Scale, Setting, default_scale, get_scale, get_setting, with_role
from .store import ResultStore, provenance
from .reductions import best_lr, final_loss

LR_CHOICES = ("default", "paper", "grid", "stable")
"""Which learning rates the main runs use: the defaults (the authors' README values where they
differ from the paper), the paper's Table 2, the best of the book's own grid search
(:func:`lr_sweep`, lowest mean final loss among rates where no seed diverged), or the largest
rate at which no seed diverged within the horizon (:func:`stable_search`, the depth
chapter's rule)."""


UNITS = ("train", "hessian", "gradient")
"""What a declared experiment's size counts (:class:`Declaration`): ``train``, run-iterations
(runs x steps) of a batched training program at the scale's batch; ``hessian``, exact float64
Hessians of one run on ``scale.eval_size`` prompts; ``gradient``, gradients of one run on
``scale.noise_batch_size`` prompts."""

_RUNTIME = ("device", "store", "progress", "cached_only")


@dataclasses.dataclass(frozen=True)
class Declaration:
    """What an experiment function of this module declares next to itself (:func:`declare`),
    read by :mod:`lintf.plan`:

    - ``kind``: the kind of store entry it writes last (``training``, ``sweep``, ...);
    - ``label``: the first word of its planned name (``"training/setting1/paper"``);
    - ``unit`` (:data:`UNITS`) and ``size(setting, scale, **kw)``: how much it computes itself;
    - ``needs(setting, scale, **kw)``: the calls ``(function name, kwargs)`` on the same setting
      that it reads and that are computed first (the learning-rate grid behind ``lrs="grid"``,
      the runs behind Hessians);
    - ``same(setting, scale, kw)``: ``kw`` with every argument that resolves to what the
      function takes anyway left out (a scale's own horizon passed as ``steps``), so that two
      calls of one computation are one experiment.

    ``function``: its name; ``defaults``: its keyword arguments and their defaults."""

    function: str
    kind: str
    label: str
    unit: str
    size: Callable = dataclasses.field(repr=False)
    needs: Callable = dataclasses.field(repr=False)
    same: Callable = dataclasses.field(repr=False)
    defaults: dict = dataclasses.field(repr=False)

    def resolve(self, setting, scale, kwargs: dict) -> dict:
        """``kwargs`` resolved: names checked, the defaults and what :attr:`same` finds
        equivalent left out, in the order of the function's signature."""
        setting, scale = _resolve(setting, scale)
        unknown = sorted(set(kwargs) - set(self.defaults))
        if unknown:
            raise ValueError(f"{self.function} takes no argument {unknown[0]!r}; it takes {sorted(self.defaults)}")
        kw = {k: kwargs[k] for k in self.defaults if k in kwargs and kwargs[k] != self.defaults[k]}
        return self.same(setting, scale, kw)


DECLARED: dict[str, Declaration] = {}
"""Every declared experiment function of this module by name (:func:`declare`)."""


def declare(kind: str, *, label: str | None = None, unit: str = "train", size: Callable,
            needs: Callable | None = None, same: Callable | None = None):
    """Decorator: declare the experiment function it decorates (:class:`Declaration`) and
    register it in :data:`DECLARED`; the function itself is returned unchanged. ``size`` and
    ``needs`` are called as ``f(setting, scale, **resolved kwargs)`` with a Setting and a Scale."""
    check_choice("unit", unit, UNITS)

    def register(fn):
        params = inspect.signature(fn).parameters
        defaults = {k: p.default for k, p in params.items()
                    if p.kind is inspect.Parameter.KEYWORD_ONLY and k not in _RUNTIME}
        DECLARED[fn.__name__] = Declaration(fn.__name__, kind, label or fn.__name__, unit, size,
                                            needs or (lambda st, sc, **kw: []), same or (lambda st, sc, kw: kw),
                                            defaults)
        return fn
    return register


def hessian_count(setting: Setting, scale: Scale, runs: int, steps, protocol: str) -> int:
    """How many exact Hessians of ``scale.eval_size`` prompts ``runs`` runs at ``steps`` cost on
    evaluation protocol ``protocol`` (0 where the scale computes none of the model,
    :meth:`lintf.compute.settings.Scale.has_hessians`)."""
    if not scale.has_hessians(setting):
        return 0
    per = {"fixed": scale.batch_size / scale.eval_size, "authors": 1, "batches": scale.eval_large / scale.eval_size,
           "large": scale.eval_large / scale.eval_size}[protocol]
    return int(round(runs * len(steps) * per))


LANDSCAPE = ("batches", "large")
"""The evaluation protocols computed together, as one store entry (the ``batches`` are the
``large`` batch's first chunks): :func:`conditioning` stores them once, the plan plans them once."""


def _one_landscape(st, sc, kw):
    return {**kw, "eval_batch": LANDSCAPE[-1]} if kw.get("eval_batch") in LANDSCAPE else kw


def _resolve(setting, scale) -> tuple[Setting, Scale]:
    setting = setting if isinstance(setting, Setting) else get_setting(setting)
    scale = scale if isinstance(scale, Scale) else get_scale(default_scale() if scale is None else scale)
    return setting, scale


def _describe(setting: Setting) -> dict:
    """What is trained, as plain data for the cache key (names excluded: Setting 3 and
    Sec. 4.1's gamma setting are the same experiment and share results)."""
    return {"model": dataclasses.asdict(setting.model), "prompts": dataclasses.asdict(setting.prompts)}


def _with_setting(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    return frame.assign(setting=name)[["setting", *[c for c in frame.columns if c != "setting"]]]


READ_ONLY_VAR = "LINTF_READ_ONLY"
"""``LINTF_READ_ONLY=1``: every experiment is read from the store, never computed; a missing
one is a :class:`MissingExperiment` naming the command that computes it."""

_TOUCHED: contextvars.ContextVar = contextvars.ContextVar("lintf_touched", default=None)


class MissingExperiment(LookupError):
    """An experiment the store does not hold (``cached_only=True`` or ``LINTF_READ_ONLY=1``):
    ``kind``, ``setting``, ``scale`` and the ``command`` that computes it."""

    def __init__(self, kind: str, setting: str, scale: str, command: str):
        self.kind, self.setting, self.scale, self.command = kind, setting, scale, command
        super().__init__(f"no stored {kind} results for {setting} at scale {scale!r} with this lintf compute source; "
                         f"compute them with `{command}`")


def read_only() -> bool:
    """Whether ``$LINTF_READ_ONLY`` asks for a read-only store (``"1"``)."""
    return os.environ.get(READ_ONLY_VAR, "0") == "1"


class touched:
    """Context manager collecting ``(kind, key)`` of every store entry :func:`_get` serves
    inside it (dependencies included: the sweep behind ``lrs="grid"``, the runs behind Hessians);
    ``.entries`` is the list, in the order served, without repeats."""

    def __enter__(self):
        self.entries = []
        self._token = _TOUCHED.set(self.entries)
        return self

    def __exit__(self, *exc):
        _TOUCHED.reset(self._token)


def _missing(kind: str, setting: Setting, scale: Scale) -> MissingExperiment:
    # The whole plan's command: which chapter reads an experiment is the book's knowledge, and
    # the compute side never imports the book side (``python -m lintf plan`` lists the chapters).
    return MissingExperiment(kind, setting.name, scale.name, f"python -m lintf compute --scale {scale.name}")


def _get(kind: str, config: dict, compute, setting: Setting, scale: Scale, store, cached_only: bool):
    """Serve ``kind`` from the store, computing it unless ``cached_only`` or ``LINTF_READ_ONLY=1``
    (then a missing result is a :class:`MissingExperiment`, a ``LookupError``: the scorecard and
    a read-only build read, they never recompute). The key also holds the backend
    (``$LINTF_BACKEND``, :func:`lintf.compute.fast.backend`), which every computation here follows."""
    config = {**config, "backend": fast.backend()}
    store = store or ResultStore()
    if cached_only or read_only():
        result = store.load(kind, config)
        if result is None:
            raise _missing(kind, setting, scale)
    else:
        result = store.cached(kind, config, compute)
    seen = _TOUCHED.get()
    if seen is not None and (kind, result.key) not in seen:
        seen.append((kind, result.key))
    frames = {k: _with_setting(v, setting.name) if k != "meta" else v for k, v in result.frames.items()}
    record = {**provenance(result), "scale": scale.name, "setting": setting.name}
    for v in frames.values():
        v.attrs["provenance"] = [record]
    return dataclasses.replace(result, frames=frames)


def learning_rates(setting, scale=None, *, lrs="default", points=None, sweep_steps=None, seeds=None, steps=None,
                   device="auto", store=None, progress=None, cached_only=False) -> dict:
    """The rate per optimizer for ``lrs`` in :data:`LR_CHOICES`, or a dict given as is.

    points, sweep_steps : the size and iterations of the ``"grid"`` search (None: the
    setting's, see :func:`lr_sweep`). seeds, steps : the runs
    whose stability ``"stable"`` requires (None: the scale's), see :func:`stable_search`.
    """
    setting, scale = _resolve(setting, scale)
    if isinstance(lrs, dict):
        if sorted(lrs) != sorted(OPTIMIZERS):
            raise ValueError(f"lrs must give one rate for each of {list(OPTIMIZERS)}, got keys {sorted(lrs)}")
        return dict(zip(lrs, check_lrs("lrs", list(lrs.values()))))
    check_choice("lrs", lrs, LR_CHOICES)
    if lrs == "default":
        return dict(setting.lrs)
    if lrs == "paper":
        return dict(setting.paper_lrs)
    if lrs == "stable":
        return stable_search(setting, scale, seeds=seeds, steps=steps, device=device, store=store,
                             progress=progress, cached_only=cached_only)[0]
    sweep = lr_sweep(setting, scale, points=points, steps=sweep_steps, device=device, store=store,
                     progress=progress, cached_only=cached_only).frames["sweep"]
    rates = {row.optimizer: float(row.best_lr) for row in best_lr(sweep).itertuples()}
    failed = [o for o, lr in rates.items() if lr != lr]
    if failed:
        raise ValueError(f"lrs='grid': every rate of the grid diverged for {failed} on {setting.name}; "
                         "pass lrs='default', 'paper' or a dict")
    return rates


@declare("training", label="stable",
         size=lambda st, sc: 2 * (len(sc.sweep_seeds) + len(sc.seeds_for(st))) * sc.steps_for(st))
def stable_search(setting, scale=None, *, seeds=None, steps=None, device="auto", store=None, progress=None,
                  cached_only=False) -> tuple[dict, pd.DataFrame]:
    """The depth chapter's rule: for each optimizer, the largest rate of the grid ``default x
    scale.depth_grid`` at which no run of the search seeds ``scale.sweep_seeds`` diverges within
    ``steps`` iterations (None: the scale's); the tested ``seeds`` (None: the scale's) then
    train at the chosen rates. The search seeds must be disjoint from the tested ones
    (``ValueError`` otherwise), so the rate is not chosen on the runs it is judged on.

    The largest rate is tried first: :func:`training` of both optimizers at it on the search
    seeds. Every optimizer that diverged there on some search seed then tries all the smaller
    rates of the grid in ONE batched program (:func:`grid_training`: one program is cheaper than
    one try per rate). Returns ``(rates, tries)``: ``tries`` has one row per rate tried and
    optimizer, ``seeds`` (``"search"``), ``optimizer, lr, diverged, runs``, then one row per
    optimizer for the tested seeds at the chosen rate (``seeds`` ``"tested"``). An optimizer
    whose every rate diverged keeps the smallest (its runs then count as diverged in the claims).
    """
    rates, tries, _ = _stable(setting, scale, seeds, steps, device, store, progress, cached_only)
    return rates, tries


def _stable(setting, scale, seeds, steps, device, store, progress, cached_only):
    """:func:`stable_search`, plus the Result of the tested seeds' runs at the chosen rates."""
    setting, scale = _resolve(setting, scale)
    seeds = check_seeds("seeds", scale.seeds_for(setting) if seeds is None else seeds)
    search = check_seeds("sweep_seeds", scale.sweep_seeds)
    shared = sorted(set(seeds) & set(search))
    if shared:
        raise ValueError(f"the stable-rate search chooses on scale.sweep_seeds {list(search)}, which must be disjoint "
                         f"from the tested seeds {list(seeds)}; both hold {shared}")
    factors = sorted(scale.depth_grid, reverse=True)
    top = {o: setting.lrs[o] * factors[0] for o in OPTIMIZERS}
    kw = dict(steps=steps, device=device, store=store, progress=progress, cached_only=cached_only)
    results = [training(setting, scale, lrs=top, seeds=search, smoothness=False, **kw)]
    lower = [o for o in OPTIMIZERS if results[0].frames["runs"].query("optimizer == @o")["diverged"].any()]
    if lower and len(factors) > 1:
        configs = [(o, setting.lrs[o] * f) for o in lower for f in factors[1:]]
        results.append(grid_training(setting, scale, configs, seeds=search, smoothness=False, **kw))

    def rows(res, which):
        return [{"seeds": which, "optimizer": o, "lr": float(lr), "diverged": int(r["diverged"].sum()), "runs": len(r)}
                for (o, lr), r in res.frames["runs"].groupby(["optimizer", "lr"], sort=False)]

    tries = pd.DataFrame([row for res in results for row in rows(res, "search")])
    tries = tries.sort_values(["optimizer", "lr"], ascending=[True, False], ignore_index=True)
    rates = {}
    for o in OPTIMIZERS:
        mine = tries[tries["optimizer"] == o]
        fine = mine[mine["diverged"] == 0]
        rates[o] = float((fine if len(fine) else mine)["lr"].iloc[0 if len(fine) else -1])
    tested = training(setting, scale, lrs=rates, seeds=seeds, **kw)
    tries = pd.concat([tries, pd.DataFrame(rows(tested, "tested"))], ignore_index=True)
    return rates, tries, tested


FLOAT32_MAX = float(torch.finfo(torch.float32).max)
"""The largest finite float32 number (about 3.4e38): a loss above it is ``inf`` in float32."""
FLOAT32_NORM_LIMIT = FLOAT32_MAX ** 0.5
"""The largest gradient norm float32 computes (about 1.8e19): the sum of squares behind
``||g||`` overflows above it, and the engine then marks the run diverged."""


PAIR_SEEDS = 4
"""Seeds of :func:`precision_pair` by default (the first of the setting's)."""


@declare("precision", size=lambda st, sc, **kw: 2 * 2 * len(sc.seeds_for(st)[:PAIR_SEEDS]) * sc.steps_for(st))
def precision_pair(setting, scale=None, *, lrs="paper", seeds=None, steps=None, rtol: float = 0.01, device="auto",
                   store=None, progress=None, cached_only=False) -> dict:
    """The same runs trained in float32 and in float64 arithmetic (the depth chapter's figure).

    :func:`training` of ``setting`` at ``lrs`` (:data:`LR_CHOICES` but ``"stable"``, or a dict;
    default Table 2's) from ``seeds`` for ``steps`` iterations (None: the scale's), once with
    ``precision="float32"`` and once with ``"float64"`` (two store entries), both with
    ``skip_nonfinite=0``: the raw arithmetic, in which a run is diverged at its first non-finite
    step (the chapters' depth runs skip such steps, :attr:`lintf.compute.settings.Setting.skip_nonfinite`).
    ``seeds`` None: the first :data:`PAIR_SEEDS` of the setting's seeds (the pair explains; no
    claim is decided on it). A seed draws the same initialisation and batches in both
    (:data:`lintf.compute.engine.DTYPES`), so the runs differ by their arithmetic only.

    Returns frames ``history`` and ``runs`` of both (a ``precision`` column; history quantities
    ``loss``, ``grad_norm``, ``eval_loss``) and ``pairs``, one row per run (stored as kind
    ``"precision"``): ``optimizer, lr, seed``; ``diverged32``, ``diverged64``, the step at which
    each diverged (-1: never); ``part``, the first step at which the two training losses differ
    by more than ``rtol`` (relative) or one run diverged (-1: neither); ``loss64_at_stop32``,
    ``grad_norm64_at_stop32``, the float64 run's minibatch loss and gradient norm (before
    clipping) at the step float32 stopped; ``spikes64``, float64's steps with a gradient norm
    above :data:`FLOAT32_NORM_LIMIT`; ``max_loss64``, its largest minibatch loss.
    """
    setting, scale = _resolve(setting, scale)
    if isinstance(lrs, str) and lrs == "stable":
        raise ValueError("lrs must be 'default', 'paper', 'grid' or a dict for precision_pair, got 'stable'")
    if not isinstance(rtol, (int, float)) or isinstance(rtol, bool) or not 0 < rtol < 1:
        raise ValueError(f"rtol must be a number in (0, 1), got {rtol!r}")
    kw = dict(device=device, store=store, progress=progress, cached_only=cached_only)
    rates = learning_rates(setting, scale, lrs=lrs, **kw)
    if seeds is None:
        seeds = scale.seeds_for(setting)[:PAIR_SEEDS]
    got = {p: training(dataclasses.replace(setting, precision=p, skip_nonfinite=0), scale, lrs=rates, seeds=seeds,
                       steps=steps, smoothness=False, **kw) for p in ("float32", "float64")}
    keep = ["loss", "grad_norm", "eval_loss"]
    history = pd.concat([g.frames["history"].assign(precision=p) for p, g in got.items()], ignore_index=True)
    history = history[history["quantity"].isin(keep)].reset_index(drop=True)
    runs = pd.concat([g.frames["runs"].assign(precision=p) for p, g in got.items()], ignore_index=True)
    config = {"float32": got["float32"].key, "float64": got["float64"].key, "rtol": float(rtol)}
    result = _get("precision", config, lambda: {"pairs": _pairs(history, runs, rtol)}, setting, scale, store,
                  cached_only)
    return {"history": history, "runs": runs, "pairs": result.frames["pairs"]}


def _pairs(history: pd.DataFrame, runs: pd.DataFrame, rtol: float) -> pd.DataFrame:
    """:func:`precision_pair`'s ``pairs`` frame from both precisions' ``history`` and ``runs``."""
    rows = []
    for (o, lr, seed), r in runs.groupby(["optimizer", "lr", "seed"], sort=False):
        stop = {p: int(r.loc[r["precision"] == p, "diverged_step"].iloc[0]) for p in ("float32", "float64")}
        h = history[(history["optimizer"] == o) & (history["lr"] == lr) & (history["seed"] == seed)]
        wide = {q: h[h["quantity"] == q].pivot(index="step", columns="precision", values="value").sort_index()
                for q in ("loss", "grad_norm")}
        loss = wide["loss"]
        differ = (loss["float32"] / loss["float64"] - 1).abs() > rtol
        ends = [s for s in stop.values() if s >= 0]
        candidates = list(loss.index[differ.to_numpy()][:1]) + ([min(ends)] if ends else [])
        g64 = wide["grad_norm"]["float64"]
        at = stop["float32"]
        rows.append({"optimizer": o, "lr": float(lr), "seed": int(seed), "diverged32": stop["float32"],
                     "diverged64": stop["float64"], "part": int(min(candidates)) if candidates else -1,
                     "loss64_at_stop32": float(loss["float64"].get(at, np.nan)) if at >= 0 else np.nan,
                     "grad_norm64_at_stop32": float(g64.get(at, np.nan)) if at >= 0 else np.nan,
                     "spikes64": int((g64 > FLOAT32_NORM_LIMIT).sum()), "max_loss64": float(loss["float64"].max())})
    dtypes = {"optimizer": str, "lr": float, "seed": int, "diverged32": int, "diverged64": int, "part": int,
              "loss64_at_stop32": float, "grad_norm64_at_stop32": float, "spikes64": int, "max_loss64": float}
    return pd.DataFrame(rows, columns=list(dtypes)).astype(dtypes)


def _train_config(setting, scale, configs, seeds, steps, device, smoothness, clip=True) -> dict:
    config = {**_describe(setting), "configs": [list(c) for c in configs], "seeds": list(seeds), "steps": steps,
              "batch_size": scale.batch_size, "eval_every": scale.eval_every,
              "checkpoint_every": scale.checkpoint_every, "clip": setting.clip if clip else None,
              "smoothness": smoothness, "smoothness_every": scale.smoothness_every,
              "device": device.type, "dtype": setting.precision}
    if device.type == "cuda":                       # these flags change float32 numbers on a GPU
        config["precision"] = precision_flags(device)
    if setting.skip_nonfinite:                      # in the key only where set: other keys unchanged
        config["skip_nonfinite"] = setting.skip_nonfinite
    if any(o not in OPTIMIZERS for o, _ in configs):
        config["optim"] = dataclasses.asdict(OptimConfig(clip=config["clip"]))
    return config


def shared_batch(setting, scale=None):
    """The batch shared by every run of ``setting`` on which each training program records the
    measurement protocols of the claims' declared alternatives (:func:`lintf.compute.engine.train`'s
    ``shared_batch``): the authors' evaluation batch, ``scale.eval_size`` prompts drawn after seed
    99 by their sampler (:func:`lintf.compute.data.authors_prompts`), the batch of their loss
    figures and of their smoothness code. None where their sampler does not draw the setting's
    covariates (the nonlinear target), or draws another distribution (gamma with another shape)."""
    setting, scale = _resolve(setting, scale)
    p = setting.prompts
    if p.covariates not in AUTHORS_COVARIATES:
        return None
    if p.covariates == "gamma" and (p.options["k"], p.options["theta"]) != AUTHORS_GAMMA:
        return None
    return authors_prompts(scale.eval_size, p.n, p.d, p.covariates)


EVAL_QUANTITIES = ("eval_loss", "seed_eval_loss", "shared_eval_loss", "shared_eval_median", "seed_eval_median")
"""The history's quantities recorded at the evaluation steps, the last one included (a cut of a
longer program keeps them at its horizon)."""

SMOOTHNESS_QUANTITIES = ("smoothness", "grad_norm_probe", "smoothness_shared", "grad_norm_shared", "smoothness_probe",
                         "smoothness_seed")
"""The history's quantities recorded at the smoothness steps (a program without smoothness has none)."""

AUTHORS_GAMMA = (0.1, 10.0)
"""The gamma covariates' shape and scale in the authors' sampler (``k = 0.1``, ``sqrt(10 / k)``)."""


def _program(setting, scale, configs, seeds, steps, smoothness, dev, progress, clip=True):
    """The stored frames and tensors of one batched training program of ``configs x seeds``
    (``clip``: the setting's global clipping, else none), with the protocols of the declared
    alternatives recorded on :func:`shared_batch`."""
    res = train(setting.model, setting.prompts, configs, seeds, steps=steps, batch_size=scale.batch_size,
                optim_config=OptimConfig(clip=setting.clip if clip else None), eval_every=scale.eval_every,
                checkpoint_every=scale.checkpoint_every, record_smoothness=smoothness,
                smoothness_every=scale.smoothness_every, device=dev, dtype=setting.dtype, progress=progress,
                desc=setting.name, skip_nonfinite=setting.skip_nonfinite,
                shared_batch=shared_batch(setting, scale))
    meta = pd.DataFrame({"seconds": [res.seconds], "steps": [steps], "runs": [len(res.runs)]})
    return {"runs": res.runs, "history": res.history, "meta": meta}, res.to_tensors()


def grid_training(setting, scale=None, configs=None, *, seeds=None, steps=None, smoothness=None, clip=True,
                  device="auto", store=None, progress=None, cached_only=False):
    """:func:`training` of any list of ``(optimizer, lr)`` pairs (several rates per optimizer,
    any of :data:`lintf.compute.optim.ALL_OPTIMIZERS`) from every seed, one batched program; the same
    frames and tensors. clip : the setting's global-norm clipping (False: none)."""
    setting, scale = _resolve(setting, scale)
    if isinstance(configs, (str, bytes)) or not configs:
        raise ValueError("configs must be a non-empty list of (optimizer, lr) pairs")
    configs = [(check_choice("configs optimizer", o, ALL_OPTIMIZERS), float(check_lrs("configs lr", [lr])[0]))
               for o, lr in configs]
    if not isinstance(clip, bool):
        raise TypeError(f"clip must be True (the setting's clipping) or False (none), got {clip!r}")
    seeds = check_seeds("seeds", scale.seeds_for(setting) if seeds is None else seeds)
    steps = check_int("steps", scale.steps_for(setting) if steps is None else steps)
    smoothness = setting.record_smoothness if smoothness is None else bool(smoothness)
    dev = resolve_device(device)
    config = _train_config(setting, scale, configs, seeds, steps, dev, smoothness, clip)
    return _get("training", config,
                lambda: _program(setting, scale, configs, seeds, steps, smoothness, dev, progress, clip),
                setting, scale, store, cached_only)


ABLATION_BASE = {"sgdm": "sgdm", "normsgd": "sgdm", "sgdm_coordclip": "sgdm", "adam": "adam", "signsgd": "adam",
                 "rmsprop": "adam", "adam_b2_0.99": "adam", "adam_b2_0.999": "adam", "adam_nobias": "adam"}
"""Whose default rate centres each optimizer's grid in :func:`ablation`: SGDM's for the
methods that step along the (clipped, normalised) gradient, Adam's for those whose step has a
fixed size per coordinate."""


def ablation_grid(setting, scale=None, optimizers=ALL_OPTIMIZERS) -> list[tuple[str, float]]:
    """The ``(optimizer, lr)`` pairs of :func:`ablation`'s grid: the setting's default rate of
    :data:`ABLATION_BASE` times each of ``scale.ablation_factors``."""
    setting, scale = _resolve(setting, scale)
    return [(o, setting.lrs[ABLATION_BASE[check_choice("optimizers[i]", o, ALL_OPTIMIZERS)]] * f)
            for o in optimizers for f in scale.ablation_factors]


@declare("training", size=lambda st, sc: len(ALL_OPTIMIZERS) * (
    len(sc.ablation_factors) * len(sc.sweep_seeds) * min(sc.ablation_sweep_steps, sc.ablation_steps)
    + len(sc.seeds) * sc.ablation_steps))
def ablation(setting, scale=None, *, optimizers=ALL_OPTIMIZERS, clip=True, seeds=None, steps=None, device="auto",
             store=None, progress=None, cached_only=False):
    """Every optimizer of ``optimizers`` at its own best rate: the ablation chapter's runs.

    The rate: the lowest mean final training loss (:func:`lintf.book.summaries.best_lr`) among the
    rates of :func:`ablation_grid` at which no seed of ``scale.sweep_seeds`` diverged in
    ``scale.ablation_sweep_steps`` iterations (one batched program; every rate diverged: the
    smallest). Then every optimizer at its rate from every one of ``seeds`` (None: the scale's)
    for ``steps`` iterations (None: ``scale.ablation_steps``), one batched program, with the
    directional smoothness. clip : the setting's global clipping (the paper's), or none.

    Returns ``(runs, best)``: the Result of the final runs (frames ``runs, history`` as
    :func:`training`, checkpoints) and the grid's :func:`lintf.book.summaries.best_lr` table.
    """
    setting, scale = _resolve(setting, scale)
    if isinstance(optimizers, str) or not optimizers:
        raise ValueError(f"optimizers must be a non-empty list among {list(ALL_OPTIMIZERS)}, got {optimizers!r}")
    optimizers = tuple(check_choice("optimizers[i]", o, ALL_OPTIMIZERS) for o in optimizers)
    if len(set(optimizers)) != len(optimizers):
        raise ValueError(f"optimizers must be distinct, got {list(optimizers)}")
    seeds = check_seeds("seeds", scale.seeds if seeds is None else seeds)
    steps = check_int("steps", scale.ablation_steps if steps is None else steps)
    kw = dict(clip=clip, device=device, store=store, progress=progress, cached_only=cached_only)
    grid = grid_training(setting, scale, ablation_grid(setting, scale, optimizers), seeds=scale.sweep_seeds,
                         steps=min(scale.ablation_sweep_steps, steps), smoothness=False, **kw)
    final = final_loss(grid.frames["history"], quantity="loss", runs=grid.frames["runs"])
    best = best_lr(final)
    rates = {}
    for o in optimizers:
        row = best[best["optimizer"] == o]
        rates[o] = float(row["best_lr"].iloc[0])
        if rates[o] != rates[o]:                                       # every rate diverged
            rates[o] = min(lr for name, lr in ablation_grid(setting, scale, [o]))
    runs = grid_training(setting, scale, [(o, rates[o]) for o in optimizers], seeds=seeds, steps=steps,
                         smoothness=True, **kw)
    return runs, best


@declare("conditioning", unit="hessian", needs=lambda st, sc: [("ablation", {})],
         size=lambda st, sc: hessian_count(st, sc, len(ALL_OPTIMIZERS) * len(sc.seeds),
                                           _checkpoints(sc, sc.ablation_steps)[-1:], sc.eval_protocol))
def ablation_conditioning(setting, scale=None, *, optimizers=ALL_OPTIMIZERS, clip=True, seeds=None, steps=None,
                          eval_batch=None, device="auto", store=None, progress=None, cached_only=False):
    """``R_med`` (:func:`conditioning`'s frame) of the runs of :func:`ablation`, on protocol
    ``eval_batch`` (None: the scale's verdict protocol), at the last of ``scale.table_steps``
    those runs reach (else their last checkpoint before the end)."""
    setting, scale = _resolve(setting, scale)
    protocol = _protocol(eval_batch, scale)
    runs, _ = ablation(setting, scale, optimizers=optimizers, clip=clip, seeds=seeds, steps=steps, device=device,
                       store=store, progress=progress, cached_only=cached_only)
    from .engine import TrainResult
    have = sorted(TrainResult.checkpoints_from_tensors(runs.tensors))
    table = [s for s in scale.table_steps if s in have]
    at = [table[-1]] if table else [have[-2] if len(have) > 1 else have[-1]]
    return _conditioning(setting, scale, runs, protocol, at, store, progress, cached_only)


def _join(parts, seeds) -> tuple[dict, dict]:
    """One training's frames and tensors from ``parts``, a list of ``(runs, history, tensors)``
    taken from stored Results (``runs`` a subset of a Result's rows, its ``run`` column their
    row in ``tensors``): runs in optimizer then ``seeds`` order, renumbered, checkpoints
    row-aligned with them, history in the engine's order (quantity, run, step)."""
    o_at, s_at = {o: i for i, o in enumerate(OPTIMIZERS)}, {s: i for i, s in enumerate(seeds)}
    runs = pd.concat([r.assign(_part=i) for i, (r, _, _) in enumerate(parts)], ignore_index=True)
    runs = runs.assign(_o=runs["optimizer"].map(o_at), _s=runs["seed"].map(s_at))
    runs = runs.sort_values(["_o", "_s"], kind="stable").reset_index(drop=True)
    rows = [torch.tensor(runs.loc[runs["_part"] == i, "run"].tolist(), dtype=torch.long) for i in range(len(parts))]
    order = torch.tensor(np.argsort(runs["_part"].to_numpy(), kind="stable")).argsort()   # parts' rows -> runs
    tensors = {k: torch.cat([t[k][rows[i]] for i, (_, _, t) in enumerate(parts)])[order] for k in parts[0][2]}
    history = pd.concat([h for _, h, _ in parts], ignore_index=True)
    quantities = {q: i for i, q in enumerate(pd.unique(history["quantity"]))}
    history = (history.assign(_q=history["quantity"].map(quantities), _o=history["optimizer"].map(o_at),
                              _s=history["seed"].map(s_at))
               .sort_values(["_q", "_o", "_s", "step"], kind="stable")
               .drop(columns=["_q", "_o", "_s", "setting"], errors="ignore").reset_index(drop=True))
    runs = runs.drop(columns=["_part", "_o", "_s", "setting"], errors="ignore")
    runs["run"] = np.arange(len(runs))
    meta = pd.DataFrame({"seconds": [0.0], "steps": [int(history["step"].max())], "runs": [len(runs)]})
    return {"runs": runs, "history": history, "meta": meta}, tensors


def _training_same(st, sc, kw):
    kw = dict(kw)
    if kw.get("steps") == sc.steps_for(st):
        del kw["steps"]
    points, steps = sc.sweep_for(st)
    if kw.get("points") == points:
        del kw["points"]
    if kw.get("sweep_steps") == steps:
        del kw["sweep_steps"]
    return kw


def _training_needs(st, sc, lrs="default", steps=None, points=None, sweep_steps=None, **_):
    if isinstance(lrs, str) and lrs == "grid":
        return [("lr_sweep", {"points": points, "steps": sweep_steps})]
    # Table 2's rates are the depth search's first try: after it, they are often stored already
    if isinstance(lrs, str) and (lrs == "stable" or (st.role == "depth" and steps is None)):
        return [("stable_search", {})]
    return []


@declare("training", same=_training_same, needs=_training_needs,   # "stable": the search's runs, counted there
         size=lambda st, sc, lrs="default", steps=None, **_: 0 if isinstance(lrs, str) and lrs == "stable"
         else 2 * len(sc.seeds_for(st)) * (steps or sc.steps_for(st)))
def training(setting, scale=None, *, lrs="default", seeds=None, steps=None, smoothness=None, points=None,
             sweep_steps=None, device="auto", store=None, progress=None, cached_only=False):
    """Train SGDM and Adam on ``setting`` from every seed (one batched program).

    lrs : :data:`LR_CHOICES` or a dict ``{optimizer: rate}`` (:func:`learning_rates`). With
        ``"stable"`` the tested seeds' runs at the rates :func:`stable_search` chose on the
        search seeds (the same entry as ``lrs`` = those rates).
    smoothness : record the directional smoothness (None: the setting's ``record_smoothness``).
    points, sweep_steps : the grid of ``lrs="grid"`` (see :func:`learning_rates`).

    Returns a Result with frames ``runs`` and ``history`` (see
    :class:`lintf.compute.engine.TrainResult`, plus a ``setting`` column) and the checkpoints as
    tensors (:meth:`lintf.compute.engine.TrainResult.checkpoints_from_tensors`).
    """
    setting, scale = _resolve(setting, scale)
    seeds = check_seeds("seeds", scale.seeds_for(setting) if seeds is None else seeds)
    steps = check_int("steps", scale.steps_for(setting) if steps is None else steps)
    smoothness = setting.record_smoothness if smoothness is None else bool(smoothness)
    dev = resolve_device(device)
    if isinstance(lrs, str) and lrs == "stable":
        if smoothness != setting.record_smoothness:
            raise ValueError("smoothness must be None (the setting's) with lrs='stable'")
        return _stable(setting, scale, seeds, steps, device, store, progress, cached_only)[2]
    rates = learning_rates(setting, scale, lrs=lrs, points=points, sweep_steps=sweep_steps, seeds=seeds, steps=steps,
                           device=device, store=store, progress=progress, cached_only=cached_only)
    configs = [(o, rates[o]) for o in OPTIMIZERS]
    config = _train_config(setting, scale, configs, seeds, steps, dev, smoothness)
    return _get("training", config, lambda: _program(setting, scale, configs, seeds, steps, smoothness, dev, progress),
                setting, scale, store, cached_only)


AT_CHOICES = ("table", "checkpoints")
"""Where :func:`conditioning` computes Hessians: the table's iterations
(:attr:`lintf.compute.settings.Scale.table_steps`, those the runs reach) or every checkpoint that
:meth:`lintf.compute.settings.Scale.hessian_steps_for` chooses (the R_med curves); or a list of steps."""


def _hessian_steps(setting, scale, checkpoints, at) -> list[int]:
    if isinstance(at, str):
        check_choice("at", at, AT_CHOICES)
        if at == "checkpoints":
            return scale.hessian_steps_for(setting, checkpoints)
        if not scale.has_hessians(setting):
            return []
        return [s for s in scale.table_steps if s in checkpoints]
    if isinstance(at, (int, bool)) or not hasattr(at, "__iter__"):
        raise TypeError(f"at must be one of {list(AT_CHOICES)} or a list of checkpoint steps, got {at!r}")
    steps = sorted({check_int("at[i]", s, minimum=0) for s in at})
    missing = [s for s in steps if s not in checkpoints]
    if missing:
        raise ValueError(f"at: steps {missing} are not checkpoints of these runs ({sorted(checkpoints)})")
    return steps


def _protocol(eval_batch, scale) -> str:
    return check_choice("eval_batch", scale.eval_protocol if eval_batch is None else eval_batch,
                        EVAL_PROTOCOLS)


def eval_chunks(setting, scale, seed: int, count: int, *, stream: int = 0, dtype=torch.float64):
    """``count`` independent evaluation batches of ``scale.eval_size`` prompts belonging to
    run seed ``seed``: ``Z (count, eval_size, d+1, n+1)``, ``y (count, eval_size)``.

    Drawn on the CPU from a generator seeded by ``(99, stream, seed)`` (independent of the
    training batches and of other seeds; ``stream`` 0 serves the ``batches`` and ``large``
    protocols, 1 the batch-size figure). The first ``k`` chunks do not depend on ``count``.
    """
    setting, scale = _resolve(setting, scale)
    seed = check_int("seed", seed, minimum=0)
    count = check_int("count", count)
    word = np.random.SeedSequence([EVAL_SEED, stream, seed]).generate_state(2, dtype=np.uint64)[0]
    gen = torch.Generator(device="cpu").manual_seed(int(word >> np.uint64(1)))
    chunks = [setting.prompts.sample(scale.eval_size, generator=gen, dtype=dtype) for _ in range(count)]
    return torch.stack([c[0] for c in chunks]), torch.stack([c[1] for c in chunks])


def _rows(runs, step, H, protocol, batch, size):
    """Tidy rows of the Hessians ``H (R, p, p)`` of ``runs`` (row order) at ``step``. A run
    diverged by then, or whose Hessian is not finite (a deep model's loss can overflow on some
    prompt of the evaluation batch) or has no eigendecomposition, gets NaN."""
    alive_at = [not run.diverged or step <= run.diverged_step for run in runs.itertuples()]
    eig = torch.full(H.shape[:-1], float("nan"), dtype=H.dtype)
    values = {m: torch.full(H.shape[:-2], float("nan"), dtype=H.dtype) for m in ("eig", "diag")}
    for r in range(H.shape[0]):
        if not (alive_at[r] and bool(torch.isfinite(H[r]).all())):
            continue
        try:
            eig[r] = torch.linalg.eigvalsh((H[r] + H[r].T) / 2)
        except torch.linalg.LinAlgError:
            continue
        for m in ("eig", "diag"):
            values[m][r] = measure.robust_condition(H[r], m)
    rows = []
    for r, run in enumerate(runs.itertuples()):
        alive = alive_at[r]
        for method in ("eig", "diag"):
            rows.append({"optimizer": run.optimizer, "lr": run.lr, "seed": run.seed, "step": step,
                         "eval_batch": protocol, "batch": batch, "eval_size": size, "method": method,
                         "value": float(values[method][r]) if alive else float("nan"),
                         "lambda_max": float(eig[r, -1]) if method == "eig" else float("nan"),
                         "lambda_median": float(eig[r].abs().median()) if method == "eig" else float("nan")})
    return rows


CONDITIONING_DTYPES = {"optimizer": str, "lr": float, "seed": int, "step": int, "eval_batch": str, "batch": int,
                       "eval_size": int, "method": str, "value": float, "lambda_max": float,
                       "lambda_median": float}


def _checkpoints(sc: Scale, steps: int) -> list[int]:
    return sorted(set(range(0, steps + 1, sc.checkpoint_every)) | {steps})


def _conditioning_size(st, sc, eval_batch=None, at="checkpoints", lrs="default", **_):
    steps = _hessian_steps(st, sc, _checkpoints(sc, sc.steps_for(st)), at)
    return hessian_count(st, sc, 2 * len(sc.seeds_for(st)), steps, eval_batch or sc.eval_protocol)


@declare("conditioning", unit="hessian", same=_one_landscape, size=_conditioning_size,
         needs=lambda st, sc, lrs="default", **_: [("training", {"lrs": lrs})])
def conditioning(setting, scale=None, *, eval_batch=None, at="checkpoints", lrs="default", seeds=None, steps=None,
                 smoothness=None, device="auto", store=None, progress=None, cached_only=False):
    """``R_med`` of the exact float64 Hessian, by eigenvalues and by the diagonal, of the runs
    of :func:`training` (same ``lrs, seeds, steps, smoothness``) at the steps ``at`` (:data:`AT_CHOICES`
    or a list), on the evaluation protocol ``eval_batch`` (:data:`lintf.compute.settings.EVAL_PROTOCOLS`;
    None: the scale's ``eval_protocol``, the one claim 3 is decided on):

    - ``"fixed"``: the book's own evaluation batch of ``scale.batch_size`` prompts;
    - ``"authors"``: the authors' batch (:func:`lintf.compute.data.authors_prompts`, ``scale.eval_size``
      prompts, seed 99), shared by every seed and checkpoint: the paper's protocol;
    - ``"batches"``: ``scale.eval_batches`` independent batches of ``scale.eval_size`` prompts
      per seed (:func:`eval_chunks`), one row per batch;
    - ``"large"``: one batch of ``scale.eval_large`` prompts per seed (the chunks of
      :func:`eval_chunks` together; the ``batches`` protocol's are its first chunks).

    A seed's SGDM and Adam runs are evaluated on the same batches (paired), and every seed
    on its own (so seeds are independent units, batches included). Empty (no rows) for a
    model above the scale's ``hessian_max_params``.

    Frame ``conditioning``: :data:`CONDITIONING_DTYPES` (``batch`` numbers the batches of a
    protocol, 0 for single-batch ones; ``lambda_max``, ``lambda_median`` for ``method == "eig"``).
    """
    setting, scale = _resolve(setting, scale)
    protocol = _protocol(eval_batch, scale)
    if protocol == "authors" and setting.prompts.covariates not in AUTHORS_COVARIATES:
        raise ValueError(f"eval_batch='authors' needs covariates among {list(AUTHORS_COVARIATES)}; "
                         f"{setting.name} has {setting.prompts.covariates!r}")
    if isinstance(at, str):
        check_choice("at", at, AT_CHOICES)
    trained = training(setting, scale, lrs=lrs, seeds=seeds, steps=steps, smoothness=smoothness, device=device,
                       store=store, progress=progress, cached_only=cached_only)
    return _conditioning(setting, scale, trained, protocol, at, store, progress, cached_only)


def _conditioning(setting, scale, trained, protocol, at, store, progress, cached_only):
    """:func:`conditioning` of the runs of ``trained`` (a training Result)."""
    from .engine import TrainResult
    checkpoints = TrainResult.checkpoints_from_tensors(trained.tensors)
    todo = _hessian_steps(setting, scale, checkpoints, at)
    sizes = {"fixed": scale.batch_size, "authors": scale.eval_size, "batches": scale.eval_size,
             "large": scale.eval_large}
    stored = "landscape" if protocol in LANDSCAPE else protocol
    config = {"training": trained.key, "hessian_steps": todo, "eval_batch": stored, "eval_size": scale.eval_size,
              "fixed_size": scale.batch_size, "eval_batches": scale.eval_batches, "eval_large": scale.eval_large}

    def compute():
        runs = trained.frames["runs"].reset_index(drop=True)
        model, rows = setting.model, []
        desc = f"{setting.name}: exact Hessians ({stored} protocol) of {len(runs)} runs"
        if protocol in ("fixed", "authors"):
            if protocol == "fixed":
                Z, y = eval_batch_of(setting.prompts, scale.batch_size, dtype=torch.float64)
            else:
                p = setting.prompts
                Z, y = authors_prompts(scale.eval_size, p.n, p.d, p.covariates)
                Z, y = Z.double(), y.double()
            for step in bar(todo, desc=desc, progress=progress, unit="checkpoint"):
                H = _unique_hessians(model, checkpoints[step], Z, y)                  # (R, p, p)
                rows += _rows(runs, step, H, protocol, 0, sizes[protocol])
        else:
            count = scale.eval_large // scale.eval_size
            # every run on its seed's chunks: Z (count, R, B, ...), one Hessian call per (step, chunk)
            chunks = {int(s): eval_chunks(setting, scale, int(s), count) for s in runs["seed"].unique()}
            Zr = torch.stack([chunks[int(s)][0] for s in runs["seed"]], dim=1)
            yr = torch.stack([chunks[int(s)][1] for s in runs["seed"]], dim=1)
            for step in bar(todo, desc=desc, progress=progress, unit="checkpoint"):
                params = {k: v.double() for k, v in checkpoints[step].items()}
                total = None
                for k in range(count):
                    H = measure.hessian(model, params, Zr[k], yr[k])                   # (R, p, p)
                    if k < scale.eval_batches:
                        rows += _rows(runs, step, H, "batches", k, scale.eval_size)
                    total = H if total is None else total + H
                rows += _rows(runs, step, total / count, "large", 0, scale.eval_large)
        frame = pd.DataFrame(rows, columns=list(CONDITIONING_DTYPES)).astype(CONDITIONING_DTYPES)
        return {"conditioning": frame.sort_values(["step", "optimizer", "seed", "batch"], ignore_index=True)}

    result = _get("conditioning", config, compute, setting, scale, store, cached_only)
    frame = result.frames["conditioning"]
    frames = {**result.frames, "conditioning": frame[frame["eval_batch"] == protocol].reset_index(drop=True)}
    return dataclasses.replace(result, frames=frames)


@declare("training", needs=lambda st, sc: [("training", {})] if sc.table_shared_seeds(st) else [],
         size=lambda st, sc: 2 * len(set(sc.table_seeds) - set(sc.table_shared_seeds(st))) * sc.table_horizon)
def table_training(setting, scale=None, *, lrs="default", device="auto", store=None, progress=None,
                   cached_only=False):
    """The runs of the condition-number table: SGDM and Adam from every one of
    ``scale.table_seeds``, ``scale.table_horizon`` iterations, without the smoothness record
    (the table reads their checkpoints and divergence).

    The seeds that the long loss runs of :func:`training` also train (same rates, at least as
    many iterations) are not trained again: their first ``table_horizon`` iterations are those
    runs' (the same initialisation, the same batches), cut at the horizon; the other seeds are
    one batched program. Frames and tensors as :func:`training`, runs in optimizer then seed order.
    """
    setting, scale = _resolve(setting, scale)
    kw = dict(lrs=lrs, device=device, store=store, progress=progress, cached_only=cached_only)
    horizon, seeds = scale.table_horizon, scale.table_seeds
    shared = scale.table_shared_seeds(setting)
    if not shared:
        return training(setting, scale, seeds=seeds, steps=horizon, smoothness=False, **kw)
    long = training(setting, scale, **kw)
    rest = [s for s in seeds if s not in shared]
    extra = training(setting, scale, seeds=rest, steps=horizon, smoothness=False, **kw) if rest else None
    rates = learning_rates(setting, scale, lrs=lrs, device=device, store=store, progress=progress,
                           cached_only=cached_only)
    dev = resolve_device(device)
    config = {**_train_config(setting, scale, [(o, rates[o]) for o in OPTIMIZERS], seeds, horizon, dev, False),
              "cut_from": long.key, "with": None if extra is None else extra.key}
    return _get("training", config, lambda: _cut_and_join(long, shared, extra, horizon, seeds),
                setting, scale, store, cached_only)


def _runs_at(runs: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """A copy of a runs table as a program of ``horizon`` iterations records it: a divergence at
    or after ``horizon`` has not happened yet."""
    runs = runs.copy()
    late = runs["diverged_step"] >= horizon
    runs.loc[late, "diverged"], runs.loc[late, "diverged_step"] = False, -1
    return runs


def _cut_and_join(long, shared, extra, horizon: int, seeds) -> tuple[dict, dict]:
    """The runs of seeds ``shared`` of ``long`` cut at iteration ``horizon`` (what a program of
    ``horizon`` iterations records: losses before it, evaluations and checkpoints up to it,
    divergence before it; no smoothness), joined with ``extra``'s runs (:func:`_join`)."""
    r, h = long.frames["runs"], long.frames["history"]
    r = _runs_at(r[r["seed"].isin(shared)], horizon)
    h = h[h["seed"].isin(shared) & ~h["quantity"].isin(SMOOTHNESS_QUANTITIES)]
    h = h[(h["step"] < horizon) | (h["quantity"].isin(EVAL_QUANTITIES) & (h["step"] == horizon))]
    parts = [(r, h, {k: v for k, v in long.tensors.items() if int(k.split("/")[0]) <= horizon})]
    if extra is not None:
        parts.append((extra.frames["runs"], extra.frames["history"], extra.tensors))
    return _join(parts, seeds)


@declare("conditioning", unit="hessian", same=_one_landscape, needs=lambda st, sc, **kw: [("table_training", {})],
         size=lambda st, sc, eval_batch=None, **_: hessian_count(st, sc, 2 * len(sc.table_seeds), sc.table_steps,
                                                                 eval_batch or sc.eval_protocol))
def table_conditioning(setting, scale=None, *, eval_batch=None, lrs="default", device="auto",
                       store=None, progress=None, cached_only=False):
    """The condition-number table's experiment: :func:`conditioning` of the runs of
    :func:`table_training` at ``scale.table_steps``, on protocol ``eval_batch`` (None: the
    scale's verdict protocol)."""
    setting, scale = _resolve(setting, scale)
    protocol = _protocol(eval_batch, scale)
    if protocol == "authors" and setting.prompts.covariates not in AUTHORS_COVARIATES:
        raise ValueError(f"eval_batch='authors' needs covariates among {list(AUTHORS_COVARIATES)}; "
                         f"{setting.name} has {setting.prompts.covariates!r}")
    trained = table_training(setting, scale, lrs=lrs, device=device, store=store, progress=progress,
                             cached_only=cached_only)
    return _conditioning(setting, scale, trained, protocol, "table", store, progress, cached_only)


@declare("curve", label="curve", unit="hessian", needs=lambda st, sc, **kw: [("table_training", {})],
         size=lambda st, sc, **kw: 2 * sc.curve_chunks if sc.has_hessians(st) else 0)
def batch_size_curve(setting, scale=None, *, step=None, seed: int = 0, lrs="default", device="auto", store=None,
                     progress=None, cached_only=False):
    """``R_med`` against the size of the evaluation batch, at one checkpoint per optimizer.

    The runs of seed ``seed`` of the table's experiment (:func:`table_conditioning`), at
    ``step`` (None: the first table step). ``scale.curve_chunks`` disjoint batches of
    ``scale.eval_size`` prompts (:func:`eval_chunks`, stream 1) give one exact Hessian each;
    a batch of size ``s`` in ``scale.curve_sizes`` is ``s / eval_size`` consecutive chunks, whose
    Hessian is the mean of theirs (the loss is a mean over prompts), so every size has
    ``curve_chunks * eval_size // s`` independent batches.

    Frame ``curve``: ``setting, optimizer, lr, seed, step, size, batch, method, value``.
    """
    setting, scale = _resolve(setting, scale)
    trained = table_training(setting, scale, lrs=lrs, device=device, store=store, progress=progress,
                             cached_only=cached_only)
    from .engine import TrainResult
    checkpoints = TrainResult.checkpoints_from_tensors(trained.tensors)
    step = scale.table_steps[0] if step is None else check_int("step", step, minimum=0)
    if step not in checkpoints:
        raise ValueError(f"step must be a checkpoint of the table's runs {sorted(checkpoints)}, got {step}")
    seed = check_int("seed", seed, minimum=0)
    runs = trained.frames["runs"].reset_index(drop=True)
    if seed not in set(runs["seed"]):
        raise ValueError(f"seed must be one of the table's seeds {sorted(set(runs['seed']))}, got {seed}")
    config = {"training": trained.key, "step": step, "seed": seed, "chunks": scale.curve_chunks,
              "chunk_size": scale.eval_size, "sizes": list(scale.curve_sizes)}

    def compute():
        idx = runs.index[runs["seed"] == seed].to_numpy()
        sub = runs.loc[idx]
        params = {k: v[torch.tensor(idx.tolist())] for k, v in checkpoints[step].items()}
        Zs, ys = eval_chunks(setting, scale, seed, scale.curve_chunks, stream=1)
        H = torch.stack([_unique_hessians(setting.model, params, Zs[k], ys[k])
                         for k in bar(range(scale.curve_chunks), desc=f"{setting.name}: Hessians of "
                                      f"{scale.curve_chunks} batches", progress=progress, unit="batch")])
        rows = []
        for size in scale.curve_sizes:
            g = size // scale.eval_size
            for b in range(scale.curve_chunks // g):
                Hb = H[b * g:(b + 1) * g].mean(0)                                   # (R, p, p)
                for method in ("eig", "diag"):
                    values = measure.robust_condition(Hb, method)
                    for r, run in enumerate(sub.itertuples()):
                        rows.append({"optimizer": run.optimizer, "lr": run.lr, "seed": run.seed, "step": step,
                                     "size": size, "batch": b, "method": method, "value": float(values[r])})
        dtypes = {"optimizer": str, "lr": float, "seed": int, "step": int, "size": int, "batch": int,
                  "method": str, "value": float}
        return {"curve": pd.DataFrame(rows, columns=list(dtypes)).astype(dtypes)}

    return _get("curve", config, compute, setting, scale, store, cached_only)


def _unique_hessians(model, params: dict, Z, y) -> torch.Tensor:
    """Float64 Hessians ``(R, p, p)`` of runs ``params`` (tensors ``(R, ...)``), each distinct
    parameter vector computed once (at step 0, SGDM and Adam of a seed share theirs)."""
    theta = model.flatten({k: v.double() for k, v in params.items()})
    unique, inverse = torch.unique(theta, dim=0, return_inverse=True)
    H = measure.hessian(model, model.unflatten(unique), Z, y)
    return H[inverse]


def gradient_noise(setting, scale=None, *, seed: int = 0, device="auto", store=None, progress=None, cached_only=False):
    """``||g_B - g||`` at the initialisation of ``seed`` for ``scale.noise_batches`` minibatches
    of ``scale.noise_batch_size`` prompts against one batch of ``scale.noise_big_batch``.

    Frame ``noise``: ``setting, seed, sample, value``. Frame ``spectrum``: ``setting, seed,
    index, value``, the eigenvalues (descending) of the sample covariance of the deviations
    ``g_B - g``: the norm of a Gaussian vector of that covariance has a law that depends on
    them alone, which is the null that claim 2 compares the measured norms with.
    """
    setting, scale = _resolve(setting, scale)
    seed = check_int("seed", seed, minimum=0)
    dev = resolve_device(device)
    config = {**_describe(setting), "seed": seed, "batches": scale.noise_batches,
              "batch_size": scale.noise_batch_size, "big_batch": scale.noise_big_batch, "device": dev.type}
    if dev.type == "cuda":
        config["precision"] = precision_flags(dev)

    def compute():
        params = {k: v[0] for k, v in initial_params(setting.model, [seed], device=dev).items()}
        gen = torch.Generator(device="cpu").manual_seed(10_000 + seed)

        def sample(shape, generator):
            Z, y = setting.prompts.sample(shape, generator=generator)
            return Z.to(dev), y.to(dev)

        norms, deviations = measure.gradient_noise(
            setting.model, params, sample, num_batches=scale.noise_batches, batch_size=scale.noise_batch_size,
            big_batch=scale.noise_big_batch, generator=gen, deviations=True)
        X = deviations.double().cpu()
        X = X - X.mean(0)
        spectrum = torch.linalg.eigvalsh(X.T @ X / max(1, X.shape[0] - 1)).flip(0).clamp_min(0.0)
        return {"noise": pd.DataFrame({"seed": seed, "sample": range(len(norms)),
                                       "value": norms.double().cpu().numpy()}),
                "spectrum": pd.DataFrame({"seed": seed, "index": range(len(spectrum)),
                                          "value": spectrum.numpy()})}

    return _get("noise", config, compute, setting, scale, store, cached_only)


@declare("noise", label="noise", unit="gradient",
         size=lambda st, sc: len(sc.noise_seeds) * (sc.noise_batches + -(-sc.noise_big_batch // sc.noise_batch_size)))
def noise_at_seeds(setting, scale=None, *, seeds=None, device="auto", store=None, progress=None, cached_only=False):
    """:func:`gradient_noise` at every initialisation seed of ``seeds`` (None: the scale's
    ``noise_seeds``), frames ``noise`` and ``spectrum`` concatenated."""
    setting, scale = _resolve(setting, scale)
    seeds = check_seeds("seeds", scale.noise_seeds if seeds is None else seeds)
    got = [gradient_noise(setting, scale, seed=s, device=device, store=store, progress=progress,
                          cached_only=cached_only) for s in seeds]
    out = {k: pd.concat([g.frames[k] for g in got], ignore_index=True) for k in ("noise", "spectrum")}
    for frame in out.values():                                  # every seed's provenance
        frame.attrs["provenance"] = [r for g in got for r in g.frames["noise"].attrs.get("provenance", [])]
    return out


VARIANTS = with_role(*VARIANT_ROLES)
"""The settings of :data:`VARIANT_ROLES` (softmax, separate Q/K, the large model)."""

def sweep_rates(setting, scale=None, *, points: int | None = None) -> list[tuple[str, float]]:
    """The ``(optimizer, lr)`` pairs of the grid search: :meth:`Setting.grid` with the scale's
    ``grid_points``, or ``variant_grid_points`` for :data:`VARIANTS` (``points`` overrides)."""
    setting, scale = _resolve(setting, scale)
    points, _ = scale.sweep_for(setting, points=points)
    return [(o, lr) for o in OPTIMIZERS for lr in setting.grid(o, points)]


def _sweep_same(st, sc, kw):
    points, steps = sc.sweep_for(st)
    return {k: v for k, v in kw.items() if v != {"points": points, "steps": steps}[k]}


@declare("sweep", label="sweep", same=_sweep_same,
         size=lambda st, sc, points=None, steps=None: len(sweep_rates(st, sc, points=points)) * len(sc.sweep_seeds)
         * sc.sweep_for(st, points, steps)[1])
def lr_sweep(setting, scale=None, *, points: int | None = None, steps: int | None = None, device="auto", store=None,
             progress=None, cached_only=False):
    """The learning-rate grid search: every rate of :func:`sweep_rates` for both optimizers,
    ``scale.sweep_seeds``, ``steps`` iterations (None: ``scale.sweep_steps``, or
    ``variant_sweep_steps`` for :data:`VARIANTS`, at most the setting's horizon), one batched
    program.

    Frame ``sweep``: ``setting, optimizer, lr, seed, final_loss, diverged, diverged_step`` with
    ``final_loss`` that of :func:`lintf.book.summaries.final_loss` on the training loss (the mean over
    the last 10% of steps; NaN if diverged), and ``final_loss_half``, ``diverged_half``: the same
    over the first half of the steps (whether the grid's choice is stable:
    :func:`lintf.book.summaries.best_lr` with ``at="half"``).
    """
    setting, scale = _resolve(setting, scale)
    dev = resolve_device(device)
    configs = sweep_rates(setting, scale, points=points)
    _, steps = scale.sweep_for(setting, steps=steps)                    # never longer than the main runs
    config = {**_describe(setting), "configs": configs, "seeds": list(scale.sweep_seeds),
              "steps": steps, "batch_size": scale.batch_size, "clip": setting.clip,
              "device": dev.type, "dtype": setting.precision}
    if dev.type == "cuda":
        config["precision"] = precision_flags(dev)

    def compute():
        res = train(setting.model, setting.prompts, configs, scale.sweep_seeds, steps=steps,
                    batch_size=scale.batch_size, optim_config=OptimConfig(clip=setting.clip),
                    eval_every=steps, checkpoint_every=None, device=dev, dtype=setting.dtype, progress=progress,
                    desc=f"{setting.name} lr grid")
        final = final_loss(res.history.assign(setting=setting.name), quantity="loss", frac=0.1,
                           runs=res.runs.assign(setting=setting.name))
        sweep = res.runs[["optimizer", "lr", "seed", "diverged_step"]].merge(
            final[["optimizer", "lr", "seed", "final_loss", "diverged"]], on=["optimizer", "lr", "seed"])
        half = max(1, steps // 2)
        first = final_loss(res.history[res.history["step"] < half].assign(setting=setting.name), quantity="loss",
                           frac=0.1, runs=_runs_at(res.runs, half).assign(setting=setting.name))
        sweep = sweep.merge(first[["optimizer", "lr", "seed", "final_loss", "diverged"]]
                            .rename(columns={"final_loss": "final_loss_half", "diverged": "diverged_half"}),
                            on=["optimizer", "lr", "seed"])
        return {"sweep": sweep[["optimizer", "lr", "seed", "final_loss", "diverged", "diverged_step",
                                "final_loss_half", "diverged_half"]]}

    return _get("sweep", config, compute, setting, scale, store, cached_only)
