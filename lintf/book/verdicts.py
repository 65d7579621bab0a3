"""The claims decided, and the scorecard: every verdict of the book comes from :func:`verdict`,
in the chapter that owns the claim (:data:`CLAIM_CHAPTER`) and on the scorecard alike: the same
function reads the same stored experiments (the scorecard with ``cached_only=True``, so it
never recomputes), hence the scorecard shows exactly the chapters' verdicts. :func:`inputs`
says which experiments a claim reads. Each claim, its chapter, inputs, rule and parts are
declared once, in :data:`lintf.book.registry.REGISTRY`; the names here are views of it.

Beyond the paper, the ablation chapter's hypotheses (:data:`lintf.book.claims.HYPOTHESES`) are
decided by :func:`hypothesis` on :func:`lintf.book.frames.ablation_runs`, and the scorecard
shows them apart (:func:`beyond`).
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from ..compute.checks import check_int
from . import claims, stats
from .frames import Context, ablation_runs, provenance

def __getattr__(name: str):
    """``CLAIM_CHAPTER``: ``{number: chapter}``, the chapter that shows the figures behind each
    claim and states its verdict first; a view of :data:`lintf.book.registry.REGISTRY` (read lazily:
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
(:data:`lintf.book.claims.HYPOTHESES`)."""


def inputs(claim: int, ctx: Context) -> dict:
    """The frames claim ``claim`` is decided on (computed, or read when ``ctx.cached_only``;
    a missing stored result raises ``LookupError``): its :attr:`lintf.book.registry.Claim.inputs`."""
    from .registry import get
    return get(claim).inputs(ctx)


def decide(claim: int, data: dict, ctx: Context) -> claims.Verdict:
    """The verdict of claim ``claim`` on the frames of :func:`inputs`: its
    :attr:`lintf.book.registry.Claim.rule`."""
    from .registry import get
    return get(claim).rule(data, ctx)


def design(claim: int, scale, steps: int | None = None) -> pd.DataFrame:
    """The parts claim ``claim`` is decided on at ``scale`` and how many seeds each has, stated
    before any run (from the scale and the claim's rule, not from results): one row per part,
    columns ``id`` (the part's stable id, which its verdict's part carries), ``part`` (in words)
    and ``seeds`` (paired parts: the seeds both sides share); the claim's
    :attr:`lintf.book.registry.Claim.design`. Runs that diverge or a chapter run with other
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


def scorecard(ctx: Context, frames: dict | None = None) -> tuple[dict, list[dict]]:
    """Every claim's verdict from the stored results (``ctx`` read-only), and the claims that
    could not be decided because an experiment is missing: ``(verdicts, missing)`` with
    ``missing`` rows ``claim, chapter, reason``. ``frames``: :func:`spreads`'s alternatives
    frames, whose primary verdicts are taken as they are (a claim's inputs are read once)."""
    from .registry import REGISTRY
    ctx = dataclasses.replace(ctx, cached_only=True)
    frames = frames or {}
    return _read(REGISTRY, lambda k: frames[k].attrs["primary"] if k in frames else verdict(k, ctx),
                 {k: c.chapter for k, c in REGISTRY.items()})


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


def hypothesis(key: str, ctx: Context, settings=claims.ABLATION_SETTINGS) -> claims.Verdict:
    """Hypothesis ``key`` (:data:`lintf.book.claims.HYPOTHESES`) decided on the ablation's runs:
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


def card(verdicts: dict, texts: dict, chapters, scale=None, spread: dict | None = None) -> pd.DataFrame:
    """The scorecard's table: one row per claim (or hypothesis) of ``texts``: its verdict
    (``"not computed"`` when missing from ``verdicts``), its parts and seeds, the parts left
    untested, whether it could come out each way (``"yes (6 seeds per part can refute one of 3
    parts)"``: :func:`could_fail` with ``k`` parts and ``n`` the fewest seeds of any part, from
    :func:`design` at ``scale`` for the paper's claims, else from the parts decided) and the
    chapter (``chapters``: one notebook name, or a dict per key; :func:`styled_card` shows its
    title, :data:`CHAPTER_TITLES`). ``spread``: ``{key: robustness}`` (:func:`robustness`) adds the
    columns ``alternatives`` (their counts) and ``carries`` ("robust" or "fragile")."""
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
    columns = ["claim", "statement", "verdict", "parts, seeds", "untested", "could come out each way", "chapter"]
    out = pd.DataFrame(rows, columns=columns)
    if scale is not None and getattr(scale, "name", scale) == "ci":     # a smoke test decides nothing
        from .chapter import NOT_DECIDED
        out["verdict"] = [v if v == "not computed" else f"{NOT_DECIDED}; the rule said: {v}" for v in out["verdict"]]
    if spread is not None:
        out.insert(3, "alternatives", [spread[k]["text"] if k in spread else "-" for k in out["claim"]])
        out.insert(4, "carries", [("fragile" if spread[k]["fragile"] else "robust") if k in spread else "-"
                                  for k in out["claim"]])
    return out


def styled_card(verdicts: dict, texts: dict, chapters, key_name: str = "claim", scale=None, spread=None):
    """:func:`card` as a pandas Styler: the verdict column as a coloured badge (the colours of
    :data:`lintf.book.claims.VERDICT_COLORS`, grey for "not computed"), the statement column
    wrapped, the chapter as a link titled by :data:`CHAPTER_TITLES`; the key column named
    ``key_name``."""
    import html
    colours = {**claims.VERDICT_COLORS, "not computed": "#BBBBBB"}

    def badge(v):
        return f"color: white; background-color: {colours[v]}; font-weight: bold" if v in colours else ""

    table = card(verdicts, texts, chapters, scale, spread).rename(columns={"claim": key_name})
    table["chapter"] = [f'<a href="{html.escape(c)}.html">{html.escape(CHAPTER_TITLES.get(c, c))}</a>'
                        for c in table["chapter"]]
    return (table.style.map(badge, subset=["verdict"])
            .set_properties(subset=["statement", "untested"], **{"max-width": "22em"}))


def parts(verdicts: dict, untested: bool = False) -> pd.DataFrame:
    """Every part of every verdict, one frame with a ``claim`` column (the forest plot's input,
    :func:`lintf.book.plots.forest`); the untested parts, which have no statistic to draw, only with
    ``untested=True`` (the card lists them)."""
    frames = [v.details["parts"].assign(claim=k) for k, v in verdicts.items()]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["claim", "part", "statistic", "low", "high", "threshold", "side", "verdict"])
    return out if untested else out[out["verdict"] != "untested"].reset_index(drop=True)


def counts(verdicts: dict, missing: list[dict]) -> dict:
    """How many verdicts hold, do not hold, are inconclusive, and how many keys were not
    computed: ``{"holds": n, "does not hold": n, "inconclusive": n, "not computed": n}``
    (:func:`lintf.book.claims.count_words` says it in English)."""
    out = {v: sum(x.verdict == v for x in verdicts.values()) for v in claims.VERDICTS}
    return {**out, "not computed": len(missing)}


def claim_by_claim(verdicts: dict) -> str:
    """Every claim of :data:`lintf.book.registry.REGISTRY` in one phrase, with the few words that name
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



# -- how far a verdict carries: the declared alternatives -------------------------------------
ROBUST_SHARE = 0.75
"""The share of the measured alternatives that must reach the primary verdict for it to be called
robust (with no alternative reaching the opposite decision and its bound clear of the claim's
margin): declared here, once, before any number (:func:`robustness`)."""

ALTERNATIVE_COLUMNS = ["claim", "id", "label", "paper", "verdict", "part", "statistic", "low", "high",
                       "threshold", "side", "n"]


def _deciding_row(v) -> dict:
    """The deciding part of verdict ``v`` (its statistic, bounds, threshold, side, seeds); NaNs
    for no verdict (an alternative not measured) or one without parts."""
    t = v.details["parts"] if v is not None else pd.DataFrame()
    hit = t[t["part"] == v.part] if len(t) else t
    row = hit.iloc[0] if len(hit) else (t.iloc[0] if len(t) else None)
    if row is None:
        return {"part": "", "statistic": float("nan"), "low": float("nan"), "high": float("nan"),
                "threshold": 0.0, "side": "greater", "n": 0}
    return {"part": row["part"], "statistic": float(row["statistic"]), "low": float(row["low"]),
            "high": float(row["high"]), "threshold": float(row["threshold"]), "side": row["side"], "n": int(row["n"])}


def alternatives(claim: int, ctx: Context, data: dict | None = None) -> pd.DataFrame:
    """Claim ``claim`` decided under each of its declared alternatives
    (:attr:`lintf.book.registry.Claim.alternatives`: the paper's protocol first, then the others,
    in their declared order), by the same rule on the same seeds: one row per alternative with
    its ``verdict`` (``"not measured"`` when the runs did not record what it reads), the deciding
    part's name, ``statistic``, one-sided bounds ``low, high``, ``threshold``, ``side`` and seeds
    ``n`` (:data:`ALTERNATIVE_COLUMNS`); ``paper`` marks the primary, whose
    :class:`lintf.book.claims.Verdict` is ``attrs["primary"]``. The claim's own inputs are read
    once (``data``: given already) and shared by every alternative that reads no other
    experiment; their provenance is ``attrs["provenance"]``."""
    from .registry import get
    c = get(claim)
    data = c.inputs(ctx) if data is None else data
    rows, primary = [], None
    for alt in c.alternatives:
        v = c.decide(alt, ctx, data)
        primary = v if alt.paper else primary
        rows.append({"claim": claim, "id": alt.id, "label": alt.label, "paper": alt.paper, **_deciding_row(v),
                     "verdict": v.verdict if v is not None else "not measured"})
    out = pd.DataFrame(rows, columns=ALTERNATIVE_COLUMNS)
    out.attrs["provenance"] = provenance(*(data.values() if isinstance(data, dict) else ()))
    out.attrs["primary"] = primary
    return out


def _bound_gap(row) -> float:
    """How far the deciding bound of a decided part lies past the threshold, in the part's units:
    the lower bound above it (``side`` greater) or the upper below it (less) for a part that
    holds, the reverse bound for one that does not hold."""
    thr, low, high = row["threshold"], row["low"], row["high"]
    greater = row["side"] == "greater"
    if row["verdict"] == "holds":
        return (low - thr) if greater else (thr - high)
    return (thr - high) if greater else (low - thr)


OPPOSITE = {"holds": "does not hold", "does not hold": "holds"}


def robustness(frame: pd.DataFrame, margin: float, share: float = ROBUST_SHARE) -> dict:
    """Whether the primary verdict of an :func:`alternatives` frame carries: ``{"counts": {verdict:
    n} over the measured alternatives other than the paper's, "measured": n, "agree": n,
    "fragile": bool, "why": [reasons], "text": "of 9 alternatives: 6 hold, 1 does not hold, 2
    inconclusive"}`` (plural verbs: "2 do not hold").

    Fragile when the primary is decided and its deciding bound lies within ``margin`` of its
    threshold (the claim's declared margin), or any measured alternative reaches the opposite
    decision, or fewer than ``share`` of the measured alternatives reach the primary's verdict
    (an inconclusive primary: when some alternative decides either way). Robust otherwise. The
    rule never reads which way a verdict went: it compares verdicts, so it can call any of them
    fragile (tested on simulated data)."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    primary = frame[frame["paper"]].iloc[0]
    others = frame[~frame["paper"]]
    measured = others[others["verdict"] != "not measured"]
    counts = {v: int((measured["verdict"] == v).sum()) for v in claims.VERDICTS}
    agree = counts.get(primary["verdict"], 0)
    why = []
    if primary["verdict"] in OPPOSITE:
        gap = _bound_gap(primary)
        if gap < margin:
            why.append(f"its bound lies {gap:.3g} past the threshold, within the declared margin {margin:g}")
        if counts[OPPOSITE[primary['verdict']]]:
            why.append(f"{counts[OPPOSITE[primary['verdict']]]} alternative(s) reach the opposite decision")
        if len(measured) and agree < share * len(measured):
            why.append(f"only {agree} of {len(measured)} alternatives agree")
    elif primary["verdict"] == "inconclusive":
        decided = counts["holds"] + counts["does not hold"]
        if decided:
            why.append(f"{decided} of {len(measured)} alternatives decide it")
    missing = len(others) - len(measured)
    plural = {"holds": "hold", "does not hold": "do not hold"}
    words = [f"{n} {plural.get(v, v) if n != 1 else v}" for v, n in counts.items() if n]
    text = (f"of {len(others)} alternative{'s' * (len(others) != 1)}: "
            + (", ".join(words) if words else "none measured"))
    if missing and words:
        text += f", {missing} not measured"
    return {"counts": counts, "measured": len(measured), "agree": agree, "fragile": bool(why), "why": why,
            "text": text}


def spreads(ctx: Context) -> tuple[dict, dict]:
    """Every claim's :func:`alternatives` frame and :func:`robustness`, read from the store (``ctx``
    read-only): ``({claim: frame}, {claim: robustness})``; a claim whose experiments are missing
    is left out (the scorecard lists it as not computed)."""
    from .registry import REGISTRY
    ctx = dataclasses.replace(ctx, cached_only=True)
    frames, robust = {}, {}
    for k, c in REGISTRY.items():
        try:
            frames[k] = alternatives(k, ctx)
        except LookupError:
            continue
        robust[k] = robustness(frames[k], c.margin)
    return frames, robust
