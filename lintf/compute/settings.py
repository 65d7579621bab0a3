"""The paper's named settings and the book's three scales, as plain data.

A :class:`Setting` is *what* is trained (model, prompts, learning rates, clipping); a
:class:`Scale` is *how much* (iterations, seeds, batch sizes, measurement sizes). Chapters
pick both by name: ``get_setting("setting1")``, ``get_scale("cpu")``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .checks import check_choice, check_int, check_seeds
from .data import Prompts
from .model import Model

# The paper's robust condition-number ratios R_med(SGDM)/R_med(Adam): mean, std over 6 seeds.
PAPER_CONDITION_RATIOS = {
    "setting1": {750: (1.76, 0.40), 1250: (1.58, 0.41)},
    "setting2": {750: (3.14, 0.97), 1250: (5.98, 2.86)},
    "setting3": {750: (9.57, 13.3), 1250: (6.53, 3.55)},
}

GRID_FACTORS = tuple(2.0 ** k for k in range(-5, 5))
"""The 10-point learning-rate grid is the default rate times these factors (1/32 .. 8), so
that both published rates of every setting lie on it."""


ROLES = ("core", "covariates", "depth", "variant", "figure", "extra")
"""What the book does with a setting (:attr:`Setting.role`)."""
HORIZONS = ("steps", "extra_steps", "depth_steps", "variant_steps", "large_steps")
"""The :class:`Scale` fields a setting's iterations come from (:attr:`Setting.horizon`)."""
PRECISIONS = ("float32", "float64")
"""The arithmetic a setting trains in (:attr:`Setting.precision`)."""
GROUPS = ("base", "smooth", "tails", "depths", "noise", "attention", "ablation", "table2")
"""The groups of settings the claims and chapters compare (:attr:`Setting.groups`): ``base``,
the paper's Settings 1-3; ``smooth``, where claims 4 and 5 measure directional smoothness;
``tails``, the covariates of Sec. 4.1 (keyed ``sphere``, ``gaussian``, ``gamma``); ``depths``,
Sec. 4.2 (keyed by the number of layers); ``noise``, whose gradient noise claim 2 compares;
``attention``, Fig 7 (``linear``, ``softmax``); ``ablation``, where the ablation runs;
``table2``, the settings of the paper's Table 2 of learning rates."""
VARIANT_ROLES = ("variant", "figure")
"""Roles of the model variants the paper gives no learning rates for: their grid has
``Scale.variant_grid_points`` points and ``Scale.variant_sweep_steps`` iterations."""


@dataclass(frozen=True)
class Setting:
    """One experimental setting of the paper.

    lrs : the default learning rate per optimizer (the intro chapter: the authors' README
        values where they differ from Table 2). ``paper_lrs``: the paper's Table 2.
    clip : global gradient-norm clipping threshold the book uses; ``paper_clip``: the
        paper's text's (1), which the authors' code replaces for the spherical setting.
    record_smoothness : record the directional smoothness at every step (Figs 5, 15, 16).
    note : what differs from the paper's text, shown on the page.
    role : what the book does with it (:data:`ROLES`): ``"core"`` (Settings 1-3, the scale's
        full horizon and Hessians), ``"covariates"``, ``"depth"``, ``"variant"`` (a model variant
        with its own small grid), ``"figure"`` (a variant shown in figures only, no claim:
        ``Scale.variant_seeds``), ``"extra"`` (a setting of its own chapter).
    horizon : the :class:`Scale` field that gives its iterations (:data:`HORIZONS`; see
        :meth:`Scale.steps_for`).
    precision : the arithmetic every training program of the setting runs in
        (:data:`PRECISIONS`; :attr:`dtype`), part of the results' key. float64 for the depths:
        in float32 a deep model's rare huge minibatch losses overflow (the depth chapter).
    skip_nonfinite : 0: a run whose minibatch loss or gradient is non-finite has diverged.
        ``k > 0``: such a step is skipped and counted, and the run has diverged only after more
        than ``k`` non-finite steps in a row (:func:`lintf.compute.engine.train`). 10 for the depths:
        at L=8 a rare minibatch overflows even float64 (one step in a run, the depth chapter),
        while a run that truly diverges is non-finite at every step from then on.
    """

    name: str
    title: str
    model: Model
    prompts: Prompts
    lrs: dict
    paper_lrs: dict
    clip: float = 1.0
    paper_clip: float = 1.0
    record_smoothness: bool = False
    note: str = ""
    role: str = "core"
    horizon: str = "steps"
    precision: str = "float32"
    skip_nonfinite: int = 0
    groups: tuple = ()

    def __post_init__(self):
        check_choice("role", self.role, ROLES)
        for g, _ in self.groups:
            check_choice("groups", g, GROUPS)
        check_int("skip_nonfinite", self.skip_nonfinite, minimum=0)
        check_choice("horizon", self.horizon, HORIZONS)
        check_choice("precision", self.precision, PRECISIONS)

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype of :attr:`precision`."""
        return getattr(torch, self.precision)

    def grid(self, optimizer: str, points: int = 10) -> tuple[float, ...]:
        """The learning-rate grid of ``optimizer``: the default times :data:`GRID_FACTORS`,
        thinned to ``points`` values that keep the default."""
        check_choice("optimizer", optimizer, tuple(self.lrs))
        points = check_int("points", points)
        factors = GRID_FACTORS
        if points < len(factors):
            step = len(factors) / points
            factors = sorted({factors[int(i * step)] for i in range(points)} | {1.0})
        return tuple(self.lrs[optimizer] * f for f in factors)


PARAMETRIZATION = "block"
"""The parametrization of every setting but ``separate_qk``: the authors' code's, on which the
paper's figures were made and its learning rates (Table 2) chosen. With the full
parametrization of the paper's text, those rates diverge (non-finite loss, float32, measured
on this project's CPU at B=1000): at L=4 in 4 of 6 runs and at L=6, 8 in every run, on
spherical covariates for SGDM at rate 5, and for the large model; in the block
parametrization they train. ``Model(parametrization="full")`` remains available."""


def _setting(name, title, *, L=3, d=5, n=20, covariates="gaussian", lrs, paper_lrs=None, options=None,
             model_kw=None, **kw):
    model = Model(L=L, d=d, **{"parametrization": PARAMETRIZATION, **(model_kw or {})})
    return Setting(name=name, title=title, model=model, prompts=Prompts(n, d, covariates, options or {}),
                   lrs=lrs, paper_lrs=paper_lrs or dict(lrs), **kw)


def _in(*groups, **keyed) -> tuple:
    """:attr:`Setting.groups`: the plain ``groups`` keyed by the setting's name, ``keyed`` by their key."""
    return tuple((g, None) for g in groups) + tuple(keyed.items())


SETTINGS: dict[str, Setting] = {s.name: s for s in [
    _setting("setting1", "Setting 1: gaussian, n=20", lrs={"sgdm": 0.02, "adam": 0.02},
             paper_lrs={"sgdm": 0.02, "adam": 0.005}, record_smoothness=True,
             groups=_in("base", "smooth", "noise", "table2", "ablation", tails="gaussian", attention="linear"),
             note="Adam lr 0.02 (authors' README and notebook) instead of Table 2's 0.005."),
    _setting("setting2", "Setting 2: gaussian, n=5", n=5, lrs={"sgdm": 0.01, "adam": 0.005},
             paper_lrs={"sgdm": 0.01, "adam": 0.02}, record_smoothness=True,
             groups=_in("base", "smooth", "noise", "table2"),
             note="Adam lr 0.005 (authors' README) instead of Table 2's 0.02, at which losses spike."),
    _setting("setting3", "Setting 3: gamma, n=20", covariates="gamma", lrs={"sgdm": 0.02, "adam": 0.02},
             record_smoothness=True, groups=_in("base", "smooth", "noise", "table2", "ablation")),
    _setting("sphere", "Spherical covariates, n=20", covariates="sphere", lrs={"sgdm": 5.0, "adam": 0.1},
             clip=0.1, role="covariates", horizon="extra_steps", groups=_in("noise", "table2", tails="sphere"), note="Gradient clipping at 0.1 (the authors' code) instead of the paper's 1, at which "
                            "SGDM with the paper's rate 5 diverges within 20 steps."),
    _setting("gamma", "Heavy-tailed (gamma) covariates, n=20", covariates="gamma",
             lrs={"sgdm": 0.02, "adam": 0.02}, record_smoothness=True,   # = Setting 3: shares its runs
             groups=_in("noise", "table2", tails="gamma")),
    *[_setting(f"depth{L}", f"Setting 1 with L={L} layers", L=L, lrs={"sgdm": s, "adam": a}, role="depth",
               horizon="depth_steps", precision="float64", skip_nonfinite=10, groups=_in("noise", "table2", depths=L))
      for L, s, a in [(2, 0.1, 0.1), (4, 0.05, 0.05), (6, 0.05, 0.05), (8, 0.05, 0.02)]],
    _setting("softmax", "Setting 1 with softmax attention", lrs={"sgdm": 0.02, "adam": 0.02},
             model_kw={"attention": "softmax"}, role="variant", horizon="variant_steps", groups=_in(attention="softmax"),
             note="The paper gives no rates for this model: Setting 1's defaults."),
    _setting("separate_qk", "Setting 1 with separate W_K, W_Q", lrs={"sgdm": 0.02, "adam": 0.02},
             model_kw={"qk": "separate", "parametrization": "full"}, role="figure", horizon="variant_steps",
             note="The paper gives no rates for this model: Setting 1's defaults. Separate W_K, W_Q "
                  "are full (d+1)x(d+1) matrices (the standard parametrization of the paper's Fig 8)."),
    _setting("large", "L=8, d=20, n=60, gaussian", L=8, d=20, n=60, lrs={"sgdm": 0.05, "adam": 0.005},
             role="figure", horizon="large_steps", skip_nonfinite=10,
             note="The paper gives no rates for this model: SGDM at the L=8 rate 0.05; Adam at 0.005, "
                  "since the L=8 rate 0.02 diverges within 150 steps here. Like the depths, a step "
                  "whose minibatch loss overflows is skipped and counted (float32: float64 would "
                  "double the cost of the book's slowest model)."),
    _setting("nonlinear", "Nonlinear (ReLU MLP) regression, n=20", covariates="mlp",
             lrs={"sgdm": 0.05, "adam": 0.01}, model_kw={"frontend": "mlp"}, record_smoothness=True, role="extra",
             groups=_in("table2"),
             horizon="variant_steps"),
]}


def get_setting(name) -> Setting:
    """The named setting; ``ValueError`` listing the known names otherwise."""
    return SETTINGS[check_choice("setting", name, SETTINGS)]


EVAL_PROTOCOLS = ("fixed", "authors", "batches", "large")
"""Evaluation batches of ``R_med`` (:func:`lintf.compute.experiments.conditioning`): ``fixed``, the book's
own evaluation batch (the loss curves' one); ``authors``, the authors' batch of 1000 prompts
drawn after seeding with 99 (:func:`lintf.compute.data.authors_prompts`), shared by every seed, the
paper's protocol; ``batches``, independent batches of ``eval_size`` prompts for each seed;
``large``, one batch of ``eval_large`` prompts for each seed."""

def group(name: str) -> dict:
    """The settings of group ``name`` (:data:`GROUPS`) as ``{key: setting name}``, in
    :data:`SETTINGS` order, the key being the setting's key in the group (its name where it
    has none): ``group("depths") == {2: "depth2", 4: "depth4", 6: "depth6", 8: "depth8"}``."""
    check_choice("group", name, GROUPS)
    return {(s.name if key is None else key): s.name for s in SETTINGS.values() for g, key in s.groups if g == name}


def members(name: str) -> tuple:
    """The names of the settings of group ``name`` (:func:`group`), in :data:`SETTINGS` order."""
    return tuple(group(name).values())


def with_role(*roles) -> tuple:
    """The names of the settings whose :attr:`Setting.role` is among ``roles``, in
    :data:`SETTINGS` order."""
    for r in roles:
        check_choice("roles", r, ROLES)
    return tuple(n for n, s in SETTINGS.items() if s.role in roles)


VARIANT_STEPS = tuple(n for n, s in SETTINGS.items() if s.horizon == "variant_steps")
"""Settings trained ``Scale.variant_steps`` iterations (the slow autograd variants)."""
FIGURE_ONLY = with_role("figure")
"""Settings shown in figures that no claim is decided on (Fig 8): ``Scale.variant_seeds``."""

CORE = with_role("core")
"""Settings at a scale's full horizon (``gamma`` is Setting 3 under its Sec. 4.1 name)."""

FIGURE_EXTRAS = {
    "precision_pair": "the depth chapter's float32 against float64 figure (the deepest models' runs trained twice)",
    "depth_checkpoints": "Fig 14's exact Hessians at the scale's checkpoints (without it: at the condition-number "
                         "table's iterations, whose Hessians claim 3 computes anyway)",
}
"""Figures no claim is decided on whose experiments a scale may leave to ``paper``
(:attr:`Scale.figure_extras`), with what each computes; the page says so where one is left out."""


@dataclass(frozen=True)
class Scale:
    """How much to compute.

    steps : training iterations ``T`` of the core settings (:data:`CORE`); ``depth_steps``,
        ``extra_steps`` (sphere, softmax, separate Q/K, nonlinear) and ``large_steps`` for the
        others (None: ``steps``).
    seeds, batch_size : seeds and prompts per step ``B``.
    eval_every : cadence of the fixed evaluation batch's loss (the authors': 50).
    smoothness_every : directional smoothness at every this many steps (the paper: 1).
    checkpoint_every : parameters kept every this many steps.
    hessian_steps : checkpoints where the exact Hessian is computed for the core settings
        (None: every checkpoint); ``extra_hessian_steps`` for the others.
    hessian_max_params : models with more trained parameters skip ``R_med`` at this scale
        (a ``p x p`` float64 Hessian costs ``p`` Hessian-vector products); None: no limit.
    table_steps : the iterations of the condition-number table (the paper's 750, 1250).
    sweep_steps, sweep_seeds, grid_points : the learning-rate grid search. ``sweep_seeds`` are
        disjoint from every seed a claim is tested on (``seeds``, ``table_seeds``, ``noise_seeds``,
        ``comparison_seeds``, ``variant_seeds``): a rate chosen from data is chosen on other
        initialisations and data streams than the ones it is then tested on.
    comparison_seeds : the seeds of the covariate and depth settings (role ``"covariates"``,
        ``"depth"``; None: ``seeds``): claim 3 compares them with Settings 1-3 in 9 parts (12 at
        ``paper``), which needs 8 seeds to be able to come out "does not hold" (``2^-8 <= 5% / 12``).
    noise_batches, noise_batch_size, noise_big_batch : gradient noise at initialisation
        (``noise_batches`` minibatch gradients of ``noise_batch_size`` vs one of ``noise_big_batch``),
        measured at each of ``noise_seeds`` (initialisations: the units claim 2 is decided on).
    table_seeds, table_horizon : the condition-number table's own experiment: SGDM and Adam
        from every one of ``table_seeds``, trained ``table_horizon`` iterations, Hessians at
        ``table_steps`` (the seeds are cheap at this horizon, the last table iteration; the long
        loss runs keep ``seeds``).
    eval_size, eval_batches, eval_large, eval_protocol : the evaluation protocols of ``R_med``
        (:data:`EVAL_PROTOCOLS`): batches of ``eval_size`` prompts (the authors' 1000), ``eval_batches``
        independent ones per seed, one batch of ``eval_large`` per seed; ``eval_protocol`` is the
        one claim 3 is decided on.
    curve_sizes, curve_chunks : the batch-size figure: ``R_med`` of a few fixed checkpoints on
        batches of each size, built from ``curve_chunks`` disjoint batches of ``eval_size``.
    variant_grid_points, variant_sweep_steps : points and iterations (None: ``sweep_steps``)
        of the learning-rate grid of the model variants (softmax, separate Q/K, the large
        model), whose rates the paper does not give.
    variant_steps : iterations of softmax, separate Q/K and the nonlinear setting (None:
        ``extra_steps``); variant_seeds : the seeds of separate Q/K and the large model, which
        no claim is decided on (None: ``seeds``).
    figure_lrs : the rates of the figure-only variants (:data:`FIGURE_ONLY`): ``"grid"`` (the
        best of their own grid) or ``"default"`` (the setting's, no grid search).
    skip_variants : model variants the adaptive-vs-SGD chapter leaves out at this scale (too
        slow for it; no claim is decided on them).
    figure_extras : the figure-only experiments of :data:`FIGURE_EXTRAS` this scale computes
        (the others are left to ``paper``, and their pages say so).
    ablation_steps, ablation_sweep_steps, ablation_factors : the ablation chapter: every
        optimizer's grid is its base rate times ``ablation_factors``, searched over
        ``ablation_sweep_steps`` iterations on ``sweep_seeds``; the runs at the chosen rates
        last ``ablation_steps`` (:func:`lintf.compute.experiments.ablation`).
    depth_grid : factors of the paper's depth rates tried, from the largest down, by
        :func:`lintf.compute.experiments.stable_search`: the depth runs use the largest rate at which
        none of the search seeds ``sweep_seeds`` diverges within the depth horizon.
    """

    name: str
    steps: int
    seeds: tuple
    batch_size: int = 1000
    eval_every: int = 50
    smoothness_every: int = 1
    checkpoint_every: int = 250
    hessian_steps: tuple | None = None
    extra_hessian_steps: tuple | None = None
    hessian_max_params: int | None = None
    table_steps: tuple = (750, 1250)
    sweep_steps: int = 10000
    sweep_seeds: tuple = (1000, 1001, 1002, 1003, 1004, 1005)
    grid_points: int = 10
    noise_batches: int = 10000
    noise_batch_size: int = 1000
    noise_big_batch: int = 100000
    depth_steps: int | None = None
    extra_steps: int | None = None
    large_steps: int | None = None
    table_seeds: tuple = tuple(range(20))
    table_horizon: int = 1250
    eval_size: int = 1000
    eval_batches: int = 3
    eval_large: int = 5000
    eval_protocol: str = "large"
    curve_sizes: tuple = (1000, 2000, 5000, 10000, 20000)
    curve_chunks: int = 40
    noise_seeds: tuple = (0, 1, 2, 3, 4, 5)
    variant_grid_points: int = 4
    depth_grid: tuple = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
    variant_steps: int | None = None
    variant_seeds: tuple | None = None
    comparison_seeds: tuple | None = None
    variant_sweep_steps: int | None = None
    figure_lrs: str = "grid"
    skip_variants: tuple = ()
    figure_extras: tuple = tuple(FIGURE_EXTRAS)
    ablation_steps: int = 10000
    ablation_sweep_steps: int = 1000
    ablation_factors: tuple = (1 / 4, 1 / 2, 1.0, 2.0, 4.0)

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_every", "smoothness_every", "checkpoint_every", "sweep_steps",
                     "grid_points", "noise_batches", "noise_batch_size", "noise_big_batch"):
            check_int(name, getattr(self, name))
        check_seeds("seeds", self.seeds)
        check_seeds("sweep_seeds", self.sweep_seeds)
        for name in ("hessian_steps", "extra_hessian_steps"):
            steps = getattr(self, name)
            if steps is not None and any(s % self.checkpoint_every for s in steps):
                raise ValueError(f"{name} must be multiples of checkpoint_every={self.checkpoint_every}, got {steps}")
        if self.hessian_steps is not None and not set(self.table_steps) <= set(self.hessian_steps):
            raise ValueError(f"table_steps {self.table_steps} must be among hessian_steps {self.hessian_steps}")
        for name in ("table_horizon", "eval_size", "eval_batches", "eval_large", "curve_chunks",
                     "variant_grid_points", "ablation_steps", "ablation_sweep_steps"):
            check_int(name, getattr(self, name))
        check_seeds("table_seeds", self.table_seeds)
        check_seeds("noise_seeds", self.noise_seeds)
        tested = {"seeds": self.seeds, "table_seeds": self.table_seeds, "noise_seeds": self.noise_seeds}
        for name in ("comparison_seeds", "variant_seeds"):
            if getattr(self, name) is not None:
                tested[name] = check_seeds(name, getattr(self, name))
        shared = {name: sorted(set(self.sweep_seeds) & set(seeds)) for name, seeds in tested.items()}
        shared = {name: both for name, both in shared.items() if both}
        if shared:
            raise ValueError(f"sweep_seeds {tuple(self.sweep_seeds)} must be disjoint from the seeds claims are "
                             f"tested on; shared: " + "; ".join(f"{k} {v}" for k, v in shared.items()))
        check_choice("eval_protocol", self.eval_protocol, EVAL_PROTOCOLS)
        for extra in self.figure_extras:
            check_choice("figure_extras", extra, FIGURE_EXTRAS)
        check_choice("figure_lrs", self.figure_lrs, ("grid", "default"))
        if max(self.table_steps) > self.table_horizon or any(s % self.checkpoint_every for s in self.table_steps):
            raise ValueError(f"table_steps {self.table_steps} must be checkpoints (multiples of "
                             f"{self.checkpoint_every}) within table_horizon={self.table_horizon}")
        if self.eval_large % self.eval_size or any(c % self.eval_size for c in self.curve_sizes):
            raise ValueError(f"eval_large={self.eval_large} and curve_sizes {self.curve_sizes} must be multiples "
                             f"of eval_size={self.eval_size}")
        if self.eval_batches * self.eval_size > self.eval_large:
            raise ValueError(f"eval_batches x eval_size ({self.eval_batches} x {self.eval_size}) must not exceed "
                             f"eval_large={self.eval_large}: the batches are the first chunks of the large batch")

    def steps_for(self, setting: Setting) -> int:
        """Iterations for ``setting`` (see the class docstring)."""
        chain = {"steps": (), "depth_steps": ("depth_steps",), "large_steps": ("large_steps",),
                 "extra_steps": ("extra_steps",), "variant_steps": ("variant_steps", "extra_steps")}[setting.horizon]
        return next((getattr(self, f) for f in chain if getattr(self, f)), self.steps)

    def seeds_for(self, setting: Setting) -> tuple:
        """Seeds of ``setting``'s runs: ``variant_seeds`` for :data:`FIGURE_ONLY`,
        ``comparison_seeds`` for the covariate and depth settings, else ``seeds``."""
        if setting.role == "figure" and self.variant_seeds:
            return self.variant_seeds
        if setting.role in ("covariates", "depth") and self.comparison_seeds:
            return self.comparison_seeds
        return self.seeds

    def has_hessians(self, setting: Setting) -> bool:
        """Whether this scale computes exact Hessians of ``setting``'s model: not when it has
        more than ``hessian_max_params`` trained parameters (the one home of that rule)."""
        return self.hessian_max_params is None or setting.model.num_params <= self.hessian_max_params

    def computes(self, extra: str) -> bool:
        """Whether this scale computes the figure-only experiment ``extra`` (:data:`FIGURE_EXTRAS`)."""
        return check_choice("extra", extra, FIGURE_EXTRAS) in self.figure_extras

    def sweep_for(self, setting: Setting, points: int | None = None, steps: int | None = None) -> tuple[int, int]:
        """The learning-rate grid of ``setting`` at this scale, ``(points, steps)``: ``grid_points``
        and ``sweep_steps``, or ``variant_grid_points`` and ``variant_sweep_steps`` for the model
        variants (:data:`VARIANT_ROLES`), never longer than the setting's horizon; ``points``,
        ``steps`` override (the one home of the grid's defaults)."""
        variant = setting.role in VARIANT_ROLES
        if points is None:
            points = self.variant_grid_points if variant else self.grid_points
        if steps is None:
            steps = self.variant_sweep_steps if variant and self.variant_sweep_steps else self.sweep_steps
            steps = min(steps, self.steps_for(setting))
        return check_int("points", points), check_int("steps", steps)

    def table_shared_seeds(self, setting: Setting) -> list:
        """The seeds of the condition-number table (``table_seeds``) that the long loss runs of
        ``setting`` also train to at least ``table_horizon`` iterations: the table cuts those runs
        instead of training them again."""
        if self.steps_for(setting) < self.table_horizon:
            return []
        long = self.seeds_for(setting)
        return [s for s in self.table_seeds if s in long]

    def hessian_steps_for(self, setting: Setting, checkpoints) -> list[int]:
        """The checkpoints of ``setting`` where the exact Hessian is computed (empty when the
        scale computes none of its model, :meth:`has_hessians`)."""
        if not self.has_hessians(setting):
            return []
        chosen = self.hessian_steps if setting.role == "core" else self.extra_hessian_steps
        return sorted(checkpoints if chosen is None else set(checkpoints) & set(chosen))


SCALES: dict[str, Scale] = {s.name: s for s in [
    Scale("paper", steps=10000, seeds=tuple(range(6)), table_seeds=tuple(range(50)), eval_batches=10,
          eval_large=20000, curve_sizes=(1000, 2000, 5000, 10000, 20000, 50000, 100000), curve_chunks=300,
          noise_seeds=tuple(range(8)), comparison_seeds=tuple(range(8))),
    # Aimed at a 25-minute build on 2 CPU cores from an empty store (measured: 31 minutes, README);
    # the figure-only extras and the large model are left to ``paper``.
    Scale("cpu", steps=10000, seeds=tuple(range(6)), smoothness_every=20, hessian_steps=tuple(range(0, 1251, 250)),
          extra_hessian_steps=(0, 250, 750), hessian_max_params=400, sweep_steps=500,
          sweep_seeds=(1000, 1001), noise_batches=200, noise_big_batch=10000, depth_steps=1250, extra_steps=1250,
          large_steps=200, table_seeds=tuple(range(20)), eval_batches=2, eval_large=2000,
          curve_sizes=(1000, 2000, 5000, 10000, 20000), curve_chunks=40, noise_seeds=tuple(range(8)),
          comparison_seeds=tuple(range(8)), variant_grid_points=3, variant_steps=2000, variant_seeds=(0, 1, 2), variant_sweep_steps=100,
          depth_grid=(1 / 4, 1.0), figure_lrs="default", skip_variants=("large",), figure_extras=(),
          ablation_steps=300, ablation_sweep_steps=100, ablation_factors=(0.5, 1.0, 2.0)),
    Scale("ci", steps=60, seeds=(0, 1, 2, 3, 4, 5), batch_size=100, eval_every=10, checkpoint_every=20,
          hessian_steps=(0, 20, 40), extra_hessian_steps=(0, 20), hessian_max_params=300, table_steps=(20, 40),
          sweep_steps=20, sweep_seeds=(1000, 1001), grid_points=4, noise_batches=40, noise_batch_size=100,
          noise_big_batch=1000, table_seeds=tuple(range(6)), table_horizon=60, eval_size=100, eval_batches=2,
          eval_large=300, curve_sizes=(100, 200, 400), curve_chunks=8, noise_seeds=tuple(range(6)),
          variant_grid_points=3, depth_grid=(0.25, 1.0), ablation_steps=60, ablation_sweep_steps=20,
          ablation_factors=(0.5, 1.0, 2.0), figure_extras=("precision_pair",)),
]}


def get_scale(name) -> Scale:
    """The named scale (``"paper"``, ``"cpu"``, ``"ci"``); ``ValueError`` otherwise."""
    return SCALES[check_choice("scale", name, SCALES)]


def default_scale() -> str:
    """``$LINTF_SCALE`` if set, else ``"paper"`` when CUDA is available and ``"cpu"`` otherwise."""
    env = os.environ.get("LINTF_SCALE")
    if env:
        if env not in SCALES:
            raise ValueError(f"the environment variable LINTF_SCALE must be one of {', '.join(map(repr, SCALES))} "
                             f"(or unset: 'paper' with CUDA, else 'cpu'); got {env!r}")
        return env
    return "paper" if torch.cuda.is_available() else "cpu"
