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
    """

    number: int
    statement: str
    short: str
    chapter: str
    inputs: Callable = dataclasses.field(repr=False)
    rule: Callable = dataclasses.field(repr=False)
    design: Callable = dataclasses.field(repr=False)

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

    def verdict(self, ctx) -> C.Verdict:
        """The claim decided on its experiments: ``rule(inputs(ctx), ctx)``."""
        return self.rule(self.inputs(ctx), ctx)


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


def _inputs_smooth(ctx) -> dict:
    return B.training(ctx, B.SMOOTH)


# -- 2: gradient noise ----------------------------------------------------------------------
def _design2(sc: Scale, steps=None) -> list[Part]:
    k = len(sc.noise_seeds)
    parts = [Part(C.part_id("heavy", s), f"heavy-tailed: {s}", k) for s in B.BASE]
    parts += [Part(C.part_id("gamma_over", o), f"gamma > {o}", k) for o in ("sphere", "gaussian")]
    parts += [Part(f"l{hi}_over_l{lo}", f"L={hi} > L={lo}", k) for hi in (6, 8) for lo in (2, 4)]
    return parts


def _inputs2(ctx) -> dict:
    return B.noise(ctx, B.NOISE)


def _rule2(data, ctx) -> C.Verdict:
    return C.claim2(data["noise"], data["spectrum"])


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


def _inputs3(ctx) -> dict:
    sc = ctx.scale
    table = [E.table_conditioning(s, sc, eval_batch=ctx.protocol, **ctx.kw()).frames["conditioning"]
             for s in B.BASE]
    table_runs = [E.table_training(s, sc, **ctx.kw()).frames["runs"] for s in B.BASE]
    others = [s for s in B.TAILS + B.DEPTHS if s not in B.BASE and get_setting(s).role != "core"]
    lrs = {s: ("stable" if get_setting(s).role == "depth" else "default") for s in others}
    rest = [E.conditioning(s, sc, eval_batch=ctx.protocol, at="table", lrs=lrs[s], seeds=ctx.seeds,
                           steps=ctx.steps, **ctx.kw()).frames["conditioning"] for s in others]
    rest_runs = [E.training(s, sc, lrs=lrs[s], seeds=ctx.seeds, steps=ctx.steps, **ctx.kw())
                 .frames["runs"] for s in others]
    return {"conditioning": B._concat(table + rest), "runs": B._concat(table_runs + rest_runs)}


def _rule3(data, ctx) -> C.Verdict:
    # gamma covariates are Setting 3 (the same runs, stored once); the covariate and depth
    # parts at the table's iterations their runs reach (design)
    scale = ctx.scale
    return C.claim3(data["conditioning"], settings=B.BASE, steps=scale.table_steps, eval_batch=ctx.protocol,
                    tails={**C.TAILS, "gamma": "setting3"}, runs=data["runs"],
                    compare_steps=B.compare_steps(scale, ctx.steps))


# -- 6: depth ---------------------------------------------------------------------------------
def _design6(sc: Scale, steps=None) -> list[Part]:
    k = _seeds(sc, *B.DEPTHS)
    return [Part("gap_widens", "gap widens with depth", k), Part("sgdm_falls", "sgdm loss falls with depth", k),
            Part("adam_falls", "adam loss falls with depth", k)]


def _inputs6(ctx) -> dict:
    return B.training(ctx, B.DEPTHS, lrs="stable")


# -- 7: light-tailed covariates ---------------------------------------------------------------
def _design7(sc: Scale, steps=None) -> list[Part]:
    k = _seeds(sc, "sphere", "gamma")
    return [Part("sgdm_faster", "sgdm lower loss on sphere", k), Part("adam_faster", "adam lower loss on sphere", k),
            Part("gap_kept", "gap not closed on sphere", k)]


def _inputs7(ctx) -> dict:
    return B.training(ctx, B.TAILS + ("setting1",))


def _rule7(data, ctx) -> C.Verdict:
    # against gamma only (the paper's Fig 9): 3 parts, which 6 seeds can refute (design)
    return C.claim7(data["history"], gaussian=None, runs=data["runs"])


# -- 8: linear against softmax attention -----------------------------------------------------
def _design8(sc: Scale, steps=None) -> list[Part]:
    k = _seeds(sc, "setting1", "softmax")
    return [Part(f"{o}_linear_faster", f"{o}: softmax vs linear", k) for o in ("sgdm", "adam")]


def _inputs8(ctx) -> dict:
    # each attention at its own best rate, compared at the softmax horizon
    sc = ctx.scale
    horizon = ctx.steps or sc.steps_for(get_setting("softmax"))
    got = {s: E.training(s, sc, lrs=B.claim8_rates(ctx, s), seeds=ctx.seeds, steps=horizon, **ctx.kw())
           for s in ("setting1", "softmax")}
    return {"history": B._concat([g.frames["history"] for g in got.values()]),
            "runs": B._concat([g.frames["runs"] for g in got.values()])}


REGISTRY: dict[int, Claim] = {c.number: c for c in (
    Claim(1, "Adam reaches a lower loss than SGDM in every setting (Fig 2).",
          "Adam's lower loss", "adaptive_vs_sgd", _inputs_base,
          lambda data, ctx: C.claim1(data["history"], settings=B.BASE, runs=data["runs"]), _per_setting),
    Claim(2, "Gradient noise at initialisation is heavy-tailed, more so for gamma covariates than for sphere and "
             "gaussian, and more for L=6, 8 than L=2, 4 (Figs 3, 10, 13).",
          "heavy-tailed noise", "heavy_tails", _inputs2, _rule2, _design2),
    Claim(3, "R_med(SGDM) > R_med(Adam) along training; the gap grows with heavier-tailed data and with depth "
             "(Table, Figs 11, 14).",
          "condition numbers", "conditioning", _inputs3, _rule3, _design3),
    Claim(4, "Adam's directional smoothness is lower than SGDM's (Fig 5).",
          "directional smoothness", "smoothness", _inputs_smooth,
          lambda data, ctx: C.claim4(data["history"], settings=B.SMOOTH, runs=data["runs"]), _per_setting),
    Claim(5, "Smoothness grows with gradient norm (Fig 16).",
          "generalised smoothness", "smoothness", _inputs_smooth,
          lambda data, ctx: C.claim5(data["history"], settings=B.SMOOTH, runs=data["runs"]), _per_setting),
    Claim(6, "The Adam-SGDM loss gap widens with depth, while both losses fall with depth (Fig 12).",
          "depth", "depth", _inputs6, lambda data, ctx: C.claim6(data["history"], runs=data["runs"]), _design6),
    Claim(7, "Light-tailed (sphere) covariates make both optimizers faster, without closing the relative gap "
             "(Fig 9).",
          "light-tailed covariates", "heavy_tails", _inputs7, _rule7, _design7),
    Claim(8, "Linear attention trains faster than softmax attention on this task (Fig 7).",
          "linear against softmax attention", "adaptive_vs_sgd", _inputs8,
          lambda data, ctx: C.claim8(data["history"], runs=data["runs"]), _design8),
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
