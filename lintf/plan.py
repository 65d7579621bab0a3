"""The book's experiments, declared: for a scale, every experiment a chapter reads at its
default parameters, in one list.

An :class:`Experiment` is one call of a :mod:`lintf.compute.experiments` function (one batched program,
many runs) with plain keyword arguments: its stable ``name`` (``"training/setting1"``,
``"table_conditioning/setting2/large"``), its setting, the chapters that read it, how much it
computes (``iterations``, in ``unit``s) and the experiments it needs first (``after``).
:func:`plan` reads it from two declarations and writes no list of its own: what the book
reads (:func:`lintf.book.reads.reads`: the claims' reads in the registry, the figures') and
what each experiment function declares next to itself (its store kind, its size, what it needs
first: :data:`lintf.compute.experiments.DECLARED`), so that computing the plan (``python -m
lintf compute``) leaves a build of the book nothing to compute. :func:`call` runs one experiment, :func:`stored` says whether the
store holds it, :func:`compute_command` is the command line that computes a missing one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import time
from pathlib import Path

import pandas as pd

from .book.reads import reads
from .compute import experiments as E
from .compute.checks import check_choice
from .compute.settings import SETTINGS, Scale, Setting, default_scale, get_scale, get_setting

CHAPTERS = ("adaptive_vs_sgd", "heavy_tails", "conditioning", "smoothness", "depth", "nonlinear", "ablation",
            "scorecard")
"""The chapters that read experiments (the introduction reads none), in the book's order."""

UNITS = E.UNITS
"""What an experiment's ``iterations`` count (:data:`lintf.compute.experiments.UNITS`)."""


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One planned experiment: ``function`` of :mod:`lintf.compute.experiments` called on ``setting``
    with ``kwargs`` (plain data), read by ``chapters``, ``iterations`` of ``unit``
    (:data:`UNITS`), after the experiments named in ``after``. ``spec``: the
    :class:`lintf.compute.settings.Setting` its name resolved to where it entered the plan,
    the object :func:`call` passes on (to a Dask worker too: names are not looked up again)."""

    name: str
    function: str
    setting: str
    kwargs: dict
    chapters: tuple
    iterations: int
    unit: str = "train"
    after: tuple = ()
    spec: Setting | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def kind(self) -> str:
        """The kind of its store entry (``training``, ``sweep``, ``conditioning``, ``curve``, ``noise``),
        as its function declares (:data:`lintf.compute.experiments.DECLARED`)."""
        return E.DECLARED[self.function].kind

    def __hash__(self):
        return hash(self.name)


def _scale(scale) -> Scale:
    if isinstance(scale, Scale):
        return scale
    return get_scale(default_scale() if scale is None else scale)


def _book_order(chapters) -> tuple:
    return tuple(sorted(set(chapters), key=CHAPTERS.index))


def twin(setting: str) -> str:
    """The first setting of :data:`lintf.compute.settings.SETTINGS` that is the same experiment as
    ``setting``: equal in everything but its name, title, note and groups (the gamma setting of
    the heavy-tails chapter is Setting 3). Results are keyed without names, so the plan computes
    such a pair once (two workers would otherwise compute it twice)."""
    plain = lambda st: dataclasses.replace(st, name="", title="", note="", groups=())   # noqa: E731
    me = plain(get_setting(setting))
    return next(name for name, st in SETTINGS.items() if plain(st) == me)


class _Builder:
    """The plan being built: each read of :func:`lintf.book.reads.reads` resolved by its
    function's declaration (:class:`lintf.compute.experiments.Declaration`), with what it needs
    first; two reads of one computation are one experiment, read by both chapters."""

    def __init__(self, sc: Scale):
        self.sc, self.items, self.by_call = sc, {}, {}

    def add(self, function: str, setting: str, kwargs: dict, chapters) -> str:
        declared = E.DECLARED[check_choice("function", function, E.DECLARED)]
        st = get_setting(setting)
        kw = declared.resolve(st, self.sc, kwargs)
        chapters = _book_order(check_choice("chapters", c, CHAPTERS) for c in chapters)
        after = tuple(self.add(f, setting, k, chapters) for f, k in declared.needs(st, self.sc, **kw))
        call = (function, twin(setting), repr(list(kw.items())))
        if call in self.by_call:                      # the same call read by another chapter
            name = self.by_call[call]
            old = self.items[name]
            self.items[name] = dataclasses.replace(old, chapters=_book_order(old.chapters + chapters))
            return name
        name = "/".join([declared.label, setting, *map(str, kw.values())])
        if name in self.items:
            raise RuntimeError(f"plan: two different experiments named {name!r}")
        self.items[name] = Experiment(name, function, setting, dict(kw), chapters,
                                      int(declared.size(st, self.sc, **kw)), declared.unit, after, st)
        self.by_call[call] = name
        return name


def plan(scale=None, only=None) -> list[Experiment]:
    """Every experiment the book reads at ``scale`` (a :class:`lintf.compute.settings.Scale` or its
    name; None: the default scale), in an order where each comes after those it needs.

    only : None, or chapter names among :data:`CHAPTERS`: the experiments those chapters read
    and the ones they need first.
    """
    sc = _scale(scale)
    b = _Builder(sc)
    for function, setting, kwargs, chapters in reads(sc):
        b.add(function, setting, kwargs, chapters)
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
    """Run ``exp`` at ``scale`` (a Scale or its name): ``exp.function(setting, scale,
    device=..., store=..., progress=..., cached_only=..., **exp.kwargs)`` with the Setting
    ``exp.spec`` (its name looked up only for an Experiment made without one); its return value."""
    fn = getattr(E, exp.function)
    return fn(exp.spec or get_setting(exp.setting), _scale(scale), device=device, store=store, progress=progress, cached_only=cached_only,
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
CALIBRATION_BUDGET = 7.0
"""Seconds :func:`calibrate` may measure for: every model is measured once whatever it costs
(about 5 s at scale ``paper`` on 2 cores), then again, cheapest first, while this budget
lasts, up to :data:`CALIBRATION_ROUNDS` times."""
CALIBRATION_ROUNDS = 5
"""The most measurements of one model's step or Hessian; the estimate takes the fastest of them
(another job on the machine only ever slows a timing down)."""
CALIBRATION_TARGET = 0.06
"""Seconds of training steps a measurement adds to its one-step baseline, and about half the
seconds of a timed Hessian: long enough that the timings are not noise, short enough that
every model fits the budget."""
HESSIAN_TIMED_PARAMS = 2000
"""Models of at most this many parameters have their exact Hessian timed; larger ones are
estimated as four float32 run-iterations per parameter."""
CALIBRATION_FILE = "calibration.json"
"""Where :func:`calibration` caches its measurements: ``$XDG_CACHE_HOME/lintf/`` (default
``~/.cache/lintf/``), one entry per host, device, torch version, lintf compute source and scale."""


@contextlib.contextmanager
def one_thread(device="cpu"):
    """What a task of ``python -m lintf compute`` runs under (:func:`run_task`): one torch thread,
    the engine's and the Hessian's chunks taken in turn by it, the device's precision flags;
    restored on exit. The calibration measures under it too, so that the estimate is of what
    compute does."""
    import torch

    from .compute import engine, fast
    before = torch.get_num_threads(), engine.POOL_THREADS, fast.HESSIAN_POOL
    torch.set_num_threads(1)
    engine.POOL_THREADS = fast.HESSIAN_POOL = 1          # one busy thread per worker process
    engine.precision_flags(device, apply=True)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        engine.POOL_THREADS, fast.HESSIAN_POOL = before[1], before[2]


def _model_key(st) -> str:
    return repr((st.model, st.prompts.n, st.prompts.d, st.prompts.covariates, st.precision, st.record_smoothness))


def _needs(experiments) -> dict:
    """``{(model key, unit): setting}`` of every rate :func:`estimate` reads for ``experiments``
    (a gradient's rate and a large model's Hessian come from its training rate)."""
    out = {}
    for exp in experiments:
        if exp.iterations == 0:
            continue
        st = get_setting(exp.setting)
        out.setdefault((_model_key(st), "train"), exp.setting)
        out.setdefault((_model_key(st), exp.unit), exp.setting)
    return out


def calibrate(experiments, scale, *, device="cpu", budget: float = CALIBRATION_BUDGET, known=None) -> dict:
    """Seconds per unit (:data:`UNITS`) for each setting's model among ``experiments`` on
    ``device`` at ``scale``, measured here on one torch thread (:func:`one_thread`, as compute
    runs each experiment) in about ``budget`` seconds.

    ``train``: a program of 2 optimizers x 2 seeds (one seed above
    :data:`HESSIAN_TIMED_PARAMS` parameters) at the scale's batch, timed at one step and at
    ``1 + m`` steps (``m`` steps of about :data:`CALIBRATION_TARGET` seconds), the difference
    per run-iteration. ``hessian``: one exact float64 Hessian of one run, timed on a power of
    two of prompts that takes about twice :data:`CALIBRATION_TARGET` and scaled to
    ``scale.eval_size`` prompts (its cost is linear in the prompts: within 10% from 32 prompts
    for L=8 and the nonlinear model), once per architecture (the covariates do not change it);
    above :data:`HESSIAN_TIMED_PARAMS` parameters, four float32 run-iterations per parameter.
    ``gradient``: one run-iteration scaled to ``noise_batch_size`` prompts. Each timing is
    warmed up first, measured once, then again, cheapest first, while ``budget`` lasts (at most
    :data:`CALIBRATION_ROUNDS` times); a rate takes the fastest of its timings (on the CPU one
    thread's CPU time, :func:`_clock`: another job only ever adds to it). ``known``:
    rates already measured (the cache), kept and not measured again. Returns ``{(model key,
    unit): seconds}``."""
    from .compute.engine import resolve_device
    sc, dev = _scale(scale), resolve_device(device)
    rates = dict(known or {})
    todo = {k: s for k, s in _needs(experiments).items() if k not in rates}
    trains, hessians = {}, {}
    for (model, unit), setting in todo.items():
        st = get_setting(setting)
        if unit == "train":
            trains[model] = _TrainTimer(st, sc, dev)
        elif unit == "hessian" and st.model.num_params <= HESSIAN_TIMED_PARAMS:
            arch = repr((st.model, st.prompts.n, st.prompts.d))
            hessians.setdefault(arch, _HessianTimer(st, sc, dev))
    timers = list(trains.values()) + list(hessians.values())
    if timers:
        with one_thread(dev):
            start = time.perf_counter()
            for t in timers:                                   # every timing once, whatever it costs
                t.warm_up()
                t.measure()
            for _ in range(CALIBRATION_ROUNDS - 1):           # then again, cheapest first, within the budget
                for t in sorted(timers, key=lambda t: t.cost):
                    if time.perf_counter() - start + t.cost <= budget:
                        t.measure()
    for model, timer in trains.items():
        rates[(model, "train")] = timer.rate()
    for (model, unit), setting in todo.items():              # the rates derived from training
        st = get_setting(setting)
        per_prompt = rates[(model, "train")] / sc.batch_size
        if unit == "gradient":
            rates[(model, unit)] = per_prompt * sc.noise_batch_size
        elif unit == "hessian":
            timer = hessians.get(repr((st.model, st.prompts.n, st.prompts.d)))
            rates[(model, unit)] = (timer.rate() if timer is not None
                                    else 4 * st.model.num_params * per_prompt * sc.eval_size)
    return rates


def _clock(dev):
    """The clock a calibration times with: on the CPU this process's CPU time (one busy thread,
    :func:`one_thread`: its wall time on a quiet machine, and what other jobs on the machine do
    not inflate, so that two calibrations agree), on CUDA the wall clock after a synchronize."""
    if dev.type != "cuda":
        return time.process_time()
    import torch
    torch.cuda.synchronize(dev)
    return time.perf_counter()


class _TrainTimer:
    """Times a setting's training program at the scale's batch: ``T(1 + m) - T(1)`` over ``m``
    steps, per run-iteration."""

    def __init__(self, st, sc, dev):
        self.st, self.sc, self.dev, self.ones, self.mores, self.cost = st, sc, dev, [], [], 0.0
        big = st.model.num_params > HESSIAN_TIMED_PARAMS
        # a large model (L=8, d=20: 0.3 s a step on one thread): one seed on a quarter of the batch,
        # scaled up (its step's cost is the prompts' forward and backward passes)
        self.seeds, self.batch = ([0], max(1, sc.batch_size // 4)) if big else ([0, 1], None)
        self.runs, self.steps = 2 * len(self.seeds), 1

    def _time(self, steps, batch=None):
        from .compute.engine import train
        from .compute.optim import OptimConfig
        st, sc = self.st, self.sc
        batch = batch or self.batch
        # the evaluation batch on few prompts: a program evaluates at its first and last step (fixed costs,
        # which the difference of two timings removes) and every eval_every steps (a small share of training)
        size = {"batch_size": batch or sc.batch_size, "eval_size": min(16, batch or sc.batch_size)}
        t0 = _clock(self.dev)
        train(st.model, st.prompts, [("sgdm", st.lrs["sgdm"]), ("adam", st.lrs["adam"])], self.seeds, steps=steps,
              **size, optim_config=OptimConfig(clip=st.clip), eval_every=sc.eval_every, checkpoint_every=None,
              record_smoothness=st.record_smoothness, smoothness_every=sc.smoothness_every, device=self.dev,
              dtype=st.dtype, progress=False)
        return _clock(self.dev) - t0

    def warm_up(self):
        big = self.st.model.num_params > HESSIAN_TIMED_PARAMS
        self._time(1, batch=min(16, self.sc.batch_size) if big else None)     # first-call costs

    def measure(self):
        one = self._time(1)
        if not self.ones:
            # the length of every timing of this model: m steps of about CALIBRATION_TARGET seconds, from
            # two steps' difference (one step alone is mostly the program's fixed costs: its evaluations)
            step = max((self._time(3) - one) / 2, 1e-5)
            self.steps = max(1, min(256, round(CALIBRATION_TARGET / step)))
        more = self._time(1 + self.steps)
        self.ones.append(one)
        self.mores.append(more)
        self.cost = one + more

    def rate(self):
        # the fastest of each timing: another job on the machine only ever slows one down
        step = (min(self.mores) - min(self.ones)) / self.steps
        if step <= 0:                               # timings too close to tell apart: an upper bound
            step = min(self.mores) / (1 + self.steps)
        return step / self.runs * (self.sc.batch_size / self.batch if self.batch else 1.0)


class _HessianTimer:
    """Times one exact float64 Hessian of one run on a power of two of prompts (at most
    ``eval_size``), scaled to ``eval_size`` prompts."""

    def __init__(self, st, sc, dev):
        from .compute.engine import initial_params
        self.st, self.sc, self.dev, self.samples, self.cost = st, sc, dev, [], 0.0
        self.params = {k: v[:1].to(dev) for k, v in initial_params(st.model, [0]).items()}
        Z, y = E.eval_chunks(st, sc, 0, 1)
        self.Z, self.y = Z.to(dev), y.to(dev)
        self.prompts = min(8, sc.eval_size)

    def _time(self, prompts):
        from .compute import measure
        t0 = _clock(self.dev)
        measure.hessian(self.st.model, self.params, self.Z[:, :prompts], self.y[:, :prompts])
        return _clock(self.dev) - t0

    def warm_up(self):
        self._time(self.prompts)                              # first-call costs
        per_prompt = self._time(self.prompts) / self.prompts  # an upper bound: fixed costs included
        n = 2 ** round(math.log2(max(1.0, 2 * CALIBRATION_TARGET / max(per_prompt, 1e-9))))
        self.prompts = int(min(self.sc.eval_size, max(16, n)))

    def measure(self):
        self.cost = self._time(self.prompts)
        self.samples.append(self.cost * self.sc.eval_size / self.prompts)

    def rate(self):
        return min(self.samples)                     # the fastest: another job only ever slows one down


def calibration_path() -> Path:
    """The calibration cache: ``$XDG_CACHE_HOME/lintf/calibration.json``, by default
    ``~/.cache/lintf/calibration.json`` (:data:`CALIBRATION_FILE`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "lintf" / CALIBRATION_FILE


def calibration_key(scale, device="cpu") -> str:
    """What a calibration holds for: host, device (its name on CUDA), torch version, the lintf
    compute source (:func:`lintf.compute.store.compute_hash`) and the scale, as one string."""
    import socket

    import torch

    from .compute.engine import resolve_device
    from .compute.store import compute_hash
    dev = resolve_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    return json.dumps({"host": socket.gethostname(), "device": f"{dev.type}:{name}", "torch": torch.__version__,
                       "compute_hash": compute_hash()[:16], "scale": _scale(scale).name}, sort_keys=True)


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) and isinstance(data.get("entries"), dict) else {"entries": {}}
    except (OSError, ValueError):                  # no cache yet, or a damaged one: measured again
        return {"entries": {}}


def cached_rates(scale, device="cpu") -> dict:
    """The rates the calibration cache holds for ``scale`` on ``device`` here (empty if none);
    never measures."""
    entry = _read_cache(calibration_path())["entries"].get(calibration_key(scale, device), {})
    try:
        return {(m, u): float(s) for m, u, s in entry.get("rates", [])}
    except (TypeError, ValueError):
        return {}


def calibration(experiments, scale, *, device="cpu", recalibrate: bool = False,
                budget: float = CALIBRATION_BUDGET) -> tuple[dict, float | None]:
    """:func:`calibrate`'s rates for ``experiments``, measured once per machine: read from the
    cache (:func:`calibration_path`, keyed by :func:`calibration_key`) when it holds them, else
    measured (the missing ones only; every one with ``recalibrate``) and written back. Returns
    ``(rates, seconds measured)``, seconds None when everything came from the cache. A cache
    that cannot be written is left alone (the rates are still returned)."""
    path, key = calibration_path(), calibration_key(scale, device)
    known = {} if recalibrate else cached_rates(scale, device)
    missing = [k for k in _needs(experiments) if k not in known]
    if not missing:
        return known, None
    t0 = time.perf_counter()
    rates = calibrate(experiments, scale, device=device, budget=budget, known=known)
    seconds = time.perf_counter() - t0
    data = _read_cache(path)
    data["entries"][key] = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                            "rates": [[m, u, s] for (m, u), s in sorted(rates.items())]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)                         # atomic: a concurrent plan reads the old or the new
    except OSError:
        pass
    return rates, seconds


def estimate(exp: Experiment, rates: dict) -> float:
    """Estimated seconds of ``exp`` from :func:`calibrate`'s ``rates``."""
    if exp.iterations == 0:
        return 0.0
    return exp.iterations * rates.get((_model_key(get_setting(exp.setting)), exp.unit), 0.0)


def counted_in(exp: Experiment, scale=None) -> str:
    """Why an experiment of no ``iterations`` computes nothing of its own, in a few words: its
    runs are another experiment's (``"counted in stable/depth2"``: the stable search's runs at
    the chosen rates; ``table_training`` whose seeds all ran to the table's horizon already), or
    its model is above the scale's ``hessian_max_params`` (no Hessians at this scale). Empty for
    an experiment that computes something."""
    if exp.iterations:
        return ""
    if exp.unit == "hessian":
        sc, st = _scale(scale), get_setting(exp.setting)
        if not sc.has_hessians(st):
            return (f"no Hessians at scale {sc.name}: {st.model.num_params} parameters > "
                    f"hessian_max_params {sc.hessian_max_params}")
        return "no Hessians at this scale"
    return f"counted in {exp.after[0]}" if exp.after else "nothing to compute"


def duration(seconds) -> str:
    """Seconds as a reader takes them in: ``"2 h 05 min"``, ``"4 min 12 s"``, ``"38 s"``,
    ``"4.2 s"``; ``"-"`` for None."""
    if seconds is None:
        return "-"
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    minutes = int(round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min"


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


def warm_worker() -> None:
    """Nothing: run on every Dask worker as it starts (``client.run``), it makes the worker import
    this module, torch and lintf's compute side, so that the start-up is over before the first
    task (and measured as such)."""


def run_task(exp: Experiment, scale, device: str, root: str, *after) -> list[str]:
    """One task of ``python -m lintf compute``: ``exp`` computed (or read) at ``scale`` (the
    :class:`lintf.compute.settings.Scale` itself, or its name) into the store at ``root``, on one torch thread (the same numbers in-process and
    on any Dask worker); returns the keys of the store entries it wrote or read, never tensors.
    ``after``: the results of the tasks it waits for (unused)."""
    from .compute.store import ResultStore
    with one_thread(device), E.touched() as seen:
        call(exp, scale, device=device, store=ResultStore(root), progress=False)
    return [key for _, key in seen.entries]


class _Progress:
    """Lines for a log, one per finished experiment: how many of how many, its name and seconds,
    the time since the start and an estimate of the time left. The estimate weighs each
    experiment by the calibration of ``python -m lintf plan`` when one is cached for this scale
    and device (:func:`cached_rates`), else by its rough cost (:data:`UNIT_WEIGHT`), and
    extrapolates the time so far over the weight still to compute."""

    def __init__(self, todo, sc, device, report):
        self.report, self.start, self.n, self.done = report, time.perf_counter(), len(todo), 0
        try:
            from .compute.engine import resolve_device
            rates = cached_rates(sc, resolve_device(device))
        except (ValueError, OSError, RuntimeError):     # no device to read a cache for: rough weights
            rates = {}
        exact = rates and all(e.iterations == 0 or (_model_key(get_setting(e.setting)), e.unit) in rates
                              for e in todo)
        self.weight = {e.name: max(estimate(e, rates) if exact else _rough_cost(e), 1e-9) for e in todo}
        self.left = sum(self.weight.values())
        self.total = self.left

    def finished(self, exp, seconds=None, failed=False):
        self.done += 1
        self.left -= self.weight.get(exp.name, 0.0)
        elapsed = time.perf_counter() - self.start
        share = 1.0 - self.left / self.total if self.total else 1.0
        eta = elapsed * (1.0 - share) / share if share > 0 else None
        took = "failed" if failed else (duration(seconds) if seconds is not None else "finished")
        left = "" if self.done == self.n or eta is None else f", about {duration(eta)} left"
        self.report(f"lintf compute: {self.done}/{self.n} {exp.name} ({took}); {duration(elapsed)} so far{left}")


def compute(scale=None, *, only=None, experiments=None, device="auto", store=None, client=None, retries: int = 2,
            progress=None, report=None) -> dict:
    """Compute the experiments of :func:`plan` that the store lacks: in this process one after
    another (``client`` None), else as tasks of the Dask ``client`` (one per experiment, with
    its ``after`` as dependencies, ``retries`` each: a task whose worker died runs again).
    ``experiments``: a list of :class:`Experiment` in plan order instead of ``plan(scale, only)``.

    One progress bar over the plan's ``iterations`` (with an estimate of the time left).
    ``report``: None, or a function given one line of text when the computation starts and
    whenever an experiment finishes (:class:`_Progress`: elapsed time, time left), for a log
    where a bar would not show (the book build's). Returns ``{"computed": n, "reused": n, "failed": [(name, one-line error)], "seconds": wall,
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
    lines = None
    if report is not None:
        lines = _Progress(todo, sc, device, report)
        where = "in this process" if client is None else f"on {len(client.nthreads())} Dask workers"
        report(f"lintf compute: {len(todo)} of {len(exps)} experiments to compute at scale {sc.name} {where} "
               f"({reused} stored)")
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
                run_task(exp, sc, device, root)
                times[exp.name] = time.perf_counter() - start
                computed += 1
            except Exception as err:                                    # reported, the others go on
                broken.add(exp.name)
                failed.append((exp.name, " ".join(f"{type(err).__name__}: {err}".split())))
            pbar.update(exp.iterations)
            if lines is not None:
                lines.finished(exp, times.get(exp.name), failed=exp.name in broken)
    else:
        from dask.distributed import as_completed, get_task_stream
        futures, names = {}, {}
        with get_task_stream(client) as stream:          # each task's compute time, from the scheduler
            first = priorities(todo)
            for exp in todo:
                deps = [futures[a] for a in exp.after if a in futures]
                fut = client.submit(run_task, exp, sc, device, root, *deps, key=f"lintf-{exp.name}",
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
                if lines is not None:
                    lines.finished(exp, failed=fut.status != "finished")
        for task in stream.data:
            exp = names.get(task.get("key"))
            spans = [s["stop"] - s["start"] for s in task.get("startstops", ()) if s.get("action") == "compute"]
            if exp is not None and spans:
                times[exp.name] = times.get(exp.name, 0.0) + sum(spans)
    pbar.close()
    return {"computed": computed, "reused": reused, "failed": failed, "seconds": time.perf_counter() - t0,
            "times": times}
