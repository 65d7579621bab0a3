"""The paper's eight claims, decided from our own numbers (SPEC sections 5 and 6).

Every claim is a function of tidy results that returns a :class:`Verdict`. The rule that
decides it is written in its docstring and fixed before looking at any result:

* a compared quantity is summarised per seed, and its uncertainty is a 95% percentile
  bootstrap interval that resamples seeds (pairs of seeds for SGDM-vs-Adam comparisons,
  samples for gradient noise measured once per seed);
* a part of a claim ``holds`` when the interval lies wholly on the claimed side of the
  threshold, ``does not hold`` when it lies wholly on the other side, and is
  ``inconclusive`` when it straddles it;
* a claim with several parts holds when every part holds, does not hold when any part
  does not hold, and is inconclusive otherwise;
* diverged runs (non-finite loss) are left out and counted in the evidence; a part whose
  settings are missing from the data is listed as untested, never guessed.

Loss comparisons use the natural log of the *final loss* of a run: the mean of the last
10% of its recorded ``eval_loss`` values (``loss`` when no ``eval_loss`` was recorded), so
a difference of logs is the log of a ratio of losses.

Settings are named by strings that the experiments choose. The roles a claim needs
(which setting has gamma covariates, which has ``L = 6`` ...) are arguments whose defaults
are :data:`DEFAULT_SETTINGS`, :data:`TAILS`, :data:`DEPTHS` and :data:`ATTENTION`.
"""
from __future__ import annotations

import html
import math
import numbers
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from .checks import check_choice, check_frame, check_int

CLAIMS: dict[int, str] = {
    1: "Adam reaches a lower loss than SGDM in every setting (Fig 2).",
    2: ("Gradient noise at initialisation is heavy-tailed, more so for gamma covariates than "
        "for sphere and gaussian, and more for L=6, 8 than L=2, 4 (Figs 3, 10, 13)."),
    3: ("R_med(SGDM) > R_med(Adam) along training; the gap grows with heavier-tailed data and "
        "with depth (Table, Figs 11, 14)."),
    4: "Adam's directional smoothness is lower than SGDM's (Fig 5).",
    5: "Smoothness grows with gradient norm (Fig 16).",
    6: "The Adam-SGDM loss gap widens with depth, while both losses fall with depth (Fig 12).",
    7: ("Light-tailed (sphere) covariates make both optimizers faster, without closing the "
        "relative gap (Fig 9)."),
    8: "Linear attention trains faster than softmax attention on this task (Fig 7).",
}
"""SPEC section 5's claims, by number."""

VERDICTS = ("holds", "does not hold", "inconclusive")
OPTIMIZERS = ("sgdm", "adam")

DEFAULT_SETTINGS = ("setting1", "setting2", "setting3")
"""The paper's Settings 1, 2, 3 (Table 1), where Fig 3 shows heavy-tailed noise."""
TAILS = {"sphere": "sphere", "gaussian": "setting1", "gamma": "gamma"}
"""Setting playing each covariate role of Sec. 4.1 (L=3, d=5, n=20)."""
DEPTHS = {2: "depth2", 4: "depth4", 6: "depth6", 8: "depth8"}
"""Setting for each depth of Sec. 4.2 (Setting 1 otherwise)."""
ATTENTION = {"linear": "setting1", "softmax": "softmax"}
"""Settings compared in Fig 7 (L=3, Setting 1 data)."""

_RUN = ["setting", "optimizer", "lr", "seed"]


# -- argument checks -----------------------------------------------------------------
_check_frame = check_frame


def _check_level(level) -> float:
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    return float(level)


def _check_frac(frac) -> float:
    if isinstance(frac, bool) or not isinstance(frac, numbers.Real) or not 0 < frac <= 1:
        raise ValueError(f"frac must be a number in (0, 1], got {frac!r}")
    return float(frac)


def _check_boot(n_boot, level, seed) -> tuple[int, float, int]:
    return check_int("n_boot", n_boot, minimum=100), _check_level(level), check_int("seed", seed, minimum=0)


def _check_names(name: str, value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    out = tuple(value)
    if not all(isinstance(v, str) for v in out):
        raise TypeError(f"{name} must be a setting name or a sequence of them, got {value!r}")
    return out


def _as_1d(name: str, values) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite; drop diverged runs (NaN/inf) first")
    return x


# -- bootstrap -------------------------------------------------------------------------
def _stable_seed(*parts) -> list[int]:
    """Seed words that depend only on the names, so adding a setting leaves others' draws."""
    return [zlib.crc32(str(p).encode()) for p in parts]


def _boot_stats(x: np.ndarray, statistic: Callable, n_boot: int, rng) -> np.ndarray:
    """``n_boot`` values of ``statistic`` on resamples of ``x`` (with replacement), shape (n_boot,)."""
    n = x.shape[0]
    # chunks keep the resample matrix near 16 MB for 10^4 noise samples x 10^4 resamples
    rows = max(1, min(n_boot, 2_000_000 // n))
    out = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        samples = x[rng.integers(0, n, size=(stop - start, n))]
        try:
            vals = np.asarray(statistic(samples, axis=1), dtype=float)
            if vals.shape != (stop - start,):
                raise TypeError("statistic ignored axis")
        except TypeError:
            vals = np.array([statistic(s) for s in samples], dtype=float)
        out[start:stop] = vals
    return out


def _interval(stats: np.ndarray, level: float) -> tuple[float, float]:
    if not np.isfinite(stats).all():
        return (math.nan, math.nan)
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))


def bootstrap_ci(values, statistic: Callable = np.mean, n_boot: int = 10000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(values)``.

    values : shape (n,), finite (e.g. one number per seed).
    statistic : maps an array to a number; called as ``statistic(samples, axis=1)`` on a
        (chunk, n) matrix of resamples when it accepts ``axis``, else row by row.
    Returns ``(low, high)``, the ``(1-level)/2`` and ``(1+level)/2`` quantiles of the
    statistic over ``n_boot`` resamples drawn by ``numpy.random.default_rng(seed)``;
    ``(nan, nan)`` when fewer than 2 values are given (one seed says nothing about spread).
    """
    x = _as_1d("values", values)
    n_boot, level, seed = _check_boot(n_boot, level, seed)
    if not callable(statistic):
        raise TypeError(f"statistic must be callable, got {statistic!r}")
    if x.size < 2:
        return (math.nan, math.nan)
    return _interval(_boot_stats(x, statistic, n_boot, np.random.default_rng(seed)), level)


def _align(x, y) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(x, pd.Series) and isinstance(y, pd.Series):
        x, y = x.align(y, join="inner")
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"x and y must be paired (same shape), got {x.shape} and {y.shape}")
    return x, y


def paired_bootstrap_ci(x, y, statistic: Callable = np.mean, n_boot: int = 10000,
                        level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of ``statistic(x - y)`` resampling the pairs ``(x_i, y_i)``.

    x, y : shape (n,), paired by position, or ``pd.Series`` paired by index (e.g. seed;
        indices present in only one are dropped). Same return as :func:`bootstrap_ci`.
    """
    x, y = _align(x, y)
    return bootstrap_ci(x - y, statistic, n_boot, level, seed)


def bootstrap_diff_ci(x, y, statistic: Callable = np.mean, n_boot: int = 10000,
                      level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of ``statistic(x) - statistic(y)`` for independent samples.

    x : shape (n,); y : shape (m,); each resampled on its own (x first, then y, from one
    ``default_rng(seed)``). ``(nan, nan)`` when either has fewer than 2 values.
    """
    x, y = _as_1d("x", x), _as_1d("y", y)
    n_boot, level, seed = _check_boot(n_boot, level, seed)
    if x.size < 2 or y.size < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    return _interval(_boot_stats(x, statistic, n_boot, rng) - _boot_stats(y, statistic, n_boot, rng), level)


# -- verdicts --------------------------------------------------------------------------
def verdict(interval, threshold: float = 0.0, side: str = "greater") -> str:
    """Decide one comparison from its interval (SPEC section 6).

    interval : ``(low, high)``. side : the claimed side of ``threshold``.
    ``"holds"`` when the interval lies strictly on the claimed side, ``"does not hold"``
    when it lies strictly on the other side, ``"inconclusive"`` when it touches or
    straddles the threshold or is undefined (NaN).
    """
    check_choice("side", side, ("greater", "less"))
    low, high = (float(v) for v in interval)
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if low > high:
        raise ValueError(f"interval must be (low, high) with low <= high, got {interval!r}")
    above, below = low > threshold, high < threshold
    if side == "greater":
        return "holds" if above else "does not hold" if below else "inconclusive"
    return "holds" if below else "does not hold" if above else "inconclusive"


def combine(verdicts: Iterable[str]) -> str:
    """All parts hold -> holds; any part does not hold -> does not hold; else inconclusive
    (also for no parts at all)."""
    verdicts = [check_choice("verdicts[i]", v, VERDICTS) for v in verdicts]
    if verdicts and all(v == "holds" for v in verdicts):
        return "holds"
    if "does not hold" in verdicts:
        return "does not hold"
    return "inconclusive"


_BADGE = {"holds": "#0173B2", "does not hold": "#D55E00", "inconclusive": "#7F7F7F"}


@dataclass(frozen=True)
class Verdict:
    """A claim decided from our numbers.

    statistic, interval : those of the deciding part (the first part that does not hold,
        else the first inconclusive one, else the part nearest its threshold).
    evidence : one line per part and per note, human readable.
    details : ``{"parts": DataFrame (one row per part: part, statistic, low, high,
        threshold, side, n, verdict), "data": DataFrame (the per-seed numbers used),
        "untested": list of parts whose settings were missing}``.
    """

    claim: int
    text: str
    verdict: str
    statistic: float
    interval: tuple[float, float]
    evidence: str
    details: Any = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        check_choice("verdict", self.verdict, VERDICTS)

    def to_row(self) -> dict:
        """One row of the scorecard table."""
        return {"claim": self.claim, "text": self.text, "verdict": self.verdict,
                "statistic": self.statistic, "low": self.interval[0], "high": self.interval[1],
                "evidence": self.evidence}

    def _repr_markdown_(self) -> str:
        lines = "\n".join(f"- {line}" for line in self.evidence.splitlines() if line)
        return (f"**Claim {self.claim}.** {self.text}\n\n**Verdict: {self.verdict}** "
                f"(deciding statistic {_fmt(self.statistic)}, 95% interval "
                f"[{_fmt(self.interval[0])}, {_fmt(self.interval[1])}])\n\n{lines}\n")

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in self.evidence.splitlines() if line)
        colour = _BADGE[self.verdict]
        return (f"<div><p><b>Claim {self.claim}.</b> {html.escape(self.text)}</p>"
                f"<p><span style='background:{colour};color:white;padding:1px 6px;border-radius:3px'>"
                f"{html.escape(self.verdict)}</span> deciding statistic {_fmt(self.statistic)}, "
                f"95% interval [{_fmt(self.interval[0])}, {_fmt(self.interval[1])}]</p>"
                f"<ul>{items}</ul></div>")


def scorecard(verdicts: Iterable[Verdict]) -> pd.DataFrame:
    """The scorecard table: one row per :class:`Verdict`, indexed by claim number."""
    rows = [v.to_row() for v in verdicts]
    return pd.DataFrame(rows, columns=["claim", "text", "verdict", "statistic", "low", "high",
                                       "evidence"]).set_index("claim")


def _fmt(v: float) -> str:
    return "nan" if not math.isfinite(v) else f"{v:.3g}"


def _part(name: str, statistic: float, interval, n: int, threshold: float = 0.0,
          side: str = "greater", what: str = "", extra: str = "") -> dict:
    return {"part": name, "statistic": float(statistic), "low": float(interval[0]),
            "high": float(interval[1]), "threshold": threshold, "side": side, "n": int(n),
            "verdict": verdict(interval, threshold, side), "what": what, "extra": extra}


def _describe(p: dict) -> str:
    rel = ">" if p["side"] == "greater" else "<"
    return (f"{p['part']}: {p['what'] + ' ' if p['what'] else ''}{_fmt(p['statistic'])} "
            f"[{_fmt(p['low'])}, {_fmt(p['high'])}]{' ' + p['extra'] if p['extra'] else ''} "
            f"(claimed {rel} {p['threshold']:g}, n={p['n']}) -> {p['verdict']}")


def _decide(claim: int, parts: list[dict], notes: list[str], data=None,
            untested: list[str] | None = None) -> Verdict:
    untested = list(untested or [])
    table = pd.DataFrame(parts, columns=["part", "statistic", "low", "high", "threshold", "side",
                                         "n", "verdict", "what", "extra"])
    overall = combine(table["verdict"])
    lines = [_describe(p) for p in parts]
    lines += [f"untested (no data): {u}" for u in untested]
    lines += notes
    if not parts:
        lines.insert(0, "no part of the claim could be tested on the data given")
        stat, interval = math.nan, (math.nan, math.nan)
    else:
        if overall == "holds":
            margin = np.where(table["side"] == "greater", table["low"] - table["threshold"],
                              table["threshold"] - table["high"])
            row = table.iloc[int(np.argmin(margin))]
        else:
            row = table[table["verdict"] == overall].iloc[0]
        stat, interval = float(row["statistic"]), (float(row["low"]), float(row["high"]))
    details = {"parts": table, "data": data if data is not None else pd.DataFrame(),
               "untested": untested}
    return Verdict(claim, CLAIMS[claim], overall, stat, interval, "\n".join(lines), details)


# -- shared tables ---------------------------------------------------------------------
def final_loss(history: pd.DataFrame, quantity: str = "eval_loss", frac: float = 0.1,
               runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Final loss of every run: the mean of the last ``frac`` of its recorded values.

    history : tidy (setting, optimizer, lr, seed, step, quantity, value). ``quantity`` falls
        back to ``"loss"`` when ``history`` records no ``quantity`` at all.
    runs : optional runs table (setting, optimizer, lr, seed, diverged); its diverged flags
        are added to ours.
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
    watch = history[history["quantity"].isin({used, "loss"})]
    bad = (~np.isfinite(watch["value"].to_numpy(dtype=float)))
    diverged = pd.Series(bad, index=watch.index).groupby([watch[c] for c in _RUN]).any()
    out["diverged"] = diverged.reindex(out.index, fill_value=False).astype(bool)
    if runs is not None:
        _check_frame("runs", runs, _RUN + ["diverged"])
        flagged = runs.set_index(_RUN)["diverged"].astype(bool)
        out["diverged"] |= flagged.reindex(out.index, fill_value=False).to_numpy()
    out.loc[out["diverged"], "final_loss"] = math.nan
    out["quantity"] = used
    return out.reset_index()[cols]


def best_lr(sweep: pd.DataFrame) -> pd.DataFrame:
    """Best learning rate per (setting, optimizer) of a grid search (SPEC section 3).

    sweep : tidy (setting, optimizer, lr, seed, final_loss, diverged), e.g. from
        :func:`final_loss`. A rate is eligible only if none of its seeds diverged; the
        best eligible rate has the lowest final loss averaged over seeds.
    Returns one row per (setting, optimizer): best_lr (NaN when every rate diverged),
    final_loss (its mean over seeds), n_seeds, n_lrs, diverged_lrs (rates with any
    diverged seed), diverged_runs (``(lr, seed)`` pairs that diverged).
    """
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


def _boot_mean(values: np.ndarray, n_boot: int, level: float, seed: int, *key) -> tuple[np.ndarray, tuple]:
    """Bootstrap means (shape (n_boot,)) of ``values`` with a stream fixed by ``key``."""
    if values.size < 2:
        return np.full(n_boot, math.nan), (math.nan, math.nan)
    rng = np.random.default_rng([seed, *_stable_seed(*key)])
    stats = _boot_stats(values, np.mean, n_boot, rng)
    return stats, _interval(stats, level)


def _slope(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row of ``ys`` (shape (..., k)) against ``x`` (k,)."""
    xc = x - x.mean()
    return (ys - ys.mean(axis=-1, keepdims=True)) @ xc / (xc @ xc)


# -- gradient noise ----------------------------------------------------------------------
def excess_kurtosis(values, axis: int = -1) -> np.ndarray | float:
    """Excess kurtosis ``m4 / m2^2 - 3`` (population moments) along ``axis``.

    0 for a Gaussian, > 0 for heavier tails. Equals ``scipy.stats.kurtosis(x, fisher=True,
    bias=True)``.
    """
    x = np.asarray(values, dtype=float)
    d = x - x.mean(axis=axis, keepdims=True)
    m2 = (d * d).mean(axis=axis)
    m4 = (d ** 4).mean(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return m4 / (m2 * m2) - 3.0


def _kurtosis_boot(noise_s: pd.DataFrame, n_boot: int, seed: int,
                   setting: str) -> tuple[float, np.ndarray, int, int]:
    """Mean over seeds of the per-seed excess kurtosis of the noise norms, and its
    bootstrap replicates: seeds resampled, then samples within each seed (a seed drawn
    twice in one replicate reuses its within-seed resample)."""
    per_seed = [g["value"].to_numpy(dtype=float) for _, g in noise_s.groupby("seed", sort=True)]
    per_seed = [v[np.isfinite(v)] for v in per_seed]
    stat = float(np.mean([excess_kurtosis(v) for v in per_seed]))
    rng = np.random.default_rng([seed, *_stable_seed("noise", setting)])
    within = np.stack([_boot_stats(v, excess_kurtosis, n_boot, rng) for v in per_seed], axis=1)
    k = len(per_seed)
    pick = rng.integers(0, k, size=(n_boot, k)) if k > 1 else np.zeros((n_boot, 1), dtype=int)
    boots = np.take_along_axis(within, pick, axis=1).mean(axis=1)
    return stat, boots, sum(v.size for v in per_seed), k


def noise_tail_table(noise: pd.DataFrame, n_boot: int = 2000, level: float = 0.95,
                     seed: int = 0) -> pd.DataFrame:
    """Excess kurtosis of the gradient-noise norms ``||g_B - g||`` per setting.

    noise : tidy (setting, seed, sample, value). Returns one row per setting:
    excess_kurtosis (mean over seeds), low, high (bootstrap, see :func:`claim2`),
    n_samples, n_seeds.
    """
    _check_frame("noise", noise, ["setting", "seed", "sample", "value"])
    n_boot, level, seed = _check_boot(n_boot, level, seed)
    rows = []
    for s, grp in noise.groupby("setting", sort=True):
        stat, boots, n, k = _kurtosis_boot(grp, n_boot, seed, s)
        lo, hi = _interval(boots, level)
        rows.append({"setting": s, "excess_kurtosis": stat, "low": lo, "high": hi,
                     "n_samples": n, "n_seeds": k})
    return pd.DataFrame(rows, columns=["setting", "excess_kurtosis", "low", "high", "n_samples",
                                       "n_seeds"])


# -- condition numbers -------------------------------------------------------------------
def _ratios(conditioning, steps, method, lrs, runs) -> tuple[pd.DataFrame, list[str]]:
    """Per-seed ``R_med(SGDM) / R_med(Adam)`` at ``steps``: setting, step, seed, ratio."""
    _check_frame("conditioning", conditioning, _RUN + ["step", "method", "value"])
    check_choice("method", method, ("eig", "diag"))
    steps = tuple(check_int(f"steps[{i}]", s, minimum=0) for i, s in enumerate(steps))
    c = conditioning[(conditioning["method"] == method) & conditioning["step"].isin(steps)]
    c, notes = _select_lr(c, lrs, None)
    c = c.assign(value=c["value"].astype(float))
    if runs is not None:
        _check_frame("runs", runs, _RUN + ["diverged"])
        bad = runs[runs["diverged"].astype(bool)].set_index(_RUN).index
        mask = c.set_index(_RUN).index.isin(bad)
        if mask.any():
            notes.append(f"{int(c[mask].groupby(_RUN).ngroups)} diverged run(s) excluded")
        c = c[~mask]
    wide = c.pivot_table(index=["setting", "step", "seed"], columns="optimizer", values="value",
                         aggfunc="first")
    for opt in OPTIMIZERS:
        if opt not in wide.columns:
            wide[opt] = math.nan
    ratio = (wide["sgdm"] / wide["adam"]).rename("ratio")
    ok = np.isfinite(ratio) & (ratio > 0)
    if (~ok).any():
        notes.append(f"{int((~ok).sum())} (setting, step, seed) without a finite pair of R_med "
                     "values excluded")
    return ratio[ok].reset_index(), notes


def condition_ratio_table(conditioning: pd.DataFrame, steps=(750, 1250), method: str = "eig",
                          lrs=None, paper: Mapping | None = None, runs: pd.DataFrame | None = None,
                          n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """The paper's table: ``R_med(SGDM) / R_med(Adam)`` per setting and step.

    conditioning : tidy (setting, optimizer, lr, seed, step, method, value=R_med).
    method : ``"eig"`` (lambda_max / lambda_median of the Hessian, the paper's text) or
        ``"diag"`` (max / median of |diag H|, the paper's footnote and code).
    lrs : learning rate per (setting, optimizer) when the data holds several.
    paper : ``{setting: {step: (mean, std)}}``, the paper's numbers, added as columns.
    Returns one row per (setting, step): n_seeds, mean and std (ddof=1) over seeds of the
    per-seed ratio, low/high (bootstrap interval of the mean, resampling seeds),
    geo_mean (exp of the mean log ratio), and paper_mean/paper_std when given.
    """
    n_boot, level, seed = _check_boot(n_boot, level, seed)
    ratio, _ = _ratios(conditioning, steps, method, lrs, runs)
    rows = []
    for (s, step), grp in ratio.groupby(["setting", "step"], sort=True):
        r = grp["ratio"].to_numpy()
        _, (lo, hi) = _boot_mean(r, n_boot, level, seed, "ratio", s, step)
        row = {"setting": s, "step": int(step), "n_seeds": r.size, "mean": r.mean(),
               "std": r.std(ddof=1) if r.size > 1 else math.nan, "low": lo, "high": hi,
               "geo_mean": float(np.exp(np.log(r).mean()))}
        if paper is not None:
            m, sd = paper.get(s, {}).get(int(step), (math.nan, math.nan))
            row.update(paper_mean=m, paper_std=sd)
        rows.append(row)
    cols = ["setting", "step", "n_seeds", "mean", "std", "low", "high", "geo_mean"]
    if paper is not None:
        cols += ["paper_mean", "paper_std"]
    return pd.DataFrame(rows, columns=cols)


# -- the claims --------------------------------------------------------------------------
def _present(frame: pd.DataFrame, settings) -> tuple[str, ...]:
    have = tuple(sorted(frame["setting"].unique()))
    return have if settings is None else tuple(s for s in settings if s in have)


def claim1(history: pd.DataFrame, settings=None, quantity: str = "eval_loss", frac: float = 0.1,
           lrs=None, runs=None, n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> Verdict:
    """Claim 1: Adam reaches a lower loss than SGDM in every setting.

    Rule: in each setting, per seed, ``d = log final_loss(SGDM) - log final_loss(Adam)``
    (final loss: :func:`final_loss`; seeds where either run diverged are dropped). The
    part holds when the bootstrap interval of mean ``d`` over seeds (pairs resampled)
    lies above 0. The claim holds when every setting's part holds.
    settings : the settings to test (default: every one in ``history``).
    """
    n_boot, level, seed = _check_boot(n_boot, level, seed)
    final, notes = _final(history, quantity, frac, lrs, runs)
    settings = _check_names("settings", settings)
    parts, untested, data = [], [], []
    for s in _present(final, settings):
        notes += _diverged_note(final[final["setting"] == s], s)
        d, n2 = _paired_log(final, (s, "sgdm"), (s, "adam"))
        notes += n2
        if d.empty:
            untested.append(f"{s} (no paired SGDM/Adam runs)")
            continue
        _, ci = _boot_mean(d.to_numpy(), n_boot, level, seed, 1, s)
        parts.append(_part(s, d.mean(), ci, d.size, what="mean log(SGDM/Adam final loss)"))
        data.append(pd.DataFrame({"setting": s, "seed": d.index, "log_gap": d.to_numpy()}))
    untested += [s for s in (settings or ()) if s not in set(final["setting"])]
    return _decide(1, parts, notes, _cat(data), untested)


def _cat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def claim2(noise: pd.DataFrame, heavy=DEFAULT_SETTINGS, tails: Mapping = TAILS,
           depths: Mapping = DEPTHS, deep=(6, 8), shallow=(2, 4), threshold: float = 0.0,
           n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Verdict:
    """Claim 2: gradient noise at initialisation is heavy-tailed, more so for gamma than
    for sphere and gaussian covariates, and more for L=6, 8 than for L=2, 4.

    Statistic: excess kurtosis of the noise norms ``||g_B - g||`` (0 for a Gaussian, as
    the paper's q-q plot against the best-fit Gaussian), averaged over seeds; bootstrap
    resamples samples within seeds (and seeds, when there are several). Parts:
    (a) each setting in ``heavy``: kurtosis interval > ``threshold``;
    (b) ``tails['gamma']`` minus ``tails['sphere']`` and minus ``tails['gaussian']``:
        interval of the kurtosis difference (independent bootstraps) > 0;
    (c) every ``L`` in ``deep`` against every ``L`` in ``shallow`` (settings from
        ``depths``): kurtosis difference > 0.
    Caveat printed with the verdict: the norm of a Gaussian vector is not Gaussian; with
    one dominant direction its excess kurtosis approaches that of a half-normal (0.87), so
    values between 0 and ~0.9 are weak evidence of heavy tails.
    """
    _check_frame("noise", noise, ["setting", "seed", "sample", "value"])
    n_boot, level, seed = _check_boot(n_boot, level, seed)
    heavy = _check_names("heavy", heavy)
    have = set(noise["setting"])
    cache: dict[str, tuple] = {}

    def kurt(s):
        if s not in cache:
            cache[s] = _kurtosis_boot(noise[noise["setting"] == s], n_boot, seed, s)
        return cache[s]

    parts, untested = [], []
    for s in heavy:
        if s not in have:
            untested.append(f"heavy tails in {s}")
            continue
        stat, boots, n, _ = kurt(s)
        parts.append(_part(f"heavy-tailed: {s}", stat, _interval(boots, level), n, threshold,
                           what="excess kurtosis"))
    pairs = [(f"gamma > {other}", tails.get("gamma"), tails.get(other)) for other in ("sphere", "gaussian")]
    pairs += [(f"L={hi} > L={lo}", depths.get(hi), depths.get(lo)) for hi in deep for lo in shallow]
    for name, a, b in pairs:
        if a not in have or b not in have:
            untested.append(f"{name} ({a} vs {b})")
            continue
        sa, ba, na, _ = kurt(a)
        sb, bb, nb, _ = kurt(b)
        parts.append(_part(f"{name} ({a} vs {b})", sa - sb, _interval(ba - bb, level), min(na, nb),
                           what="kurtosis difference"))
    notes = ["caveat: a Gaussian vector's norm has excess kurtosis between 0 and ~0.87 "
             "(half-normal), so small positive values are weak evidence of heavy tails"]
    data = pd.DataFrame([{"setting": s, "excess_kurtosis": v[0], "n_samples": v[2], "n_seeds": v[3]}
                         for s, v in sorted(cache.items())])
    return _decide(2, parts, notes, data, untested)


def claim3(conditioning: pd.DataFrame, settings=None, steps=(750, 1250), method: str = "eig",
           tails: Mapping = TAILS, depths: Mapping = DEPTHS, lrs=None, runs=None,
           n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> Verdict:
    """Claim 3: R_med(SGDM) > R_med(Adam) along training; the gap grows with heavier tails
    and with depth.

    Per seed and step: ``r = log(R_med(SGDM) / R_med(Adam))`` (same seed, ``method``).
    Parts, each at every step in ``steps``:
    (a) every setting (default: all present): bootstrap interval of mean ``r`` > 0;
    (b) mean ``r`` of ``tails['gamma']`` minus that of ``tails['sphere']`` and of
        ``tails['gaussian']`` > 0 (independent bootstraps);
    (c) least-squares slope of mean ``r`` against ``L`` over the ``depths`` present (at
        least 2) > 0, seeds resampled within each depth.
    """
    n_boot, level, seed = _check_boot(n_boot, level, seed)
    settings = _check_names("settings", settings)
    ratio, notes = _ratios(conditioning, steps, method, lrs, runs)
    ratio = ratio.assign(log_ratio=np.log(ratio["ratio"]))
    parts, untested = [], []
    steps = sorted(set(int(s) for s in steps))

    def boot(s, step):
        r = ratio[(ratio["setting"] == s) & (ratio["step"] == step)]["log_ratio"].to_numpy()
        stats, ci = _boot_mean(r, n_boot, level, seed, 3, s, step)
        return r, stats, ci

    have = set(ratio["setting"])
    for step in steps:
        for s in _present(ratio, settings):
            r, _, ci = boot(s, step)
            if r.size == 0:
                untested.append(f"{s} at step {step}")
                continue
            parts.append(_part(f"{s}, step {step}", r.mean(), ci, r.size,
                               what="mean log R_med ratio",
                               extra=f"(geometric-mean ratio {np.exp(r.mean()):.3g})"))
        for other in ("sphere", "gaussian"):
            a, b = tails.get("gamma"), tails.get(other)
            ra, ba, _ = boot(a, step) if a in have else (np.array([]), None, None)
            rb, bb, _ = boot(b, step) if b in have else (np.array([]), None, None)
            if ra.size == 0 or rb.size == 0:
                untested.append(f"gamma > {other} at step {step} ({a} vs {b})")
                continue
            parts.append(_part(f"gamma > {other} ({a} vs {b}), step {step}", ra.mean() - rb.mean(),
                               _interval(ba - bb, level), min(ra.size, rb.size),
                               what="difference of mean log ratio"))
        Ls = [L for L in sorted(depths) if depths[L] in have]
        rs = [boot(depths[L], step) for L in Ls]
        Ls = [L for L, r in zip(Ls, rs) if r[0].size]
        rs = [r for r in rs if r[0].size]
        if len(Ls) < 2:
            untested.append(f"growth with depth at step {step} (fewer than 2 depths)")
            continue
        x = np.array(Ls, dtype=float)
        stat = float(_slope(x, np.array([r[0].mean() for r in rs])))
        boots = _slope(x, np.stack([r[1] for r in rs], axis=1))
        parts.append(_part(f"grows with depth L={Ls}, step {step}", stat, _interval(boots, level),
                           min(r[0].size for r in rs), what="slope of mean log ratio per layer"))
    untested += [s for s in (settings or ()) if s not in have]
    return _decide(3, parts, notes, ratio, untested)


def _log_smoothness(history: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    h = history[history["quantity"] == "smoothness"]
    v = h["value"].to_numpy(dtype=float)
    ok = np.isfinite(v) & (v > 0)
    return h[ok].assign(log_s=np.log(v[ok])), int((np.isfinite(v) & (v <= 0)).sum()), v.size


def claim4(history: pd.DataFrame, settings=None, quantity: str = "eval_loss", frac: float = 0.1,
           lrs=None, runs=None, n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> Verdict:
    """Claim 4: Adam's directional smoothness is lower than SGDM's.

    Per run: mean over all recorded steps of log directional smoothness (non-positive
    values, where the log is undefined, are dropped and counted). Per setting, per seed:
    ``d = mean log smoothness(SGDM) - mean log smoothness(Adam)``; the part holds when the
    bootstrap interval of mean ``d`` (pairs resampled) lies above 0. All settings
    (default: every one with smoothness records) must hold. Diverged runs are dropped.
    """
    n_boot, level, seed = _check_boot(n_boot, level, seed)
    settings = _check_names("settings", settings)
    final, notes = _final(history, quantity, frac, lrs, runs)
    sm, nonpos, total = _log_smoothness(history)
    if total and nonpos:
        notes.append(f"{nonpos} of {total} smoothness values <= 0 dropped (log undefined)")
    ok = final[~final["diverged"]].set_index(_RUN).index
    per_run = sm.groupby(_RUN)["log_s"].mean()
    per_run = per_run[per_run.index.isin(ok)].reset_index()
    parts, untested, data = [], [], []
    for s in _present(sm, settings):
        notes += _diverged_note(final[final["setting"] == s], s)
        p = per_run[per_run["setting"] == s].pivot_table(index="seed", columns="optimizer", values="log_s")
        if not {"sgdm", "adam"} <= set(p.columns):
            untested.append(f"{s} (needs both optimizers)")
            continue
        d = (p["sgdm"] - p["adam"]).dropna()
        if d.empty:
            untested.append(f"{s} (no paired seeds)")
            continue
        _, ci = _boot_mean(d.to_numpy(), n_boot, level, seed, 4, s)
        parts.append(_part(s, d.mean(), ci, d.size, what="mean log(smoothness SGDM / Adam)"))
        data.append(pd.DataFrame({"setting": s, "seed": d.index, "log_gap": d.to_numpy()}))
    untested += [s for s in (settings or ()) if s not in set(sm["setting"])]
    if sm.empty:
        notes.append("no 'smoothness' quantity in history")
    return _decide(4, parts, notes, _cat(data), untested)


def spearman(x, y) -> float:
    """Spearman rank correlation of two equal-length 1-D arrays (average ranks for ties)."""
    rx = pd.Series(np.asarray(x, dtype=float)).rank().to_numpy()
    ry = pd.Series(np.asarray(y, dtype=float)).rank().to_numpy()
    if rx.size < 3 or rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def claim5(history: pd.DataFrame, settings=None, optimizer: str = "adam", max_step: int = 2000,
           quantity: str = "eval_loss", frac: float = 0.1, lrs=None, runs=None,
           n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> Verdict:
    """Claim 5: smoothness grows with gradient norm (Fig 16).

    Per seed of ``optimizer`` (Adam, as the paper), over steps ``< max_step``: Spearman
    correlation of log gradient norm (pre-clipping) with log directional smoothness, on
    the steps where both are finite and smoothness > 0 (the points of the log-log
    figure). Per setting the part holds when the bootstrap interval of the mean
    correlation over seeds lies above 0; all settings (default: every one with
    smoothness records) must hold. Diverged runs are dropped.
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    max_step = check_int("max_step", max_step)
    n_boot, level, seed = _check_boot(n_boot, level, seed)
    settings = _check_names("settings", settings)
    final, notes = _final(history, quantity, frac, lrs, runs)
    ok = final[~final["diverged"] & (final["optimizer"] == optimizer)].set_index(_RUN).index
    h = history[(history["optimizer"] == optimizer) & (history["step"] < max_step)
                & history["quantity"].isin(["grad_norm", "smoothness"])]
    h = h[h.set_index(_RUN).index.isin(ok)]
    wide = h.pivot_table(index=_RUN + ["step"], columns="quantity", values="value", aggfunc="first")
    parts, untested, data = [], [], []
    if not {"grad_norm", "smoothness"} <= set(wide.columns):
        notes.append(f"history lacks grad_norm or smoothness for {optimizer}")
        return _decide(5, parts, notes, None, list(settings or ()))
    good = np.isfinite(wide["grad_norm"]) & (wide["grad_norm"] > 0) & np.isfinite(wide["smoothness"]) \
        & (wide["smoothness"] > 0)
    wide = wide[good].reset_index()
    for s in _present(wide, settings):
        notes += _diverged_note(final[(final["setting"] == s) & (final["optimizer"] == optimizer)], s)
        rho = wide[wide["setting"] == s].groupby("seed").apply(
            lambda g: spearman(np.log(g["grad_norm"]), np.log(g["smoothness"])), include_groups=False)
        rho = rho.dropna()
        if rho.empty:
            untested.append(f"{s} (fewer than 3 usable steps per seed)")
            continue
        _, ci = _boot_mean(rho.to_numpy(), n_boot, level, seed, 5, s)
        parts.append(_part(s, rho.mean(), ci, rho.size, what="mean Spearman correlation"))
        data.append(pd.DataFrame({"setting": s, "seed": rho.index, "spearman": rho.to_numpy()}))
    untested += [s for s in (settings or ()) if s not in set(wide["setting"])]
    return _decide(5, parts, notes, _cat(data), untested)


def claim6(history: pd.DataFrame, depths: Mapping = DEPTHS, quantity: str = "eval_loss",
           frac: float = 0.1, lrs=None, runs=None, n_boot: int = 10000, level: float = 0.95,
           seed: int = 0) -> Verdict:
    """Claim 6: the Adam-SGDM loss gap widens with depth, while both losses fall with depth.

    Over the depths ``L`` of ``depths`` present (at least 2), with seeds resampled within
    each depth:
    (a) per seed ``gap = log final_loss(SGDM) - log final_loss(Adam)``: least-squares
        slope of mean gap against ``L`` > 0;
    (b) for each optimizer: slope of mean log final loss against ``L`` < 0.
    Diverged runs are dropped (and their seeds from the gap).
    """
    n_boot, level, seed = _check_boot(n_boot, level, seed)
    final, notes = _final(history, quantity, frac, lrs, runs)
    have = set(final["setting"])
    Ls = [L for L in sorted(depths) if depths[L] in have]
    parts, untested, data = [], [], []
    if len(Ls) < 2:
        return _decide(6, parts, notes, None, [f"depth trends (found depths {Ls}, need >= 2)"])
    x = np.array(Ls, dtype=float)
    gaps = []
    for L in Ls:
        s = depths[L]
        notes += _diverged_note(final[final["setting"] == s], s)
        d, n2 = _paired_log(final, (s, "sgdm"), (s, "adam"))
        notes += n2
        gaps.append(d.to_numpy())
        data.append(pd.DataFrame({"setting": s, "L": L, "seed": d.index, "log_gap": d.to_numpy()}))

    def slope_part(name, per_L, side, what):
        if any(v.size < 2 for v in per_L):
            untested.append(f"{name} (a depth has fewer than 2 seeds)")
            return
        boots = np.stack([_boot_mean(v, n_boot, level, seed, 6, name, L)[0]
                          for v, L in zip(per_L, Ls)], axis=1)
        stat = float(_slope(x, np.array([v.mean() for v in per_L])))
        parts.append(_part(name, stat, _interval(_slope(x, boots), level),
                           min(v.size for v in per_L), 0.0, side, what))

    slope_part(f"gap widens with depth L={Ls}", gaps, "greater", "slope of mean log(SGDM/Adam) per layer")
    for opt in OPTIMIZERS:
        per_L = [final[(final["setting"] == depths[L]) & (final["optimizer"] == opt)]["log_loss"]
                 .dropna().to_numpy() for L in Ls]
        slope_part(f"{opt} loss falls with depth", per_L, "less", "slope of mean log final loss per layer")
    return _decide(6, parts, notes, _cat(data), untested)


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


def claim7(history: pd.DataFrame, light: str = TAILS["sphere"], reference: str = TAILS["gamma"],
           quantity: str = "eval_loss", frac: float = 0.1, lrs=None, runs=None,
           n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> Verdict:
    """Claim 7: light-tailed (sphere) covariates make both optimizers faster, without
    closing the relative gap.

    ``reference`` defaults to the gamma setting, the paper's comparison in Fig 9 (pass the
    gaussian Setting 1 to compare with it instead); both are compared at the last iteration
    both reached. Parts:
    (a) for each optimizer: mean log final loss on ``reference`` minus on ``light`` > 0
        (independent bootstraps over seeds);
    (b) on ``light``, per seed ``gap = log final_loss(SGDM) - log final_loss(Adam)``:
        interval of the mean gap (pairs resampled) > 0 (Adam still ahead).
    """
    n_boot, level, seed = _check_boot(n_boot, level, seed)
    history, horizon = _common_horizon(history, (light, reference))
    final, notes = _final(history, quantity, frac, lrs, runs)
    notes = horizon + notes
    have = set(final["setting"])
    parts, untested = [], []
    for s in (light, reference):
        notes += _diverged_note(final[final["setting"] == s], s)
    missing = [s for s in (light, reference) if s not in have]
    if missing:
        return _decide(7, parts, notes, None, [f"all parts (settings {missing} missing)"])

    def logs(s, opt):
        return final[(final["setting"] == s) & (final["optimizer"] == opt)]["log_loss"].dropna().to_numpy()

    for opt in OPTIMIZERS:
        a, b = logs(reference, opt), logs(light, opt)
        if a.size == 0 or b.size == 0:
            untested.append(f"{opt} faster on {light}")
            continue
        ba, _ = _boot_mean(a, n_boot, level, seed, 7, reference, opt)
        bb, _ = _boot_mean(b, n_boot, level, seed, 7, light, opt)
        parts.append(_part(f"{opt} lower loss on {light} than {reference}", a.mean() - b.mean(),
                           _interval(ba - bb, level), min(a.size, b.size),
                           what=f"mean log(loss {reference} / loss {light})"))
    d, n2 = _paired_log(final, (light, "sgdm"), (light, "adam"))
    notes += n2
    if d.empty:
        untested.append(f"gap on {light} (no paired seeds)")
    else:
        _, ci = _boot_mean(d.to_numpy(), n_boot, level, seed, 7, light, "gap")
        parts.append(_part(f"gap stays open on {light}", d.mean(), ci, d.size,
                           what="mean log(SGDM/Adam final loss)"))
    data = final[final["setting"].isin([light, reference])]
    return _decide(7, parts, notes, data, untested)


def claim8(history: pd.DataFrame, linear: str = ATTENTION["linear"], softmax: str = ATTENTION["softmax"],
           optimizers=OPTIMIZERS, quantity: str = "eval_loss", frac: float = 0.1, lrs=None, runs=None,
           n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> Verdict:
    """Claim 8: linear attention trains faster than softmax attention on this task.

    Both settings are compared at the last iteration both reached.

    For each optimizer run on both settings: per seed ``d = log final_loss(softmax) -
    log final_loss(linear)`` (same optimizer, same seed); the part holds when the
    bootstrap interval of mean ``d`` (pairs resampled) lies above 0. All must hold.
    """
    n_boot, level, seed = _check_boot(n_boot, level, seed)
    optimizers = tuple(check_choice("optimizers[i]", o, OPTIMIZERS) for o in optimizers)
    history, horizon = _common_horizon(history, (linear, softmax))
    final, notes = _final(history, quantity, frac, lrs, runs)
    notes = horizon + notes
    parts, untested, data = [], [], []
    for s in (linear, softmax):
        notes += _diverged_note(final[final["setting"] == s], s)
    for opt in optimizers:
        present = {s for s in (linear, softmax)
                   if ((final["setting"] == s) & (final["optimizer"] == opt)).any()}
        if present != {linear, softmax}:
            untested.append(f"{opt} ({linear} and {softmax} both needed)")
            continue
        d, n2 = _paired_log(final, (softmax, opt), (linear, opt))
        notes += n2
        if d.empty:
            untested.append(f"{opt} (no paired seeds)")
            continue
        _, ci = _boot_mean(d.to_numpy(), n_boot, level, seed, 8, opt)
        parts.append(_part(f"{opt}: {softmax} vs {linear}", d.mean(), ci, d.size,
                           what="mean log(softmax/linear final loss)"))
        data.append(pd.DataFrame({"optimizer": opt, "seed": d.index, "log_gap": d.to_numpy()}))
    return _decide(8, parts, notes, _cat(data), untested)
