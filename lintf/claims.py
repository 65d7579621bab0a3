"""The paper's eight claims, decided from our own numbers.

Every claim is a function of tidy results that returns a :class:`Verdict`. The rule that
decides it is written in its docstring and fixed before looking at any result, and every
verdict goes through one decision rule, :mod:`lintf.stats`:

* each part of a claim reduces the data to **one number per seed** (a seed is the
  independent unit: its own initialisation, data stream and evaluation batches; numbers
  that compare two settings or two optimizers are paired by seed);
* the part is decided by :func:`lintf.stats.test`, an exact sign-flip test of the mean of
  those numbers against the claimed side of a threshold: ``holds`` when the one-sided 95%
  lower bound ``low`` is above the threshold, ``does not hold`` when the upper bound
  ``high`` is below it, ``inconclusive`` otherwise. Each error is at most 5% under a null
  symmetric about the threshold, whatever the distribution; with 4 seeds or fewer no part
  can be decided (the smallest attainable p-value is ``1/2^n``);
* the claim is decided by :func:`lintf.stats.combine`: it holds when every part holds; it
  does not hold when a part's "does not hold" survives Holm's step-down over the parts
  (so with ``m`` parts a refutation needs a part with ``p <= 0.05 / m``: 6 seeds, whose
  smallest p-value is 1/64, can refute a claim of at most 3 parts); else inconclusive;
* diverged runs (non-finite loss) are left out and counted in the evidence (claim 6 makes
  the parts that need a diverged depth inconclusive instead); a part whose settings are
  missing from the data is listed as untested, never guessed.

Loss comparisons use the natural log of the *final loss* of a run: the mean of the last
10% of its recorded ``eval_loss`` values (``loss`` when no ``eval_loss`` was recorded), so
a difference of logs is the log of a ratio of losses.

Settings are named by strings that the experiments choose. The roles a claim needs
(which setting has gamma covariates, which has ``L = 6`` ...) are arguments whose defaults
are :data:`DEFAULT_SETTINGS`, :data:`TAILS`, :data:`DEPTHS` and :data:`ATTENTION`.

Every claim accepts ``level`` (confidence of each one-sided bound, default 0.95).
"""
from __future__ import annotations

import html
import math
import numbers
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from . import stats
from .checks import check_choice, check_frame, check_int
from .stats import VERDICTS

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
"""The paper's claims, by number."""

OPTIMIZERS = ("sgdm", "adam")
PROTOCOLS = ("fixed", "authors", "batches", "large")
"""Evaluation-batch protocols of the conditioning frame (column ``eval_batch``)."""

DEFAULT_SETTINGS = ("setting1", "setting2", "setting3")
"""The paper's Settings 1, 2, 3 (Table 1), where Fig 3 shows heavy-tailed noise."""
TAILS = {"sphere": "sphere", "gaussian": "setting1", "gamma": "gamma"}
"""Setting playing each covariate role of Sec. 4.1 (L=3, d=5, n=20)."""
DEPTHS = {2: "depth2", 4: "depth4", 6: "depth6", 8: "depth8"}
"""Setting for each depth of Sec. 4.2 (Setting 1 otherwise)."""
ATTENTION = {"linear": "setting1", "softmax": "softmax"}
"""Settings compared in Fig 7 (L=3, Setting 1 data)."""

GAP_KEPT = 0.5
"""Claim 7: the share of the reference's log gap that must remain on the light-tailed data."""

_RUN = ["setting", "optimizer", "lr", "seed"]


# -- argument checks -----------------------------------------------------------------
_check_frame = check_frame


def _check_level(level) -> float:
    return stats._check_level(level)


def _check_frac(frac) -> float:
    if isinstance(frac, bool) or not isinstance(frac, numbers.Real) or not 0 < frac <= 1:
        raise ValueError(f"frac must be a number in (0, 1], got {frac!r}")
    return float(frac)


def _check_names(name: str, value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    out = tuple(value)
    if not all(isinstance(v, str) for v in out):
        raise TypeError(f"{name} must be a setting name or a sequence of them, got {value!r}")
    return out


def _stable_seed(*parts) -> list[int]:
    """Seed words that depend only on the names, so adding a setting leaves others' draws."""
    return [zlib.crc32(str(p).encode()) for p in parts]


# -- verdicts --------------------------------------------------------------------------
VERDICT_COLORS = {"holds": "#0173B2", "does not hold": "#D55E00", "inconclusive": "#7F7F7F"}
"""One colour per verdict, for every badge and figure of the book."""


@dataclass(frozen=True)
class Verdict:
    """A claim decided from our numbers.

    statistic, interval : the estimate and ``(low, high)`` one-sided bounds of the
        deciding part (when the claim holds, the part nearest its threshold; when it does
        not hold, the first part whose "does not hold" survives Holm's step-down; else the
        first part that does not hold).
    evidence : one line per part and per note, human readable.
    details : ``{"parts": DataFrame (one row per part: part, statistic, low, high,
        p_greater, p_less, threshold, side, n, verdict, what, extra), "data": DataFrame
        (the per-seed numbers used), "untested": list of parts whose settings were
        missing}``.
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
                f"(deciding statistic {_fmt(self.statistic)}, one-sided 95% bounds "
                f"[{_fmt(self.interval[0])}, {_fmt(self.interval[1])}])\n\n{lines}\n")

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in self.evidence.splitlines() if line)
        colour = VERDICT_COLORS[self.verdict]
        return (f"<div><p><b>Claim {self.claim}.</b> {html.escape(self.text)}</p>"
                f"<p><span style='background:{colour};color:white;padding:1px 6px;border-radius:3px'>"
                f"{html.escape(self.verdict)}</span> deciding statistic {_fmt(self.statistic)}, "
                f"one-sided 95% bounds [{_fmt(self.interval[0])}, {_fmt(self.interval[1])}]</p>"
                f"<ul>{items}</ul></div>")


def scorecard(verdicts: Iterable[Verdict]) -> pd.DataFrame:
    """The scorecard table: one row per :class:`Verdict`, indexed by claim number."""
    rows = [v.to_row() for v in verdicts]
    return pd.DataFrame(rows, columns=["claim", "text", "verdict", "statistic", "low", "high",
                                       "evidence"]).set_index("claim")


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "nan"
    return ("inf" if v > 0 else "-inf") if math.isinf(v) else f"{v:.3g}"


_PART_COLUMNS = ["part", "statistic", "low", "high", "p_greater", "p_less", "threshold", "side", "n",
                 "verdict", "what", "extra"]


def _part(name: str, values, level: float, threshold: float = 0.0, side: str = "greater",
          what: str = "", extra: str = "") -> dict:
    """One part decided by :func:`lintf.stats.test` on its per-seed ``values``."""
    t = stats.test(np.asarray(values, dtype=float), side=side, level=level, threshold=threshold)
    return {"part": name, "statistic": t.estimate, "low": t.low, "high": t.high,
            "p_greater": t.p_greater, "p_less": t.p_less, "threshold": float(threshold), "side": side,
            "n": t.n, "verdict": t.verdict, "what": what, "extra": extra, "_test": t}


def _blocked(name: str, reason: str, threshold: float = 0.0, side: str = "greater", what: str = "") -> dict:
    """A part that the data cannot decide (e.g. a diverged depth): inconclusive, p = 1."""
    return {"part": name, "statistic": math.nan, "low": -math.inf, "high": math.inf, "p_greater": 1.0,
            "p_less": 1.0, "threshold": float(threshold), "side": side, "n": 0, "verdict": "inconclusive",
            "what": what, "extra": reason, "_test": None}


def _describe(p: dict) -> str:
    rel = ">" if p["side"] == "greater" else "<"
    if p["_test"] is None:
        return f"{p['part']}: {p['extra']} (claimed {rel} {p['threshold']:g}) -> inconclusive"
    return (f"{p['part']}: {p['what'] + ' ' if p['what'] else ''}{_fmt(p['statistic'])} "
            f"[{_fmt(p['low'])}, {_fmt(p['high'])}]{' ' + p['extra'] if p['extra'] else ''} "
            f"(claimed {rel} {p['threshold']:g}, n={p['n']}, p-value for > {_fmt(p['p_greater'])}, "
            f"for < {_fmt(p['p_less'])}) -> {p['verdict']}")


def _decide(claim: int, parts: list[dict], notes: list[str], data=None,
            untested: list[str] | None = None, level: float = 0.95) -> Verdict:
    untested = list(untested or [])
    tests = [p["_test"] for p in parts]
    overall = stats.combine(tests, level=level)
    survive = stats.survives_holm(tests, level=level)
    table = pd.DataFrame([{k: p[k] for k in _PART_COLUMNS} for p in parts], columns=_PART_COLUMNS)
    lines = [_describe(p) for p in parts]
    lone = [p["part"] for p, s in zip(parts, survive) if p["verdict"] == "does not hold" and not s]
    if lone:
        lines.append(f"does not hold on its own but not after Holm's step-down over the {len(parts)} "
                     f"parts: {', '.join(lone)}")
    lines += [f"untested (no data): {u}" for u in untested]
    lines += notes
    if not parts:
        lines.insert(0, "no part of the claim could be tested on the data given")
        stat, interval = math.nan, (math.nan, math.nan)
    else:
        if overall == "holds":
            margin = np.where(table["side"] == "greater", table["low"] - table["threshold"],
                              table["threshold"] - table["high"])
            i = int(np.argmin(margin))
        elif overall == "does not hold":
            i = int(np.flatnonzero(survive)[0])
        else:
            i = int(np.flatnonzero(table["verdict"].to_numpy() != "holds")[0])
        row = table.iloc[i]
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
    """Best learning rate per (setting, optimizer) of a grid search.

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
    :func:`lintf.stats.tail_excess`; NaN null columns where the seed has no spectrum). The
    Gaussian null of each (setting, seed) has its own random stream, fixed by ``seed``,
    the setting's name and the seed.
    """
    _check_frame("noise", noise, _NOISE)
    if spectrum is not None:
        _check_frame("spectrum", spectrum, _EIGEN_COLUMNS)
    n_sims = check_int("n_sims", n_sims, minimum=2)
    seed = check_int("seed", seed, minimum=0)
    from .measure import hill_index
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
    bounds of the mean excess by :func:`lintf.stats.test` over seeds), hill (observed Hill
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
    low/high (``exp`` of the one-sided ``level`` bounds of :func:`lintf.stats.test` on the
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


# -- the claims --------------------------------------------------------------------------
def claim1(history: pd.DataFrame, settings=None, quantity: str = "eval_loss", frac: float = 0.1,
           lrs=None, runs=None, level: float = 0.95) -> Verdict:
    """Claim 1: Adam reaches a lower loss than SGDM in every setting.

    Rule: in each setting, per seed, ``d = log final_loss(SGDM) - log final_loss(Adam)``
    (final loss: :func:`final_loss`; seeds where either run diverged are dropped). The
    part holds when :func:`lintf.stats.test` of ``d`` > 0 holds. The claim is
    :func:`lintf.stats.combine` of the settings' parts.
    settings : the settings to test (default: every one in ``history``).
    """
    level = _check_level(level)
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
        parts.append(_part(s, d.to_numpy(), level, what="mean log(SGDM/Adam final loss)"))
        data.append(pd.DataFrame({"setting": s, "seed": d.index, "log_gap": d.to_numpy()}))
    untested += [s for s in (settings or ()) if s not in set(final["setting"])]
    return _decide(1, parts, notes, _cat(data), untested, level)


def claim2(noise: pd.DataFrame, spectrum: pd.DataFrame, heavy=DEFAULT_SETTINGS, tails: Mapping = TAILS,
           depths: Mapping = DEPTHS, deep=(6, 8), shallow=(2, 4), n_sims: int = 200,
           level: float = 0.95, seed: int = 0) -> Verdict:
    """Claim 2: gradient noise at initialisation is heavy-tailed, more so for gamma than
    for sphere and gaussian covariates, and more for L=6, 8 than for L=2, 4.

    noise : tidy (setting, seed, sample, value = ||g_B - g||).
    spectrum : tidy (setting, seed, index, value = eigenvalues of the sample covariance of
        the deviations ``g_B - g`` at that initialisation seed).

    The norm of a Gaussian vector is not Gaussian (its excess kurtosis is positive and
    depends on the covariance), so "heavy-tailed" is judged against the **Gaussian null of
    the measured covariance**: per (setting, seed), ``kurtosis_excess`` = observed excess
    kurtosis of the norms minus its mean over ``n_sims`` simulated samples of as many
    norms of ``N(0, Sigma)`` vectors with Sigma's eigenvalues (:func:`lintf.stats.tail_excess`).
    Parts, each by :func:`lintf.stats.test` on one number per seed:
    (a) each setting in ``heavy``: ``kurtosis_excess`` > 0;
    (b) ``tails['gamma']`` against ``tails['sphere']`` and ``tails['gaussian']``: per seed
        difference of ``kurtosis_excess`` between the two settings (paired by seed) > 0;
    (c) every ``L`` in ``deep`` against every ``L`` in ``shallow`` (settings from
        ``depths``): per seed difference of ``kurtosis_excess`` > 0.
    The Hill tail index is reported as evidence, not as a part: ``hill_deficit`` (null
    Hill minus observed, > 0 for heavier tails) with its bounds, in each part's line and in
    ``details["data"]``; the Hill estimate depends on its choice of ``k`` top values.
    Seeds without a spectrum are left out (and counted).
    """
    _check_frame("spectrum", spectrum, _EIGEN_COLUMNS)
    level = _check_level(level)
    heavy = _check_names("heavy", heavy)
    per, notes = noise_tails_per_seed(noise, spectrum, n_sims, seed)
    per = per[np.isfinite(per["kurtosis_excess"].astype(float))]
    have = set(per["setting"])

    def series(s, col="kurtosis_excess"):
        return per[per["setting"] == s].set_index("seed")[col].astype(float)

    def hill_note(values):
        values = np.asarray(values, dtype=float)
        t = stats.test(values, level=level)
        return f"(evidence: Hill deficit {_fmt(t.estimate)} [{_fmt(t.low)}, {_fmt(t.high)}])"

    parts, untested = [], []
    for s in heavy:
        if s not in have:
            untested.append(f"heavy tails in {s}")
            continue
        parts.append(_part(f"heavy-tailed: {s}", series(s).to_numpy(), level,
                           what="excess kurtosis over the Gaussian null", extra=hill_note(series(s, "hill_deficit"))))
    pairs = [(f"gamma > {other}", tails.get("gamma"), tails.get(other)) for other in ("sphere", "gaussian")]
    pairs += [(f"L={hi} > L={lo}", depths.get(hi), depths.get(lo)) for hi in deep for lo in shallow]
    for name, a, b in pairs:
        if a not in have or b not in have:
            untested.append(f"{name} ({a} vs {b})")
            continue
        d, n2 = _paired(series(a), series(b), f"{name} ({a} vs {b})")
        notes += n2
        if d.empty:
            untested.append(f"{name} ({a} vs {b}): no common seeds")
            continue
        dh, _ = _paired(series(a, "hill_deficit"), series(b, "hill_deficit"), name)
        parts.append(_part(f"{name} ({a} vs {b})", d.to_numpy(), level,
                           what="difference of excess kurtosis over the null", extra=hill_note(dh)))
    return _decide(2, parts, notes, per.reset_index(drop=True), untested, level)


def claim3(conditioning: pd.DataFrame, settings=None, steps=(750, 1250), method: str = "diag",
           eval_batch: str = "large", tails: Mapping = TAILS, depths: Mapping = DEPTHS, lrs=None,
           runs=None, level: float = 0.95) -> Verdict:
    """Claim 3: R_med(SGDM) > R_med(Adam) along training; the gap grows with heavier tails
    and with depth.

    conditioning : as in :func:`condition_ratio_table`; ``eval_batch`` selects the protocol.
    Per seed and step, ``r = log(R_med(SGDM) / R_med(Adam))`` on the same evaluation batch
    (same seed, ``method``); for ``eval_batch="batches"`` a seed's ``r`` is the mean over
    its batches (each seed has its own independent batches, so seeds stay i.i.d. units and
    both seeds and batches count as random). Parts, each at every step in ``steps`` and
    each by :func:`lintf.stats.test` > 0 on one number per seed:
    (a) every setting (default: all present): ``r``;
    (b) ``tails['gamma']`` minus ``tails['sphere']`` and minus ``tails['gaussian']``: per
        seed difference of ``r`` (paired by seed);
    (c) growth with depth over the ``depths`` present (at least 2): per seed least-squares
        slope of ``r`` against ``L`` (seeds present at every depth).
    """
    level = _check_level(level)
    settings = _check_names("settings", settings)
    ratio, _, notes = _log_ratios(conditioning, steps, method, eval_batch, lrs, runs)
    parts, untested = [], []
    steps = sorted(set(int(s) for s in steps))
    have = set(ratio["setting"])

    def series(s, step):
        return ratio[(ratio["setting"] == s) & (ratio["step"] == step)].set_index("seed")["log_ratio"]

    for step in steps:
        for s in _present(ratio, settings):
            r = series(s, step)
            if r.empty:
                untested.append(f"{s} at step {step}")
                continue
            parts.append(_part(f"{s}, step {step}", r.to_numpy(), level, what="mean log R_med ratio",
                               extra=f"(geometric-mean ratio {np.exp(r.mean()):.3g})"))
        for other in ("sphere", "gaussian"):
            a, b = tails.get("gamma"), tails.get(other)
            ra = series(a, step) if a in have else pd.Series(dtype=float)
            rb = series(b, step) if b in have else pd.Series(dtype=float)
            d, n2 = _paired(ra, rb, f"gamma > {other} at step {step}")
            if d.empty:
                untested.append(f"gamma > {other} at step {step} ({a} vs {b})")
                continue
            notes += n2
            parts.append(_part(f"gamma > {other} ({a} vs {b}), step {step}", d.to_numpy(), level,
                               what="difference of log ratio"))
        Ls = [L for L in sorted(depths) if depths[L] in have and not series(depths[L], step).empty]
        if len(Ls) < 2:
            untested.append(f"growth with depth at step {step} (fewer than 2 depths)")
            continue
        wide = pd.concat({L: series(depths[L], step) for L in Ls}, axis=1)
        full = wide.dropna()
        if len(full) < len(wide):
            notes.append(f"growth with depth at step {step}: seed(s) "
                         f"{sorted(set(wide.index) - set(full.index))} not at every depth, excluded")
        if full.empty:
            untested.append(f"growth with depth at step {step} (no seed at every depth)")
            continue
        slopes = _slope(np.array(Ls, dtype=float), full.to_numpy())
        parts.append(_part(f"grows with depth L={Ls}, step {step}", slopes, level,
                           what="slope of log ratio per layer"))
    untested += [s for s in (settings or ()) if s not in have]
    return _decide(3, parts, notes, ratio, untested, level)


def _log_smoothness(history: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    h = history[history["quantity"] == "smoothness"]
    v = h["value"].to_numpy(dtype=float)
    ok = np.isfinite(v) & (v > 0)
    return h[ok].assign(log_s=np.log(v[ok])), int((np.isfinite(v) & (v <= 0)).sum()), v.size


def claim4(history: pd.DataFrame, settings=None, quantity: str = "eval_loss", frac: float = 0.1,
           lrs=None, runs=None, level: float = 0.95) -> Verdict:
    """Claim 4: Adam's directional smoothness is lower than SGDM's.

    Per run: mean over all recorded steps of log directional smoothness (non-positive
    values, where the log is undefined, are dropped and counted). Per setting, per seed:
    ``d = mean log smoothness(SGDM) - mean log smoothness(Adam)``; the part holds when
    :func:`lintf.stats.test` of ``d`` > 0 holds. All settings (default: every one with
    smoothness records) are parts. Diverged runs are dropped.
    """
    level = _check_level(level)
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
        parts.append(_part(s, d.to_numpy(), level, what="mean log(smoothness SGDM / Adam)"))
        data.append(pd.DataFrame({"setting": s, "seed": d.index, "log_gap": d.to_numpy()}))
    untested += [s for s in (settings or ()) if s not in set(sm["setting"])]
    if sm.empty:
        notes.append("no 'smoothness' quantity in history")
    return _decide(4, parts, notes, _cat(data), untested, level)


spearman = stats.spearman


def claim5(history: pd.DataFrame, settings=None, optimizer: str = "adam", max_step: int = 2000,
           quantity: str = "eval_loss", frac: float = 0.1, lrs=None, runs=None, window: int | None = None,
           level: float = 0.95) -> Verdict:
    """Claim 5: smoothness grows with gradient norm (Fig 16).

    Per seed of ``optimizer`` (Adam, as the paper), over steps ``< max_step`` where both
    are finite and smoothness > 0: :func:`lintf.stats.detrended_spearman` of log gradient
    norm (pre-clipping) and log directional smoothness, each detrended by its centred
    rolling median over ``window`` recorded points (default :func:`lintf.stats.default_window`
    of the seed's usable steps: 21, fewer for short series), since both fall or rise along
    training, which alone would correlate them. Per setting the part holds when :func:`lintf.stats.test`
    of the per-seed correlations > 0 holds; all settings (default: every one with
    smoothness records) are parts. Diverged runs are dropped. ``details["data"]`` also
    holds the plain Spearman correlation (``spearman_raw``).
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    max_step = check_int("max_step", max_step)
    if window is not None:
        window = check_int("window", window, minimum=3)
        if window % 2 == 0:
            raise ValueError(f"window must be an odd integer >= 3, got {window}")
    level = _check_level(level)
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
        return _decide(5, parts, notes, None, list(settings or ()), level)
    good = np.isfinite(wide["grad_norm"]) & (wide["grad_norm"] > 0) & np.isfinite(wide["smoothness"]) \
        & (wide["smoothness"] > 0)
    wide = wide[good].reset_index()
    for s in _present(wide, settings):
        notes += _diverged_note(final[(final["setting"] == s) & (final["optimizer"] == optimizer)], s)
        rows = []
        for unit, g in wide[wide["setting"] == s].groupby("seed", sort=True):
            lg, ls = np.log(g["grad_norm"].to_numpy(float)), np.log(g["smoothness"].to_numpy(float))
            rows.append({"setting": s, "seed": unit, "n_steps": len(g),
                         "window": window or stats.default_window(len(g)),
                         "spearman": stats.detrended_spearman(lg, ls, g["step"].to_numpy(float), window=window),
                         "spearman_raw": stats.spearman(lg, ls)})
        per = pd.DataFrame(rows)
        short = per[per["spearman"].isna()]
        if len(short):
            notes.append(f"{s}: seed(s) {short['seed'].tolist()} with too few usable steps for "
                         "the detrending window (or constant residuals), excluded")
        per = per[per["spearman"].notna()]
        if per.empty:
            untested.append(f"{s} (too few usable steps per seed to detrend)")
            continue
        parts.append(_part(s, per["spearman"].to_numpy(), level, what="mean detrended Spearman correlation",
                           extra=f"(plain Spearman {per['spearman_raw'].mean():.3g})"))
        data.append(per)
    untested += [s for s in (settings or ()) if s not in set(wide["setting"])]
    return _decide(5, parts, notes, _cat(data), untested, level)


def claim6(history: pd.DataFrame, depths: Mapping = DEPTHS, quantity: str = "eval_loss",
           frac: float = 0.1, lrs=None, runs=None, level: float = 0.95) -> Verdict:
    """Claim 6: the Adam-SGDM loss gap widens with depth, while both losses fall with depth.

    At the learning rates ``lrs`` (per (setting, optimizer); else the best non-diverged
    rate of each), over the depths ``L`` of ``depths`` present (at least 2), per seed
    (paired by seed across depths; seeds not at every depth are dropped and counted):
    (a) least-squares slope over ``L`` of ``gap = log final_loss(SGDM) - log
        final_loss(Adam)`` > 0;
    (b) for each optimizer: slope over ``L`` of log final loss < 0;
    each by :func:`lintf.stats.test` on the per-seed slopes. A depth whose runs diverged at
    those rates makes the parts that need it (the gap, and that optimizer's loss)
    inconclusive, with the count in the evidence: a diverged run is never averaged away.
    """
    level = _check_level(level)
    final, notes = _final(history, quantity, frac, lrs, runs)
    have = set(final["setting"])
    Ls = [L for L in sorted(depths) if depths[L] in have]
    parts, untested = [], []
    if len(Ls) < 2:
        return _decide(6, parts, notes, None, [f"depth trends (found depths {Ls}, need >= 2)"], level)
    x = np.array(Ls, dtype=float)
    f = final[final["setting"].isin([depths[L] for L in Ls])]
    f = f.assign(L=f["setting"].map({depths[L]: L for L in Ls}))
    diverged = {opt: {L: int(f[(f["L"] == L) & (f["optimizer"] == opt)]["diverged"].sum()) for L in Ls}
                for opt in OPTIMIZERS}
    for L in Ls:
        notes += _diverged_note(f[f["L"] == L], depths[L])
    logs = {opt: f[(f["optimizer"] == opt) & ~f["diverged"]].pivot_table(index="seed", columns="L",
                                                                          values="log_loss")
            for opt in OPTIMIZERS}

    def blocked_by(opts):
        bad = [f"{opt} at L={L}: {k}" for opt in opts for L, k in diverged[opt].items() if k]
        return f"diverged run(s) at the chosen rates ({'; '.join(bad)})" if bad else ""

    def slope_part(name, frame, side, what, opts):
        reason = blocked_by(opts)
        if reason:
            parts.append(_blocked(name, reason, side=side, what=what))
            return None
        frame = frame.reindex(columns=Ls)
        full = frame.dropna()
        if len(full) < len(frame):
            notes.append(f"{name}: seed(s) {sorted(set(frame.index) - set(full.index))} not at every "
                         "depth, excluded")
        if full.empty:
            untested.append(f"{name} (no seed at every depth)")
            return None
        slopes = _slope(x, full.to_numpy())
        parts.append(_part(name, slopes, level, side=side, what=what))
        return pd.DataFrame({"part": name, "seed": full.index, "slope": slopes})

    gap = logs["sgdm"].reindex(columns=Ls) - logs["adam"].reindex(columns=Ls)
    data = [slope_part(f"gap widens with depth L={Ls}", gap, "greater",
                       "slope of log(SGDM/Adam) per layer", OPTIMIZERS)]
    for opt in OPTIMIZERS:
        data.append(slope_part(f"{opt} loss falls with depth", logs[opt], "less",
                               "slope of log final loss per layer", (opt,)))
    return _decide(6, parts, notes, _cat([d for d in data if d is not None]), untested, level)


def claim7(history: pd.DataFrame, light: str = TAILS["sphere"], reference: str = TAILS["gamma"],
           gaussian: str | None = TAILS["gaussian"], quantity: str = "eval_loss", frac: float = 0.1,
           lrs=None, runs=None, level: float = 0.95) -> Verdict:
    """Claim 7: light-tailed (sphere) covariates make both optimizers faster, without
    closing the relative gap.

    ``reference`` is the gamma setting, the paper's comparison in Fig 9; ``gaussian`` the
    gaussian Setting 1 (None: not compared). The settings are compared at the last
    iteration all of them reached. With ``gap = log(final SGDM / final Adam)`` per seed,
    parts by :func:`lintf.stats.test` on one number per seed (paired by seed):
    (a) for each optimizer: ``log loss(reference) - log loss(light)`` > 0;
    (b) the relative gap is not closed: ``gap(light) - GAP_KEPT * gap(reference)`` > 0,
        i.e. at least half (``GAP_KEPT = 1/2``, fixed here) of the reference's log gap
        remains on ``light``; against ``reference`` and, as a second part, ``gaussian``.
        The plain difference ``gap(light) - gap(reference)`` and its bounds are reported
        in the part's line. The rule reads as stated when the reference gap is positive
        (Adam ahead, claim 1).
    Diverged runs are dropped and counted.
    """
    level = _check_level(level)
    names = [s for s in (light, reference, gaussian) if s is not None]
    have0 = set(history["setting"]) if "setting" in history else set()
    history, horizon = _common_horizon(history, [s for s in names if s in have0])
    final, notes = _final(history, quantity, frac, lrs, runs)
    notes = horizon + notes
    have = set(final["setting"])
    parts, untested = [], []
    for s in names:
        notes += _diverged_note(final[final["setting"] == s], s)
    missing = [s for s in (light, reference) if s not in have]
    if missing:
        return _decide(7, parts, notes, None, [f"all parts (settings {missing} missing)"], level)
    for opt in OPTIMIZERS:
        d, n2 = _paired_log(final, (reference, opt), (light, opt))
        notes += n2
        if d.empty:
            untested.append(f"{opt} faster on {light}")
            continue
        parts.append(_part(f"{opt} lower loss on {light} than {reference}", d.to_numpy(), level,
                           what=f"mean log(loss {reference} / loss {light})"))
    gap_light, n2 = _paired_log(final, (light, "sgdm"), (light, "adam"))
    notes += n2
    for ref in (reference, gaussian):
        if ref is None:
            continue
        if ref not in have:
            untested.append(f"gap not closed on {light} vs {ref}")
            continue
        gap_ref, n2 = _paired_log(final, (ref, "sgdm"), (ref, "adam"))
        notes += n2
        kept, n3 = _paired(gap_light, GAP_KEPT * gap_ref, f"gap on {light} vs {ref}")
        notes += n3
        if kept.empty:
            untested.append(f"gap not closed on {light} vs {ref} (no paired seeds)")
            continue
        plain, _ = _paired(gap_light, gap_ref, "")
        tp = stats.test(plain.to_numpy(), level=level)
        parts.append(_part(f"gap not closed on {light} vs {ref}", kept.to_numpy(), level,
                           what=f"mean gap({light}) - {GAP_KEPT:g} gap({ref})",
                           extra=f"(gap({light}) - gap({ref}) = {_fmt(tp.estimate)} "
                                 f"[{_fmt(tp.low)}, {_fmt(tp.high)}])"))
    data = final[final["setting"].isin(names)]
    return _decide(7, parts, notes, data, untested, level)


def claim8(history: pd.DataFrame, linear: str = ATTENTION["linear"], softmax: str = ATTENTION["softmax"],
           optimizers=OPTIMIZERS, quantity: str = "eval_loss", frac: float = 0.1, lrs=None, runs=None,
           level: float = 0.95) -> Verdict:
    """Claim 8: linear attention trains faster than softmax attention on this task.

    Both settings are compared at the last iteration both reached, each attention at the
    learning rate the caller passes in ``lrs`` (e.g. ``{(linear, "adam"): a, (softmax,
    "adam"): b}``, each variant's own best rate; without it, the only rate present or the
    best non-diverged one). For each optimizer run on both settings: per seed ``d = log
    final_loss(softmax) - log final_loss(linear)`` (same optimizer, same seed); the part
    holds when :func:`lintf.stats.test` of ``d`` > 0 holds.
    """
    level = _check_level(level)
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
        lr_note = ", ".join(f"{s} lr {final[(final['setting'] == s) & (final['optimizer'] == opt)]['lr'].iloc[0]:g}"
                            for s in (linear, softmax))
        parts.append(_part(f"{opt}: {softmax} vs {linear}", d.to_numpy(), level,
                           what="mean log(softmax/linear final loss)", extra=f"({lr_note})"))
        data.append(pd.DataFrame({"optimizer": opt, "seed": d.index, "log_gap": d.to_numpy()}))
    return _decide(8, parts, notes, _cat(data), untested, level)
