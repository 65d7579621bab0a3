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
from .frames import Context, ablation_runs

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
    :data:`lintf.book.claims.VERDICT_COLORS`, grey for "not computed"), the statement column
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

