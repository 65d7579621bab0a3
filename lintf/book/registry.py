"""One registry of the paper's claims: every claim declared once, in one object.

Each :class:`Claim` holds its statement, the chapter that decides it, a few words that name it
in sentences, the experiments it reads (``inputs``), the rule that decides it on them
(``rule``) and its parts stated in advance (``design``: their stable ids, labels and seeds, from
the scale alone). Everything else derives from :data:`REGISTRY`: the statements
(:data:`lintf.book.claims.CLAIMS`), the chapters (:data:`lintf.book.CLAIM_CHAPTER`),
:func:`lintf.book.inputs`, :func:`lintf.book.decide`, :func:`lintf.book.design`, the scorecard's
rows, the number of claims the prose states, and the glue keys of the parts
(``claim6_gap_widens``: :func:`lintf.book.chapter.glue_verdict` builds them from the part ids,
which the claim functions of :mod:`lintf.book.claims` give every part, tested or not). Adding a
claim touches this registry and its chapter.

The settings each claim compares, and the learning rates:

1. Settings 1-3 at their default rates (Fig 2).
2. Gradient noise at every ``scale.noise_seeds`` initialisation of Settings 1-3, the sphere and
   gamma covariates and the four depths.
3. ``R_med`` on the scale's verdict protocol (``scale.eval_protocol``): Settings 1-3 from the
   table's experiment (``scale.table_seeds``, :func:`lintf.compute.experiments.table_conditioning`);
   the covariate and depth parts from the runs of those chapters, at the table's iterations.
4. and 5. Directional smoothness of Settings 1-3 (Figs 5, 16).
6. The depths at the largest rate of the depth grid at which no seed diverged (``lrs="stable"``).
7. Sphere against gamma (and gaussian Setting 1) covariates at their default rates.
8. Linear (Setting 1) against softmax attention, each at the best rate of the same small grid.

A part's id never carries a number from the run's parameters (a list of depths, a horizon)
unless the claim fixes it: claim 2's depths 6, 8 against 2, 4 are the paper's, and claim 3's
parts carry the table's iteration (``setting1_750``), since the table's iterations are its
parts.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import pandas as pd

from . import frames as B
from . import claims as C
from ..compute import experiments as E
from ..compute.checks import check_choice, check_int
from ..compute.settings import Scale, get_scale, get_setting


@dataclasses.dataclass(frozen=True)
class Part:
    """One part of a claim stated in advance: its stable ``id`` (the glue keys' suffix,
    :func:`lintf.book.claims.part_id`), a ``label`` in words and the ``seeds`` it is decided on at
    a scale (paired parts: the seeds both sides share)."""

    id: str
    label: str
    seeds: int


@dataclasses.dataclass(frozen=True)
class Alternative:
    """One declared way to measure a claim, fixed before any number is seen.

    id : stable, the glue keys' and the figure's name for it (``"shared_last"``).
    label : what it measures, in words.
    options : keyword arguments of the claim's rule (which quantity, which window, which
        aggregation); the same rule decides every alternative, on the same seeds.
    paper : whether it is the paper's protocol (what the paper and the authors' code measure):
        the claim's primary verdict. Exactly one alternative of a claim has it.
    needs : the history quantities it reads; an alternative whose quantity the runs did not
        record (a setting the authors' sampler does not draw, results of an older compute source)
        is "not measured", never decided on another quantity.
    inputs : ``inputs(ctx) -> dict`` when it reads other experiments than the claim's (another
        learning rate, another evaluation batch), None otherwise.
    reads : with ``inputs``, ``reads(scale) -> list`` of the experiments those inputs read at
        their defaults (as :attr:`Claim.reads`).
    """

    id: str
    label: str
    options: dict = dataclasses.field(default_factory=dict)
    paper: bool = False
    needs: tuple = ()
    inputs: Callable | None = dataclasses.field(default=None, repr=False)
    reads: Callable | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim of the paper, declared once.

    number : its number (1 ... 8). statement : the claim in the paper's words, as the book
        states it. short : a few words that name it in a sentence ("Adam's lower loss").
    chapter : the chapter (a notebook of ``book/``) that shows its figures and decides it first.
    inputs : ``inputs(ctx) -> dict`` of frames, the experiments it is decided on
        (:class:`lintf.book.Context`; read-only with ``ctx.cached_only``, a missing stored
        result raises ``LookupError``).
    rule : ``rule(data, ctx) -> lintf.book.claims.Verdict`` on the frames of ``inputs``.
    design : ``design(scale, steps) -> list[Part]``, its parts at a :class:`lintf.compute.settings.Scale`
        (``steps``: a chapter's horizon, None: the scale's), stated before any run.
    alternatives : its declared :class:`Alternative` measurements; the one with ``paper`` gives
        the primary verdict (``rule(data, ctx, **options)``).
    protocol : which measurement the primary is and why, where the paper's text and the
        authors' code disagree (one or two sentences, shown on its chapter).
    margin : the distance, in the deciding part's units, within which a bound near its
        threshold makes the primary verdict "fragile" (:func:`lintf.book.verdicts.robustness`).
    reads : ``reads(scale) -> list`` of ``(function, setting, kwargs)``: the experiments of
        :mod:`lintf.compute.experiments` (by their declared names) that ``inputs`` reads at a
        chapter's default parameters, which :func:`lintf.plan.plan` computes before a build
        (a test checks that ``inputs`` reads exactly those).
    """

    number: int
    statement: str
    short: str
    chapter: str
    inputs: Callable = dataclasses.field(repr=False)
    rule: Callable = dataclasses.field(repr=False)
    design: Callable = dataclasses.field(repr=False)
    alternatives: tuple = ()
    protocol: str = ""
    margin: float = 0.05
    reads: Callable | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        ids = [a.id for a in self.alternatives]
        if sum(a.paper for a in self.alternatives) != 1 or len(set(ids)) != len(ids):
            raise ValueError(f"claim {self.number}: exactly one alternative must be the paper's protocol and "
                             f"their ids distinct, got {ids}")
        if self.reads is None or any((a.inputs is None) != (a.reads is None) for a in self.alternatives):
            raise ValueError(f"claim {self.number}: it and every alternative with inputs of its own declare reads")

    @property
    def primary(self) -> Alternative:
        """The paper's protocol among :attr:`alternatives`."""
        return next(a for a in self.alternatives if a.paper)

    @property
    def key(self) -> str:
        """The glue prefix of its verdict: ``"claim6"``."""
        return f"claim{self.number}"

    def parts(self, scale, steps: int | None = None) -> tuple[Part, ...]:
        """Its parts at ``scale`` (a name or a :class:`lintf.compute.settings.Scale`)."""
        return tuple(self.design(get_scale(scale) if isinstance(scale, str) else scale, steps))

    def ids(self, scale, steps: int | None = None) -> tuple[str, ...]:
        """Its parts' ids at ``scale``."""
        return tuple(p.id for p in self.parts(scale, steps))

    def verdict(self, ctx, data: dict | None = None) -> C.Verdict:
        """The claim decided on its experiments under the paper's protocol:
        ``rule(inputs(ctx), ctx, **primary.options)`` (``data``: the frames of ``inputs``, read
        already)."""
        return self.decide(self.primary, ctx, data)

    def decide(self, alternative: Alternative, ctx, data: dict | None = None) -> C.Verdict | None:
        """The claim decided under ``alternative``: the same rule on its frames (``data`` are the
        claim's own inputs, reused when the alternative reads no other); None when the runs
        did not record a quantity it needs."""
        if alternative.inputs is not None:
            data = alternative.inputs(ctx)
        elif data is None:
            data = self.inputs(ctx)
        history = data.get("history") if isinstance(data, dict) else None
        if alternative.needs and (history is None
                                  or not set(alternative.needs) <= set(history["quantity"].unique())):
            return None
        return self.rule(data, ctx, **alternative.options)


def _seeds(sc: Scale, *names, table: bool = False) -> int:
    """How many seeds the settings ``names`` share at ``sc`` (``table``: also with the
    condition-number table's seeds)."""
    seeds = set(sc.table_seeds) if table else None
    for n in names:
        got = set(sc.seeds_for(get_setting(n)))
        seeds = got if seeds is None else seeds & got
    return len(seeds)


# -- 1, 4, 5: Settings 1-3 ----------------------------------------------------------------
def _per_setting(sc: Scale, steps=None) -> list[Part]:
    return [Part(C.part_id(s), s, _seeds(sc, s)) for s in B.BASE]


def _inputs_base(ctx) -> dict:
    return B.training(ctx, B.BASE)


def _reads_base(sc: Scale) -> list:
    return [("training", s, {}) for s in B.BASE]


def _inputs_smooth(ctx) -> dict:
    return B.training(ctx, B.SMOOTH)


def _reads_smooth(sc: Scale) -> list:
    return [("training", s, {}) for s in B.SMOOTH]


# -- 2: gradient noise ----------------------------------------------------------------------
def _design2(sc: Scale, steps=None) -> list[Part]:
    k = len(sc.noise_seeds)
    parts = [Part(C.part_id("heavy", s), f"heavy-tailed: {s}", k) for s in B.BASE]
    return parts + [Part(pid, name, k) for name, pid, *_ in C.claim2_pairs()]


def _inputs2(ctx) -> dict:
    return B.noise(ctx, B.NOISE)


def _reads2(sc: Scale) -> list:
    return [("noise_at_seeds", s, {}) for s in B.NOISE]


def _rule2(data, ctx, statistic="kurtosis") -> C.Verdict:
    return C.claim2(data["noise"], data["spectrum"], statistic=statistic)


# -- 3: condition numbers --------------------------------------------------------------------
def _design3(sc: Scale, steps=None) -> list[Part]:
    """Settings 1-3 at every table iteration; the covariate and depth parts at the table
    iterations their runs reach (:func:`lintf.book.compare_steps`)."""
    parts = [Part(C.part_id(s, t), f"{s}, step {t}", len(sc.table_seeds)) for t in sc.table_steps for s in B.BASE]
    for t in B.compare_steps(sc, steps):
        parts += [Part(C.part_id("gamma_over_sphere", t), f"gamma > sphere, step {t}",
                       _seeds(sc, "sphere", table=True)),
                  Part(C.part_id("gamma_over_gaussian", t), f"gamma > gaussian, step {t}", len(sc.table_seeds)),
                  Part(C.part_id("depth", t), f"grows with depth, step {t}", _seeds(sc, *B.DEPTHS, table=True))]
    return parts


def claim3_others() -> dict:
    """The settings claim 3 compares with Settings 1-3 (trained apart from them: sphere and the
    depths; gamma is Setting 3), each with its learning-rate choice (the depths: the stable rule)."""
    compared = (C.TAILS["sphere"], C.TAILS["gamma"], *C.DEPTHS.values())
    others = [s for s in compared if s not in B.BASE and get_setting(s).role != "core"]
    return {s: ("stable" if get_setting(s).role == "depth" else "default") for s in others}


def _reads3(sc: Scale, protocol: str | None = None) -> list:
    protocol = protocol or B.PAPER_EVAL_BATCH
    return ([("table_conditioning", s, {"eval_batch": protocol}) for s in B.BASE]
            + [("conditioning", s, {"eval_batch": protocol, "at": "table", "lrs": lrs})
               for s, lrs in claim3_others().items()])


def _inputs3(ctx, protocol: str | None = None) -> dict:
    """Claim 3's frames on the evaluation ``protocol`` (None: the context's, the paper's by default)."""
    sc, protocol = ctx.scale, protocol or ctx.protocol
    table = [E.table_conditioning(s, sc, eval_batch=protocol, **ctx.kw()).frames["conditioning"]
             for s in B.BASE]
    table_runs = [E.table_training(s, sc, **ctx.kw()).frames["runs"] for s in B.BASE]
    lrs = claim3_others()
    others = list(lrs)
    rest = [E.conditioning(s, sc, eval_batch=protocol, at="table", lrs=lrs[s], seeds=ctx.seeds,
                           steps=ctx.steps, **ctx.kw()).frames["conditioning"] for s in others]
    rest_runs = [E.training(s, sc, lrs=lrs[s], seeds=ctx.seeds, steps=ctx.steps, **ctx.kw())
                 .frames["runs"] for s in others]
    return {"conditioning": B.concat(table + rest), "runs": B.concat(table_runs + rest_runs), "protocol": protocol}


def _rule3(data, ctx, protocol=None, method="diag") -> C.Verdict:
    # gamma covariates are Setting 3 (the same runs, stored once); the covariate and depth
    # parts at the table's iterations their runs reach (design)
    scale = ctx.scale
    return C.claim3(data["conditioning"], settings=B.BASE, steps=scale.table_steps,
                    eval_batch=protocol or data.get("protocol", ctx.protocol), method=method,
                    tails={**C.TAILS, "gamma": "setting3"}, runs=data["runs"],
                    compare_steps=B.compare_steps(scale, ctx.steps))


# -- 6: depth ---------------------------------------------------------------------------------
def _design6(sc: Scale, steps=None) -> list[Part]:
    k = _seeds(sc, *B.DEPTHS)
    return [Part("gap_widens", "gap widens with depth", k), Part("sgdm_falls", "sgdm loss falls with depth", k),
            Part("adam_falls", "adam loss falls with depth", k)]


def _inputs6(ctx, lrs="paper") -> dict:
    return B.training(ctx, B.DEPTHS, lrs=lrs)


def _reads6(sc: Scale, lrs="paper") -> list:
    return [("training", s, {"lrs": lrs}) for s in B.DEPTHS]


# -- 7: light-tailed covariates ---------------------------------------------------------------
def _design7(sc: Scale, steps=None) -> list[Part]:
    k = _seeds(sc, "sphere", "gamma")
    return [Part("sgdm_faster", "sgdm lower loss on sphere", k), Part("adam_faster", "adam lower loss on sphere", k),
            Part("gap_kept", "gap not closed on sphere", k)]


_CLAIM7 = (C.TAILS["sphere"], C.TAILS["gamma"], C.TAILS["gaussian"])
"""The covariate settings claim 7 reads (its rule compares sphere with gamma)."""


def _inputs7(ctx) -> dict:
    return B.training(ctx, _CLAIM7)


def _reads7(sc: Scale) -> list:
    return [("training", s, {}) for s in _CLAIM7]


def _rule7(data, ctx, **options) -> C.Verdict:
    # against gamma only (the paper's Fig 9): 3 parts, which 6 seeds can refute (design)
    return C.claim7(data["history"], gaussian=None, runs=data["runs"], **options)


# -- 8: linear against softmax attention -----------------------------------------------------
def _design8(sc: Scale, steps=None) -> list[Part]:
    k = _seeds(sc, "setting1", "softmax")
    return [Part(f"{o}_linear_faster", f"{o}: softmax vs linear", k) for o in ("sgdm", "adam")]


def _inputs8(ctx) -> dict:
    # each attention at its own best rate, compared at the softmax horizon
    sc = ctx.scale
    horizon = ctx.steps or sc.steps_for(get_setting("softmax"))
    got = {s: E.training(s, sc, lrs=B.claim8_rates(ctx, s), seeds=ctx.seeds, steps=horizon, **ctx.kw())
           for s in C.ATTENTION.values()}
    return {"history": B.concat([g.frames["history"] for g in got.values()]),
            "runs": B.concat([g.frames["runs"] for g in got.values()])}


def _reads8(sc: Scale) -> list:
    grid = B.claim8_sweep(B.Context(sc))
    horizon = sc.steps_for(get_setting(C.ATTENTION["softmax"]))
    return [("training", s, {"lrs": "grid", "steps": horizon, "points": grid["points"], "sweep_steps": grid["steps"]})
            for s in C.ATTENTION.values()]


# -- the declared alternatives ----------------------------------------------------------------
LAST = 1e-9
"""``frac`` of the rules' final loss that keeps one value: the last evaluation."""


def _losses(**extra) -> tuple[Alternative, ...]:
    """The loss's declared measurements: the batch (the authors' seed-99 batch shared by every
    seed, each seed's own batch, the training minibatches, the book's figure batch), the
    per-prompt aggregation (mean or median squared error) and the window (the last evaluation or
    the mean of the last 10%); the first is the paper's (the authors' notebooks plot the
    seed-99 batch's mean error). ``extra``: options every one shares."""
    out = []
    for q, batch in (("shared_eval", "the authors' seed-99 batch"), ("seed_eval", "each seed's own batch")):
        for agg, qn in (("mean", f"{q}_loss"), ("median", f"{q}_median")):
            for win, frac in (("last", LAST), ("tail", 0.1)):
                pid = f"{q.split('_')[0]}{'' if agg == 'mean' else '_median'}_{win}"
                words = "last evaluation" if win == "last" else "last 10% of evaluations"
                out.append(Alternative(pid, f"{batch}, {agg} error, {words}", {"quantity": qn, "frac": frac, **extra},
                                       paper=(pid == "shared_last"), needs=(qn,)))
    out.append(Alternative("train_tail", "training minibatches, mean loss, last 10% of steps (Fig 2's caption)",
                           {"quantity": "loss", "frac": 0.1, **extra}, needs=("loss",)))
    out.append(Alternative("fixed_tail", "the book's figure batch, mean error, last 10% of evaluations",
                           {"quantity": "eval_loss", "frac": 0.1, **extra}, needs=("eval_loss",)))
    return tuple(out)


_SMOOTH_BATCHES = (("smoothness_shared", "the authors' seed-99 batch"), ("smoothness", "the step's own minibatch"),
                   ("smoothness_probe", "a fresh batch per step"), ("smoothness_seed", "each seed's own fixed batch"))


def _smoothness4() -> tuple[Alternative, ...]:
    """Claim 4's measurements: the batch the curvature along the step is measured on, the
    window (every recorded step, or the first 2000 iterations) and the aggregation over steps
    (mean or median of the per-step log ratio); the first is the paper's (the authors' Fig 16
    code measures on one fixed batch of 1000 prompts drawn after seed 99)."""
    out = []
    for q, batch in _SMOOTH_BATCHES:
        for win, max_step in (("all", None), ("first2000", C.CLAIM5_MAX_STEP)):
            for agg in C.SMOOTHNESS_AGGREGATES:
                pid = f"{q.replace('smoothness', 'sm').strip('_') or 'sm'}_{win}_{agg}"
                words = "every recorded step" if win == "all" else f"iterations < {C.CLAIM5_MAX_STEP}"
                out.append(Alternative(pid, f"{batch}, {words}, {agg} log ratio",
                                       {"smoothness": q, "max_step": max_step, "aggregate": agg},
                                       paper=(q == "smoothness_shared" and win == "all" and agg == "mean"), needs=(q,)))
    return tuple(out)


def _smoothness5() -> tuple[Alternative, ...]:
    """Claim 5's measurements: which smoothness against which gradient norm (the same fixed
    batch for both, as the authors' code; the step's minibatch against an independent probe
    batch; the step's minibatch for both, which share the batch's own noise; ...) over the first
    2000 iterations (Fig 16's window) or every recorded step."""
    pairs = (("smoothness_shared", "grad_norm_shared", "the authors' batch, both"),
             ("smoothness", "grad_norm_probe", "the minibatch's smoothness, a probe batch's gradient norm"),
             ("smoothness", "grad_norm", "the minibatch, both"),
             ("smoothness_probe", "grad_norm_probe", "a fresh batch per step, both"),
             ("smoothness_seed", "grad_norm_probe", "each seed's fixed batch's smoothness, a probe batch's norm"))
    out = []
    for sm, norm, words in pairs:
        for win, max_step in (("first2000", None), ("all", 10 ** 9)):
            pid = f"{sm.replace('smoothness', 'sm').strip('_') or 'sm'}_{norm.replace('grad_norm', 'g').strip('_') or 'g'}_{win}"
            when = f"iterations < {C.CLAIM5_MAX_STEP}" if max_step is None else "every recorded step"
            out.append(Alternative(pid, f"{words}, {when}", {"smoothness": sm, "norm": norm, "max_step": max_step},
                                   paper=(sm == "smoothness_shared" and max_step is None), needs=(sm, norm)))
    return tuple(out)


def _conditioning3() -> tuple[Alternative, ...]:
    """Claim 3's measurements: the evaluation protocol of the Hessians (the authors' shared
    batch, independent batches per seed, one large batch per seed) and ``R_med``'s definition
    (the diagonal's max over median, the authors' code and the paper's footnote; the
    eigenvalues', the paper's text)."""
    words = {"authors": "the authors' seed-99 batch", "batches": "independent batches per seed",
             "large": "one large batch per seed"}
    out = []
    for protocol in ("authors", "batches", "large"):
        for method in ("diag", "eig"):
            paper = (protocol, method) == (B.PAPER_EVAL_BATCH, "diag")
            # the primary follows the context (a chapter's eval_batch parameter, else the paper's batch)
            out.append(Alternative(f"{protocol}_{method}",
                                   f"{words[protocol]}, R_med by {'the diagonal' if method == 'diag' else 'eigenvalues'}",
                                   {"protocol": None if paper else protocol, "method": method}, paper=paper,
                                   inputs=None if paper else (lambda ctx, pr=protocol: _inputs3(ctx, pr)),
                                   reads=None if paper else (lambda sc, pr=protocol: _reads3(sc, pr))))
    return tuple(out)


_SHARED_LOSS = ("The paper's Fig 2 caption says training loss; the authors' notebook plots the loss on one batch "
                "of 1000 prompts drawn after seed 99, shared by every seed, every 50 iterations. The book follows "
                "the notebook, which made the figure: the primary verdict reads that batch's mean squared error "
                "at the last evaluation; the training loss is one of the alternatives.")

REGISTRY: dict[int, Claim] = {c.number: c for c in (
    Claim(1, "Adam reaches a lower loss than SGDM in every setting (Fig 2).",
          "Adam's lower loss", "adaptive_vs_sgd", _inputs_base,
          lambda data, ctx, **o: C.claim1(data["history"], settings=B.BASE, runs=data["runs"], **o), _per_setting,
          _losses(), _SHARED_LOSS, reads=_reads_base),
    Claim(2, "Gradient noise at initialisation is heavy-tailed, more so for gamma covariates than for sphere and "
             "gaussian, and more for L=6, 8 than L=2, 4 (Figs 3, 10, 13).",
          "heavy-tailed noise", "heavy_tails", _inputs2, _rule2, _design2,
          (Alternative("kurtosis", "excess kurtosis of the noise norms over their Gaussian null",
                       {"statistic": "kurtosis"}, paper=True),
           Alternative("hill", "Hill tail index's deficit against the Gaussian null", {"statistic": "hill"})),
          "The paper shows histograms and q-q plots of the noise norms, with no statistic: the book's primary "
          "measure is the excess kurtosis over the Gaussian null of the measured covariance, the Hill index its "
          "alternative.", margin=0.1, reads=_reads2),
    Claim(3, "R_med(SGDM) > R_med(Adam) along training; the gap grows with heavier-tailed data and with depth "
             "(Table, Figs 11, 14).",
          "condition numbers", "conditioning", _inputs3, _rule3, _design3, _conditioning3(),
          "The authors compute every Hessian on one batch of 1000 prompts drawn after seed 99, shared by every "
          "seed and checkpoint, and R_med from the Hessian's diagonal (their code and the paper's footnote; the "
          "text defines it by eigenvalues): that is the primary verdict.", reads=_reads3),
    Claim(4, "Adam's directional smoothness is lower than SGDM's (Fig 5).",
          "directional smoothness", "smoothness", _inputs_smooth,
          lambda data, ctx, **o: C.claim4(data["history"], settings=B.SMOOTH, runs=data["runs"], **o), _per_setting,
          _smoothness4(),
          "The authors' only published smoothness code (their Fig 16 notebook) measures u^T H u at x_t along "
          "x_{t+1} - x_t on one fixed batch of 1000 prompts drawn after seed 99: the primary verdict reads that "
          "batch at every recorded step, as the mean of the per-seed log ratio.", reads=_reads_smooth),
    Claim(5, "Smoothness grows with gradient norm (Fig 16).",
          "generalised smoothness", "smoothness", _inputs_smooth,
          lambda data, ctx, **o: C.claim5(data["history"], settings=B.SMOOTH, runs=data["runs"], **o), _per_setting,
          _smoothness5(),
          "The authors' Fig 16 code measures the smoothness and the gradient norm on one fixed batch of 1000 "
          "prompts drawn after seed 99, over Adam's first 2000 iterations: the primary verdict reads that batch "
          "for both.", margin=0.02, reads=_reads_smooth),
    Claim(6, "The Adam-SGDM loss gap widens with depth, while both losses fall with depth (Fig 12).",
          "depth", "depth", _inputs6, lambda data, ctx, **o: C.claim6(data["history"], runs=data["runs"], **o),
          _design6,
          _losses() + (Alternative("stable_shared_last", "the largest stable rate of the depth grid, the authors' "
                                   "batch, mean error, last evaluation", {"quantity": "shared_eval_loss", "frac": LAST},
                                   needs=("shared_eval_loss",), inputs=lambda ctx: _inputs6(ctx, "stable"),
                                   reads=lambda sc: _reads6(sc, "stable")),),
          "The paper trains every depth at Table 2's rates and plots the seed-99 batch's loss: the primary "
          "verdict; the book's stable-rate rule (the largest rate of its grid at which no search seed diverged) "
          "is an alternative.", margin=0.02, reads=_reads6),
    Claim(7, "Light-tailed (sphere) covariates make both optimizers faster, without closing the relative gap "
             "(Fig 9).",
          "light-tailed covariates", "heavy_tails", _inputs7, _rule7, _design7, _losses(), _SHARED_LOSS,
          reads=_reads7),
    Claim(8, "Linear attention trains faster than softmax attention on this task (Fig 7).",
          "linear against softmax attention", "adaptive_vs_sgd", _inputs8,
          lambda data, ctx, **o: C.claim8(data["history"], runs=data["runs"], **o), _design8, _losses(),
          "The paper states no learning rates for Fig 7: each attention trains at the best rate of the same "
          "small grid, and the primary verdict reads the seed-99 batch's mean error at the last iteration both "
          "reached.", reads=_reads8),
)}
"""The paper's claims, by number: the one place each is declared."""


def get(claim) -> Claim:
    """The registry's claim ``claim`` (an integer among :data:`REGISTRY`'s numbers; else a
    ``ValueError`` naming ``claim`` and the accepted values)."""
    claim = check_int("claim", claim)
    check_choice("claim", str(claim), [str(k) for k in REGISTRY])
    return REGISTRY[claim]


def design_frame(claim, scale, steps: int | None = None) -> pd.DataFrame:
    """Claim ``claim``'s parts at ``scale`` as a frame: one row per part, columns ``id``,
    ``part`` (its label) and ``seeds``."""
    return pd.DataFrame([dataclasses.astuple(p) for p in get(claim).parts(scale, steps)],
                        columns=["id", "part", "seeds"])


NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve")


def count_word(n: int | None = None) -> str:
    """``n`` (None: the number of claims in :data:`REGISTRY`) in English words up to twelve,
    digits beyond: what the prose says ("the paper's eight claims")."""
    n = len(REGISTRY) if n is None else check_int("n", n, minimum=0)
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)
