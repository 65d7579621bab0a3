"""The reductions that stored experiments apply to their own runs: a run's final loss and a
grid's best rate (:func:`lintf.compute.experiments.lr_sweep` stores the one,
:func:`lintf.compute.experiments.ablation` trains at the other). They live on the compute side
because they change stored numbers; :mod:`lintf.book.summaries` re-exports them for the claims.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd

from .checks import check_choice, check_frame

_RUN = ["setting", "optimizer", "lr", "seed"]
_check_frame = check_frame


def _check_frac(frac) -> float:
    if isinstance(frac, bool) or not isinstance(frac, numbers.Real) or not 0 < frac <= 1:
        raise ValueError(f"frac must be a number in (0, 1], got {frac!r}")
    return float(frac)


def final_loss(history: pd.DataFrame, quantity: str = "eval_loss", frac: float = 0.1,
               runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Final loss of every run: the mean of the last ``frac`` of its recorded values.

    history : tidy (setting, optimizer, lr, seed, step, quantity, value). ``quantity`` falls
        back to ``"loss"`` when ``history`` records no ``quantity`` at all.
    runs : optional runs table (setting, optimizer, lr, seed, diverged); its diverged flags
        are added to ours. With its ``skipped`` column (:func:`lintf.compute.engine.train`'s), a NaN
        training loss marks a skipped step (``skip_nonfinite``), not a divergence: the runs
        table says which runs diverged, and a skipped step is left out of the mean.
    Returns one row per run: setting, optimizer, lr, seed, final_loss (squared error; NaN
    when diverged), diverged (any non-finite ``loss`` or ``quantity`` value), quantity,
    n_values (how many values were averaged: ``ceil(frac * recorded)``).
    """
    _check_frame("history", history, _RUN + ["step", "quantity", "value"])
    if not isinstance(quantity, str):
        raise TypeError(f"quantity must be a string, got {quantity!r}")
    frac = _check_frac(frac)
    used = quantity if (history["quantity"] == quantity).any() else "loss"
    cols = ["setting", "optimizer", "lr", "seed", "final_loss", "diverged", "quantity", "n_values"]
    h = history.loc[history["quantity"] == used, _RUN + ["step", "value"]]
    if h.empty:
        return pd.DataFrame(columns=cols)
    h = h.sort_values(_RUN + ["step"])
    g = h.groupby(_RUN, sort=True)
    count = g["value"].transform("size")
    from_end = g.cumcount(ascending=False)
    keep = from_end < np.ceil(frac * count)
    out = h[keep].groupby(_RUN, sort=True)["value"].agg(["mean", "size"])
    out.columns = ["final_loss", "n_values"]
    # a run is diverged if its training loss or the averaged quantity ever went non-finite
    # (a skipped step's NaN training loss excepted: the runs table flags the diverged runs)
    skips = runs is not None and "skipped" in runs.columns
    watch = history[history["quantity"].isin({used} if skips else {used, "loss"})]
    values = watch["value"].to_numpy(dtype=float)
    bad = np.isinf(values) if skips and used == "loss" else ~np.isfinite(values)
    diverged = pd.Series(bad, index=watch.index).groupby([watch[c] for c in _RUN]).any()
    out["diverged"] = diverged.reindex(out.index, fill_value=False).astype(bool)
    if runs is not None:
        _check_frame("runs", runs, _RUN + ["diverged"])
        flagged = runs.set_index(_RUN)["diverged"].astype(bool)
        out["diverged"] |= flagged.reindex(out.index, fill_value=False).to_numpy()
    out.loc[out["diverged"], "final_loss"] = math.nan
    out["quantity"] = used
    return out.reset_index()[cols]


def best_lr(sweep: pd.DataFrame, at: str = "end") -> pd.DataFrame:
    """Best learning rate per (setting, optimizer) of a grid search.

    sweep : tidy (setting, optimizer, lr, seed, final_loss, diverged), e.g. from
        :func:`final_loss`. A rate is eligible only if none of its seeds diverged; the
        best eligible rate has the lowest final loss averaged over seeds.
    at : ``"end"`` (the grid's horizon) or ``"half"``: the choice the same grid makes at half
        its horizon, from ``final_loss_half`` and ``diverged_half``
        (:func:`lintf.compute.experiments.lr_sweep`); the same choice at both says that the horizon
        is long enough for the choice to have settled.
    Returns one row per (setting, optimizer): best_lr (NaN when every rate diverged),
    final_loss (its mean over seeds), n_seeds, n_lrs, diverged_lrs (rates with any
    diverged seed), diverged_runs (``(lr, seed)`` pairs that diverged).
    """
    check_choice("at", at, ("end", "half"))
    if at == "half":
        _check_frame("sweep", sweep, _RUN + ["final_loss_half", "diverged_half"])
        sweep = sweep.drop(columns=["final_loss", "diverged"]).rename(
            columns={"final_loss_half": "final_loss", "diverged_half": "diverged"})
    _check_frame("sweep", sweep, _RUN + ["final_loss", "diverged"])
    s = sweep.copy()
    s["diverged"] = s["diverged"].astype(bool) | ~np.isfinite(s["final_loss"].astype(float))
    rows = []
    for (setting, opt), grp in s.groupby(["setting", "optimizer"], sort=True):
        per_lr = grp.groupby("lr").agg(mean=("final_loss", "mean"), any_div=("diverged", "any"),
                                       n=("seed", "nunique"))
        ok = per_lr[~per_lr["any_div"]]
        best = ok["mean"].idxmin() if len(ok) else math.nan
        bad = grp[grp["diverged"]]
        rows.append({"setting": setting, "optimizer": opt, "best_lr": best,
                     "final_loss": ok["mean"].min() if len(ok) else math.nan,
                     "n_seeds": int(per_lr.loc[best, "n"]) if len(ok) else 0,
                     "n_lrs": len(per_lr),
                     "diverged_lrs": tuple(float(v) for v in per_lr.index[per_lr["any_div"]]),
                     "diverged_runs": tuple((float(a), int(b)) for a, b in zip(bad["lr"], bad["seed"]))})
    return pd.DataFrame(rows, columns=["setting", "optimizer", "best_lr", "final_loss", "n_seeds",
                                       "n_lrs", "diverged_lrs", "diverged_runs"])
