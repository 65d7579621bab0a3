"""The paper's claims (declared in :mod:`lintf.book.registry`), decided from our own numbers.

Every claim is a function of tidy results that returns a :class:`Verdict`. The rule that
decides it is written in its docstring and fixed before looking at any result, and every
verdict goes through one decision rule, :mod:`lintf.book.stats`:

* each part of a claim reduces the data to **one number per seed** (a seed is the
  independent unit: its own initialisation, data stream and evaluation batches; numbers
  that compare two settings or two optimizers are paired by seed);
* the part is decided by :func:`lintf.book.stats.test`, an exact sign-flip test of the mean of
  those numbers against the claimed side of a threshold: ``holds`` when the one-sided 95%
  lower bound ``low`` is above the threshold, ``does not hold`` when the upper bound
  ``high`` is below it, ``inconclusive`` otherwise. Each error is at most 5% under a null
  symmetric about the threshold; with 4 seeds or fewer no part can be decided (the smallest
  attainable p-value is ``1/2^n``) and the part is untested;
* the claim is decided by :func:`lintf.book.stats.combine`: it holds when every part holds; it
  does not hold when a part's "does not hold" survives Holm's step-down over the parts
  (so with ``m`` parts a refutation needs a part with ``p <= 0.05 / m``: 6 seeds, whose
  smallest p-value is 1/64, can refute a claim of at most 3 parts); else inconclusive;
* diverged runs (non-finite loss) are left out and counted in the evidence (claim 6 makes
  the parts that need a diverged depth untested instead); a part whose settings are missing
  from the data, or that has fewer seeds than :func:`lintf.book.stats.min_seeds`, is **untested**
  (never guessed, never shown as a decision): it enters :func:`lintf.book.stats.combine` as
  ``None``, so its claim is at best inconclusive and the part's p-value 1 stays in Holm's
  family;
* each verdict says what was found: :attr:`Verdict.headline` names the deciding part with
  its number, :attr:`Verdict.sentence` lists in words what each part showed.

The guarantee rests on symmetry: each error is at most 5% when a part's per-seed numbers are
symmetric about the threshold under the null (paired comparisons: exchangeable optimizers or
settings), not for any distribution with its mean at the threshold; and the eight claims are
eight separate decisions, with no control of the error across them (:mod:`lintf.book.stats`).

Loss comparisons use the natural log of the *final loss* of a run: the mean of the last
10% of its recorded ``seed_eval_loss`` values (the loss on the seed's own evaluation batch,
:func:`lintf.compute.engine.seed_eval_batch`; ``eval_loss``, the batch shared by every seed, for
results without it; ``loss`` when neither was recorded), so a difference of logs is the log
of a ratio of losses.

Settings are named by strings that the experiments choose. The roles a claim needs
(which setting has gamma covariates, which has ``L = 6`` ...) are arguments whose defaults
are :data:`DEFAULT_SETTINGS`, :data:`TAILS`, :data:`DEPTHS` and :data:`ATTENTION`.

Every claim accepts ``level`` (confidence of each one-sided bound, default 0.95).
"""
from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from . import stats
from ..compute.checks import check_choice, check_int
from ..compute.settings import group, members
from .stats import VERDICTS
from ..compute.reductions import _RUN, _check_frac, final_loss
from .summaries import (_EIGEN_COLUMNS, OPTIMIZERS, _cat, _check_frame, _check_level, _common_horizon, _diverged_note,
                        _final, _log_ratios, _paired, _paired_log, _present, _slope,
                        noise_tails_per_seed)


def __getattr__(name: str):
    """``CLAIMS``: ``{number: statement}`` of the paper's claims, a view of
    :data:`lintf.book.registry.REGISTRY`, where each claim is declared once (read lazily: the
    registry imports this module)."""
    if name == "CLAIMS":
        from .registry import REGISTRY
        return {k: c.statement for k, c in REGISTRY.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _statement(claim: int) -> str:
    """Claim ``claim``'s statement, from :data:`lintf.book.registry.REGISTRY`."""
    from .registry import REGISTRY
    return REGISTRY[claim].statement if claim in REGISTRY else f"claim {claim}"


HYPOTHESES: dict[str, str] = {
    "A1": "Sign descent with momentum (signum) closes at least half of the SGDM-Adam log-loss gap.",
    "A2": ("Adam with beta2 = 0.999 is no better than with the paper's beta2 = 0.9: its final loss is "
           "at most 10% lower."),
    "A3": "Normalising SGDM's step (normsgd) closes less of the gap than sign descent.",
}
"""Beyond the paper: the ablation chapter's hypotheses about which part of Adam closes the gap,
decided by the same rule as the claims and shown apart from them."""
ABLATION_SETTINGS = members("ablation")
"""Where the ablation is run: Setting 1 (gaussian) and Setting 3 (gamma), n = 20 (group ``ablation``)."""
A2_MARGIN = math.log(0.9)
"""Hypothesis A2's threshold: beta2 = 0.999 counts as no better while its final loss is at
least 0.9 times beta2 = 0.9's (log ratio above log 0.9)."""
HYPOTHESIS_RULES: dict[str, str] = {
    "A1": "per seed: closed(signum) - gap / 2 > 0",
    "A2": f"per seed: log(L(beta2 0.999) / L(beta2 0.9)) > log 0.9 = {A2_MARGIN:.3f}",
    "A3": "per seed: log(L(normalised SGDM) / L(signum)) > 0",
}
"""What each hypothesis is decided on, per setting (L: final loss on the evaluation batch;
closed(o) = log L(SGDM) - log L(o), gap = closed(Adam))."""

DEFAULT_SETTINGS = members("base")
"""The paper's Settings 1, 2, 3 (Table 1), where Fig 3 shows heavy-tailed noise (group ``base``
of :attr:`lintf.compute.settings.Setting.groups`)."""
TAILS = group("tails")
"""Setting playing each covariate role of Sec. 4.1 (L=3, d=5, n=20): group ``tails``."""
DEPTHS = group("depths")
"""Setting for each depth of Sec. 4.2 (Setting 1 otherwise): group ``depths``."""
ATTENTION = group("attention")
"""Settings compared in Fig 7 (L=3, Setting 1 data): group ``attention``."""


def claim2_pairs(deep=(6, 8), shallow=(2, 4)) -> list[tuple]:
    """Claim 2's comparisons, the one list of them: ``(name, part id, group, key, key)``, the
    first key's noise heavier-tailed than the second's in the group of settings (``tails``:
    gamma against sphere and gaussian; ``depths``: every L of ``deep`` against every one of
    ``shallow``)."""
    pairs = [(f"gamma > {other}", part_id("gamma_over", other), "tails", "gamma", other)
             for other in ("sphere", "gaussian")]
    return pairs + [(f"L={hi} > L={lo}", part_id(f"l{hi}_over_l{lo}"), "depths", hi, lo)
                    for hi in deep for lo in shallow]

GAP_KEPT = 0.5
"""Claim 7: the share of the reference's log gap that must remain on the light-tailed data."""



# -- argument checks -----------------------------------------------------------------
def _check_names(name: str, value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    out = tuple(value)
    if not all(isinstance(v, str) for v in out):
        raise TypeError(f"{name} must be a setting name or a sequence of them, got {value!r}")
    return out


_NAMES = {"sgdm": "SGDM", "adam": "Adam"}


def _title(setting: str) -> str:
    """A setting's short name for sentences: "Setting 2" for ``setting2``, "L=6" for ``depth6``,
    "spherical covariates" for ``sphere``, else the name."""
    if setting.startswith("setting") and setting[7:].isdigit():
        return f"Setting {setting[7:]}"
    if setting.startswith("depth") and setting[5:].isdigit():
        return f"L={setting[5:]}"
    return {"sphere": "spherical covariates", "gamma": "gamma covariates"}.get(setting, setting)


def _gap_words(light: str, ref: str, t: stats.Test) -> str:
    """Claim 7's plain difference of the gaps, in words: the SGDM/Adam log gap on ``light``
    minus the one on ``ref``, its bounds, and what its sign means."""
    if not math.isfinite(t.estimate):
        return ""
    side = "smaller" if t.estimate < 0 else "larger"
    closed = ("part of the gap closes on " + light) if t.high < 0 else (
        "the gap is wider on " + light) if t.low > 0 else "no change of the gap is shown"
    return (f"(the SGDM/Adam log gap on {light} is {_fmt(abs(t.estimate))} {side} than on {ref}, "
            f"gap({light}) - gap({ref}) = {_fmt(t.estimate)} [{_fmt(t.low)}, {_fmt(t.high)}]: {closed})")


def _loss_quantity(history: pd.DataFrame, quantity: str | None) -> str:
    """The loss the claims compare: ``quantity`` if given, else ``seed_eval_loss`` (each seed's own
    evaluation batch, independent of its training stream: the seeds stay independent units)
    when recorded, else ``eval_loss`` (the batch shared by every seed, which the figures use)."""
    if quantity is not None:
        return quantity
    return "seed_eval_loss" if (history["quantity"] == "seed_eval_loss").any() else "eval_loss"


# -- verdicts --------------------------------------------------------------------------
VERDICT_COLORS = {"holds": "#0173B2", "does not hold": "#D55E00", "inconclusive": "#7F7F7F"}
"""One colour per verdict, for every badge and figure of the book."""
PART_VERDICTS = VERDICTS + ("untested",)
"""What a part of a claim can be: decided (:data:`lintf.book.stats.VERDICTS`), or ``untested`` (no
data, every run diverged, or fewer seeds than :func:`lintf.book.stats.min_seeds`). An untested part
enters :func:`lintf.book.stats.combine` as ``None``: its claim can then at best be inconclusive."""
_COUNT_WORDS = {"holds": ("holds", "hold"), "does not hold": ("does not hold", "do not hold"),
                "inconclusive": ("is inconclusive", "are inconclusive"), "untested": ("is untested", "are untested"),
                "not computed": ("is not computed", "are not computed")}


def count_words(counts: Mapping[str, int]) -> str:
    """Counts of verdicts in English: ``{"holds": 1, "does not hold": 1, "inconclusive": 1}`` ->
    ``"1 holds, 1 does not hold and 1 is inconclusive"`` (zero counts left out; ``"none"`` if all
    are zero). Keys: :data:`PART_VERDICTS` and ``"not computed"``."""
    words = []
    for k, n in counts.items():
        if k not in _COUNT_WORDS:
            raise ValueError(f"counts keys must be among {list(_COUNT_WORDS)}, got {k!r}")
        n = check_int(f"counts[{k!r}]", n, minimum=0)
        if n:
            words.append(f"{n} {_COUNT_WORDS[k][n != 1]}")
    if not words:
        return "none"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


@dataclass(frozen=True)
class Verdict:
    """A claim decided from our numbers.

    statistic, interval : the estimate and ``(low, high)`` one-sided bounds of the
        deciding part, named by ``part`` (when the claim holds, the part nearest its
        threshold; when it does not hold, the first part whose "does not hold" survives
        Holm's step-down; else the first tested part that does not hold, or, when every
        tested part holds, the first untested one, whose statistic is NaN).
    evidence : one line per part and per note, human readable.
    details : ``{"parts": DataFrame (one row per part, untested ones included: part,
        statistic, low, high, p_greater, p_less, threshold, side, n, verdict (one of
        :data:`PART_VERDICTS`), what, extra), "data": DataFrame (the per-seed numbers used),
        "untested": list of the untested parts}``.
    part : the deciding part's name; what : what its statistic is ("mean log(SGDM/Adam final
        loss)"). sentence : what was found, in words (:attr:`headline` and :attr:`sentence`
        are what the chapters and the scorecard print).
    """

    claim: int | str
    text: str
    verdict: str
    statistic: float
    interval: tuple[float, float]
    evidence: str
    details: Any = field(default_factory=dict, repr=False, compare=False)
    part: str = ""
    sentence: str = ""
    what: str = ""

    def __post_init__(self):
        check_choice("verdict", self.verdict, VERDICTS)

    @property
    def label(self) -> str:
        """"Claim 3" for the paper's claims, "Hypothesis A1" for the ablation's."""
        return f"{'Hypothesis' if isinstance(self.claim, str) else 'Claim'} {self.claim}"

    @property
    def deciding(self) -> str:
        """The deciding part and its number: ``"setting2: mean log(SGDM/Adam final loss) 0.156,
        one-sided 95% bounds [0.0512, inf]"`` (``"no part could be tested"`` without one)."""
        if not self.part:
            return "no part could be tested"
        if math.isnan(self.statistic):
            return f"{self.part}: untested"
        what = f"{self.what} " if self.what else ""
        return (f"{self.part}: {what}{_fmt(self.statistic)}, one-sided 95% bounds "
                f"[{_fmt(self.interval[0])}, {_fmt(self.interval[1])}]")

    @property
    def headline(self) -> str:
        """``"Claim 1 holds (deciding part setting2: ...)"``, ``"Claim 3 is inconclusive (...)"``:
        the verdict in a sentence, with the part its number comes from."""
        verb = "is inconclusive" if self.verdict == "inconclusive" else self.verdict
        return f"{self.label} {verb} (deciding part {self.deciding})"

    @property
    def counts(self) -> dict:
        """How many parts have each of :data:`PART_VERDICTS`."""
        parts = self.details.get("parts") if isinstance(self.details, dict) else None
        found = [] if parts is None else list(parts["verdict"])
        return {k: found.count(k) for k in PART_VERDICTS}

    def to_row(self) -> dict:
        """One row of the scorecard table."""
        return {"claim": self.claim, "text": self.text, "verdict": self.verdict,
                "statistic": self.statistic, "low": self.interval[0], "high": self.interval[1],
                "evidence": self.evidence}

    def _repr_markdown_(self) -> str:
        lines = "\n".join(f"- {line}" for line in self.evidence.splitlines() if line)
        return (f"**{self.label}.** {self.text}\n\n**Verdict: {self.verdict}** "
                f"(deciding part {self.deciding})\n\n{self.sentence}\n\n{lines}\n")

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in self.evidence.splitlines() if line)
        colour = VERDICT_COLORS[self.verdict]
        return (f"<div><p><b>{self.label}.</b> {html.escape(self.text)}</p>"
                f"<p><span style='background:{colour};color:white;padding:1px 6px;border-radius:3px'>"
                f"{html.escape(self.verdict)}</span> deciding part {html.escape(self.deciding)}</p>"
                f"<p>{html.escape(self.sentence)}</p>"
                f"<details><summary>every part</summary><ul>{items}</ul></details></div>")


def scorecard(verdicts: Iterable[Verdict]) -> pd.DataFrame:
    """The scorecard table: one row per :class:`Verdict`, indexed by claim number."""
    rows = [v.to_row() for v in verdicts]
    return pd.DataFrame(rows, columns=["claim", "text", "verdict", "statistic", "low", "high",
                                       "evidence"]).set_index("claim")


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "nan"
    return ("inf" if v > 0 else "-inf") if math.isinf(v) else f"{v:.3g}"


_PART_COLUMNS = ["id", "part", "statistic", "low", "high", "p_greater", "p_less", "threshold", "side", "n",
                 "verdict", "what", "extra"]


def _says(name: str, says) -> tuple[str, str]:
    """``(claimed, reverse)`` in words for a part; default: the part's name and "the reverse of
    'name'"."""
    if says is None:
        return name, f"the reverse of '{name}'"
    return tuple(says)


def part_id(*words) -> str:
    """A part's stable id from ``words``: lower case, every run of other characters than letters
    and digits one underscore (``part_id("heavy", "setting1")`` is ``"heavy_setting1"``). Glue
    keys are built from it (:func:`lintf.book.chapter.glue_verdict`), never from the part's label."""
    return "_".join(re.sub(r"[^a-z0-9]+", "_", str(w).lower()).strip("_") for w in words)


def _part(name: str, values, level: float, threshold: float = 0.0, side: str = "greater",
          what: str = "", extra: str = "", says=None, pid: str | None = None) -> dict:
    """One part decided by :func:`lintf.book.stats.test` on its per-seed ``values``; untested
    (:func:`_untested`) when there are fewer than :func:`lintf.book.stats.min_seeds` values, which
    no outcome could decide. ``says``: (what the part claims, its reverse), in words. ``pid``:
    the part's stable id (:func:`part_id`; None: from ``name``), the same as
    :func:`lintf.book.design` states in advance."""
    values = np.asarray(values, dtype=float)
    need = stats.min_seeds(level)
    if values.size < need:
        return _untested(name, f"{values.size} seed(s), fewer than the {need} the rule needs to decide",
                         threshold, side, what, says, n=values.size, pid=pid)
    t = stats.test(values, side=side, level=level, threshold=threshold)
    return {"id": pid or part_id(name), "part": name, "statistic": t.estimate, "low": t.low, "high": t.high,
            "p_greater": t.p_greater, "p_less": t.p_less, "threshold": float(threshold), "side": side,
            "n": t.n, "verdict": t.verdict, "what": what, "extra": extra, "_test": t, "_says": _says(name, says)}


def _untested(name: str, reason: str, threshold: float = 0.0, side: str = "greater", what: str = "",
              says=None, n: int = 0, pid: str | None = None) -> dict:
    """A part that could not be tested (no data, a diverged depth, too few seeds): verdict
    ``untested``, no statistic; it enters :func:`lintf.book.stats.combine` as ``None``."""
    return {"id": pid or part_id(name), "part": name, "statistic": math.nan, "low": math.nan, "high": math.nan,
            "p_greater": math.nan, "p_less": math.nan, "threshold": float(threshold), "side": side, "n": int(n),
            "verdict": "untested", "what": what, "extra": reason, "_test": None, "_says": _says(name, says)}


def _blocked(name: str, reason: str, threshold: float = 0.0, side: str = "greater", what: str = "",
             says=None, pid: str | None = None) -> dict:
    """A part that the data cannot decide (e.g. a diverged depth): untested."""
    return _untested(name, reason, threshold, side, what, says, pid=pid)


def _describe(p: dict) -> str:
    rel = ">" if p["side"] == "greater" else "<"
    if p["_test"] is None:
        return f"{p['part']}: untested: {p['extra']} (claimed {rel} {p['threshold']:g})"
    return (f"{p['part']}: {p['what'] + ' ' if p['what'] else ''}{_fmt(p['statistic'])} "
            f"[{_fmt(p['low'])}, {_fmt(p['high'])}]{' ' + p['extra'] if p['extra'] else ''} "
            f"(claimed {rel} {p['threshold']:g}, n={p['n']}, p-value for > {_fmt(p['p_greater'])}, "
            f"for < {_fmt(p['p_less'])}) -> {p['verdict']}")


def _sentence(parts: list[dict], survive) -> str:
    """What the parts found, in one sentence: shown, shown the other way, undecided, untested."""
    groups = {"holds": [], "does not hold": [], "inconclusive": [], "untested": []}
    for p, s in zip(parts, survive):
        claimed, reverse = p["_says"]
        if p["verdict"] == "does not hold":
            groups["does not hold"].append(reverse + ("" if s else " (not after Holm's step-down)"))
        elif p["verdict"] == "untested":
            groups["untested"].append(f"{claimed} ({p['extra']})")
        else:
            groups[p["verdict"]].append(claimed)
    lead = {"holds": "Shown", "does not hold": "Shown the other way", "inconclusive": "Left open by the seeds",
            "untested": "Untested"}
    out = [f"{lead[k]}: {'; '.join(v)}." for k, v in groups.items() if v]
    return " ".join(out) if out else "No part of the claim could be tested on the data given."


def _decide(claim: int, parts: list[dict], notes: list[str], data=None,
            untested: list[str] | None = None, level: float = 0.95) -> Verdict:
    """Combine the parts (untested ones, and the ``untested`` names, enter as ``None``).
    ``untested``: part labels, or ``(id, label)`` pairs where the id is not the label's
    (:func:`part_id`); one whose id a part of ``parts`` already has is left out."""
    named = {p["id"] for p in parts}
    for u in untested or []:
        pid, label = u if isinstance(u, tuple) else (part_id(u), u)
        if pid not in named:
            parts = list(parts) + [_untested(label, "no data", pid=pid)]
            named.add(pid)
    untested = [p["part"] for p in parts if p["_test"] is None]
    tests = [p["_test"] for p in parts]
    overall = stats.combine(tests, level=level)
    survive = stats.survives_holm(tests, level=level)
    table = pd.DataFrame([{k: p[k] for k in _PART_COLUMNS} for p in parts], columns=_PART_COLUMNS)
    lines = [_describe(p) for p in parts]
    lone = [p["part"] for p, s in zip(parts, survive) if p["verdict"] == "does not hold" and not s]
    if lone:
        lines.append(f"does not hold on its own but not after Holm's step-down over the {len(parts)} "
                     f"parts: {', '.join(lone)}")
    lines += notes
    stat, interval, part, what = math.nan, (math.nan, math.nan), "", ""
    if not parts:
        lines.insert(0, "no part of the claim could be tested on the data given")
    else:
        verdicts = table["verdict"].to_numpy()
        if overall == "holds":
            margin = np.where(table["side"] == "greater", table["low"] - table["threshold"],
                              table["threshold"] - table["high"])
            i = int(np.argmin(margin))
        elif overall == "does not hold":
            i = int(np.flatnonzero(survive)[0])
        else:
            pick = np.flatnonzero((verdicts != "holds") & (verdicts != "untested"))
            i = int(pick[0]) if pick.size else int(np.flatnonzero(verdicts == "untested")[0])
        row = table.iloc[i]
        stat, interval = float(row["statistic"]), (float(row["low"]), float(row["high"]))
        part, what = str(row["part"]), str(row["what"])
    details = {"parts": table, "data": data if data is not None else pd.DataFrame(),
               "untested": untested}
    text = {**HYPOTHESES, **FINDINGS}[claim] if isinstance(claim, str) else _statement(claim)
    return Verdict(claim, text, overall, stat, interval, "\n".join(lines), details,
                   part=part, sentence=_sentence(parts, survive), what=what)


# -- the claims --------------------------------------------------------------------------
def claim1(history: pd.DataFrame, settings=None, quantity: str | None = None, frac: float = 0.1,
           lrs=None, runs=None, level: float = 0.95) -> Verdict:
    """Claim 1: Adam reaches a lower loss than SGDM in every setting.

    Rule: in each setting, per seed, ``d = log final_loss(SGDM) - log final_loss(Adam)``
    (final loss: :func:`final_loss`; seeds where either run diverged are dropped). The
    part holds when :func:`lintf.book.stats.test` of ``d`` > 0 holds. The claim is
    :func:`lintf.book.stats.combine` of the settings' parts.
    settings : the settings to test (default: every one in ``history``).
    """
    level = _check_level(level)
    final, notes = _final(history, _loss_quantity(history, quantity), frac, lrs, runs)
    settings = _check_names("settings", settings)
    parts, untested, data = [], [], []
    for s in _present(final, settings):
        notes += _diverged_note(final[final["setting"] == s], s)
        d, n2 = _paired_log(final, (s, "sgdm"), (s, "adam"))
        notes += n2
        if d.empty:
            untested.append((part_id(s), f"{s} (no paired SGDM/Adam runs)"))
            continue
        parts.append(_part(s, d.to_numpy(), level, what="mean log(SGDM/Adam final loss)",
                           says=(f"Adam's final loss is below SGDM's in {_title(s)}",
                                 f"SGDM's final loss is below Adam's in {_title(s)}")))
        data.append(pd.DataFrame({"setting": s, "seed": d.index, "log_gap": d.to_numpy()}))
    untested += [s for s in (settings or ()) if s not in set(final["setting"])]
    return _decide(1, parts, notes, _cat(data), untested, level)


NOISE_STATISTICS = {"kurtosis": "kurtosis_excess", "hill": "hill_deficit"}
"""The tail statistics claim 2 can be decided on (its ``statistic``): the column of
:func:`lintf.book.summaries.noise_tails_per_seed` each reads."""


def claim2(noise: pd.DataFrame, spectrum: pd.DataFrame, heavy=DEFAULT_SETTINGS, tails: Mapping = TAILS,
           depths: Mapping = DEPTHS, deep=(6, 8), shallow=(2, 4), n_sims: int = 200,
           level: float = 0.95, seed: int = 0, statistic: str = "kurtosis") -> Verdict:
    """Claim 2: gradient noise at initialisation is heavy-tailed, more so for gamma than
    for sphere and gaussian covariates, and more for L=6, 8 than for L=2, 4.

    noise : tidy (setting, seed, sample, value = ||g_B - g||).
    spectrum : tidy (setting, seed, index, value = eigenvalues of the sample covariance of
        the deviations ``g_B - g`` at that initialisation seed).

    The norm of a Gaussian vector is not Gaussian (its excess kurtosis is positive and
    depends on the covariance), so "heavy-tailed" is judged against the **Gaussian null of
    the measured covariance**: per (setting, seed), ``kurtosis_excess`` = observed excess
    kurtosis of the norms minus its mean over ``n_sims`` simulated samples of as many
    norms of ``N(0, Sigma)`` vectors with Sigma's eigenvalues (:func:`lintf.book.stats.tail_excess`).
    Parts, each by :func:`lintf.book.stats.test` on one number per seed:
    (a) each setting in ``heavy``: ``kurtosis_excess`` > 0;
    (b) ``tails['gamma']`` against ``tails['sphere']`` and ``tails['gaussian']``: per seed
        difference of ``kurtosis_excess`` between the two settings (paired by seed) > 0;
    (c) every ``L`` in ``deep`` against every ``L`` in ``shallow`` (settings from
        ``depths``): per seed difference of ``kurtosis_excess`` > 0.
    The Hill tail index is reported as evidence, not as a part: ``hill_deficit`` (null
    Hill minus observed, > 0 for heavier tails) with its bounds, in each part's line and in
    ``details["data"]``; the Hill estimate depends on its choice of ``k`` top values.
    Seeds without a spectrum are left out (and counted).
    statistic : ``"kurtosis"`` (the default, above) or ``"hill"``: the same parts decided on the
        Hill deficit instead (:data:`NOISE_STATISTICS`).
    """
    col = NOISE_STATISTICS[check_choice("statistic", statistic, NOISE_STATISTICS)]
    word = "excess kurtosis" if statistic == "kurtosis" else "Hill deficit"
    _check_frame("spectrum", spectrum, _EIGEN_COLUMNS)
    level = _check_level(level)
    heavy = _check_names("heavy", heavy)
    per, notes = noise_tails_per_seed(noise, spectrum, n_sims, seed)
    per = per[np.isfinite(per[col].astype(float))]
    have = set(per["setting"])

    def series(s, column=None):
        return per[per["setting"] == s].set_index("seed")[column or col].astype(float)

    def hill_note(values):
        values = np.asarray(values, dtype=float)
        t = stats.test(values, level=level)
        return f"(evidence: Hill deficit {_fmt(t.estimate)} [{_fmt(t.low)}, {_fmt(t.high)}])"

    parts, untested = [], []
    for s in heavy:
        if s not in have:
            untested.append((part_id("heavy", s), f"heavy tails in {s}"))
            continue
        parts.append(_part(f"heavy-tailed: {s}", series(s).to_numpy(), level, pid=part_id("heavy", s),
                           what=f"{word} over the Gaussian null", extra=hill_note(series(s, "hill_deficit")),
                           says=(f"the noise in {_title(s)} is heavier-tailed than Gaussian noise of its covariance",
                                 f"the noise in {_title(s)} is lighter-tailed than Gaussian noise of its covariance")))
    groups = {"tails": tails, "depths": depths}
    pairs = [(name, pid, groups[g].get(a), groups[g].get(b)) for name, pid, g, a, b in claim2_pairs(deep, shallow)]
    for name, pid, a, b in pairs:
        if a not in have or b not in have:
            untested.append((pid, f"{name} ({a} vs {b})"))
            continue
        d, n2 = _paired(series(a), series(b), f"{name} ({a} vs {b})")
        notes += n2
        if d.empty:
            untested.append((pid, f"{name} ({a} vs {b}): no common seeds"))
            continue
        dh, _ = _paired(series(a, "hill_deficit"), series(b, "hill_deficit"), name)
        parts.append(_part(f"{name} ({a} vs {b})", d.to_numpy(), level, pid=pid,
                           what=f"difference of {word} over the null", extra=hill_note(dh),
                           says=(f"the noise is heavier-tailed in {_title(a)} than in {_title(b)}",
                                 f"the noise is lighter-tailed in {_title(a)} than in {_title(b)}")))
    return _decide(2, parts, notes, per.reset_index(drop=True), untested, level)


def claim3(conditioning: pd.DataFrame, settings=None, steps=(750, 1250), method: str = "diag",
           eval_batch: str = "large", tails: Mapping = TAILS, depths: Mapping = DEPTHS, lrs=None,
           runs=None, level: float = 0.95, compare_steps=None) -> Verdict:
    """Claim 3: R_med(SGDM) > R_med(Adam) along training; the gap grows with heavier tails
    and with depth.

    conditioning : as in :func:`condition_ratio_table`; ``eval_batch`` selects the protocol.
    Per seed and step, ``r = log(R_med(SGDM) / R_med(Adam))`` on the same evaluation batch
    (same seed, ``method``); for ``eval_batch="batches"`` a seed's ``r`` is the mean over
    its batches (each seed has its own independent batches, so seeds stay i.i.d. units and
    both seeds and batches count as random). Parts, each at every step in ``steps`` and
    each by :func:`lintf.book.stats.test` > 0 on one number per seed:
    (a) every setting (default: all present): ``r``;
    (b) ``tails['gamma']`` minus ``tails['sphere']`` and minus ``tails['gaussian']``: per
        seed difference of ``r`` (paired by seed);
    (c) growth with depth over the ``depths`` present (at least 2): per seed least-squares
        slope of ``r`` against ``L`` (seeds present at every depth).
    Empty ``tails`` or ``depths`` leave out parts (b) or (c) (one setting's check, e.g. the
    nonlinear appendix). Parts (b) and (c) are taken at ``compare_steps`` (None: ``steps``), the steps the covariate
    and depth runs reach (stated in advance from the scale, :func:`lintf.book.design`). A part
    without data is untested and keeps the claim from holding.
    """
    level = _check_level(level)
    settings = _check_names("settings", settings)
    ratio, _, notes = _log_ratios(conditioning, steps, method, eval_batch, lrs, runs)
    parts, untested = [], []
    steps = sorted(set(int(s) for s in steps))
    compare = steps if compare_steps is None else sorted(set(int(s) for s in compare_steps))
    have = set(ratio["setting"])

    def series(s, step):
        return ratio[(ratio["setting"] == s) & (ratio["step"] == step)].set_index("seed")["log_ratio"]

    for step in sorted(set(steps) | set(compare)):
        for s in _present(ratio, settings) if step in steps else ():
            r = series(s, step)
            if r.empty:
                untested.append((part_id(s, step), f"{s} at step {step}"))
                continue
            parts.append(_part(f"{s}, step {step}", r.to_numpy(), level, what="mean log R_med ratio",
                               pid=part_id(s, step),
                               extra=f"(geometric-mean ratio {np.exp(r.mean()):.3g})",
                               says=(f"SGDM's R_med exceeds Adam's in {_title(s)} at {step}",
                                     f"Adam's R_med exceeds SGDM's in {_title(s)} at {step}")))
        if step not in compare:
            continue
        for other in ("sphere", "gaussian") if tails else ():
            a, b = tails.get("gamma"), tails.get(other)
            ra = series(a, step) if a in have else pd.Series(dtype=float)
            rb = series(b, step) if b in have else pd.Series(dtype=float)
            d, n2 = _paired(ra, rb, f"gamma > {other} at step {step}")
            if d.empty:
                untested.append((part_id("gamma_over", other, step), f"gamma > {other} at step {step} ({a} vs {b})"))
                continue
            notes += n2
            parts.append(_part(f"gamma > {other} ({a} vs {b}), step {step}", d.to_numpy(), level,
                               pid=part_id("gamma_over", other, step),
                               what="difference of log ratio",
                               says=(f"the R_med gap is larger with gamma covariates than {other} ones at {step}",
                                     f"the R_med gap is smaller with gamma covariates than {other} ones at {step}")))
        if not depths:
            continue
        Ls = [L for L in sorted(depths) if depths[L] in have and not series(depths[L], step).empty]
        if len(Ls) < 2:
            untested.append((part_id("depth", step), f"growth with depth at step {step} (fewer than 2 depths)"))
            continue
        wide = pd.concat({L: series(depths[L], step) for L in Ls}, axis=1)
        full = wide.dropna()
        if len(full) < len(wide):
            notes.append(f"growth with depth at step {step}: seed(s) "
                         f"{sorted(set(wide.index) - set(full.index))} not at every depth, excluded")
        if full.empty:
            untested.append((part_id("depth", step), f"growth with depth at step {step} (no seed at every depth)"))
            continue
        slopes = _slope(np.array(Ls, dtype=float), full.to_numpy())
        listed = ", ".join(map(str, Ls))
        parts.append(_part(f"grows with depth (L = {listed}), step {step}", slopes, level, pid=part_id("depth", step),
                           what="slope of log ratio per layer",
                           says=(f"the R_med gap grows with depth at {step}",
                                 f"the R_med gap shrinks with depth at {step}")))
    untested += [(part_id(s, step), f"{s}, step {step}") for s in (settings or ()) if s not in have for step in steps]
    return _decide(3, parts, notes, ratio, untested, level)


def _log_smoothness(history: pd.DataFrame, quantity: str = "smoothness") -> tuple[pd.DataFrame, int, int]:
    h = history[history["quantity"] == quantity]
    v = h["value"].to_numpy(dtype=float)
    ok = np.isfinite(v) & (v > 0)
    return h[ok].assign(log_s=np.log(v[ok])), int((np.isfinite(v) & (v <= 0)).sum()), v.size


SMOOTHNESS_AGGREGATES = ("mean", "median")
"""How claim 4 reduces a seed's per-step log ratios to one number (its ``aggregate``)."""


def claim4(history: pd.DataFrame, settings=None, quantity: str | None = None, frac: float = 0.1,
           lrs=None, runs=None, level: float = 0.95, smoothness: str = "smoothness", max_step: int | None = None,
           aggregate: str = "mean") -> Verdict:
    """Claim 4: Adam's directional smoothness is lower than SGDM's.

    Per run: mean over the recorded steps ``< max_step`` (None: all) of log directional
    smoothness, the history's quantity ``smoothness`` (``"smoothness"``: on the step's own
    minibatch; ``"smoothness_shared"``: on the batch shared by every step, the authors';
    ``"smoothness_probe"``: a fresh batch per step; ``"smoothness_seed"``: each seed's own
    fixed batch; :func:`lintf.compute.engine.train`); non-positive values, where the log is
    undefined, are dropped and counted. Per setting, per seed: ``d = mean log smoothness(SGDM) -
    mean log smoothness(Adam)`` (``aggregate="median"``: the median over the steps both record of
    the per-step ``log smoothness(SGDM) - log smoothness(Adam)``); the part holds when
    :func:`lintf.book.stats.test` of ``d`` > 0 holds. All settings (default: every one with
    smoothness records) are parts. Diverged runs are dropped.
    """
    level = _check_level(level)
    settings = _check_names("settings", settings)
    check_choice("aggregate", aggregate, SMOOTHNESS_AGGREGATES)
    final, notes = _final(history, _loss_quantity(history, quantity), frac, lrs, runs)
    window = history if max_step is None else history[history["step"] < check_int("max_step", max_step)]
    sm, nonpos, total = _log_smoothness(window, smoothness)
    if total and nonpos:
        notes.append(f"{nonpos} of {total} smoothness values <= 0 dropped (log undefined)")
    ok = final[~final["diverged"]].set_index(_RUN).index
    sm = sm[sm.set_index(_RUN).index.isin(ok)]
    per_run = sm.groupby(_RUN)["log_s"].mean().reset_index()
    parts, untested, data = [], [], []
    for s in _present(sm, settings):
        notes += _diverged_note(final[final["setting"] == s], s)
        p = per_run[per_run["setting"] == s].pivot_table(index="seed", columns="optimizer", values="log_s")
        if not {"sgdm", "adam"} <= set(p.columns):
            untested.append((part_id(s), f"{s} (needs both optimizers)"))
            continue
        if aggregate == "median":
            steps = sm[sm["setting"] == s].pivot_table(index=["seed", "step"], columns="optimizer", values="log_s")
            d = (steps["sgdm"] - steps["adam"]).dropna().groupby(level="seed").median()
        else:
            d = (p["sgdm"] - p["adam"]).dropna()
        if d.empty:
            untested.append((part_id(s), f"{s} (no paired seeds)"))
            continue
        parts.append(_part(s, d.to_numpy(), level, what=f"{aggregate} log(smoothness SGDM / Adam)",
                           says=(f"Adam's directional smoothness is below SGDM's in {_title(s)}",
                                 f"SGDM's directional smoothness is below Adam's in {_title(s)}")))
        data.append(pd.DataFrame({"setting": s, "seed": d.index, "log_gap": d.to_numpy()}))
    untested += [s for s in (settings or ()) if s not in set(sm["setting"])]
    if sm.empty:
        notes.append(f"no {smoothness!r} quantity in history")
    return _decide(4, parts, notes, _cat(data), untested, level)


spearman = stats.spearman


CLAIM5_MAX_STEP = 2000
"""Claim 5 reads Adam's first iterations up to this one, the window of the paper's Fig 16."""


def claim5(history: pd.DataFrame, settings=None, optimizer: str = "adam", max_step: int | None = None,
           quantity: str | None = None, frac: float = 0.1, lrs=None, runs=None, window: int | None = None,
           level: float = 0.95, norm: str | None = None, smoothness: str = "smoothness") -> Verdict:
    """Claim 5: smoothness grows with gradient norm (Fig 16).

    Per seed of ``optimizer`` (Adam, as the paper), over steps ``< max_step`` where both
    are finite and smoothness > 0: :func:`lintf.book.stats.detrended_spearman` of log gradient
    norm (pre-clipping) and log directional smoothness, each detrended by its centred
    rolling median over ``window`` recorded points (default :func:`lintf.book.stats.default_window`
    of the seed's usable steps: 21, fewer for short series), since both fall or rise along
    training, which alone would correlate them. Per setting the part holds when :func:`lintf.book.stats.test`
    of the per-seed correlations > 0 holds; all settings (default: every one with
    smoothness records) are parts. Diverged runs are dropped. ``details["data"]`` also
    holds the plain Spearman correlation (``spearman_raw``).

    norm : the gradient norm compared with the smoothness: ``"grad_norm_probe"`` (default
        when recorded: the norm at the same point on an independent probe batch,
        :func:`lintf.compute.engine.probe_stream`) or ``"grad_norm"`` (the training minibatch's, the
        batch the smoothness is measured on). On one batch the two co-fluctuate through the
        batch alone (a batch with large residuals has both a large gradient and a large
        curvature along the step), which is not the paper's link: with constant true curvature
        they still correlate. The probe batch removes that shared noise; without it (older
        results) the evidence says so. ``"grad_norm_shared"``: the norm on the batch shared by
        every step (the authors'), with ``smoothness="smoothness_shared"`` (on one fixed batch the
        two share no batch-to-batch noise).
    smoothness : the history's directional smoothness (:func:`claim4` lists them).
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    max_step = check_int("max_step", CLAIM5_MAX_STEP if max_step is None else max_step)
    if window is not None:
        window = check_int("window", window, minimum=3)
        if window % 2 == 0:
            raise ValueError(f"window must be an odd integer >= 3, got {window}")
    level = _check_level(level)
    settings = _check_names("settings", settings)
    final, notes = _final(history, _loss_quantity(history, quantity), frac, lrs, runs)
    if norm is None:
        norm = "grad_norm_probe" if (history["quantity"] == "grad_norm_probe").any() else "grad_norm"
    check_choice("norm", norm, ("grad_norm_probe", "grad_norm", "grad_norm_shared"))
    if norm == "grad_norm":
        notes.append("gradient norm from the same minibatch as the smoothness (no probe batch recorded): "
                     "the correlation includes the batch's own co-fluctuation")
    ok = final[~final["diverged"] & (final["optimizer"] == optimizer)].set_index(_RUN).index
    h = history[(history["optimizer"] == optimizer) & (history["step"] < max_step)
                & history["quantity"].isin([norm, smoothness])]
    h = h.replace({"quantity": {norm: "grad_norm", smoothness: "smoothness"}})
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
            untested.append((part_id(s), f"{s} (too few usable steps per seed to detrend)"))
            continue
        parts.append(_part(s, per["spearman"].to_numpy(), level, what="mean detrended Spearman correlation",
                           extra=f"(plain Spearman {per['spearman_raw'].mean():.3g})",
                           says=(f"smoothness rises with the gradient norm beyond their trends in {_title(s)}",
                                 f"smoothness falls as the gradient norm rises in {_title(s)}")))
        data.append(per)
    untested += [s for s in (settings or ()) if s not in set(wide["setting"])]
    return _decide(5, parts, notes, _cat(data), untested, level)


def claim6(history: pd.DataFrame, depths: Mapping = DEPTHS, quantity: str | None = None,
           frac: float = 0.1, lrs=None, runs=None, level: float = 0.95) -> Verdict:
    """Claim 6: the Adam-SGDM loss gap widens with depth, while both losses fall with depth.

    At the learning rates ``lrs`` (per (setting, optimizer); else the best non-diverged
    rate of each), over the depths ``L`` of ``depths`` present (at least 2), per seed
    (paired by seed across depths; seeds not at every depth are dropped and counted):
    (a) least-squares slope over ``L`` of ``gap = log final_loss(SGDM) - log
        final_loss(Adam)`` > 0;
    (b) for each optimizer: slope over ``L`` of log final loss < 0;
    each by :func:`lintf.book.stats.test` on the per-seed slopes. A depth whose runs diverged at
    those rates makes the parts that need it (the gap, and that optimizer's loss)
    inconclusive, with the count in the evidence: a diverged run is never averaged away.
    """
    level = _check_level(level)
    final, notes = _final(history, _loss_quantity(history, quantity), frac, lrs, runs)
    have = set(final["setting"])
    Ls = [L for L in sorted(depths) if depths[L] in have]
    parts, untested = [], []
    if len(Ls) < 2:
        return _decide(6, parts, notes, None, [(pid, f"{pid} (found depths {Ls}, need >= 2)")
                                               for pid in ("gap_widens", "sgdm_falls", "adam_falls")], level)
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

    def slope_part(pid, name, frame, side, what, opts, says):
        reason = blocked_by(opts)
        if reason:
            parts.append(_blocked(name, reason, side=side, what=what, says=says, pid=pid))
            return None
        frame = frame.reindex(columns=Ls)
        full = frame.dropna()
        if len(full) < len(frame):
            notes.append(f"{name}: seed(s) {sorted(set(frame.index) - set(full.index))} not at every "
                         "depth, excluded")
        if full.empty:
            untested.append((pid, f"{name} (no seed at every depth)"))
            return None
        slopes = _slope(x, full.to_numpy())
        parts.append(_part(name, slopes, level, side=side, what=what, says=says, pid=pid))
        return pd.DataFrame({"part": name, "seed": full.index, "slope": slopes})

    gap = logs["sgdm"].reindex(columns=Ls) - logs["adam"].reindex(columns=Ls)
    data = [slope_part("gap_widens", f"gap widens with depth (L = {', '.join(map(str, Ls))})", gap, "greater",
                       "slope of log(SGDM/Adam) per layer", OPTIMIZERS,
                       ("the SGDM/Adam loss gap widens with depth", "the SGDM/Adam loss gap narrows with depth"))]
    for opt in OPTIMIZERS:
        data.append(slope_part(f"{opt}_falls", f"{opt} loss falls with depth", logs[opt], "less",
                               "slope of log final loss per layer", (opt,),
                               (f"{_NAMES[opt]}'s final loss falls with depth", f"{_NAMES[opt]}'s final loss rises with depth")))
    return _decide(6, parts, notes, _cat([d for d in data if d is not None]), untested, level)


def claim7(history: pd.DataFrame, light: str = TAILS["sphere"], reference: str = TAILS["gamma"],
           gaussian: str | None = TAILS["gaussian"], quantity: str | None = None, frac: float = 0.1,
           lrs=None, runs=None, level: float = 0.95) -> Verdict:
    """Claim 7: light-tailed (sphere) covariates make both optimizers faster, without
    closing the relative gap.

    ``reference`` is the gamma setting, the paper's comparison in Fig 9; ``gaussian`` the
    gaussian Setting 1 (None: not compared). The settings are compared at the last
    iteration all of them reached. With ``gap = log(final SGDM / final Adam)`` per seed,
    parts by :func:`lintf.book.stats.test` on one number per seed (paired by seed):
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
    final, notes = _final(history, _loss_quantity(history, quantity), frac, lrs, runs)
    notes = horizon + notes
    have = set(final["setting"])
    parts, untested = [], []
    for s in names:
        notes += _diverged_note(final[final["setting"] == s], s)
    missing = [s for s in (light, reference) if s not in have]
    if missing:
        ids = [f"{opt}_faster" for opt in OPTIMIZERS] + ["gap_kept"] + (["gap_kept_gaussian"] if gaussian else [])
        return _decide(7, parts, notes, None, [(pid, f"{pid} (settings {missing} missing)") for pid in ids], level)
    for opt in OPTIMIZERS:
        d, n2 = _paired_log(final, (reference, opt), (light, opt))
        notes += n2
        if d.empty:
            untested.append((f"{opt}_faster", f"{opt} faster on {light}"))
            continue
        parts.append(_part(f"{opt} lower loss on {light} than {reference}", d.to_numpy(), level, pid=f"{opt}_faster",
                           what=f"mean log(loss {reference} / loss {light})",
                           says=(f"{_NAMES[opt]} reaches a lower loss on {light} covariates than on {reference} ones",
                                 f"{_NAMES[opt]} reaches a higher loss on {light} covariates than on {reference} ones")))
    gap_light, n2 = _paired_log(final, (light, "sgdm"), (light, "adam"))
    notes += n2
    for ref, pid in ((reference, "gap_kept"), (gaussian, "gap_kept_gaussian")):
        if ref is None:
            continue
        if ref not in have:
            untested.append((pid, f"gap not closed on {light} vs {ref}"))
            continue
        gap_ref, n2 = _paired_log(final, (ref, "sgdm"), (ref, "adam"))
        notes += n2
        kept, n3 = _paired(gap_light, GAP_KEPT * gap_ref, f"gap on {light} vs {ref}")
        notes += n3
        if kept.empty:
            untested.append((pid, f"gap not closed on {light} vs {ref} (no paired seeds)"))
            continue
        plain, _ = _paired(gap_light, gap_ref, "")
        tp = stats.test(plain.to_numpy(), level=level)
        parts.append(_part(f"gap not closed on {light} vs {ref}", kept.to_numpy(), level, pid=pid,
                           what=f"mean gap({light}) - {GAP_KEPT:g} gap({ref})",
                           extra=_gap_words(light, ref, tp),
                           says=(f"at least half of the SGDM/Adam log-loss gap on {ref} remains on {light}",
                                 f"less than half of the SGDM/Adam log-loss gap on {ref} remains on {light}")))
    data = final[final["setting"].isin(names)]
    return _decide(7, parts, notes, data, untested, level)


def claim8(history: pd.DataFrame, linear: str = ATTENTION["linear"], softmax: str = ATTENTION["softmax"],
           optimizers=OPTIMIZERS, quantity: str | None = None, frac: float = 0.1, lrs=None, runs=None,
           level: float = 0.95) -> Verdict:
    """Claim 8: linear attention trains faster than softmax attention on this task.

    Both settings are compared at the last iteration both reached, each attention at the
    learning rate the caller passes in ``lrs`` (e.g. ``{(linear, "adam"): a, (softmax,
    "adam"): b}``, each variant's own best rate; without it, the only rate present or the
    best non-diverged one). For each optimizer run on both settings: per seed ``d = log
    final_loss(softmax) - log final_loss(linear)`` (same optimizer, same seed); the part
    holds when :func:`lintf.book.stats.test` of ``d`` > 0 holds.
    """
    level = _check_level(level)
    optimizers = tuple(check_choice("optimizers[i]", o, OPTIMIZERS) for o in optimizers)
    history, horizon = _common_horizon(history, (linear, softmax))
    final, notes = _final(history, _loss_quantity(history, quantity), frac, lrs, runs)
    notes = horizon + notes
    parts, untested, data = [], [], []
    for s in (linear, softmax):
        notes += _diverged_note(final[final["setting"] == s], s)
    for opt in optimizers:
        present = {s for s in (linear, softmax)
                   if ((final["setting"] == s) & (final["optimizer"] == opt)).any()}
        if present != {linear, softmax}:
            untested.append((f"{opt}_linear_faster", f"{opt} ({linear} and {softmax} both needed)"))
            continue
        d, n2 = _paired_log(final, (softmax, opt), (linear, opt))
        notes += n2
        if d.empty:
            untested.append((f"{opt}_linear_faster", f"{opt} (no paired seeds)"))
            continue
        lr_note = ", ".join(f"{s} lr {final[(final['setting'] == s) & (final['optimizer'] == opt)]['lr'].iloc[0]:g}"
                            for s in (linear, softmax))
        parts.append(_part(f"{opt}: {softmax} vs {linear}", d.to_numpy(), level, pid=f"{opt}_linear_faster",
                           what="mean log(softmax/linear final loss)", extra=f"({lr_note})",
                           says=(f"with {_NAMES[opt]}, linear attention reaches a lower loss than softmax",
                                 f"with {_NAMES[opt]}, softmax attention reaches a lower loss than linear")))
        data.append(pd.DataFrame({"optimizer": opt, "seed": d.index, "log_gap": d.to_numpy()}))
    return _decide(8, parts, notes, _cat(data), untested, level)


# -- beyond the paper: the ablation --------------------------------------------------------
def _ablation_logs(history, runs, frac):
    """Per (setting, seed) the log final loss of every optimizer (columns), diverged runs NaN."""
    final = final_loss(history, _loss_quantity(history, None), frac, runs)
    final = final.assign(log_loss=np.log(final["final_loss"].astype(float)))
    return final.pivot_table(index=["setting", "seed"], columns="optimizer", values="log_loss", aggfunc="first")


def _fraction_bounds(closed: np.ndarray, gap: np.ndarray, level: float) -> tuple[float, float]:
    """Bounds of the share ``theta`` of the gap closed, by the decision rule inverted: the
    ``theta`` at which the sign-flip test's one-sided bounds of ``mean(closed - theta gap)`` cross
    0 (Fieller's construction with :func:`lintf.book.stats.test`); NaN unless every gap is > 0."""
    if closed.size < 2 or not (gap > 0).all():
        return math.nan, math.nan

    def root(which):
        lo, hi = -20.0, 20.0
        f = lambda t: getattr(stats.test(closed - t * gap, level=level), which)   # noqa: E731  decreasing in t
        if f(lo) < 0 or f(hi) > 0:
            return -math.inf if f(lo) < 0 else math.inf
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
        return 0.5 * (lo + hi)
    return root("low"), root("high")


def gap_closed(history: pd.DataFrame, runs: pd.DataFrame | None = None, frac: float = 0.1,
               level: float = 0.95) -> pd.DataFrame:
    """The share of the SGDM-Adam gap each optimizer closes, per setting.

    Per seed, ``gap = log L(sgdm) - log L(adam)`` and ``closed = log L(sgdm) - log L(o)``
    (``L`` the final loss, :func:`lintf.book.summaries.final_loss`); the share is
    ``mean(closed) / mean(gap)`` (0: no better than SGDM, 1: as good as Adam), with one-sided
    ``level`` bounds by :func:`_fraction_bounds`. Returns one row per (setting, optimizer):
    n_seeds, final_loss (geometric mean over seeds) with loss_low, loss_high (``exp`` of the
    sign-flip bounds of the mean log loss), closed (mean log ratio), share, low, high.
    """
    level = _check_level(level)
    logs = _ablation_logs(history, runs, _check_frac(frac))
    rows = []
    for s, g in logs.groupby(level="setting", sort=True):
        if not {"sgdm", "adam"} <= set(g.columns):
            continue
        for o in g.columns:
            ok = g[list(dict.fromkeys(["sgdm", "adam", o]))].dropna()
            if ok.empty:
                continue
            gap, closed = (ok["sgdm"] - ok["adam"]).to_numpy(), (ok["sgdm"] - ok[o]).to_numpy()
            low, high = _fraction_bounds(closed, gap, level)
            loss = stats.test(ok[o].to_numpy(dtype=float), level=level)
            rows.append({"setting": s, "optimizer": o, "n_seeds": len(ok), "final_loss": float(np.exp(ok[o].mean())),
                         "loss_low": math.exp(loss.low), "loss_high": math.exp(loss.high),
                         "closed": closed.mean(), "share": closed.mean() / gap.mean() if gap.mean() else math.nan,
                         "low": low, "high": high})
    return pd.DataFrame(rows, columns=["setting", "optimizer", "n_seeds", "final_loss", "loss_low", "loss_high",
                                       "closed", "share", "low", "high"])


_HYPOTHESIS_PARTS = {
    # key: (optimizers needed, per-seed value from the log losses, threshold, what)
    "A1": (("sgdm", "adam", "signsgd"), lambda w: (w["sgdm"] - w["signsgd"]) - 0.5 * (w["sgdm"] - w["adam"]), 0.0,
           "mean of closed(signsgd) - gap/2"),
    "A2": (("adam", "adam_b2_0.999"), lambda w: w["adam_b2_0.999"] - w["adam"], A2_MARGIN,
           "mean log(final loss beta2=0.999 / beta2=0.9)"),
    "A3": (("signsgd", "normsgd"), lambda w: w["normsgd"] - w["signsgd"], 0.0,
           "mean log(final loss normsgd / signsgd)"),
}


_HYPOTHESIS_SAYS = {
    "A1": ("signum closes at least half of the SGDM-Adam log-loss gap",
           "signum closes less than half of the SGDM-Adam log-loss gap"),
    "A2": ("Adam with beta2 = 0.999 is no more than 10% better than with 0.9",
           "Adam with beta2 = 0.999 is more than 10% better than with 0.9"),
    "A3": ("normalised SGDM closes less of the gap than signum", "normalised SGDM closes more of the gap than signum"),
}


def hypothesis(key: str, history: pd.DataFrame, runs: pd.DataFrame | None = None, settings=ABLATION_SETTINGS,
               frac: float = 0.1, level: float = 0.95) -> Verdict:
    """Decide the ablation's hypothesis ``key`` (:data:`HYPOTHESES`) by the claims' rule.

    Rule, per setting and seed, with ``log L(o)`` the log final loss of optimizer ``o``
    (:func:`lintf.book.summaries.final_loss`, diverged runs dropped):

    - A1: ``[log L(sgdm) - log L(signsgd)] - 0.5 [log L(sgdm) - log L(adam)] > 0``;
    - A2: ``log L(adam_b2_0.999) - log L(adam) > log 0.9`` (:data:`A2_MARGIN`);
    - A3: ``log L(normsgd) - log L(signsgd) > 0``.

    Each setting is one part decided by :func:`lintf.book.stats.test`; the hypothesis is
    :func:`lintf.book.stats.combine` of its settings' parts, like a claim.
    """
    check_choice("key", key, HYPOTHESES)
    level = _check_level(level)
    need, value, threshold, what = _HYPOTHESIS_PARTS[key]
    logs = _ablation_logs(history, runs, _check_frac(frac))
    settings = _check_names("settings", settings)
    parts, notes, untested, data = [], [], [], []
    for s in settings:
        if s not in logs.index.get_level_values("setting") or not set(need) <= set(logs.columns):
            untested.append((part_id(s), f"{s} (no runs of {', '.join(need)})"))
            continue
        w = logs.xs(s, level="setting")[list(need)]
        lost = w.index[w.isna().any(axis=1)].tolist()
        if lost:
            notes.append(f"{s}: seed(s) {lost} with a diverged or missing run, excluded")
        w = w.dropna()
        if w.empty:
            untested.append((part_id(s), f"{s} (every seed diverged)"))
            continue
        v = value(w).to_numpy(dtype=float)
        parts.append(_part(s, v, level, threshold=threshold, what=what,
                           says=tuple(f"{t} in {_title(s)}" for t in _HYPOTHESIS_SAYS[key])))
        data.append(pd.DataFrame({"setting": s, "seed": w.index, "value": v}))
    return _decide(key, parts, notes, _cat(data), untested, level)



# -- findings beyond the paper: why the declared alternatives can disagree ---------------------
FINDINGS: dict[str, str] = {
    "F1": ("Adam's per-prompt error on the authors' batch is more heavy-tailed than SGDM's at the end of "
           "training: its mean exceeds its median by a larger factor."),
    "F2": ("Adam's steps meet rare curvature spikes: on the authors' batch, the per-step log ratio of SGDM's "
           "directional smoothness to Adam's has its mean below its median."),
}
"""Beyond the paper: two hypotheses that say why a claim's declared alternatives can disagree
(:data:`lintf.book.registry.REGISTRY`'s alternatives), stated before the numbers and decided by
the claims' rule (:func:`finding`): F1 where the loss's mean and median part, F2 where the
smoothness's mean and median part."""


def finding(key: str, history: pd.DataFrame, runs: pd.DataFrame | None = None, settings=None,
            level: float = 0.95) -> Verdict:
    """Decide the finding ``key`` (:data:`FINDINGS`) by the claims' rule, one part per setting.

    F1: per seed, at the last evaluation on the shared batch, ``d = log(mean/median error)(Adam)
    - log(mean/median error)(SGDM)`` (quantities ``shared_eval_loss`` and ``shared_eval_median``
    of :func:`lintf.compute.engine.train`); holds where :func:`lintf.book.stats.test` of ``d`` > 0
    holds. F2: per seed, over every recorded step, ``d = median - mean`` of ``log
    smoothness_shared(SGDM) - log smoothness_shared(Adam)`` (a left tail pulls the mean below
    the median); > 0. Diverged runs are dropped.
    """
    check_choice("key", key, FINDINGS)
    level = _check_level(level)
    settings = _check_names("settings", settings)
    need = ("shared_eval_loss", "shared_eval_median") if key == "F1" else ("smoothness_shared",)
    final, notes = _final(history, _loss_quantity(history, None), 0.1, None, runs)
    ok = final[~final["diverged"]].set_index(_RUN).index
    h = history[history["quantity"].isin(need)]
    h = h[h.set_index(_RUN).index.isin(ok)]
    parts, untested, data = [], [], []
    for s in _present(h, settings) if len(h) else []:
        g = h[h["setting"] == s]
        if key == "F1":
            last = g[g["step"] == g["step"].max()]
            w = last.pivot_table(index=["seed", "optimizer"], columns="quantity", values="value")
            if not set(need) <= set(w.columns):
                untested.append((part_id(s), f"{s} (no shared-batch losses)"))
                continue
            spread = np.log(w["shared_eval_loss"] / w["shared_eval_median"]).unstack("optimizer")
            what, says = "log(mean/median error): Adam minus SGDM", (
                f"Adam's per-prompt error is more heavy-tailed than SGDM's in {_title(s)}",
                f"SGDM's per-prompt error is more heavy-tailed than Adam's in {_title(s)}")
        else:
            v = g[g["value"] > 0].assign(log_s=lambda f: np.log(f["value"].astype(float)))
            per = v.pivot_table(index=["seed", "step"], columns="optimizer", values="log_s")
            ratio = (per.get("sgdm") - per.get("adam")).dropna() if {"sgdm", "adam"} <= set(per.columns) else None
            if ratio is None or ratio.empty:
                untested.append((part_id(s), f"{s} (no shared-batch smoothness)"))
                continue
            grouped = ratio.groupby(level="seed")
            spread = pd.DataFrame({"adam": grouped.median() - grouped.mean(), "sgdm": 0.0})
            what, says = "median minus mean of the per-step log ratio", (
                f"the log ratio has a left tail (Adam's rare high-curvature steps) in {_title(s)}",
                f"the log ratio has a right tail in {_title(s)}")
        if not {"sgdm", "adam"} <= set(spread.columns):
            untested.append((part_id(s), f"{s} (needs both optimizers)"))
            continue
        d = (spread["adam"] - spread["sgdm"]).dropna()
        parts.append(_part(s, d.to_numpy(), level, what=what, says=says))
        data.append(pd.DataFrame({"setting": s, "seed": d.index, "value": d.to_numpy()}))
    untested += [s for s in (settings or ()) if s not in set(h["setting"])]
    return _decide(key, parts, notes, _cat(data), untested, level)
