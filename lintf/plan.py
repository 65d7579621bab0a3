"""The book's experiments, declared: for a scale, every experiment a chapter reads at its
default parameters, in one list.

An :class:`Experiment` is one call of a :mod:`lintf.compute.experiments` function (one batched program,
many runs) with plain keyword arguments: its stable ``name`` (``"training/setting1"``,
``"table_conditioning/setting2/large"``), its setting, the chapters that read it, how much it
computes (``iterations``, in ``unit``s) and the experiments it needs first (``after``).
:func:`plan` derives the list from the constants the chapters use (:data:`lintf.book.BASE`,
:data:`lintf.book.TAILS`, :data:`lintf.book.DEPTHS`, :data:`lintf.book.NOISE`, the settings'
roles, the scale), so that computing the plan (``python -m lintf compute``) leaves a build of
the book nothing to compute. :func:`call` runs one experiment, :func:`stored` says whether the
store holds it, :func:`compute_command` is the command line that computes a missing one.
"""
from __future__ import annotations

import dataclasses
import time

import pandas as pd

from . import book
from .book import claims
from .compute import experiments as E
from .compute.checks import check_choice
from .compute.settings import SETTINGS, Scale, default_scale, get_scale, get_setting

CHAPTERS = ("adaptive_vs_sgd", "heavy_tails", "conditioning", "smoothness", "depth", "nonlinear", "ablation",
            "scorecard")
"""The chapters that read experiments (the introduction reads none), in the book's order."""

UNITS = ("train", "hessian", "gradient")
"""What an experiment's ``iterations`` count: ``train``, run-iterations (runs x steps) of a
batched training program at the scale's batch; ``hessian``, exact float64 Hessians of one run
on ``scale.eval_size`` prompts; ``gradient``, gradients of one run on ``scale.noise_batch_size``
prompts."""

KINDS = {"training": "training", "grid_training": "training", "table_training": "training",
         "stable_search": "training", "ablation": "training", "lr_sweep": "sweep", "conditioning": "conditioning",
         "table_conditioning": "conditioning", "ablation_conditioning": "conditioning",
         "batch_size_curve": "curve", "noise_at_seeds": "noise", "precision_pair": "precision"}
"""The kind of store entry (:func:`lintf.compute.experiments._get`) each planned function writes last."""


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One planned experiment: ``function`` of :mod:`lintf.compute.experiments` called on ``setting``
    with ``kwargs`` (plain data), read by ``chapters``, ``iterations`` of ``unit``
    (:data:`UNITS`), after the experiments named in ``after``."""

    name: str
    function: str
    setting: str
    kwargs: dict
    chapters: tuple
    iterations: int
    unit: str = "train"
    after: tuple = ()

    @property
    def kind(self) -> str:
        """The kind of its store entry (``training``, ``sweep``, ``conditioning``, ``curve``, ``noise``)."""
        return KINDS[self.function]

    def __hash__(self):
        return hash(self.name)


def _scale(scale) -> Scale:
    if isinstance(scale, Scale):
        return scale
    return get_scale(default_scale() if scale is None else scale)


def _checkpoints(sc: Scale, steps: int) -> list[int]:
    every = sc.checkpoint_every
    return sorted(set(range(0, steps + 1, every)) | {steps})


def _book_order(chapters) -> tuple:
    return tuple(sorted(set(chapters), key=CHAPTERS.index))


def _sweep_kw(setting: str, sc: Scale, points=None, steps=None) -> dict:
    """:func:`lintf.compute.experiments.lr_sweep`'s grid, resolved as it resolves it."""
    s = get_setting(setting)
    points = (sc.variant_grid_points if s.role in E.VARIANT_ROLES else sc.grid_points) if points is None else points
    if steps is None:
        steps = sc.variant_sweep_steps if s.role in E.VARIANT_ROLES and sc.variant_sweep_steps else sc.sweep_steps
        steps = min(steps, sc.steps_for(s))
    return {"points": points, "steps": steps}


def twin(setting: str) -> str:
    """The first setting of :data:`lintf.compute.settings.SETTINGS` that is the same experiment as
    ``setting``: equal in everything but its name, title and note (the gamma setting of the
    heavy-tails chapter is Setting 3). Results are keyed without names, so the plan computes
    such a pair once (two workers would otherwise compute it twice)."""
    plain = lambda st: dataclasses.replace(st, name="", title="", note="")   # noqa: E731
    me = plain(get_setting(setting))
    return next(name for name, st in SETTINGS.items() if plain(st) == me)


class _Builder:
    def __init__(self, sc: Scale):
        self.sc, self.items, self.by_call = sc, {}, {}

    def add(self, name, function, setting, kwargs, chapters, iterations, unit="train", after=()):
        call = (function, twin(setting), repr(sorted(kwargs.items())))
        chapters = (chapters,) if isinstance(chapters, str) else tuple(chapters)
        if call in self.by_call:                      # the same call read by another chapter
            name = self.by_call[call]
            old = self.items[name]
            self.items[name] = dataclasses.replace(old, chapters=_book_order(old.chapters + chapters))
            return name
        if name in self.items:
            raise RuntimeError(f"plan: two different experiments named {name!r}")
        self.items[name] = Experiment(name, function, setting, dict(kwargs), _book_order(chapters), int(iterations), unit,
                                      tuple(a for a in after if a))
        self.by_call[call] = name
        return name

    # -- the experiments, each with its work -------------------------------------------------
    def training(self, s, chapter, lrs="default", steps=None, **extra):
        sc, st = self.sc, get_setting(s)
        horizon = steps or sc.steps_for(st)
        kw = {"lrs": lrs} if lrs != "default" else {}
        if steps is not None and steps != sc.steps_for(st):
            kw["steps"] = steps
        after = ()
        if lrs == "grid":
            grid = _sweep_kw(s, sc, extra.get("points"), extra.get("sweep_steps"))
            after = (self.sweep(s, chapter, **grid),)
            default = _sweep_kw(s, sc)
            if grid != default:
                kw.update(points=grid["points"], sweep_steps=grid["steps"])
        if lrs == "stable":
            after = (self.stable(s, chapter),)
            work = 0                                       # the stable search's runs, selected
        else:
            work = 2 * len(sc.seeds_for(st)) * horizon
            if st.role == "depth" and steps is None:       # Table 2's rates are the search's first try:
                after = (self.stable(s, chapter),)         # after it, they are often stored already
        suffix = "" if not kw else "/" + "/".join(f"{v}" for v in kw.values())
        return self.add(f"training/{s}{suffix}", "training", s, kw, chapter, work, after=after)

    def sweep(self, s, chapter, points=None, steps=None):
        grid = _sweep_kw(s, self.sc, points, steps)
        rates = E.sweep_rates(s, self.sc, points=grid["points"])
        default = _sweep_kw(s, self.sc)
        kw = {} if grid == default else grid
        suffix = "" if not kw else f"/{grid['points']}x{grid['steps']}"
        return self.add(f"sweep/{s}{suffix}", "lr_sweep", s, kw, chapter,
                        len(rates) * len(self.sc.sweep_seeds) * grid["steps"])

    def stable(self, s, chapter):
        sc, st = self.sc, get_setting(s)
        # the largest rate of the grid for both optimizers on the search seeds (the smaller ones only
        # after a divergence), then the tested seeds at the chosen rates
        return self.add(f"stable/{s}", "stable_search", s, {}, chapter,
                        2 * (len(sc.sweep_seeds) + len(sc.seeds_for(st))) * sc.steps_for(st))

    def noise(self, s, chapter):
        sc = self.sc
        per_seed = sc.noise_batches + -(-sc.noise_big_batch // sc.noise_batch_size)
        return self.add(f"noise/{s}", "noise_at_seeds", s, {}, chapter, len(sc.noise_seeds) * per_seed, "gradient")

    def _hessians(self, s, runs, steps, protocol) -> int:
        sc, st = self.sc, get_setting(s)
        if sc.hessian_max_params is not None and st.model.num_params > sc.hessian_max_params:
            return 0
        per = {"fixed": sc.batch_size / sc.eval_size, "authors": 1, "batches": sc.eval_large / sc.eval_size,
               "large": sc.eval_large / sc.eval_size}[protocol]
        return int(round(runs * len(steps) * per))

    def conditioning(self, s, chapter, eval_batch=None, at="checkpoints", lrs="default"):
        sc, st = self.sc, get_setting(s)
        protocol = eval_batch or sc.eval_protocol
        trained = self.training(s, chapter, lrs=lrs)
        checkpoints = _checkpoints(sc, sc.steps_for(st))
        steps = (sc.hessian_steps_for(st, checkpoints) if at == "checkpoints"
                 else [t for t in sc.table_steps if t in checkpoints])
        kw = {"eval_batch": protocol, **({"at": at} if at != "checkpoints" else {}),
              **({"lrs": lrs} if lrs != "default" else {})}
        name = "/".join(["conditioning", s, *map(str, kw.values())])
        return self.add(name, "conditioning", s, kw, chapter,
                        self._hessians(s, 2 * len(sc.seeds_for(st)), steps, protocol), "hessian", after=(trained,))

    def table_training(self, s, chapter):
        sc, st = self.sc, get_setting(s)
        long = sc.seeds_for(st)
        shared = [x for x in sc.table_seeds if x in long] if sc.steps_for(st) >= sc.table_horizon else []
        after = (self.training(s, chapter),) if shared else ()
        rest = [x for x in sc.table_seeds if x not in shared]
        return self.add(f"table_training/{s}", "table_training", s, {}, chapter,
                        2 * len(rest) * sc.table_horizon, after=after)

    def table_conditioning(self, s, chapter, protocol):
        sc = self.sc
        trained = self.table_training(s, chapter)
        return self.add(f"table_conditioning/{s}/{protocol}", "table_conditioning", s, {"eval_batch": protocol},
                        chapter, self._hessians(s, 2 * len(sc.table_seeds), sc.table_steps, protocol), "hessian",
                        after=(trained,))

    def curve(self, s, chapter):
        sc = self.sc
        trained = self.table_training(s, chapter)
        work = 0 if self._hessians(s, 1, [0], "authors") == 0 else 2 * sc.curve_chunks
        return self.add(f"curve/{s}", "batch_size_curve", s, {}, chapter, work, "hessian", after=(trained,))

    def precision_pair(self, s, chapter):
        sc, st = self.sc, get_setting(s)
        n = len(sc.seeds_for(st)[:E.PAIR_SEEDS])                # two precisions x two optimizers, no skipping
        return self.add(f"precision_pair/{s}", "precision_pair", s, {}, chapter, 2 * 2 * n * sc.steps_for(st))

    def ablation(self, s, chapter):
        sc = self.sc
        n = len(E.ALL_OPTIMIZERS)
        work = (n * len(sc.ablation_factors) * len(sc.sweep_seeds) * min(sc.ablation_sweep_steps, sc.ablation_steps)
                + n * len(sc.seeds) * sc.ablation_steps)
        return self.add(f"ablation/{s}", "ablation", s, {}, chapter, work)

    def ablation_conditioning(self, s, chapter):
        sc = self.sc
        runs = self.ablation(s, chapter)
        have = _checkpoints(sc, sc.ablation_steps)
        work = self._hessians(s, len(E.ALL_OPTIMIZERS) * len(sc.seeds), [have[-1]], sc.eval_protocol)
        return self.add(f"ablation_conditioning/{s}", "ablation_conditioning", s, {}, chapter, work, "hessian",
                        after=(runs,))


def _chapters(b: _Builder) -> None:
    """Every experiment each chapter reads at its default parameters (the notebooks' parameter
    cells), and the scorecard's (:func:`lintf.book.scorecard`, :func:`lintf.book.beyond`,
    :func:`lintf.book.condition_tables`)."""
    sc = b.sc
    ctx = book.Context(sc)
    # Adam against SGD: Fig 2, Table 2's grids, Fig 7 and claim 8, Fig 8, the variants' claim 1
    for s in book.BASE:
        b.training(s, ("adaptive_vs_sgd", "smoothness", "scorecard"))
        b.sweep(s, "adaptive_vs_sgd")
    variants = [v for v in E.VARIANTS if v not in sc.skip_variants]
    if "softmax" in variants:
        grid = book.claim8_sweep(ctx)
        horizon = sc.steps_for(get_setting("softmax"))
        for s in ("setting1", "softmax"):
            b.training(s, ("adaptive_vs_sgd", "scorecard"), lrs="grid", steps=horizon, points=grid["points"],
                       sweep_steps=grid["steps"])
    for v in variants:
        b.training(v, "adaptive_vs_sgd", lrs=book.variant_lrs(sc, v))
    # heavy tails: Figs 3, 9, 10, 11, claims 2 and 7
    for s in book.NOISE:
        b.noise(s, ("heavy_tails", "scorecard") if s in book.BASE + book.TAILS else ("heavy_tails", "depth", "scorecard"))
    for s in book.TAILS + ("setting1",):
        b.training(s, ("heavy_tails", "scorecard"))
    for s in book.TAILS:
        b.conditioning(s, "heavy_tails", eval_batch="authors")
    # condition numbers: the batch-size figure, the table three ways, claim 3
    for s in book.BASE:
        b.curve(s, "conditioning")
        for protocol in book.TABLE_PROTOCOLS:
            b.table_conditioning(s, ("conditioning", "scorecard"), protocol)
    others = [s for s in book.TAILS + book.DEPTHS if s not in book.BASE and get_setting(s).role != "core"]
    # claim 3 on the paper's batch (its primary verdict) and on the scale's landscape protocol
    # (batches and large, one experiment): the declared alternatives
    for s in others:
        for protocol in dict.fromkeys((book.PAPER_EVAL_BATCH, sc.eval_protocol)):
            b.conditioning(s, ("conditioning", "scorecard"), eval_batch=protocol, at="table",
                           lrs="stable" if get_setting(s).role == "depth" else "default")
    # depth: the stable rule, Figs 12-14, claim 6
    for s in book.DEPTHS:
        b.stable(s, "depth")
        b.training(s, ("depth", "scorecard"), lrs="stable")
        b.training(s, ("depth", "scorecard"), lrs="paper")
        b.conditioning(s, "depth", eval_batch="authors", lrs="stable")
    # the depth chapter's float32 against float64 figure: the models of 6 layers or more
    for s in [s for s in book.DEPTHS if get_setting(s).model.L >= 6] or book.DEPTHS[-1:]:
        b.precision_pair(s, "depth")
    # nonlinear regression: Fig 15
    b.training("nonlinear", "nonlinear")
    b.conditioning("nonlinear", "nonlinear", eval_batch="fixed")
    b.noise("nonlinear", "nonlinear")
    # the ablation and its hypotheses
    for s in claims.ABLATION_SETTINGS:
        b.ablation(s, ("ablation", "scorecard"))
        b.ablation_conditioning(s, "ablation")


def plan(scale=None, only=None) -> list[Experiment]:
    """Every experiment the book reads at ``scale`` (a :class:`lintf.compute.settings.Scale` or its
    name; None: the default scale), in an order where each comes after those it needs.

    only : None, or chapter names among :data:`CHAPTERS`: the experiments those chapters read
    and the ones they need first.
    """
    sc = _scale(scale)
    b = _Builder(sc)
    _chapters(b)
    items = b.items
    if only is not None:
        only = [only] if isinstance(only, str) else list(only)
        for c in only:
            check_choice("only", c, CHAPTERS)
        keep, todo = set(), [n for n, e in items.items() if set(e.chapters) & set(only)]
        while todo:
            n = todo.pop()
            if n not in keep:
                keep.add(n)
                todo += list(items[n].after)
        items = {n: e for n, e in items.items() if n in keep}
    return _ordered(items)


def _ordered(items: dict) -> list[Experiment]:
    out, done = [], set()

    def visit(name):
        if name in done or name not in items:
            return
        for a in items[name].after:
            visit(a)
        done.add(name)
        out.append(items[name])

    for name in items:
        visit(name)
    return out


def call(exp: Experiment, scale, *, device="auto", store=None, progress=None, cached_only=False):
    """Run ``exp`` at ``scale`` (a Scale or its name): ``exp.function(exp.setting, scale,
    device=..., store=..., progress=..., cached_only=..., **exp.kwargs)``; its return value."""
    fn = getattr(E, exp.function)
    return fn(exp.setting, _scale(scale), device=device, store=store, progress=progress, cached_only=cached_only,
              **exp.kwargs)


def stored(exp: Experiment, scale, *, device="auto", store=None) -> bool:
    """Whether the store holds ``exp`` (and everything it reads) for this compute source."""
    try:
        call(exp, scale, device=device, store=store, progress=False, cached_only=True)
    except LookupError:
        return False
    return True


def entries(exp: Experiment, scale, *, device="auto", store=None) -> list[tuple[str, str]]:
    """``(kind, key)`` of every store entry ``exp`` reads, dependencies included (it must be
    stored: a ``LookupError`` otherwise)."""
    with E.touched() as seen:
        call(exp, scale, device=device, store=store, progress=False, cached_only=True)
    return list(seen.entries)


def chapter_of(kind: str, setting: str, scale=None) -> str:
    """The first chapter of the plan at ``scale`` that reads an experiment of ``kind`` on
    ``setting`` (the one a build computes it in), else ``"adaptive_vs_sgd"``."""
    for exp in plan(scale):
        if exp.setting == setting and exp.kind == kind:
            return exp.chapters[0]
    same = [e for e in plan(scale) if e.setting == setting]
    return same[0].chapters[0] if same else CHAPTERS[0]


def compute_command(kind: str, setting: str, scale=None) -> str:
    """The command line that computes a missing experiment of ``kind`` on ``setting``."""
    sc = _scale(scale)
    return f"python -m lintf compute --scale {sc.name} --only {chapter_of(kind, setting, sc)}"


# -- the estimate ----------------------------------------------------------------------------
def calibrate(experiments, scale, *, device="cpu", steps: int = 6) -> dict:
    """Seconds per unit (:data:`UNITS`) for each setting's model among ``experiments`` on
    ``device`` at ``scale``, from a short measurement.

    ``train``: a program of 2 optimizers x 2 seeds at the scale's batch, timed at ``steps`` and
    at 2 iterations (the difference, per run-iteration). ``hessian``: one exact float64 Hessian
    of one run on ``scale.eval_size`` prompts, timed (models above 2000 parameters: estimated as
    four float32 run-iterations per parameter, scaled to ``eval_size`` prompts). ``gradient``:
    one run-iteration scaled to ``noise_batch_size`` prompts. Returns ``{(model key, unit):
    seconds}``."""
    import torch

    from .compute import measure
    from .compute.engine import initial_params, resolve_device, train
    from .compute.optim import OptimConfig
    sc, dev = _scale(scale), resolve_device(device)
    out = {}
    for exp in experiments:
        st = get_setting(exp.setting)
        model = _model_key(st)
        if exp.iterations == 0 or (model, exp.unit) in out:
            continue
        if (model, "train") not in out:
            def timed(k):
                t0 = time.perf_counter()
                train(st.model, st.prompts, [("sgdm", st.lrs["sgdm"]), ("adam", st.lrs["adam"])], [0, 1], steps=k,
                      batch_size=sc.batch_size, optim_config=OptimConfig(clip=st.clip), eval_every=sc.eval_every,
                      checkpoint_every=None, record_smoothness=st.record_smoothness,
                      smoothness_every=sc.smoothness_every, device=dev, dtype=st.dtype, progress=False)
                return time.perf_counter() - t0
            timed(1)                                                         # warm-up
            out[(model, "train")] = max(timed(steps) - timed(2), 1e-6) / (4 * (steps - 2))
        per_prompt = out[(model, "train")] / sc.batch_size
        if exp.unit == "gradient":
            out[(model, "gradient")] = per_prompt * sc.noise_batch_size
        elif exp.unit == "hessian":
            if st.model.num_params <= 2000:
                params = {k: v[:1] for k, v in initial_params(st.model, [0]).items()}
                Z, y = E.eval_chunks(st, sc, 0, 1)
                t0 = time.perf_counter()
                measure.hessian(st.model, params, Z[0].unsqueeze(0), y[0].unsqueeze(0))
                out[(model, "hessian")] = time.perf_counter() - t0
            else:
                out[(model, "hessian")] = 4 * st.model.num_params * per_prompt * sc.eval_size
    return out


def _model_key(st) -> str:
    return repr((st.model, st.prompts.n, st.prompts.d, st.prompts.covariates, st.precision))


def estimate(exp: Experiment, rates: dict) -> float:
    """Estimated seconds of ``exp`` from :func:`calibrate`'s ``rates``."""
    if exp.iterations == 0:
        return 0.0
    return exp.iterations * rates.get((_model_key(get_setting(exp.setting)), exp.unit), 0.0)


# -- how much of the paper a scale computes --------------------------------------------------
SHARE_ROWS = (("Settings 1-3 (Figs 2, 5, 16)", ("setting1", "setting2", "setting3")),
              ("sphere covariates (Fig 9)", ("sphere",)),
              ("depths L = 2, 4, 6, 8 (Figs 12-14)", ("depth2", "depth4", "depth6", "depth8")),
              ("softmax attention (Fig 7)", ("softmax",)),
              ("separate W_K, W_Q (Fig 8)", ("separate_qk",)),
              ("L=8, d=20, n=60 (Fig 8)", ("large",)),
              ("nonlinear regression (Fig 15)", ("nonlinear",)))


def paper_share(scale=None) -> pd.DataFrame:
    """How much of the paper's training ``scale`` computes: one row per group of settings
    (:data:`SHARE_ROWS`) and one for the learning-rate grid, with ``iterations`` and ``seeds``
    per run at ``scale``, and ``share``, its run-iterations (both optimizers, every seed)
    as a fraction of the ``paper`` scale's (0 where the scale leaves it out)."""
    sc, paper = _scale(scale), get_scale("paper")

    def run_iterations(scale, names):
        return sum(0 if n in scale.skip_variants else
                   2 * len(scale.seeds_for(get_setting(n))) * scale.steps_for(get_setting(n)) for n in names)

    rows = []
    for label, names in SHARE_ROWS:
        st = get_setting(names[0])
        left_out = names[0] in sc.skip_variants
        rows.append({"experiment": label, "iterations": 0 if left_out else sc.steps_for(st),
                     "seeds": 0 if left_out else len(sc.seeds_for(st)),
                     "share": run_iterations(sc, names) / run_iterations(paper, names)})

    def grid(scale):
        return len(E.sweep_rates("setting1", scale)) * len(scale.sweep_seeds) * scale.sweep_steps

    rows.append({"experiment": "learning-rate grid (Table 2)", "iterations": sc.sweep_steps,
                 "seeds": len(sc.sweep_seeds), "share": grid(sc) / grid(paper)})
    return pd.DataFrame(rows)


# -- computing the plan ----------------------------------------------------------------------
UNIT_WEIGHT = {"train": 1.0, "gradient": 1.0, "hessian": 100.0}
"""Rough cost of one unit in run-iterations of Setting 1 (an exact Hessian costs about 100 of
them here), for :func:`priorities` only: the order of the tasks, never a number."""


def _rough_cost(exp: Experiment) -> float:
    st = get_setting(exp.setting)
    size = st.model.L / 3 * (st.model.d / 5) ** 2 * (1.6 if st.precision == "float64" else 1.0)
    return exp.iterations * UNIT_WEIGHT[exp.unit] * size


def priorities(experiments) -> dict:
    """A Dask priority per experiment name (higher first): the rough cost of the longest chain
    of work that starts at it (itself and what waits for it), so that the longest chains start
    first and two workers finish together. Changes the order of the tasks only."""
    exps = list(experiments)
    waits = {e.name: [] for e in exps}
    for e in exps:
        for a in e.after:
            if a in waits:
                waits[a].append(e)
    chain = {}
    for e in reversed(exps):                                    # plan order: what waits comes later
        chain[e.name] = _rough_cost(e) + max((chain.get(w.name, 0.0) for w in waits[e.name]), default=0.0)
    return {name: int(c) for name, c in chain.items()}


def run_task(exp: Experiment, scale: str, device: str, root: str, *after) -> list[str]:
    """One task of ``python -m lintf compute``: ``exp`` computed (or read) at the scale named
    ``scale`` into the store at ``root``, on one torch thread (the same numbers in-process and
    on any Dask worker); returns the keys of the store entries it wrote or read, never tensors.
    ``after``: the results of the tasks it waits for (unused)."""
    import torch

    from .compute import engine, fast
    from .compute.store import ResultStore
    before = torch.get_num_threads(), engine.POOL_THREADS, fast.HESSIAN_POOL
    torch.set_num_threads(1)
    engine.POOL_THREADS = fast.HESSIAN_POOL = 1          # one busy thread per worker process
    engine.precision_flags(device, apply=True)
    try:
        with E.touched() as seen:
            call(exp, scale, device=device, store=ResultStore(root), progress=False)
    finally:
        torch.set_num_threads(before[0])
        engine.POOL_THREADS, fast.HESSIAN_POOL = before[1], before[2]
    return [key for _, key in seen.entries]


def compute(scale=None, *, only=None, experiments=None, device="auto", store=None, client=None, retries: int = 2,
            progress=None) -> dict:
    """Compute the experiments of :func:`plan` that the store lacks: in this process one after
    another (``client`` None), else as tasks of the Dask ``client`` (one per experiment, with
    its ``after`` as dependencies, ``retries`` each: a task whose worker died runs again).
    ``experiments``: a list of :class:`Experiment` in plan order instead of ``plan(scale, only)``.

    One progress bar over the plan's ``iterations`` (with an estimate of the time left).
    Returns ``{"computed": n, "reused": n, "failed": [(name, one-line error)], "seconds": wall,
    "times": {name: seconds}}``: ``times``, the seconds each computed experiment's task ran
    (on a Dask cluster, from the scheduler's task stream: the worker's compute time).
    """
    from .compute.progress import bar
    from .compute.store import ResultStore
    sc = _scale(scale)
    store = store or ResultStore()
    root = str(store.root)
    exps = plan(sc, only=only) if experiments is None else list(experiments)
    t0 = time.perf_counter()
    todo = [e for e in exps if not stored(e, sc, device=device, store=store)]
    reused = len(exps) - len(todo)
    pbar = bar(total=sum(e.iterations for e in exps), desc=f"lintf compute, scale {sc.name}", progress=progress,
               unit="it")
    pbar.update(sum(e.iterations for e in exps if e not in todo))
    computed, failed, times = 0, [], {}
    if client is None:
        broken = set()
        for exp in todo:
            if set(exp.after) & broken:
                broken.add(exp.name)
                failed.append((exp.name, f"needs {sorted(set(exp.after) & broken)[0]}, which failed"))
                continue
            try:
                start = time.perf_counter()
                run_task(exp, sc.name, device, root)
                times[exp.name] = time.perf_counter() - start
                computed += 1
            except Exception as err:                                    # reported, the others go on
                broken.add(exp.name)
                failed.append((exp.name, " ".join(f"{type(err).__name__}: {err}".split())))
            pbar.update(exp.iterations)
    else:
        from dask.distributed import as_completed, get_task_stream
        futures, names = {}, {}
        with get_task_stream(client) as stream:          # each task's compute time, from the scheduler
            first = priorities(todo)
            for exp in todo:
                deps = [futures[a] for a in exp.after if a in futures]
                fut = client.submit(run_task, exp, sc.name, device, root, *deps, key=f"lintf-{exp.name}",
                                    retries=retries, pure=False, priority=first[exp.name])
                futures[exp.name], names[fut.key] = fut, exp
            for fut in as_completed(list(futures.values())):
                exp = names[fut.key]
                if fut.status == "finished":
                    computed += 1
                else:
                    err = fut.exception()
                    failed.append((exp.name, " ".join(f"{type(err).__name__}: {err}".split())))
                pbar.update(exp.iterations)
        for task in stream.data:
            exp = names.get(task.get("key"))
            spans = [s["stop"] - s["start"] for s in task.get("startstops", ()) if s.get("action") == "compute"]
            if exp is not None and spans:
                times[exp.name] = times.get(exp.name, 0.0) + sum(spans)
    pbar.close()
    return {"computed": computed, "reused": reused, "failed": failed, "seconds": time.perf_counter() - t0,
            "times": times}
