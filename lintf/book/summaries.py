"""Summaries of runs that the claims and the chapters read: final losses, the best rate of a
grid, the horizon two settings share, the tails of the gradient noise against their Gaussian
null, and the condition-number table.

Each takes tidy frames (the columns of :mod:`lintf.compute.experiments`) and returns a tidy frame;
the decision rule itself lives in :mod:`lintf.book.stats`, the claims in :mod:`lintf.book.claims`.
"""
from __future__ import annotations

import math
import zlib
from typing import Mapping

import numpy as np
import pandas as pd

from . import stats
from ..compute.checks import check_choice, check_frame, check_int
from ..compute.reductions import _RUN, best_lr, final_loss  # noqa: F401 (final_loss, best_lr: part of this module's API)

OPTIMIZERS = ("sgdm", "adam")
"""The paper's pair, in the order of every table."""
PROTOCOLS = ("fixed", "authors", "batches", "large")
"""Evaluation-batch protocols of the conditioning frame (column ``eval_batch``)."""

_check_frame = check_frame


def _check_level(level) -> float:
    return stats._check_level(level)


def _stable_seed(*parts) -> list[int]:
    """Seed words that depend only on the names, so adding a setting leaves others' draws."""
    return [zlib.crc32(str(p).encode()) for p in parts]


def _lr_map(lrs) -> dict[tuple[str, str], float]:
    """``{(setting, optimizer): lr}`` from that form or ``{setting: {optimizer: lr}}``."""
    if lrs is None:
        return {}
    if not isinstance(lrs, Mapping):
        raise TypeError(f"lrs must be a mapping {{(setting, optimizer): lr}} or "
                        f"{{setting: {{optimizer: lr}}}}, got {type(lrs).__name__}")
    out = {}
    for key, val in lrs.items():
        if isinstance(val, Mapping):
            for opt, lr in val.items():
                out[(key, opt)] = float(lr)
        elif isinstance(key, tuple) and len(key) == 2:
            out[key] = float(val)
        else:
            raise TypeError(f"lrs key {key!r} must be (setting, optimizer) or a setting "
                            "mapping to {optimizer: lr}")
    return out


def _select_lr(frame: pd.DataFrame, lrs, score: pd.DataFrame | None) -> tuple[pd.DataFrame, list[str]]:
    """Keep one learning rate per (setting, optimizer): ``lrs`` if given, the only one
    present, else the best by :func:`best_lr` on ``score`` (final losses)."""
    chosen = _lr_map(lrs)
    notes, keep = [], []
    for (setting, opt), grp in frame.groupby(["setting", "optimizer"], sort=True):
        present = np.unique(grp["lr"].to_numpy(dtype=float))
        if (setting, opt) in chosen:
            lr = chosen[(setting, opt)]
            if not np.isclose(present, lr, rtol=1e-9, atol=0).any():
                notes.append(f"{setting}/{opt}: lr {lr:g} asked for but not in the data "
                             f"({', '.join(f'{v:g}' for v in present)})")
                continue
        elif len(present) == 1:
            lr = present[0]
        else:
            if score is None:
                raise ValueError(f"{setting}/{opt} has several learning rates "
                                 f"({', '.join(f'{v:g}' for v in present)}); pass lrs=")
            best = best_lr(score[(score["setting"] == setting) & (score["optimizer"] == opt)])
            lr = float(best["best_lr"].iloc[0]) if len(best) else math.nan
            if not math.isfinite(lr):
                notes.append(f"{setting}/{opt}: every learning rate diverged")
                continue
            notes.append(f"{setting}/{opt}: lr {lr:g} chosen by lowest mean final loss among "
                         f"{', '.join(f'{v:g}' for v in present)}")
        keep.append(grp[np.isclose(grp["lr"].to_numpy(dtype=float), lr, rtol=1e-9, atol=0)])
    out = pd.concat(keep) if keep else frame.iloc[:0]
    return out, notes


def _final(history, quantity, frac, lrs, runs) -> tuple[pd.DataFrame, list[str]]:
    fl = final_loss(history, quantity, frac, runs)
    chosen, notes = _select_lr(fl, lrs, fl)
    if len(fl) and fl["quantity"].iloc[0] != quantity:
        notes.append(f"no {quantity} recorded: final loss from the training loss 'loss'")
    chosen = chosen.assign(log_loss=np.log(chosen["final_loss"].astype(float)))
    return chosen, notes


def _diverged_note(frame: pd.DataFrame, where: str) -> list[str]:
    bad = frame[frame["diverged"]]
    if bad.empty:
        return []
    runs = ", ".join(f"{o} seed {int(s)}" for o, s in zip(bad["optimizer"], bad["seed"]))
    return [f"{where}: {len(bad)} diverged run(s) excluded ({runs})"]


def _paired_log(final: pd.DataFrame, a: tuple[str, str], b: tuple[str, str]) -> tuple[pd.Series, list[str]]:
    """Per-seed ``log_loss(a) - log_loss(b)``; a and b are (setting, optimizer)."""
    def series(key):
        f = final[(final["setting"] == key[0]) & (final["optimizer"] == key[1])]
        return f.set_index("seed")["log_loss"]
    sa, sb = series(a), series(b)
    diff = (sa - sb).dropna()
    lost = sorted((set(sa.index) | set(sb.index)) - set(diff.index))
    notes = []
    if lost:
        notes.append(f"{a[0]}/{a[1]} vs {b[0]}/{b[1]}: seed(s) {lost} unpaired or diverged, excluded")
    return diff, notes



def _common_horizon(history: pd.DataFrame, settings) -> tuple[pd.DataFrame, list[str]]:
    """Cut the histories of ``settings`` at the last iteration they all reached, so that a
    comparison across settings trained for different horizons compares like with like."""
    last = history[history["setting"].isin(settings)].groupby("setting")["step"].max()
    if len(last) < 2 or last.nunique() == 1:
        return history, []
    T = int(last.min())
    keep = ~history["setting"].isin(settings) | (history["step"] <= T)
    return history[keep], [f"compared at the common horizon, iteration {T} "
                           f"({', '.join(f'{s}: {int(t)}' for s, t in last.items())} trained)"]



def _slope(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row of ``ys`` (shape (..., k)) against ``x`` (k,)."""
    xc = x - x.mean()
    return (ys - ys.mean(axis=-1, keepdims=True)) @ xc / (xc @ xc)


def _cat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _present(frame: pd.DataFrame, settings) -> tuple[str, ...]:
    have = tuple(sorted(frame["setting"].unique()))
    return have if settings is None else tuple(s for s in settings if s in have)


def _paired(a: pd.Series, b: pd.Series, what: str) -> tuple[pd.Series, list[str]]:
    """``a - b`` over the seeds both have (per-seed Series), and a note for the others."""
    d = (a - b).dropna()
    lost = sorted((set(a.dropna().index) | set(b.dropna().index)) - set(d.index))
    return d, ([f"{what}: seed(s) {lost} not in both, excluded"] if lost else [])


# -- gradient noise ----------------------------------------------------------------------
_NOISE = ["setting", "seed", "sample", "value"]
_EIGEN_COLUMNS = ["setting", "seed", "index", "value"]


def noise_tails_per_seed(noise: pd.DataFrame, spectrum: pd.DataFrame | None = None, n_sims: int = 200,
                         seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """Tail statistics of the gradient-noise norms of every (setting, seed), with notes.

    noise : tidy (setting, seed, sample, value = ||g_B - g||).
    spectrum : tidy (setting, seed, index, value = eigenvalues of the sample covariance of
        the deviations ``g_B - g`` at that initialisation seed), or None (no null).
    Returns one row per (setting, seed): n_samples, kurtosis, hill, null_kurtosis,
    null_kurtosis_sd, null_hill, null_hill_sd, kurtosis_excess, hill_deficit (see
    :func:`lintf.book.stats.tail_excess`; NaN null columns where the seed has no spectrum). The
    Gaussian null of each (setting, seed) has its own random stream, fixed by ``seed``,
    the setting's name and the seed.
    """
    _check_frame("noise", noise, _NOISE)
    if spectrum is not None:
        _check_frame("spectrum", spectrum, _EIGEN_COLUMNS)
    n_sims = check_int("n_sims", n_sims, minimum=2)
    seed = check_int("seed", seed, minimum=0)
    from ..compute.measure import hill_index
    rows, notes, missing = [], [], []
    specs = {} if spectrum is None else {k: g.sort_values("index")["value"].to_numpy(dtype=float)
                                         for k, g in spectrum.groupby(["setting", "seed"], sort=True)}
    for (s, unit), g in noise.groupby(["setting", "seed"], sort=True):
        v = g["value"].to_numpy(dtype=float)
        bad = int((~np.isfinite(v)).sum())
        v = v[np.isfinite(v)]
        if bad:
            notes.append(f"{s} seed {unit}: {bad} non-finite noise value(s) dropped")
        if v.size < 3:
            notes.append(f"{s} seed {unit}: fewer than 3 noise samples, left out")
            continue
        row = {"setting": s, "seed": unit, "n_samples": v.size}
        if (s, unit) in specs:
            e = stats.tail_excess(v, specs[(s, unit)], n_sims=n_sims,
                                  seed=[seed, *_stable_seed("noise", s), int(unit)])
            row.update(kurtosis=e["kurtosis"], hill=e["hill"], null_kurtosis=e["null_kurtosis_mean"],
                       null_kurtosis_sd=e["null_kurtosis_sd"], null_hill=e["null_hill_mean"],
                       null_hill_sd=e["null_hill_sd"], kurtosis_excess=e["kurtosis_excess"],
                       hill_deficit=e["hill_deficit"])
        else:
            missing.append(f"{s} seed {unit}")
            row.update(kurtosis=stats.excess_kurtosis(v), hill=hill_index(v))
        rows.append(row)
    if spectrum is not None and missing:
        notes.append(f"no covariance spectrum for {', '.join(missing)}: no Gaussian null there")
    cols = ["setting", "seed", "n_samples", "kurtosis", "hill", "null_kurtosis", "null_kurtosis_sd",
            "null_hill", "null_hill_sd", "kurtosis_excess", "hill_deficit"]
    return pd.DataFrame(rows, columns=cols), notes


def noise_tail_table(noise: pd.DataFrame, spectrum: pd.DataFrame | None = None, n_sims: int = 200,
                     level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Tails of the gradient-noise norms ``||g_B - g||`` per setting, against the Gaussian null.

    noise, spectrum : as in :func:`noise_tails_per_seed` (spectrum None: observed columns only).
    Returns one row per setting: n_seeds, n_samples (total), kurtosis (observed excess
    kurtosis, mean over seeds), null_kurtosis (mean over seeds of the null's mean),
    kurtosis_excess (mean over seeds of observed - null), low, high (one-sided ``level``
    bounds of the mean excess by :func:`lintf.book.stats.test` over seeds), hill (observed Hill
    index, mean over seeds), null_hill, hill_deficit (null - observed).
    """
    level = _check_level(level)
    per, _ = noise_tails_per_seed(noise, spectrum, n_sims, seed)
    rows = []
    for s, g in per.groupby("setting", sort=True):
        ex = g["kurtosis_excess"].to_numpy(dtype=float)
        ok = np.isfinite(ex)
        t = stats.test(ex[ok], level=level) if ok.any() else None
        rows.append({"setting": s, "n_seeds": len(g), "n_samples": int(g["n_samples"].sum()),
                     "kurtosis": g["kurtosis"].mean(), "null_kurtosis": g["null_kurtosis"].mean(),
                     "kurtosis_excess": ex[ok].mean() if ok.any() else math.nan,
                     "low": t.low if t else math.nan, "high": t.high if t else math.nan,
                     "hill": g["hill"].mean(), "null_hill": g["null_hill"].mean(),
                     "hill_deficit": g["hill_deficit"].mean()})
    return pd.DataFrame(rows, columns=["setting", "n_seeds", "n_samples", "kurtosis", "null_kurtosis",
                                       "kurtosis_excess", "low", "high", "hill", "null_hill",
                                       "hill_deficit"])


def batch_spread(curve: pd.DataFrame, method: str = "diag") -> pd.DataFrame:
    """How much ``R_med`` moves with the evaluation batch: per setting, optimizer and batch
    size of :func:`lintf.compute.experiments.batch_size_curve`'s ``curve``, the largest over the
    smallest value among the independent batches of that size (1: no dependence)."""
    _check_frame("curve", curve, ["setting", "optimizer", "size", "method", "value"])
    check_choice("method", method, ("eig", "diag"))
    return (curve[curve["method"] == method].groupby(["setting", "optimizer", "size"])["value"]
            .agg(lambda v: float(v.max() / v.min())).rename("max/min").reset_index())


def eig_health(conditioning: pd.DataFrame, tiny: float = 1e-8) -> pd.DataFrame:
    """Whether the eigenvalue ``R_med`` divides by rounding: per setting, the Hessians, how
    many have a median ``|lambda|`` below ``tiny`` times ``|lambda_max|``, and the median of that
    relative size (columns ``hessians, tiny, relative_median``)."""
    _check_frame("conditioning", conditioning, ["setting", "method", "lambda_max", "lambda_median"])
    eig = conditioning[conditioning["method"] == "eig"].dropna(subset=["lambda_max", "lambda_median"])
    rel = eig["lambda_median"].abs() / eig["lambda_max"].abs()
    return (eig.assign(tiny=rel < tiny, rel=rel).groupby("setting")
            .agg(hessians=("tiny", "size"), tiny=("tiny", "sum"), relative_median=("rel", "median")).reset_index())


# -- condition numbers -------------------------------------------------------------------
_COND = _RUN + ["step", "eval_batch", "batch", "method", "value"]


def _log_ratios(conditioning, steps, method, eval_batch, lrs, runs):
    """Per-batch and per-seed ``log(R_med(SGDM) / R_med(Adam))`` on the same batch.

    Returns (per_seed: setting, step, seed, log_ratio (mean over the seed's batches),
    ratio (its exp), n_batches; per_batch: setting, step, seed, batch, log_ratio; notes).
    """
    _check_frame("conditioning", conditioning, _COND)
    check_choice("method", method, ("eig", "diag"))
    check_choice("eval_batch", eval_batch, PROTOCOLS)
    steps = tuple(check_int(f"steps[{i}]", s, minimum=0) for i, s in enumerate(steps))
    c = conditioning[(conditioning["method"] == method) & (conditioning["eval_batch"] == eval_batch)
                     & conditioning["step"].isin(steps)]
    notes = []
    if c.empty and len(conditioning):
        notes.append(f"no R_med values for method {method!r}, eval_batch {eval_batch!r} at steps "
                     f"{list(steps)}")
    c, n2 = _select_lr(c, lrs, None)
    notes += n2
    c = c.assign(value=c["value"].astype(float))
    if runs is not None:
        _check_frame("runs", runs, _RUN + ["diverged"])
        bad = runs[runs["diverged"].astype(bool)].set_index(_RUN).index
        mask = c.set_index(_RUN).index.isin(bad)
        if mask.any():
            notes.append(f"{int(c[mask].groupby(_RUN).ngroups)} diverged run(s) excluded")
        c = c[~mask]
    wide = c.pivot_table(index=["setting", "step", "seed", "batch"], columns="optimizer", values="value",
                         aggfunc="first")
    for opt in OPTIMIZERS:
        if opt not in wide.columns:
            wide[opt] = math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (wide["sgdm"] / wide["adam"]).to_numpy(dtype=float)
    ok = np.isfinite(ratio) & (ratio > 0)
    if (~ok).any():
        notes.append(f"{int((~ok).sum())} (setting, step, seed, batch) without a finite positive pair "
                     "of R_med values excluded")
    per_batch = wide.index.to_frame(index=False)[ok].assign(log_ratio=np.log(ratio[ok]))
    per_seed = (per_batch.groupby(["setting", "step", "seed"], sort=True)["log_ratio"]
                .agg(log_ratio="mean", n_batches="size").reset_index())
    per_seed["ratio"] = np.exp(per_seed["log_ratio"])
    return per_seed, per_batch, notes


def condition_ratio_table(conditioning: pd.DataFrame, steps=(750, 1250), method: str = "diag",
                          eval_batch: str = "large", lrs=None, paper: Mapping | None = None,
                          runs: pd.DataFrame | None = None, level: float = 0.95) -> pd.DataFrame:
    """The paper's table: ``R_med(SGDM) / R_med(Adam)`` per setting and step.

    conditioning : tidy (setting, optimizer, lr, seed, step, eval_batch, batch, method,
        value=R_med; also eval_size, lambda_max, lambda_median, unused here).
    method : ``"diag"`` (max / median of |diag H|, the paper's footnote and code) or
        ``"eig"`` (lambda_max / lambda_median of the Hessian, the paper's text).
    eval_batch : the protocol of the evaluation batches, one of :data:`PROTOCOLS`.
    lrs : learning rate per (setting, optimizer) when the data holds several.
    paper : ``{setting: {step: (mean, std)}}``, the paper's numbers, added as columns.
    Returns one row per (setting, step): n_seeds, n_batches (per seed, the most), mean and
    std (ddof=1) over seeds of the per-seed ratio (the paper's statistic; a seed's ratio is
    ``exp`` of its mean log ratio over its batches), geo_mean (exp of the mean log ratio),
    low/high (``exp`` of the one-sided ``level`` bounds of :func:`lintf.book.stats.test` on the
    per-seed log ratios), and batch_median, batch_min, batch_max: over batch index ``k``,
    the median, min and max of the table statistic on batch ``k`` alone (mean over seeds of
    the ratio on batch k; equal to ``mean`` for single-batch protocols); paper_mean and
    paper_std when given.
    """
    level = _check_level(level)
    per_seed, per_batch, _ = _log_ratios(conditioning, steps, method, eval_batch, lrs, runs)
    rows = []
    for (s, step), grp in per_seed.groupby(["setting", "step"], sort=True):
        lr_ = grp["log_ratio"].to_numpy()
        r = np.exp(lr_)
        t = stats.test(lr_, level=level)
        pb = per_batch[(per_batch["setting"] == s) & (per_batch["step"] == step)]
        by_k = pb.assign(r=np.exp(pb["log_ratio"])).groupby("batch")["r"].mean()
        row = {"setting": s, "step": int(step), "n_seeds": r.size, "n_batches": int(grp["n_batches"].max()),
               "mean": r.mean(), "std": r.std(ddof=1) if r.size > 1 else math.nan,
               "geo_mean": float(np.exp(lr_.mean())), "low": math.exp(t.low), "high": math.exp(t.high),
               "batch_median": float(by_k.median()), "batch_min": float(by_k.min()),
               "batch_max": float(by_k.max())}
        if paper is not None:
            m, sd = paper.get(s, {}).get(int(step), (math.nan, math.nan))
            row.update(paper_mean=m, paper_std=sd)
        rows.append(row)
    cols = ["setting", "step", "n_seeds", "n_batches", "mean", "std", "geo_mean", "low", "high",
            "batch_median", "batch_min", "batch_max"]
    if paper is not None:
        cols += ["paper_mean", "paper_std"]
    return pd.DataFrame(rows, columns=cols)
