"""The book's figure kinds, drawn from tidy results with one palette (plotting only).

Every function takes an ``ax`` (or makes a figure of its own when ``ax`` is None) and
returns the axes it drew on; :func:`grid_of_settings` lays one panel per setting out with
one shared legend. Curves over seeds are geometric means (means of log values) with a
min-max band over seeds, which is what a log axis shows faithfully. Diverged runs are
left out of means and bands, and their count is written in the legend.

Use :func:`use_style` once per notebook (or ``with style():``) for the book's defaults.
"""
from __future__ import annotations

import functools
import math
from contextlib import contextmanager
from typing import Callable, Mapping

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatterSciNotation
from matplotlib.transforms import blended_transform_factory
from scipy import stats

from ..compute.checks import check_choice, check_frame, check_int
from .claims import VERDICT_COLORS
from ..compute.settings import get_setting

PALETTE = {"sgdm": "#0173B2", "adam": "#DE8F05", "signsgd": "#D55E00", "normsgd": "#CC78BC", "rmsprop": "#CA9161",
           "adam_b2_0.99": "#56B4E9", "adam_b2_0.999": "#029E73", "adam_nobias": "#949494",
           "sgdm_coordclip": "#FBAFE4"}
"""Optimizer colours (seaborn ``colorblind``: SGDM blue, Adam orange), for every figure; the
others are the ablation's (:data:`lintf.compute.optim.ALL_OPTIMIZERS`)."""
LABELS = {"sgdm": "SGDM", "adam": "Adam", "signsgd": "signum", "normsgd": "normalised SGDM", "rmsprop": "RMSprop",
          "adam_b2_0.99": "Adam, β2 0.99", "adam_b2_0.999": "Adam, β2 0.999", "adam_nobias": "Adam, no bias corr.",
          "sgdm_coordclip": "SGDM, coord. clip"}
NOISE_COLOR = "#029E73"
"""Colour of gradient-noise histograms (colorblind green), which belong to no optimizer."""
FIT_COLOR = "#333333"
FULL_WIDTH = 7.5
"""Figure width in inches that fills the Jupyter Book text column without scaling text down."""
PANEL_HEIGHT = 2.6
FOREST_LABEL = 9.0
"""Font size (points) of :func:`forest`'s row labels: the book's tick size, legible at the text column."""
FOREST_ROW = 0.3
"""Height in inches of one :func:`forest` row: room for its label (9 pt is 0.125 in) and a gap."""
_SOURCE_MARKERS = ("^", "D", "s", "v")
LINESTYLES = ("-", "--", ":", "-.")
"""One per learning rate when a frame holds several rates for an optimizer."""

RC = {
    "figure.dpi": 110, "savefig.dpi": 110, "figure.figsize": (6.0, 3.6),
    "figure.constrained_layout.use": True,
    "font.size": 10, "axes.titlesize": 10.5, "axes.labelsize": 10, "legend.fontsize": 9,
    "xtick.labelsize": 9, "ytick.labelsize": 9,
    "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6,
    "lines.linewidth": 1.6, "legend.frameon": False, "image.cmap": "viridis",
}
"""The book's matplotlib defaults."""

_YLABEL = {"eval_loss": "loss on evaluation batch", "loss": "training loss (minibatch)"}
_RMED_LABEL = {"eig": r"$R_{\mathrm{med}} = \lambda_{\max} / \lambda_{\mathrm{median}}$",
               "diag": r"$R_{\mathrm{med}} = \max|H_{ii}| \,/\, \mathrm{median}|H_{ii}|$"}
_RUN = ["setting", "optimizer", "lr", "seed"]


@contextmanager
def style():
    """Context in which figures take the book's defaults (:data:`RC`)."""
    with mpl.rc_context(RC):
        yield


def use_style() -> None:
    """Set the book's defaults (:data:`RC`) for the rest of the session."""
    mpl.rcParams.update(RC)


def _styled(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with style():
            return fn(*args, **kwargs)
    return wrapper


# -- helpers -----------------------------------------------------------------------------
class _LogFormatter(LogFormatterSciNotation):
    """Matplotlib's choice of which log ticks to label, written as plain numbers
    (``0.01``, ``600``) between 1e-3 and 1e4, where they read faster than powers of 10."""

    def __call__(self, x, pos=None):
        text = super().__call__(x, pos)
        if not text or not 1e-3 <= abs(x) < 1e4:
            return text
        return f"{x:g}"


def _log(ax: Axes, axis: str = "y") -> None:
    getattr(ax, f"set_{axis}scale")("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(_LogFormatter())
    target.set_minor_formatter(_LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


_check_frame = check_frame


def _ax(ax, figsize=None) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize or (FULL_WIDTH * 0.75, 3.4))
    elif not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    return ax


def _runs_frame(name: str, frame, columns) -> pd.DataFrame:
    """Check ``frame`` holds ``columns``; a frame without a ``setting`` column (as
    :func:`lintf.train` returns: one model, one prompt distribution) is one setting, named
    ``"-"``."""
    if isinstance(frame, pd.DataFrame) and "setting" not in frame.columns and "setting" in columns:
        frame = frame.assign(setting="-")
    return _check_frame(name, frame, columns)


def _one_setting(frame: pd.DataFrame, setting, name: str) -> pd.DataFrame:
    have = list(pd.unique(frame["setting"]))
    if setting is None:
        if len(have) > 1:
            raise ValueError(f"{name} holds several settings {have}; pass setting= or use "
                             "grid_of_settings")
        return frame
    check_choice("setting", setting, [str(s) for s in have])
    return frame[frame["setting"] == setting]


def _diverged_runs(history: pd.DataFrame, quantities) -> set:
    """Runs with a non-finite ``loss`` or ``quantities`` value (the engine writes NaN
    after a divergence)."""
    h = history[history["quantity"].isin(set(quantities) | {"loss"})]
    bad = h[~np.isfinite(h["value"].to_numpy(dtype=float))]
    return set(map(tuple, bad[_RUN].drop_duplicates().itertuples(index=False)))


def _label(opt: str, lr: float, n_lrs: int, suffix: str = "") -> str:
    return LABELS.get(opt, opt) + (f", lr {lr:g}" if n_lrs > 1 else "") + suffix


def _note_diverged(ax: Axes, counts: list[tuple[str, int, int]], what: str = "diverged, not shown") -> None:
    """Write under the panel (below its x label, off the data) how many runs each curve
    leaves out, so that legends shared across panels stay identical."""
    parts = [f"{name} {k}/{n}" for name, k, n in counts if k]
    if parts:
        # x in axes fractions, y just below the x label's box: outside the axes, whatever the data
        ax.annotate(f"{what}: " + ", ".join(parts), xy=(0.0, 0.0), xycoords=("axes fraction", ax.xaxis.label),
                    xytext=(0, -3), textcoords="offset points", fontsize=7.5, color="0.35", ha="left", va="top",
                    gid="diverged-note")


def _seed_curves(runs: pd.DataFrame, log: bool = True) -> pd.DataFrame:
    """Wide table: index step, one column per seed, values log-transformed when ``log``."""
    wide = runs.pivot_table(index="step", columns="seed", values="value", aggfunc="first")
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            wide = np.log(wide.where(wide > 0))
    return wide.sort_index()


def _draw_band(ax, wide_log: pd.DataFrame, color, label, linestyle, band: str, marker=None):
    """Geometric mean over seeds (columns) with a min-max band, drawn on a log y axis."""
    center = np.exp(wide_log.mean(axis=1, skipna=True))
    ok = np.isfinite(center.to_numpy())
    x = wide_log.index.to_numpy()[ok]
    (line,) = ax.plot(x, center.to_numpy()[ok], color=color, linestyle=linestyle, label=label,
                      marker=marker, markersize=3.5)
    if band == "range" and wide_log.shape[1] > 1:
        lo = np.exp(wide_log.min(axis=1, skipna=True)).to_numpy()[ok]
        hi = np.exp(wide_log.max(axis=1, skipna=True)).to_numpy()[ok]
        ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0)
    return line


def _per_optimizer(frame: pd.DataFrame, optimizers):
    """Yield (optimizer, lr, runs of that rate, number of rates of that optimizer)."""
    for opt in optimizers:
        f = frame[frame["optimizer"] == opt]
        lrs = sorted(pd.unique(f["lr"]))
        for lr in lrs:
            yield opt, lr, f[f["lr"] == lr], len(lrs)


def _check_optimizers(optimizers) -> tuple[str, ...]:
    return tuple(check_choice("optimizers[i]", o, tuple(PALETTE)) for o in optimizers)


# -- figure kinds ------------------------------------------------------------------------
@_styled
def loss_curves(history: pd.DataFrame, quantity: str = "eval_loss", setting: str | None = None,
                ax: Axes | None = None, band: str = "range", rolling: int | None = None,
                optimizers=("sgdm", "adam")) -> Axes:
    """Loss against iteration per optimizer (Figs 2, 7, 9, 12): geometric mean over seeds
    with a min-max band, log y.

    history : tidy (setting, optimizer, lr, seed, step, quantity, value), one setting (or
        pick it with ``setting``). quantity : ``"eval_loss"`` (fixed evaluation batch,
        every k steps) or ``"loss"`` (training minibatch, every step).
    band : ``"range"`` (min-max over seeds) or ``"none"``. rolling : optional window (steps
        of records) of a centred rolling mean of each seed's log loss, for noisy ``loss``.
    Several learning rates of one optimizer get one line style each. A diverged run is left
    out of the mean and band; its finite records before it diverged are drawn faint, with a
    cross at the last one (artists with gid ``"diverged"``).
    """
    history = _runs_frame("history", history, _RUN + ["step", "quantity", "value"])
    check_choice("quantity", quantity, tuple(_YLABEL))
    check_choice("band", band, ("range", "none"))
    optimizers = _check_optimizers(optimizers)
    if rolling is not None:
        rolling = check_int("rolling", rolling)
    h = _one_setting(history, setting, "history")
    ax = _ax(ax)
    bad = _diverged_runs(h, [quantity])
    q = h[h["quantity"] == quantity]
    counts = []
    for opt, lr, runs, n_lrs in _per_optimizer(q, optimizers):
        seeds = sorted(pd.unique(runs["seed"]))
        gone = {s for s in seeds if (runs["setting"].iloc[0], opt, lr, s) in bad}
        wide = _seed_curves(runs[~runs["seed"].isin(gone)])
        if rolling:
            wide = wide.rolling(rolling, center=True, min_periods=1).mean()
        lrs = sorted(pd.unique(q[q["optimizer"] == opt]["lr"]))
        style_ = LINESTYLES[lrs.index(lr) % 4]
        label = _label(opt, lr, n_lrs)
        counts.append((label, len(gone), len(seeds)))
        if wide.shape[1]:
            _draw_band(ax, wide, PALETTE[opt], label, style_, band)
        else:
            ax.plot([], [], color=PALETTE[opt], linestyle=style_, label=label)
        for seed in sorted(gone):                                    # until it diverged
            before = runs[(runs["seed"] == seed) & np.isfinite(runs["value"]) & (runs["value"] > 0)]
            before = before.sort_values("step")
            if len(before):
                ax.plot(before["step"], before["value"], color=PALETTE[opt], linestyle=style_, linewidth=0.8,
                        alpha=0.5, marker="x", markevery=[len(before) - 1], gid="diverged")
    _note_diverged(ax, counts, "diverged (faint, x: last finite value)")
    _log(ax, "y")
    ax.set_xlabel("iteration")
    ax.set_ylabel(_YLABEL[quantity] + "\n(squared error, log scale)")
    ax.legend()
    return ax


@_styled
def noise_histogram(values, ax: Axes | None = None, bins: int = 100, qq: bool = True,
                    color: str = NOISE_COLOR) -> Axes:
    """Density histogram of the gradient-noise norms ``||g_B - g||`` with the best-fit
    Gaussian, and a q-q plot against it as an inset (Figs 3, 10, 13).

    values : shape (n,) array, a Series, or a noise frame (its ``value`` column; all rows
        pooled). The q-q inset plots sample quantiles (y) against those of the Gaussian
        with the sample's mean and standard deviation (x), with the line y = x: points
        above it on the right mean a heavier right tail than Gaussian.
    """
    if isinstance(values, pd.DataFrame):
        _check_frame("values", values, ["value"])
        values = values["value"]
    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size < 2:
        raise ValueError(f"values must hold at least 2 finite numbers, got {x.size}")
    bins = check_int("bins", bins)
    ax = _ax(ax, (FULL_WIDTH * 0.6, 3.2))
    ax.hist(x, bins=bins, density=True, color=color, alpha=0.75, linewidth=0)
    mu, sigma = x.mean(), x.std()
    grid = np.linspace(x.min(), x.max(), 400)
    dens = stats.norm.pdf(grid, mu, sigma)
    ax.plot(grid, dens, color=FIT_COLOR, linestyle="--", linewidth=1.2, label="best-fit Gaussian")
    heights = np.histogram(x, bins=bins, density=True)[0]
    # head-room above the histogram keeps the inset off the data
    ax.set_ylim(0, 1.9 * max(heights.max(), dens.max()))
    ax.set_xlabel(r"noise norm $\|g_B - g\|$")
    ax.set_ylabel("density")
    ax.legend(loc="upper left")
    if qq:
        ins = ax.inset_axes([0.64, 0.47, 0.33, 0.48])
        p = (np.arange(1, x.size + 1) - 0.5) / x.size
        theo = mu + sigma * stats.norm.ppf(p)
        ins.plot(theo, np.sort(x), ".", color=color, markersize=1.5, rasterized=True)
        lim = [min(theo[0], x.min()), max(theo[-1], x.max())]
        ins.plot(lim, lim, color=FIT_COLOR, linewidth=0.8)
        ins.set_xlim(lim)
        ins.set_ylim(lim)
        # the shape against y = x is the message; tick values would only crowd the panel
        ins.set_xticks([])
        ins.set_yticks([])
        ins.set_xlabel("Gaussian quantile", fontsize=7, labelpad=1)
        ins.set_ylabel("sample quantile", fontsize=7, labelpad=1)
        ins.text(0.05, 0.95, "q-q", transform=ins.transAxes, fontsize=7, va="top")
        ins.grid(False)
        for side in ("top", "right"):
            ins.spines[side].set_visible(True)
    return ax


@_styled
def rmed_curves(conditioning: pd.DataFrame, method: str, setting: str | None = None,
                ax: Axes | None = None, band: str = "range", optimizers=("sgdm", "adam")) -> Axes:
    """Robust condition number ``R_med`` against iteration per optimizer (Figs 11, 14):
    geometric mean over seeds with a min-max band, log y.

    conditioning : tidy (setting, optimizer, lr, seed, step, method, value), one setting.
    method : ``"eig"`` (Hessian eigenvalues) or ``"diag"`` (Hessian diagonal).
    """
    conditioning = _runs_frame("conditioning", conditioning, _RUN + ["step", "method", "value"])
    check_choice("method", method, tuple(_RMED_LABEL))
    check_choice("band", band, ("range", "none"))
    optimizers = _check_optimizers(optimizers)
    c = _one_setting(conditioning, setting, "conditioning")
    c = c[c["method"] == method]
    ax = _ax(ax)
    counts = []
    for opt, lr, runs, n_lrs in _per_optimizer(c, optimizers):
        wide = _seed_curves(runs)
        good = wide.columns[np.isfinite(wide).all(axis=0)]
        lrs = sorted(pd.unique(c[c["optimizer"] == opt]["lr"]))
        label = _label(opt, lr, n_lrs)
        counts.append((label, wide.shape[1] - len(good), wide.shape[1]))
        _draw_band(ax, wide[good], PALETTE[opt], label, LINESTYLES[lrs.index(lr) % 4], band, marker="o")
    _note_diverged(ax, counts)
    _log(ax, "y")
    ax.set_xlabel("iteration")
    ax.set_ylabel(_RMED_LABEL[method] + "\n(log scale)")
    ax.legend()
    return ax


@_styled
def rmed_vs_batch_size(curve: pd.DataFrame, method: str, setting: str | None = None, ax: Axes | None = None,
                       optimizers=("sgdm", "adam")) -> Axes:
    """``R_med`` of fixed checkpoints against the size of the evaluation batch (log-log):
    one dot per independent batch, a line through the medians per size, per optimizer.

    curve : tidy (setting, optimizer, lr, seed, step, size, batch, method, value), as
    :func:`lintf.compute.experiments.batch_size_curve` returns, one setting.
    """
    _check_frame("curve", curve, _RUN + ["step", "size", "batch", "method", "value"])
    check_choice("method", method, tuple(_RMED_LABEL))
    optimizers = _check_optimizers(optimizers)
    c = _one_setting(curve, setting, "curve")
    c = c[(c["method"] == method) & np.isfinite(c["value"]) & (c["value"] > 0)]
    ax = _ax(ax)
    offsets = {opt: 1.0 + 0.04 * (i - (len(optimizers) - 1) / 2) for i, opt in enumerate(optimizers)}
    for opt in optimizers:
        g = c[c["optimizer"] == opt]
        if g.empty:
            continue
        ax.scatter(g["size"] * offsets[opt], g["value"], s=12, alpha=0.45, color=PALETTE[opt], linewidths=0)
        med = g.groupby("size")["value"].median()
        step = int(g["step"].iloc[0])
        ax.plot(med.index, med.to_numpy(), color=PALETTE[opt], marker="o", ms=4,
                label=f"{LABELS[opt]} (seed {int(g['seed'].iloc[0])}, iteration {step})")
    _log(ax, "x")
    _log(ax, "y")
    ax.set_xlabel("evaluation prompts (log scale)")
    ax.set_ylabel(_RMED_LABEL[method] + "\n(log scale)")
    ax.legend()
    return ax


@_styled
def ratio_by_protocol(ratios: pd.DataFrame, setting: str | None = None, ax: Axes | None = None,
                      protocols=("authors", "batches", "large")) -> Axes:
    """Per-seed ratios ``R_med(SGDM) / R_med(Adam)`` side by side for each evaluation protocol
    and iteration (log y, one dot per seed, a bar at the geometric mean, a line at 1).

    ratios : tidy (setting, eval_batch, step, seed, ratio), one setting; for the ``batches``
    protocol a seed's ratio is the geometric mean over its batches.
    """
    _check_frame("ratios", ratios, ["setting", "eval_batch", "step", "seed", "ratio"])
    r = _one_setting(ratios, setting, "ratios")
    r = r[np.isfinite(r["ratio"]) & (r["ratio"] > 0)]
    ax = _ax(ax)
    steps = sorted(r["step"].unique())
    protocols = [p for p in protocols if p in set(r["eval_batch"])]
    colors = {"authors": "#CC78BC", "batches": "#029E73", "large": "#56B4E9", "fixed": "#949494"}
    width = 0.8 / max(1, len(protocols))
    rng = np.random.default_rng(0)
    for i, step in enumerate(steps):
        for j, prot in enumerate(protocols):
            v = r[(r["step"] == step) & (r["eval_batch"] == prot)]["ratio"].to_numpy()
            if v.size == 0:
                continue
            x = i + (j - (len(protocols) - 1) / 2) * width
            ax.scatter(x + rng.uniform(-width / 4, width / 4, v.size), v, s=10, alpha=0.6,
                       color=colors.get(prot, "#333333"), linewidths=0, label=prot if i == 0 else None)
            ax.hlines(np.exp(np.log(v).mean()), x - width / 3, x + width / 3, color="black", lw=1.4)
    ax.axhline(1.0, color=FIT_COLOR, lw=0.8, ls="--")
    ax.set_xticks(range(len(steps)), [f"iteration {s}" for s in steps])
    _log(ax, "y")
    ax.set_ylabel("R_med(SGDM) / R_med(Adam)\nper seed (log scale)")
    ax.legend(title="evaluation batch")
    return ax


@_styled
def forest(parts: pd.DataFrame, ax: Axes | None = None, label_width: int = 60) -> Axes:
    """Every part of every claim on one axis: its statistic minus its threshold, signed so
    that the claimed side is to the right, with the decision rule's one-sided bounds, coloured
    by the part's verdict (symmetric-log x axis: the parts' units differ, the side does not).

    parts : one row per part: claim, part, statistic, low, high, threshold, side, verdict
        (and ``n``, the seeds, if known). A part with no finite bound (too few seeds for the
        rule) gets a line of text instead of a bar across the panel. The legend sits above
        the axes, off the rows.
    """
    _check_frame("parts", parts, ["claim", "part", "statistic", "low", "high", "threshold", "side", "verdict"])
    sign = np.where(parts["side"].to_numpy() == "greater", 1.0, -1.0)
    centre = (parts["statistic"].to_numpy(dtype=float) - parts["threshold"].to_numpy(dtype=float)) * sign
    lo = (parts["low"].to_numpy(dtype=float) - parts["threshold"].to_numpy(dtype=float)) * sign
    hi = (parts["high"].to_numpy(dtype=float) - parts["threshold"].to_numpy(dtype=float)) * sign
    left, right = np.minimum(lo, hi), np.maximum(lo, hi)
    n = len(parts)
    if ax is None:
        # one row per part, each tall enough for its label at the book's tick size
        _, ax = plt.subplots(figsize=(FULL_WIDTH, max(2.0, FOREST_ROW * n + 1.2)))
    finite = np.concatenate([v[np.isfinite(v)] for v in (centre, left, right)] or [np.zeros(1)])
    span = float(np.max(np.abs(finite))) * 1.5 if finite.size else 1.0
    y = np.arange(n)[::-1]
    for i, row in enumerate(parts.itertuples()):
        color = VERDICT_COLORS.get(row.verdict, "#333333")
        if not (np.isfinite(left[i]) or np.isfinite(right[i])):      # nothing the rule could bound
            seeds = f" ({int(row.n)} seed{'s' * (int(row.n) != 1)})" if "n" in parts.columns else ""
            ax.text(0, y[i], f"  no finite bound{seeds}: too few seeds to test", color=color,
                    fontsize=7, va="center", ha="left")
        else:
            a = left[i] if np.isfinite(left[i]) else -span
            b = right[i] if np.isfinite(right[i]) else span
            ax.plot([a, b], [y[i], y[i]], color=color, lw=2.2, alpha=0.8, solid_capstyle="butt")
        if np.isfinite(centre[i]):
            ax.plot(centre[i], y[i], "o", color=color, ms=4)
    ax.axvline(0, color=FIT_COLOR, lw=0.9)
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlim(-span, span)
    ax.set_yticks(y, [(f"{r.claim}: {r.part}" if r.claim != "" else r.part)[:label_width] for r in parts.itertuples()],
                  fontsize=FOREST_LABEL)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlabel("statistic minus threshold, claimed side to the right (symmetric log scale)")
    handles = [Line2D([], [], color=c, lw=2.2, label=v) for v, c in VERDICT_COLORS.items()]
    # above the axes, so that it never covers a part's row
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles), fontsize=8,
              frameon=False)
    ax.grid(axis="y", alpha=0.15)
    return ax


def specification_curve(frame: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """A claim decided under each of its declared alternatives (:func:`lintf.book.verdicts.alternatives`),
    as a specification curve: one row per measured alternative, sorted by its deciding part's
    statistic minus threshold (claimed side to the right), with the rule's one-sided bounds,
    coloured by verdict (:func:`forest`'s axes); the paper's protocol marked with a star and
    bold. Alternatives whose quantity was not recorded are left out (the caption counts them).

    frame : columns ``id, label, paper, verdict, part, statistic, low, high, threshold, side``
        (and ``n``).
    """
    _check_frame("frame", frame, ["label", "paper", "verdict", "part", "statistic", "low", "high", "threshold",
                                  "side"])
    f = frame[frame["verdict"] != "not measured"].copy()
    sign = np.where(f["side"].to_numpy() == "greater", 1.0, -1.0)
    f["_centre"] = (f["statistic"].to_numpy(dtype=float) - f["threshold"].to_numpy(dtype=float)) * sign
    f = f.sort_values("_centre", ascending=False, na_position="last", kind="stable")
    rows = f.assign(claim=np.where(f["paper"], "\u2605 paper's protocol", ""),
                    part=[f"{r.label} [{r.part}]" if r.part else r.label for r in f.itertuples()])
    ax = forest(rows.reset_index(drop=True), ax=ax, label_width=100)
    for tick, paper in zip(ax.get_yticklabels(), rows["paper"]):
        if paper:
            tick.set_fontweight("bold")
    return ax


@_styled
def smoothness_curves(history: pd.DataFrame, setting: str | None = None, ax: Axes | None = None,
                      window: int = 50, band: str = "range", optimizers=("sgdm", "adam"),
                      quantity: str = "smoothness") -> Axes:
    """Directional smoothness ``u^T H u`` against iteration on a log axis (Fig 5).

    Each seed's log smoothness is smoothed by a centred rolling mean over ``window``
    records (the legend says how many steps they span), then averaged over seeds, with a min-max band of the
    smoothed seeds. Non-positive values (log undefined) are skipped. ``quantity``: which
    smoothness (``"smoothness"``, the step's own minibatch; ``"smoothness_shared"``, the authors'
    batch; see :func:`lintf.book.claims.claim4`).
    """
    history = _runs_frame("history", history, _RUN + ["step", "quantity", "value"])
    window = check_int("window", window)
    check_choice("band", band, ("range", "none"))
    optimizers = _check_optimizers(optimizers)
    h = _one_setting(history, setting, "history")
    ax = _ax(ax)
    bad = _diverged_runs(h, [])
    sm = h[h["quantity"] == quantity]
    if sm.empty:
        raise ValueError(f"history has no {quantity!r} records")
    gaps = np.diff(np.unique(sm["step"].to_numpy()))
    spacing = int(gaps.min()) if len(gaps) else 1                    # steps between two records
    counts = []
    for opt, lr, runs, n_lrs in _per_optimizer(sm, optimizers):
        seeds = sorted(pd.unique(runs["seed"]))
        gone = {s for s in seeds if (runs["setting"].iloc[0], opt, lr, s) in bad}
        wide = _seed_curves(runs[~runs["seed"].isin(gone)])
        wide = wide.rolling(window, center=True, min_periods=max(1, window // 2)).mean()
        lrs = sorted(pd.unique(sm[sm["optimizer"] == opt]["lr"]))
        label = _label(opt, lr, n_lrs, f" ({window * spacing}-step rolling mean)")
        counts.append((_label(opt, lr, n_lrs), len(gone), len(seeds)))
        _draw_band(ax, wide, PALETTE[opt], label, LINESTYLES[lrs.index(lr) % 4], band)
    _note_diverged(ax, counts)
    _log(ax, "y")
    ax.set_xlabel("iteration")
    ax.set_ylabel("directional smoothness $u^\\top H u$\n(log scale)")
    ax.legend()
    return ax


@_styled
def smoothness_vs_gradnorm(history: pd.DataFrame, setting: str | None = None, ax: Axes | None = None,
                           max_step: int = 2000, optimizer: str = "adam", lr: float | None = None,
                           seeds=None, colorbar: bool = True, smoothness: str = "smoothness",
                           norm: str = "grad_norm") -> Axes:
    """Directional smoothness against gradient norm, log-log, coloured by iteration
    (Fig 16, after Zhang et al. 2020a, Fig 1).

    Points: every step ``< max_step`` of every seed (or ``seeds``) of ``optimizer`` at
    ``lr`` (needed when the frame holds several rates) where both are finite and > 0.
    The colour scale runs from 0 to ``max_step`` so that panels compare. ``smoothness``,
    ``norm``: the history's quantities drawn (the minibatch's by default; ``"smoothness_shared"``
    and ``"grad_norm_shared"``: the authors' batch, their Fig 16 code).
    """
    history = _runs_frame("history", history, _RUN + ["step", "quantity", "value"])
    check_choice("optimizer", optimizer, tuple(PALETTE))
    max_step = check_int("max_step", max_step)
    h = _one_setting(history, setting, "history")
    h = h[(h["optimizer"] == optimizer) & (h["step"] < max_step)
          & h["quantity"].isin([norm, smoothness])]
    h = h.replace({"quantity": {norm: "grad_norm", smoothness: "smoothness"}})
    rates = sorted(pd.unique(h["lr"]))
    if lr is None and len(rates) > 1:
        raise ValueError(f"history holds several learning rates {rates} for {optimizer}; pass lr=")
    if lr is not None:
        h = h[np.isclose(h["lr"].to_numpy(dtype=float), lr)]
    if seeds is not None:
        h = h[h["seed"].isin(list(seeds))]
    w = h.pivot_table(index=["seed", "step"], columns="quantity", values="value", aggfunc="first")
    if not {"grad_norm", "smoothness"} <= set(w.columns):
        raise ValueError(f"history needs both {norm!r} and {smoothness!r} records")
    w = w[(w["grad_norm"] > 0) & (w["smoothness"] > 0)].reset_index()
    ax = _ax(ax, (FULL_WIDTH * 0.6, 3.6))
    pts = ax.scatter(w["grad_norm"], w["smoothness"], c=w["step"], s=5, alpha=0.6, linewidths=0,
                     vmin=0, vmax=max_step, cmap=RC["image.cmap"], rasterized=True)
    _log(ax, "x")
    _log(ax, "y")
    where = "the authors' batch" if norm == "grad_norm_shared" else "minibatch, before clipping"
    ax.set_xlabel(f"gradient norm $\\|\\nabla f(x_t)\\|$\n({where})")
    ax.set_ylabel("directional smoothness $u^\\top H u$")
    ax.text(0.02, 0.97, LABELS[optimizer], transform=ax.transAxes, va="top", fontsize=9,
            color=PALETTE[optimizer], fontweight="bold")
    if colorbar:
        ax.figure.colorbar(pts, ax=ax, label="iteration", pad=0.01)
    return ax


def _lr_lookup(spec, opt: str, setting) -> float | None:
    if spec is None:
        return None
    if isinstance(spec, pd.DataFrame):  # a best_lr table
        rows = spec[spec["optimizer"] == opt]
        if "setting" in rows:
            rows = rows[rows["setting"] == setting]
        val = rows["best_lr"].iloc[0] if len(rows) else None
    elif isinstance(spec, Mapping):
        val = spec.get(opt)
    else:
        raise TypeError(f"a learning-rate spec must be {{optimizer: lr}} or a best_lr table, got {spec!r}")
    return None if val is None or not math.isfinite(float(val)) else float(val)


MAX_DECADES = 4
""":func:`lr_grid`'s y axis spans at most this many decades above the lowest final loss: a
seed whose loss blew up without diverging is marked at the top instead of flattening the
other curves."""


@_styled
def lr_grid(sweep: pd.DataFrame, setting: str | None = None, ax: Axes | None = None,
            chosen=None, published: Mapping | None = None, optimizers=("sgdm", "adam")) -> Axes:
    """Final loss against learning rate per optimizer, log-log (Table 2's grid search).

    sweep : tidy (setting, optimizer, lr, seed, final_loss, diverged), one setting.
    Per seed final losses are dots; the line joins the mean over seeds of rates where
    no seed diverged. A rate with a diverged seed is an ``x`` at the top of the panel; the y
    axis spans the runs that did not diverge, at most :data:`MAX_DECADES` decades, and a
    rate with a loss above it is a ``^`` under the top.
    chosen : ``{optimizer: lr}`` or a :func:`lintf.book.summaries.best_lr` table: a star on the line.
    published : ``{optimizer: lr}``, or ``{source: {optimizer: lr}}`` for several sources
        (e.g. ``{"Table 2": ..., "README": ...}``): a marker along the bottom of the panel,
        one shape per source, in the optimizer's colour, with a faint vertical guide;
        ``"setting"``: the setting's own default (the authors' README) and Table 2 rates.
    """
    _check_frame("sweep", sweep, _RUN + ["final_loss", "diverged"])
    optimizers = _check_optimizers(optimizers)
    s = _one_setting(sweep, setting, "sweep")
    the_setting = s["setting"].iloc[0] if len(s) else setting
    if isinstance(published, str):
        check_choice("published", published, ("setting",))
        st = get_setting(the_setting)
        published = {"default (README)": st.lrs, "Table 2": st.paper_lrs}
    ax = _ax(ax)
    top = blended_transform_factory(ax.transData, ax.transAxes)
    if published is not None and not isinstance(published, Mapping):
        raise TypeError("published must be {optimizer: lr} or {source: {optimizer: lr}}")
    sources = {}
    if published:
        nested = all(isinstance(v, Mapping) for v in published.values())
        sources = dict(published) if nested else {"published": dict(published)}
    for k, opt in enumerate(optimizers):
        f = s[s["optimizer"] == opt]
        f = f.assign(bad=f["diverged"].astype(bool) | ~np.isfinite(f["final_loss"].to_numpy(dtype=float)))
        if f.empty:
            continue
        color = PALETTE[opt]
        good = f[~f["bad"]]
        ax.plot(good["lr"], good["final_loss"], "o", color=color, alpha=0.35, markersize=3.5,
                markeredgewidth=0)
        per = f.groupby("lr").agg(mean=("final_loss", "mean"), bad=("bad", "any"))
        ok = per[~per["bad"]]
        ax.plot(ok.index, ok["mean"], "-o", color=color, markersize=4, label=LABELS[opt])
        div = per.index[per["bad"]]
        if len(div):
            ax.plot(div, np.full(len(div), 0.96 - 0.05 * k), "x", color=color, markersize=7,
                    markeredgewidth=1.8, transform=top, clip_on=False)
        lr_c = _lr_lookup(chosen, opt, the_setting)
        if lr_c is not None and np.isclose(ok.index.to_numpy(dtype=float), lr_c).any():
            y = ok["mean"].to_numpy()[np.isclose(ok.index.to_numpy(dtype=float), lr_c)][0]
            ax.plot([lr_c], [y], "*", color=color, markersize=15, markeredgecolor="black",
                    markeredgewidth=0.8, zorder=5)
        for j, (name, spec) in enumerate(sources.items()):
            lr_p = _lr_lookup(spec, opt, the_setting)
            if lr_p is not None:
                ax.axvline(lr_p, color=color, linestyle=":", linewidth=0.9, alpha=0.5)
                ax.plot([lr_p], [0.04 + 0.06 * (len(optimizers) * j + k)], _SOURCE_MARKERS[j % 4],
                        color=color, markersize=7, markeredgecolor="black", markeredgewidth=0.6,
                        transform=top, clip_on=False, zorder=5)
    handles = []
    if (s["diverged"].astype(bool) | ~np.isfinite(s["final_loss"])).any():
        handles.append(Line2D([], [], marker="x", linestyle="", color="0.3", markeredgewidth=1.8,
                              label="diverged (any seed)"))
    if chosen is not None:
        handles.append(Line2D([], [], marker="*", linestyle="", color="0.6", markeredgecolor="black",
                              markersize=12, label="chosen by the grid"))
    for j, name in enumerate(sources):
        handles.append(Line2D([], [], marker=_SOURCE_MARKERS[j % 4], linestyle="", color="0.6",
                              markeredgecolor="black", markeredgewidth=0.6, label=f"{name} rate"))
    _log(ax, "x")
    _log(ax, "y")
    bad = s["diverged"].astype(bool) | ~np.isfinite(s["final_loss"].to_numpy(dtype=float))
    finite = s.loc[~bad, "final_loss"].to_numpy(dtype=float)    # diverged runs never set the axis
    finite = finite[finite > 0]
    if finite.size:
        # strips above (diverged marks) and below (published rates) the data keep marks off it
        lo_frac = 0.06 + 0.06 * len(optimizers) * len(sources) if sources else 0.04
        a = np.log10(finite.min())
        b = min(np.log10(finite.max()), a + MAX_DECADES)          # a blown-up loss must not flatten the rest
        span = max(b - a, 0.1) / (0.86 - lo_frac)
        ax.set_ylim(10 ** (a - lo_frac * span), 10 ** (a + (1 - lo_frac) * span))
        above = s.loc[~bad & (s["final_loss"] > 10 ** b * (1 + 1e-9))]
        for k, opt in enumerate(optimizers):
            rates = np.unique(above.loc[above["optimizer"] == opt, "lr"].to_numpy(dtype=float))
            if len(rates):
                ax.plot(rates, np.full(len(rates), 0.90 - 0.05 * k), "^", color=PALETTE[opt], markersize=6,
                        transform=top, clip_on=False)
        if len(above):
            handles.append(Line2D([], [], marker="^", linestyle="", color="0.3",
                                  label=f"loss over {10 ** MAX_DECADES:g}x the lowest (off the axis)"))
    ax.set_xlabel("learning rate")
    ax.set_ylabel("final loss (squared error)")
    ax.legend(handles=ax.get_legend_handles_labels()[0] + handles, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return ax


@_styled
@_styled
def precision_curves(history: pd.DataFrame, quantity: str = "loss", setting: str | None = None,
                     ax: Axes | None = None, optimizer: str = "adam", pairs: pd.DataFrame | None = None) -> Axes:
    """The same runs in float32 and in float64 (:func:`lintf.compute.experiments.precision_pair`): one
    optimizer's ``quantity`` per step, one line per seed and precision (float64 solid in the
    optimizer's colour, float32 dashed black), a cross at float32's last finite value where it
    diverged, log y.

    history : precision_pair's ``history`` (a ``precision`` column), one setting (or pick it
        with ``setting``). quantity : ``"loss"`` (training minibatch) or ``"grad_norm"`` (before
        clipping; with a line at :data:`lintf.compute.experiments.FLOAT32_NORM_LIMIT`, the largest norm
        float32 computes). pairs : precision_pair's ``pairs``; with it a dot marks, on each
        float64 line, the step where the two precisions part (artists with gid ``"part"``).
    """
    history = _runs_frame("history", history, _RUN + ["step", "quantity", "value", "precision"])
    check_choice("quantity", quantity, ("loss", "grad_norm"))
    check_choice("optimizer", optimizer, tuple(PALETTE))
    h = _one_setting(history, setting, "history")
    ax = _ax(ax)
    h = h[(h["quantity"] == quantity) & (h["optimizer"] == optimizer)]
    part = {}
    if pairs is not None:
        pairs = _check_frame("pairs", pairs, ["optimizer", "seed", "part"])
        mine = pairs[(pairs["optimizer"] == optimizer)
                     & (pairs["setting"] == h["setting"].iloc[0] if "setting" in pairs and len(h) else True)]
        part = {int(r.seed): int(r.part) for r in mine.itertuples() if r.part >= 0}
    styles = {"float64": dict(color=PALETTE[optimizer], linestyle="-", linewidth=0.8, alpha=0.8),
              "float32": dict(color="black", linestyle="--", linewidth=0.7, alpha=0.7)}
    for prec in ("float64", "float32"):
        for seed, run in h[h["precision"] == prec].groupby("seed"):
            run = run.sort_values("step")
            fin = run[np.isfinite(run["value"]) & (run["value"] > 0)]
            if not len(fin):
                continue
            ax.plot(fin["step"], fin["value"], **styles[prec])
            if prec == "float32" and len(fin) < len(run):
                ax.plot(fin["step"].iloc[-1], fin["value"].iloc[-1], marker="x", color="black", markersize=6,
                        linestyle="none", gid="diverged")
            if prec == "float64" and int(seed) in part:
                at = fin[fin["step"] <= part[int(seed)]]
                if len(at):
                    ax.plot(at["step"].iloc[-1], at["value"].iloc[-1], marker="o", color=PALETTE[optimizer],
                            markersize=4, linestyle="none", gid="part")
    ax.plot([], [], **styles["float64"], label=f"{LABELS[optimizer]}, float64")
    ax.plot([], [], **styles["float32"], marker="x", label=f"{LABELS[optimizer]}, float32 (x: diverged)")
    if part:
        ax.plot([], [], marker="o", color=PALETTE[optimizer], linestyle="none", label="the two part")
    if quantity == "grad_norm":
        from ..compute.experiments import FLOAT32_NORM_LIMIT
        ax.axhline(FLOAT32_NORM_LIMIT, color=FIT_COLOR, linestyle=":", linewidth=1.0,
                   label="largest norm float32 computes")
    _log(ax, "y")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss (minibatch)\n(log scale)" if quantity == "loss"
                  else "gradient norm before clipping\n(log scale)")
    ax.legend()
    return ax


def panels(draws, ncols: int = 2, width: float = FULL_WIDTH, panel_height: float = PANEL_HEIGHT):
    """A figure of titled panels: ``draws`` is a list of ``(title, draw)`` with ``draw(ax)``
    drawing one panel (e.g. ``lambda ax: loss_curves(history, ax=ax)``). Returns ``(figure,
    axes)``; unused cells of the last row are removed."""
    draws = list(draws)
    if not draws or not all(isinstance(t, str) and callable(d) for t, d in draws):
        raise ValueError(f"draws must be a non-empty list of (title, draw(ax)) pairs, got {draws!r}")
    ncols = min(check_int("ncols", ncols), len(draws))
    nrows = math.ceil(len(draws) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, nrows * panel_height + 0.6), squeeze=False)
    for ax, (title, draw) in zip(axes.flat, draws):
        draw(ax)
        ax.set_title(title)
    for ax in axes.flat[len(draws):]:
        ax.remove()
    return fig, axes


@_styled
def grid_of_settings(plot: Callable, frame: pd.DataFrame, settings=None, ncols: int | None = None,
                     titles: Mapping | None = None, sharey: bool = False, width: float = FULL_WIDTH,
                     panel_height: float = PANEL_HEIGHT, **kwargs):
    """One panel per setting, drawn by ``plot(frame_of_that_setting, ax=ax, **kwargs)``,
    with one legend for the figure.

    frame : any tidy frame with a ``setting`` column. settings : their order (default:
    order of appearance). titles : ``{setting: panel title}``. A ``colorbar`` keyword for
    :func:`smoothness_vs_gradnorm` is replaced by one shared colour bar.
    Returns ``(figure, axes)`` with ``axes`` of shape (rows, ncols).
    """
    if not callable(plot):
        raise TypeError(f"plot must be a plotting function, got {plot!r}")
    _check_frame("frame", frame, ["setting"])
    have = list(pd.unique(frame["setting"]))
    settings = have if settings is None else [check_choice("settings[i]", s, have) for s in settings]
    if not settings:
        raise ValueError("frame holds no setting to plot")
    ncols = min(len(settings), 3) if ncols is None else check_int("ncols", ncols)
    nrows = math.ceil(len(settings) / ncols)
    shared_cbar = plot is smoothness_vs_gradnorm and kwargs.pop("colorbar", True)
    if plot is smoothness_vs_gradnorm:
        kwargs["colorbar"] = False
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, panel_height * nrows), sharey=sharey,
                             squeeze=False)
    titles = titles or {}
    for ax, s in zip(axes.flat, settings):
        plot(frame[frame["setting"] == s], ax=ax, **kwargs)
        ax.set_title(titles.get(s, str(s)))
    for ax in axes.flat[len(settings):]:
        ax.remove()
    for i, ax in enumerate(axes.flat[:len(settings)]):
        row, col = divmod(i, ncols)
        if col:
            ax.set_ylabel("")
        if row < nrows - 1 and (i + ncols) < len(settings):
            ax.set_xlabel("")
    seen = {}
    for ax in axes.flat[:len(settings)]:
        leg = ax.get_legend()
        if leg is None:
            continue
        # the legend's own handles include proxies (diverged, chosen) that no artist carries
        for h, text in zip(leg.legend_handles, leg.get_texts()):
            seen.setdefault(text.get_text(), h)
        leg.remove()
    if seen:
        fig.legend(list(seen.values()), list(seen.keys()), loc="outside upper center",
                   ncols=min(len(seen), 4))
    if shared_cbar:
        mappable = next((c for c in axes.flat[0].collections), None)
        if mappable is not None:
            fig.colorbar(mappable, ax=[a for a in axes.flat[:len(settings)]], label="iteration",
                         pad=0.01, aspect=30)
    return fig, axes
