"""What the chapters share: the experiments they read, the verdicts of the claims, the scorecard.

Every verdict of the book comes from :func:`verdict`, in the chapter that owns the claim
(:data:`CLAIM_CHAPTER`) and on the scorecard alike: the same function reads the same stored
experiments (the scorecard with ``cached_only=True``, so it never recomputes), hence the
scorecard shows exactly the chapters' verdicts. :func:`inputs` says which experiments a
claim reads; :func:`builder` which chapter computes an experiment. Each claim, its chapter,
inputs, rule and parts are declared once, in :data:`lintf.registry.REGISTRY`; the names here
are views of it.

Beyond the paper, the ablation chapter's hypotheses (:data:`lintf.claims.HYPOTHESES`) are
decided by :func:`hypothesis` on :func:`ablation_runs`, and the scorecard shows them apart
(:func:`beyond`).
"""
from __future__ import annotations

import dataclasses
import math

import pandas as pd

from . import claims, stats, summaries
from . import experiments as E
from .checks import check_choice, check_int
from .optim import ALL_OPTIMIZERS
from .settings import EVAL_PROTOCOLS, PAPER_CONDITION_RATIOS, Scale, default_scale, get_scale, get_setting

BASE = claims.DEFAULT_SETTINGS
TAILS = (claims.TAILS["sphere"], claims.TAILS["gamma"])
DEPTHS = tuple(claims.DEPTHS.values())
SMOOTH = BASE
"""Settings whose directional smoothness claims 4 and 5 are decided on."""
NOISE = BASE + TAILS + DEPTHS
"""Settings whose gradient noise claim 2 compares."""
TABLE2 = BASE + TAILS + DEPTHS + ("nonlinear",)
"""The settings of the paper's Table 2 (learning rates)."""



def __getattr__(name: str):
    """``CLAIM_CHAPTER``: ``{number: chapter}``, the chapter that shows the figures behind each
    claim and states its verdict first; a view of :data:`lintf.registry.REGISTRY` (read lazily:
    the registry imports this module)."""
    if name == "CLAIM_CHAPTER":
        from .registry import REGISTRY
        return {k: c.chapter for k, c in REGISTRY.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


CHAPTER_TITLES = {"adaptive_vs_sgd": "Adam against SGD", "heavy_tails": "Heavy-tailed noise",
                  "conditioning": "Condition numbers", "smoothness": "Smoothness", "depth": "Depth",
                  "nonlinear": "Nonlinear regression", "ablation": "Which part of Adam closes the gap?"}
HYPOTHESIS_CHAPTER = "ablation"
"""The chapter that runs the ablation and decides the hypotheses beyond the paper
(:data:`lintf.claims.HYPOTHESES`)."""


def builder(kind: str, setting: str, scale=None) -> str:
    """The chapter whose build computes experiment ``kind`` of ``setting`` (the first of
    :func:`lintf.plan.plan` that reads it)."""
    from .plan import chapter_of
    return chapter_of(kind, setting, scale)


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
        """From a chapter's :class:`lintf.chapter.Parameters` (``eval_batch``: the protocol
        claim 3 is decided on, None: the scale's)."""
        return cls(p.scale, p.device, p.seeds, p.steps, cached_only, progress, eval_batch)

    @property
    def protocol(self) -> str:
        """The evaluation protocol claim 3 is decided on."""
        return check_choice("eval_batch", self.eval_batch or self.scale.eval_protocol, EVAL_PROTOCOLS)

    def kw(self) -> dict:
        return dict(device=self.device, cached_only=self.cached_only, progress=self.progress)


def _concat(frames):
    """The frames, one below the other; their provenance (``attrs["provenance"]``, a list of
    :func:`lintf.store.provenance` records) merged, each record once."""
    frames = [f for f in frames if f is not None and len(f)] or [f for f in frames if f is not None]
    if not frames:
        return None
    records = []
    for f in frames:
        for r in f.attrs.get("provenance", []):
            if r not in records:
                records.append(r)
    out = pd.concat(frames, ignore_index=True)
    out.attrs["provenance"] = records
    return out


def training(ctx: Context, settings, lrs="default", steps=None) -> dict:
    """The runs of ``settings`` (:func:`lintf.experiments.training` at ``lrs``, the context's
    seeds, ``steps`` or the context's horizon), as one ``history`` and one ``runs`` frame."""
    got = [E.training(s, ctx.scale, lrs=lrs, seeds=ctx.seeds, steps=steps or ctx.steps, **ctx.kw())
           for s in ([settings] if isinstance(settings, str) else settings)]
    return {"history": _concat([g.frames["history"] for g in got]),
            "runs": _concat([g.frames["runs"] for g in got])}


def noise(ctx: Context, settings, seeds=None) -> dict:
    """The gradient noise at initialisation of ``settings`` (:func:`lintf.experiments.noise_at_seeds`
    at ``seeds``, None: the scale's), as one ``noise`` and one ``spectrum`` frame."""
    got = [E.noise_at_seeds(s, ctx.scale, seeds=seeds, **ctx.kw()) for s in settings]
    return {k: _concat([g[k] for g in got]) for k in ("noise", "spectrum")}


def sweeps(ctx: Context, settings, points: int | None = None, steps: int | None = None) -> pd.DataFrame:
    """The learning-rate grids of ``settings`` (:func:`lintf.experiments.lr_sweep`), one frame."""
    return _concat([E.lr_sweep(s, ctx.scale, points=points, steps=steps, **ctx.kw()).frames["sweep"]
                    for s in settings])


def batch_curves(ctx: Context, settings) -> pd.DataFrame:
    """``R_med`` against the evaluation batch's size (:func:`lintf.experiments.batch_size_curve`)
    of ``settings``, one frame."""
    return _concat([E.batch_size_curve(s, ctx.scale, **ctx.kw()).frames["curve"] for s in settings])


def conditioning(ctx: Context, settings, eval_batch: str = "authors", lrs="default") -> pd.DataFrame:
    """``R_med`` at the training checkpoints of ``settings`` (:func:`lintf.experiments.conditioning`
    on ``eval_batch``), one frame; a model the scale gives no Hessian adds no row."""
    got = [E.conditioning(s, ctx.scale, eval_batch=eval_batch, lrs=lrs, seeds=ctx.seeds, steps=ctx.steps,
                          **ctx.kw()).frames["conditioning"] for s in settings]
    return _concat(got)


def variant_lrs(scale: Scale, setting: str) -> str:
    """The ``lrs`` a model variant of the adaptive-vs-SGD chapter trains at: its own grid's
    best, except the figure-only variants where the scale says ``figure_lrs="default"``."""
    return "default" if get_setting(setting).role == "figure" and scale.figure_lrs == "default" else "grid"


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
    """What each scale of :data:`lintf.settings.SCALES` computes, one column per scale (``current``
    marked as this build's): iterations per kind of setting, seeds, batch, how often the loss,
    smoothness and checkpoints are recorded, where the Hessians are taken, the condition-number
    table, the grids, the ablation and the gradient noise."""
    from .settings import SCALES
    return pd.DataFrame([_scale_row(s, current) for s in SCALES.values()]).set_index("scale").T


def tail_table(noise: pd.DataFrame, spectrum: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`lintf.summaries.noise_tail_table` for display: one row per setting (settings with
    the same model and prompts under two names: one row, titled with both), its title, the
    initialisations and samples, excess kurtosis measured and under the Gaussian null of the
    same covariance, their difference ("excess over the null") with the decision rule's
    bounds, and the Hill index."""
    table = summaries.noise_tail_table(noise, spectrum)
    # a setting that is another's model and prompts under a second name (Setting 3 and the gamma
    # covariates of Sec. 4.1) measures the same noise: one row, under both names
    from .settings import SETTINGS
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
    ``closed`` (:func:`lintf.claims.gap_closed`: final loss and share of the SGDM-Adam gap
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
    :func:`lintf.summaries.best_lr`'s ``best``, the grid's best rate and its final loss, the
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
    :func:`lintf.summaries.best_lr`; two "all diverged" count as the same)."""
    end = {(r.setting, r.optimizer): r.best_lr for r in best.itertuples()}
    mid = {(r.setting, r.optimizer): r.best_lr for r in half.itertuples()}
    same = sum(1 for k, v in end.items() if k in mid and _chosen(v) == _chosen(mid[k]))
    return same, len(end)


def stable_table(searches: dict, with_hessians=()) -> pd.DataFrame:
    """The depth chapter's rates: per setting of ``searches`` (``{setting:
    lintf.experiments.stable_search(...)}``) and optimizer, Table 2's rate and how many search
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


def variant_training(ctx: Context, settings) -> dict:
    """The model variants' runs, each at its :func:`variant_lrs`, as one ``history`` and one
    ``runs`` frame."""
    got = [training(ctx, [s], lrs=variant_lrs(ctx.scale, s)) for s in settings]
    return {k: _concat([g[k] for g in got]) for k in ("history", "runs")}


def claim8_sweep(ctx: Context) -> dict:
    """Claim 8's grid, the same for every attention so that neither is favoured by a finer or
    longer search: ``scale.variant_grid_points`` rates, ``variant_sweep_steps`` iterations."""
    sc = ctx.scale
    return {"points": sc.variant_grid_points,
            "steps": min(sc.variant_sweep_steps or sc.sweep_steps, sc.steps_for(get_setting("softmax")))}


def claim8_rates(ctx: Context, setting: str) -> dict:
    """Claim 8's rate of ``setting``: the best of :func:`claim8_sweep`'s grid."""
    grid = claim8_sweep(ctx)
    return E.learning_rates(setting, ctx.scale, lrs="grid", points=grid["points"], sweep_steps=grid["steps"],
                            **ctx.kw())


def inputs(claim: int, ctx: Context) -> dict:
    """The frames claim ``claim`` is decided on (computed, or read when ``ctx.cached_only``;
    a missing stored result raises ``LookupError``): its :attr:`lintf.registry.Claim.inputs`."""
    from .registry import get
    return get(claim).inputs(ctx)


def decide(claim: int, data: dict, ctx: Context) -> claims.Verdict:
    """The verdict of claim ``claim`` on the frames of :func:`inputs`: its
    :attr:`lintf.registry.Claim.rule`."""
    from .registry import get
    return get(claim).rule(data, ctx)


def compare_steps(scale: Scale, steps: int | None = None) -> tuple:
    """The table iterations at which claim 3 compares covariates and depths: those the sphere
    and depth runs reach (``steps``, else the scale's horizon of each)."""
    reach = min(steps or scale.steps_for(get_setting(s)) for s in TAILS + DEPTHS)
    return tuple(t for t in scale.table_steps if t <= reach)


def design(claim: int, scale, steps: int | None = None) -> pd.DataFrame:
    """The parts claim ``claim`` is decided on at ``scale`` and how many seeds each has, stated
    before any run (from the scale and the claim's rule, not from results): one row per part,
    columns ``id`` (the part's stable id, which its verdict's part carries), ``part`` (in words)
    and ``seeds`` (paired parts: the seeds both sides share); the claim's
    :attr:`lintf.registry.Claim.design`. Runs that diverge or a chapter run with other
    ``seeds`` can only lower the counts.

    The choices, made together so that every claim can come out each way (:func:`could_fail`):
    claim 2 has 9 parts, so the noise is measured at 8 initialisations (``noise_seeds``); claim
    3 has 9 parts at ``cpu`` (12 at ``paper``), so the covariate and depth runs have 8 seeds
    (``comparison_seeds``) and only Settings 1-3 are parts of their own; claim 7 is decided
    against gamma covariates only (3 parts), so 6 seeds suffice.
    """
    from .registry import design_frame
    return design_frame(claim, scale, steps)


def could_fail(seeds: int, parts: int, level: float = 0.95) -> bool:
    """Whether a claim of ``parts`` parts whose fewest-seeded part has ``seeds`` seeds can come out
    "does not hold": Holm's step-down needs a p-value ``<= (1 - level) / parts``, and the
    smallest a sign-flip test of ``seeds`` values reaches is ``2^-seeds``."""
    seeds, parts = check_int("seeds", seeds, minimum=0), check_int("parts", parts)
    return 0.5 ** seeds <= (1.0 - level) / parts + 1e-15


def verdict(claim: int, ctx: Context) -> claims.Verdict:
    """Claim ``claim`` decided on its experiments: what its chapter and the scorecard show."""
    from .registry import get
    return get(claim).verdict(ctx)


def scorecard(ctx: Context) -> tuple[dict, list[dict]]:
    """Every claim's verdict from the stored results (``ctx`` read-only), and the claims that
    could not be decided because an experiment is missing: ``(verdicts, missing)`` with
    ``missing`` rows ``claim, chapter, reason``."""
    from .registry import REGISTRY
    ctx = dataclasses.replace(ctx, cached_only=True)
    return _read(REGISTRY, lambda k: verdict(k, ctx), {k: c.chapter for k, c in REGISTRY.items()})


def _read(keys, decide, chapters) -> tuple[dict, list[dict]]:
    """``decide(k)`` for every key, a missing stored result (``LookupError``) listed with the
    chapter that computes it (``chapters``: a dict per key, or one name)."""
    verdicts, missing = {}, []
    for k in keys:
        try:
            verdicts[k] = decide(k)
        except LookupError as err:
            missing.append({"claim": k, "chapter": chapters[k] if isinstance(chapters, dict) else chapters,
                            "reason": str(err)})
    return verdicts, missing


def ablation_runs(ctx: Context, settings=claims.ABLATION_SETTINGS, optimizers=ALL_OPTIMIZERS, clip=True) -> dict:
    """The ablation's runs (:func:`lintf.experiments.ablation`, every optimizer at its own best
    rate) on ``settings``: frames ``history``, ``runs`` and ``best`` (the grids' best rates)."""
    got = {s: E.ablation(s, ctx.scale, optimizers=optimizers, clip=clip, seeds=ctx.seeds, steps=ctx.steps,
                         **ctx.kw())
           for s in settings}
    return {"history": _concat([r.frames["history"] for r, _ in got.values()]),
            "runs": _concat([r.frames["runs"] for r, _ in got.values()]),
            "best": _concat([b.assign(setting=s) for s, (_, b) in got.items()])}


def hypothesis(key: str, ctx: Context, settings=claims.ABLATION_SETTINGS) -> claims.Verdict:
    """Hypothesis ``key`` (:data:`lintf.claims.HYPOTHESES`) decided on the ablation's runs:
    what the ablation chapter and the scorecard's rows beyond the paper show."""
    data = ablation_runs(ctx, settings)
    return claims.hypothesis(key, data["history"], data["runs"], settings=settings)


def beyond(ctx: Context, settings=claims.ABLATION_SETTINGS) -> tuple[dict, list[dict]]:
    """:func:`scorecard` for the hypotheses beyond the paper: ``(verdicts, missing)``, each
    decided as :func:`hypothesis` does, on the ablation's runs read once."""
    ctx = dataclasses.replace(ctx, cached_only=True)
    try:
        data = ablation_runs(ctx, settings)
    except LookupError as err:
        return {}, [{"claim": k, "chapter": HYPOTHESIS_CHAPTER, "reason": str(err)} for k in claims.HYPOTHESES]
    return _read(claims.HYPOTHESES, lambda k: claims.hypothesis(k, data["history"], data["runs"], settings=settings),
                 HYPOTHESIS_CHAPTER)


def _each_way(k, v, scale) -> str:
    """Whether the claim could come out each way: from :func:`design` for a claim of the paper
    at ``scale``, else from the verdict's own parts."""
    if isinstance(k, int) and scale is not None:
        d = design(k, scale)
        n, m = int(d["seeds"].min()), len(d)
    elif v is not None and len(v.details["parts"]):
        n, m = int(v.details["parts"]["n"].min()), len(v.details["parts"])
    else:
        return "-"
    ok = could_fail(n, m)
    seeds = f"{n} seed{'s' * (n != 1)}"
    if ok:
        return f"yes ({seeds} per part can refute one of {m} part{'s' * (m != 1)})"
    return (f"no: {seeds} cannot refute one of {m} part{'s' * (m != 1)}" +
            ("" if n >= stats.min_seeds() else ", nor confirm it"))


def _parts_seeds(parts: int, seeds) -> str:
    """``"3 parts, 6 seeds each"``, ``"4 parts, 5 to 6 seeds"``, ``"2 parts, none tested"``:
    a claim's parts and the seeds of its tested ones (``seeds``: one count per tested part)."""
    seeds = [int(x) for x in seeds]
    head = f"{parts} part{'s' * (parts != 1)}"
    if not seeds:
        return f"{head}, none tested"
    lo, hi = min(seeds), max(seeds)
    if lo == hi:
        return f"{head}, {lo} seed{'s' * (lo != 1)}" + (" each" if len(seeds) > 1 else "")
    return f"{head}, {lo} to {hi} seeds"


def card(verdicts: dict, texts: dict, chapters, scale=None) -> pd.DataFrame:
    """The scorecard's table: one row per claim (or hypothesis) of ``texts``: its verdict
    (``"not computed"`` when missing from ``verdicts``), its parts and seeds, the parts left
    untested, whether it could come out each way (``"yes (6 seeds per part can refute one of 3
    parts)"``: :func:`could_fail` with ``k`` parts and ``n`` the fewest seeds of any part, from
    :func:`design` at ``scale`` for the paper's claims, else from the parts decided) and the
    chapter (``chapters``: one notebook name, or a dict per key; :func:`styled_card` shows its
    title, :data:`CHAPTER_TITLES`)."""
    rows = []
    for k, text in texts.items():
        chapter = chapters[k] if isinstance(chapters, dict) else chapters
        v = verdicts.get(k)
        if v is None:
            rows.append({"claim": k, "statement": text, "verdict": "not computed",
                         "parts, seeds": f"build {CHAPTER_TITLES.get(chapter, chapter)} first", "untested": "",
                         "could come out each way": _each_way(k, None, scale), "chapter": chapter})
            continue
        t = v.details["parts"]
        tested = t[t["verdict"] != "untested"]
        rows.append({"claim": k, "statement": text, "verdict": v.verdict,
                     "parts, seeds": _parts_seeds(len(t), tested["n"]),
                     "untested": "; ".join(f"{r.part} ({r.extra})" for r in t[t["verdict"] == "untested"].itertuples()),
                     "could come out each way": _each_way(k, v, scale), "chapter": chapter})
    return pd.DataFrame(rows, columns=["claim", "statement", "verdict", "parts, seeds", "untested",
                                       "could come out each way", "chapter"])


def styled_card(verdicts: dict, texts: dict, chapters, key_name: str = "claim", scale=None):
    """:func:`card` as a pandas Styler: the verdict column as a coloured badge (the colours of
    :data:`lintf.claims.VERDICT_COLORS`, grey for "not computed"), the statement column
    wrapped, the chapter as a link titled by :data:`CHAPTER_TITLES`; the key column named
    ``key_name``."""
    import html
    colours = {**claims.VERDICT_COLORS, "not computed": "#BBBBBB"}

    def badge(v):
        return f"color: white; background-color: {colours[v]}; font-weight: bold" if v in colours else ""

    table = card(verdicts, texts, chapters, scale).rename(columns={"claim": key_name})
    table["chapter"] = [f'<a href="{html.escape(c)}.html">{html.escape(CHAPTER_TITLES.get(c, c))}</a>'
                        for c in table["chapter"]]
    return (table.style.map(badge, subset=["verdict"])
            .set_properties(subset=["statement", "untested"], **{"max-width": "22em"}))


def parts(verdicts: dict, untested: bool = False) -> pd.DataFrame:
    """Every part of every verdict, one frame with a ``claim`` column (the forest plot's input,
    :func:`lintf.plots.forest`); the untested parts, which have no statistic to draw, only with
    ``untested=True`` (the card lists them)."""
    frames = [v.details["parts"].assign(claim=k) for k, v in verdicts.items()]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["claim", "part", "statistic", "low", "high", "threshold", "side", "verdict"])
    return out if untested else out[out["verdict"] != "untested"].reset_index(drop=True)


def counts(verdicts: dict, missing: list[dict]) -> dict:
    """How many verdicts hold, do not hold, are inconclusive, and how many keys were not
    computed: ``{"holds": n, "does not hold": n, "inconclusive": n, "not computed": n}``
    (:func:`lintf.claims.count_words` says it in English)."""
    out = {v: sum(x.verdict == v for x in verdicts.values()) for v in claims.VERDICTS}
    return {**out, "not computed": len(missing)}


def claim_by_claim(verdicts: dict) -> str:
    """Every claim of :data:`lintf.registry.REGISTRY` in one phrase, with the few words that name
    it and its verdict: ``"1 (Adam's lower loss) holds, 2 (heavy-tailed noise) inconclusive,
    ..."`` (``"not computed"`` for a claim missing from ``verdicts``)."""
    from .registry import REGISTRY
    return ", ".join(f"{k} ({c.short}) {verdicts[k].verdict if k in verdicts else 'not computed'}"
                     for k, c in REGISTRY.items())


def evidence_html(verdicts: dict, missing: list[dict]) -> str:
    """Each verdict (its summary line), its deciding part and finding in words, its evidence
    (one line per part) folded in a ``<details>`` block, and the missing ones with their reason
    and the chapter's title (:data:`CHAPTER_TITLES`), as HTML."""
    import html
    blocks = []
    for v in verdicts.values():
        lines = "".join(f"<li>{html.escape(line)}</li>" for line in v.evidence.splitlines() if line)
        blocks.append(f"<details><summary><b>{html.escape(v.label)}: {html.escape(v.verdict)}</b> "
                      f"({html.escape(v.text)})</summary><p>Deciding part {html.escape(v.deciding)}. "
                      f"{html.escape(v.sentence)}</p><ul>{lines}</ul></details>")
    for m in missing:
        label = f"{'Hypothesis' if isinstance(m['claim'], str) else 'Claim'} {m['claim']}"
        blocks.append(f"<details><summary><b>{label}: not computed</b></summary><p>"
                      f"{html.escape(m['reason'])} (chapter {html.escape(CHAPTER_TITLES.get(m['chapter'], m['chapter']))})"
                      "</p></details>")
    return "".join(blocks)


def context(scale=None, **kw) -> Context:
    """A :class:`Context` for ``scale`` (None: :func:`lintf.settings.default_scale`)."""
    return Context(get_scale(default_scale() if scale is None else scale), **kw)


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
    lintf.summaries.condition_ratio_table}, "table": the display table, "per_seed": tidy
    (setting, eval_batch, step, seed, ratio)}``. Display columns: the paper's mean (sd) over
    6 seeds; ours on the authors' batch, mean (sd) over seeds; ours over the K batches of
    each seed, median over batches of the per-batch table statistic [min, max]; ours on the
    large batch, mean (sd), geometric mean and the decision rule's bounds.
    """
    check_choice("method", method, ("eig", "diag"))
    sc = ctx.scale
    frames = {pr: _concat([E.table_conditioning(s, sc, eval_batch=pr, **ctx.kw()).frames["conditioning"]
                           for s in settings]) for pr in TABLE_PROTOCOLS}
    runs = _concat([E.table_training(s, sc, **ctx.kw()).frames["runs"] for s in settings])
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
    per_seed = _concat([claims.claim3(f, steps=sc.table_steps, method=method, eval_batch=pr, runs=runs)
                        .details["data"].assign(eval_batch=pr) for pr, f in frames.items()])
    return {"frames": frames, "runs": runs, "stats": stats_, "per_seed": per_seed,
            "table": pd.DataFrame(rows).set_index(["setting", "iteration"])}
