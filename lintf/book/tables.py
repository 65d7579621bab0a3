"""The chapters' display tables: what each scale computes, the noise tails, the rate grids,
the stable rates, the ablation's gaps and the condition-number table three ways.

Each takes frames (:mod:`lintf.book.frames`) or a :class:`~lintf.book.frames.Context` and
returns a pandas DataFrame for display; nothing here decides a claim.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..compute import experiments as E
from ..compute.checks import check_choice
from ..compute.settings import PAPER_CONDITION_RATIOS, get_setting
from . import claims, summaries
from .frames import BASE, Context, concat, provenance

def _iterations(s, name):
    return s.steps_for(get_setting(name))


def _checkpoints(steps):
    return "every checkpoint" if steps is None else ", ".join(map(str, steps))


def _scale_row(s, current):
    return {"scale": s.name + (" (this build)" if s.name == current else ""),
            "iterations: Settings 1-3 (gamma = Setting 3)": _iterations(s, "setting1"),
            "iterations: depth L = 2..8": _iterations(s, "depth2"),
            "iterations: L=8, d=20, n=60": _iterations(s, "large") if "large" not in s.skip_variants
            else "left to scale paper",
            "iterations: sphere": _iterations(s, "sphere"),
            "iterations: softmax, separate W_K W_Q, nonlinear": _iterations(s, "softmax"),
            "seeds": ", ".join(map(str, s.seeds)),
            "seeds: separate W_K W_Q, L=8 d=20 (no claim)": ", ".join(map(str, s.seeds_for(get_setting("large")))),
            "batch B": s.batch_size,
            "evaluation loss every": s.eval_every, "directional smoothness every": s.smoothness_every,
            "checkpoints every": s.checkpoint_every,
            "Hessians at: Settings 1-3": _checkpoints(s.hessian_steps),
            "Hessians at: other settings": _checkpoints(s.extra_hessian_steps),
            "Hessians for models up to (parameters)": s.hessian_max_params or "no limit",
            "condition-number table at": ", ".join(map(str, s.table_steps)),
            "condition-number table: seeds, iterations": f"{len(s.table_seeds)} seeds, {s.table_horizon} it.",
            "R_med evaluation batches": f"{s.eval_batches} x {s.eval_size} and 1 x {s.eval_large} per seed",
            "claim 3 decided on": s.eval_protocol,
            "learning-rate grid": f"{s.grid_points} rates × {len(s.sweep_seeds)} seeds × {s.sweep_steps} it.",
            "learning-rate grid: variants": f"{s.variant_grid_points} rates × {len(s.sweep_seeds)} seeds × "
                                            f"{s.variant_sweep_steps or s.sweep_steps} it."
                                            + (" (softmax only)" if s.figure_lrs == "default" else ""),
            "depth rates tried (x Table 2)": ", ".join(f"{f:g}" for f in sorted(s.depth_grid, reverse=True)),
            "ablation: grid, search, runs": f"x {', '.join(f'{f:g}' for f in s.ablation_factors)}; "
                                            f"{s.ablation_sweep_steps} it.; {s.ablation_steps} it.",
            "gradient noise": f"{s.noise_batches} batches of {s.noise_batch_size} vs 1 of {s.noise_big_batch}",
            "gradient noise at initialisations": ", ".join(map(str, s.noise_seeds))}


def scale_table(current: str | None = None) -> pd.DataFrame:
    """What each scale of :data:`lintf.compute.settings.SCALES` computes, one column per scale (``current``
    marked as this build's): iterations per kind of setting, seeds, batch, how often the loss,
    smoothness and checkpoints are recorded, where the Hessians are taken, the condition-number
    table, the grids, the ablation and the gradient noise."""
    from ..compute.settings import SCALES
    return pd.DataFrame([_scale_row(s, current) for s in SCALES.values()]).set_index("scale").T


def tail_table(noise: pd.DataFrame, spectrum: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`lintf.book.summaries.noise_tail_table` for display: one row per setting (settings with
    the same model and prompts under two names: one row, titled with both), its title, the
    initialisations and samples, excess kurtosis measured and under the Gaussian null of the
    same covariance, their difference ("excess over the null") with the decision rule's
    bounds, and the Hill index."""
    table = summaries.noise_tail_table(noise, spectrum)
    # a setting that is another's model and prompts under a second name (Setting 3 and the gamma
    # covariates of Sec. 4.1) measures the same noise: one row, under both names
    from ..compute.settings import SETTINGS
    same = {}
    for name in sorted(table["setting"], key=list(SETTINGS).index):   # Setting 3 before gamma
        s = get_setting(name)
        same.setdefault((s.model, repr(s.prompts)), []).append(name)
    keep = [names[0] for names in same.values()]
    titles = {names[0]: "; also ".join(get_setting(n).title for n in names) for names in same.values()}
    table = table[table["setting"].isin(keep)].reset_index(drop=True)
    table.insert(1, "title", table["setting"].map(titles))
    return table.drop(columns="setting").rename(columns={
        "n_seeds": "initialisations", "n_samples": "samples", "kurtosis": "excess kurtosis",
        "null_kurtosis": "excess kurtosis, Gaussian null", "kurtosis_excess": "excess over the null",
        "low": "excess over the null: low", "high": "excess over the null: high", "hill": "Hill α",
        "null_hill": "Hill α, null", "hill_deficit": "Hill deficit"})


def ablation_tables(data: dict) -> dict:
    """The ablation chapter's tables from :func:`ablation_runs`' ``data``: ``rates`` (each
    optimizer's grid-best rate, its grid loss, how many grid rates diverged of those tried) and
    ``closed`` (:func:`lintf.book.claims.gap_closed`: final loss and share of the SGDM-Adam gap
    closed, with bounds), both with display names; ``gap``, that frame as computed."""
    from .plots import LABELS
    best = data["best"]
    rates = best.assign(optimizer=best["optimizer"].map(LABELS), diverged=best["diverged_lrs"].map(len))[
        ["setting", "optimizer", "best_lr", "final_loss", "diverged", "n_lrs"]].rename(columns={
            "best_lr": "rate", "final_loss": "grid final loss", "diverged": "rates diverged", "n_lrs": "rates tried"})
    gap = claims.gap_closed(data["history"], data["runs"])
    closed = gap.assign(optimizer=gap["optimizer"].map(LABELS)).rename(columns={
        "n_seeds": "seeds", "final_loss": "final loss", "loss_low": "lower", "loss_high": "upper",
        "closed": "log gap closed", "share": "share of the gap", "low": "share: lower", "high": "share: upper"})
    return {"rates": rates, "closed": closed, "gap": gap}


def rmed_medians(cond: pd.DataFrame) -> pd.DataFrame:
    """``R_med`` per setting, step and optimizer, the median over seeds, by the Hessian's
    diagonal and by its eigenvalues (display names)."""
    from .plots import LABELS
    rmed = (cond.groupby(["setting", "step", "optimizer", "method"])["value"].median().unstack("method")
            .reset_index().rename(columns={"diag": "R_med (diagonal)", "eig": "R_med (eigenvalues)"}))
    return rmed.assign(optimizer=rmed["optimizer"].map(LABELS))


def _chosen(rate: float):
    """A grid's chosen rate, or "all diverged" where it chose none (NaN)."""
    return rate if math.isfinite(rate) else "all diverged"


def rate_table(best: pd.DataFrame, half: pd.DataFrame | None = None) -> pd.DataFrame:
    """The grid search beside the published rates: per setting and optimizer of
    :func:`lintf.book.summaries.best_lr`'s ``best``, the grid's best rate and its final loss, the
    authors' README rate, Table 2's, and the grid rates at which some seed diverged; with
    ``half`` (``best_lr(sweep, at="half")``), the grid's choice at half its horizon too."""
    from .plots import LABELS
    at_half = {} if half is None else {(r.setting, r.optimizer): r.best_lr for r in half.itertuples()}
    rows = [{"setting": get_setting(r.setting).title, "optimizer": LABELS[r.optimizer],
             "grid-best": _chosen(r.best_lr),
             **({} if half is None else {"grid-best at half the horizon": _chosen(at_half[r.setting, r.optimizer])}),
             "final loss at grid-best": r.final_loss, "default (README)": get_setting(r.setting).lrs[r.optimizer],
             "paper Table 2": get_setting(r.setting).paper_lrs[r.optimizer],
             "rates with a diverged seed": ", ".join(f"{v:g}" for v in r.diverged_lrs) or "none"}
            for r in best.itertuples()]
    return pd.DataFrame(rows)


def grid_settled(best: pd.DataFrame, half: pd.DataFrame) -> tuple[int, int]:
    """``(same, pairs)``: of the ``pairs`` (setting, optimizer) of a grid search, how many choose
    the same rate at half the horizon (``half``) as at its end (``best``; both from
    :func:`lintf.book.summaries.best_lr`; two "all diverged" count as the same)."""
    end = {(r.setting, r.optimizer): r.best_lr for r in best.itertuples()}
    mid = {(r.setting, r.optimizer): r.best_lr for r in half.itertuples()}
    same = sum(1 for k, v in end.items() if k in mid and _chosen(v) == _chosen(mid[k]))
    return same, len(end)


def stable_table(searches: dict, with_hessians=()) -> pd.DataFrame:
    """The depth chapter's rates: per setting of ``searches`` (``{setting:
    lintf.compute.experiments.stable_search(...)}``) and optimizer, Table 2's rate and how many search
    seeds diverged there, the rates tried on the search seeds, the rate used and how many tested
    seeds diverged at it, the precision, the model's size and whether the scale computes its
    exact Hessians (``with_hessians``)."""
    from .plots import LABELS
    rows = []
    for s, (rates, tries) in searches.items():
        st = get_setting(s)
        for opt in ("sgdm", "adam"):
            t = tries[tries.optimizer == opt]
            search, tested = t[t.seeds == "search"], t[t.seeds == "tested"]
            first, last = search.iloc[0], tested.iloc[-1]
            rows.append({"L": st.model.L, "optimizer": LABELS[opt], "Table 2 rate": f"{st.paper_lrs[opt]:g}",
                         "search: diverged at Table 2's rate": f"{int(first.diverged)} of {int(first.runs)}",
                         "search: rates tried": ", ".join(f"{v:g}" for v in search.lr), "rate used": f"{rates[opt]:g}",
                         "tested: diverged at the rate used": f"{int(last.diverged)} of {int(last.runs)}",
                         "precision": st.precision, "parameters": st.model.num_params,
                         "exact Hessians": "yes" if s in with_hessians else "no"})
    return pd.DataFrame(rows)


TABLE_PROTOCOLS = ("authors", "batches", "large")
"""The columns of the condition-number table: the paper's protocol, then the landscape ones."""


def _cell(mean, sd=math.nan, digits=2) -> str:
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.{digits}f} ({sd:.{digits}f})" if math.isfinite(sd) else f"{mean:.{digits}f}"


def _bounds(low, high, digits=2) -> str:
    fmt = lambda v: f"{v:.{digits}f}" if math.isfinite(v) and v != 0 else ("0" if v == 0 else "inf")
    return f"[{fmt(low)}, {fmt(high)}]"


def condition_tables(ctx: Context, settings=BASE, method: str = "diag") -> dict:
    """The condition-number table three ways, from the table's experiment.

    Returns ``{"frames": {protocol: conditioning frame}, "runs": runs, "stats": {protocol:
    lintf.book.summaries.condition_ratio_table}, "table": the display table, "per_seed": tidy
    (setting, eval_batch, step, seed, ratio)}``. Display columns: the paper's mean (sd) over
    6 seeds; ours on the authors' batch, mean (sd) over seeds; ours over the K batches of
    each seed, median over batches of the per-batch table statistic [min, max]; ours on the
    large batch, mean (sd), geometric mean and the decision rule's bounds.
    """
    check_choice("method", method, ("eig", "diag"))
    sc = ctx.scale
    frames = {pr: concat([E.table_conditioning(s, sc, eval_batch=pr, **ctx.kw()).frames["conditioning"]
                           for s in settings]) for pr in TABLE_PROTOCOLS}
    runs = concat([E.table_training(s, sc, **ctx.kw()).frames["runs"] for s in settings])
    stats_ = {pr: summaries.condition_ratio_table(f, steps=sc.table_steps, method=method, eval_batch=pr,
                                               paper=PAPER_CONDITION_RATIOS, runs=runs).set_index(["setting", "step"])
              for pr, f in frames.items()}
    rows = []
    for s in settings:
        for step in sc.table_steps:
            a, b, g = (stats_[pr].loc[(s, step)] if (s, step) in stats_[pr].index else None for pr in TABLE_PROTOCOLS)
            pm, psd = PAPER_CONDITION_RATIOS.get(s, {}).get(step, (math.nan, math.nan))
            rows.append({
                "setting": get_setting(s).title, "iteration": step,
                "paper: mean (sd), 6 seeds": _cell(pm, psd),
                "authors' batch: mean (sd)": _cell(a["mean"], a["std"]) if a is not None else "-",
                f"{sc.eval_batches} batches of {sc.eval_size}: median [min, max]":
                    f"{b['batch_median']:.2f} [{b['batch_min']:.2f}, {b['batch_max']:.2f}]" if b is not None else "-",
                f"large batch ({sc.eval_large}): mean (sd)": _cell(g["mean"], g["std"]) if g is not None else "-",
                "large: geometric mean [bounds]": f"{g['geo_mean']:.2f} {_bounds(g['low'], g['high'])}"
                if g is not None else "-",
                "seeds": int(g["n_seeds"]) if g is not None else 0})
    per_seed = concat([claims.claim3(f, steps=sc.table_steps, method=method, eval_batch=pr, runs=runs)
                        .details["data"].assign(eval_batch=pr) for pr, f in frames.items()])
    per_seed.attrs["provenance"] = provenance(*frames.values(), runs)
    return {"frames": frames, "runs": runs, "stats": stats_, "per_seed": per_seed,
            "table": pd.DataFrame(rows).set_index(["setting", "iteration"])}



def ratio_spread(per_seed: pd.DataFrame, setting: str, step: int, eval_batch: str = "authors",
                 paper_seeds=tuple(range(6))) -> dict:
    """What puts a setting's table entry where it is: the per-seed ratios ``R_med(SGDM) /
    R_med(Adam)`` of ``per_seed`` (:func:`condition_tables`'s) at ``step`` on ``eval_batch``,
    summarised as the table's mean and sd, the median, the mean over the paper's seeds
    (``paper_seeds``, its six) and over the others, the geometric mean, the largest ratio and
    the mean without it. Returns a dict of floats (NaN where no seed has a finite ratio) and
    ``seeds`` (how many)."""
    r = per_seed[(per_seed["setting"] == setting) & (per_seed["step"] == step)
                 & (per_seed["eval_batch"] == eval_batch)]
    r = r[np.isfinite(r["ratio"].astype(float)) & (r["ratio"] > 0)]
    v = r["ratio"].astype(float).to_numpy()
    if not len(v):
        nan = math.nan
        return {"seeds": 0, "mean": nan, "sd": nan, "median": nan, "paper_seeds_mean": nan, "other_seeds_mean": nan,
                "geo_mean": nan, "max": nan, "mean_without_max": nan}
    mine = r["seed"].isin(list(paper_seeds)).to_numpy()
    return {"seeds": len(v), "mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
            "median": float(np.median(v)), "paper_seeds_mean": float(v[mine].mean()) if mine.any() else math.nan,
            "other_seeds_mean": float(v[~mine].mean()) if (~mine).any() else math.nan,
            "geo_mean": float(np.exp(np.log(v).mean())), "max": float(v.max()),
            "mean_without_max": float(np.sort(v)[:-1].mean()) if len(v) > 1 else math.nan}
