"""One registry of claims (issue 20, item 7): every claim declared once in lintf.registry, and
the chapters, the scorecard, the glue keys and the counts in the prose derived from it."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lintf import book as B
from lintf import chapter
from lintf import claims as C
from lintf import registry as R
from lintf.compute.settings import SCALES

from test_claims import DEPTH_FINAL, depth_history, make_conditioning, make_history, make_noise

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
GLUE_ROLE = re.compile(r"\{glue(?::text)?\}`([^`:]+)(?::[^`]*)?`")
# what lintf.chapter.glue_verdict glues per verdict, and per part after "<claim>_<id>"
VERDICT_KEYS = {"stat", "low", "high", "parts", "parts_holds", "parts_does_not_hold", "parts_inconclusive",
                "parts_untested", "headline", "part", "sentence", "counts"}
CLAIM_KEYS = {"statement", "alternatives", "carries", "protocol"}
"""What a chapter glues of a claim besides its verdict: its statement (lintf.book.chapter.glue_statements)
and how far the verdict carries (lintf.book.chapter.show_alternatives)."""
PART_SUFFIXES = ("", "_low", "_high", "_n", "_verdict", "_text", "_exp")


def _markdown(name: str) -> list[str]:
    cells = json.loads((BOOK / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def _notebooks() -> list[str]:
    return sorted(p.stem for p in BOOK.glob("*.ipynb"))


# -- the registry ----------------------------------------------------------------------------
def test_every_name_of_a_claim_is_a_view_of_the_registry():
    assert list(R.REGISTRY) == list(range(1, len(R.REGISTRY) + 1))
    assert C.CLAIMS == {k: c.statement for k, c in R.REGISTRY.items()}
    assert B.CLAIM_CHAPTER == {k: c.chapter for k, c in R.REGISTRY.items()}
    for k, c in R.REGISTRY.items():
        assert c.number == k and c.key == f"claim{k}" and c.short and c.statement, c
        pd.testing.assert_frame_equal(B.design(k, "cpu"), R.design_frame(k, "cpu"))
        assert list(B.design(k, "cpu").columns) == ["id", "part", "seeds"]
    with pytest.raises(ValueError, match="claim"):
        R.get(len(R.REGISTRY) + 1)
    with pytest.raises(TypeError, match="claim"):
        B.design("one", "cpu")
    with pytest.raises(AttributeError, match="NOT_THERE"):
        C.NOT_THERE  # noqa: B018


def test_every_claim_has_a_chapter_in_the_toc():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]] + [c["file"] for c in toc["chapters"]]
    for c in R.REGISTRY.values():
        assert c.chapter in files and (BOOK / f"{c.chapter}.ipynb").is_file(), c.chapter
        assert c.chapter in B.CHAPTER_TITLES, c.chapter


@pytest.mark.parametrize("claim", sorted(R.REGISTRY))
def test_part_ids_are_unique_identifiers_and_stable_across_scales(claim):
    """At every scale the ids are distinct glue-key suffixes; a part that exists at two scales
    (same label) has the same id at both, and no id carries a number that is not in its label
    (a depth list, a horizon)."""
    label_of = {}
    for scale in SCALES:
        parts = R.REGISTRY[claim].parts(scale)
        ids = [p.id for p in parts]
        assert len(set(ids)) == len(ids), (scale, ids)
        for p in parts:
            assert re.fullmatch(r"[a-z][a-z0-9_]*", p.id) and chapter.key(p.id) == p.id, p
            assert set(re.findall(r"\d+", p.id)) <= set(re.findall(r"\d+", p.label)), p
            assert label_of.setdefault(p.label, p.id) == p.id, (scale, p)
    if claim != 3:   # only claim 3's parts depend on the scale (its table's iterations)
        assert len({R.REGISTRY[claim].ids(s) for s in SCALES}) == 1


def test_count_word():
    assert R.count_word() == R.NUMBER_WORDS[len(R.REGISTRY)] == "eight"
    assert (R.count_word(3), R.count_word(12), R.count_word(13)) == ("three", "twelve", "13")
    with pytest.raises(ValueError, match="n must"):
        R.count_word(-1)


# -- the rules give every part its stated id --------------------------------------------------
def _synthetic(claim: int) -> dict:
    """Inputs of ``claim``'s rule whose every part has data (6 seeds)."""
    both = lambda names, sg=0.5, ad=0.1: {(s, o): (sg if o == "sgdm" else ad) for s in names  # noqa: E731
                                          for o in ("sgdm", "adam")}
    if claim in (1, 4, 5):
        h = make_history(both(B.BASE), smooth=both(B.BASE, 2.0, 1.0), gn_corr=1.0)
        return {"history": h, "runs": None}
    if claim == 2:
        noise, spectrum = make_noise({s: "t3" for s in B.NOISE}, n=200, dim=8)
        return {"noise": noise, "spectrum": spectrum}
    if claim == 3:
        cond = make_conditioning({s: 2.0 for s in B.BASE + ("sphere",) + B.DEPTHS}, steps=(750, 1250))
        return {"conditioning": cond, "runs": None}
    if claim == 6:
        return {"history": depth_history(DEPTH_FINAL), "runs": None}
    if claim == 7:
        return {"history": make_history(both(("sphere", "gamma", "setting1"))), "runs": None}
    return {"history": make_history(both(("setting1", "softmax"))), "runs": None}


@pytest.mark.parametrize("claim", sorted(R.REGISTRY))
def test_the_rule_decides_exactly_the_parts_stated_in_advance(claim):
    """The claim's rule, on data where every part can be tested and on data where none can,
    gives one part per id of its design (cpu scale, whose table iterations the data has):
    the prose's keys exist whatever the runs did."""
    ctx = B.context("cpu")
    ids = set(R.REGISTRY[claim].ids("cpu"))
    data = _synthetic(claim)
    v = R.REGISTRY[claim].rule(data, ctx)
    parts = v.details["parts"]
    assert set(parts["id"]) == ids and len(parts) == len(ids), (parts[["id", "part", "verdict"]], ids)
    assert (parts["verdict"] != "untested").all(), v.evidence
    if claim in (1, 4, 5, 6, 7, 8):   # runs of another setting only: every part untested, under its id
        other = {("other", "sgdm"): 0.5, ("other", "adam"): 0.1}
        h = make_history(other, smooth={k: 1.0 for k in other}, gn_corr=1.0)
        v = R.REGISTRY[claim].rule({"history": h, "runs": None}, ctx)
        assert set(v.details["parts"]["id"]) == ids and (v.details["parts"]["verdict"] == "untested").all()


def test_a_missing_setting_leaves_its_part_untested_under_its_id():
    ctx = B.context("cpu")
    h = make_history({("sphere", "adam"): 0.1, ("gamma", "sgdm"): 0.5, ("gamma", "adam"): 0.2})
    v = R.REGISTRY[7].rule({"history": h, "runs": None}, ctx)
    parts = v.details["parts"].set_index("id")
    assert set(parts.index) == {"sgdm_faster", "adam_faster", "gap_kept"}
    assert parts.loc["sgdm_faster", "verdict"] == "untested"
    h = depth_history({L: f for L, f in DEPTH_FINAL.items() if L != 8}, diverge={("depth6", "sgdm", 0)})
    v = R.REGISTRY[6].rule({"history": h, "runs": None}, ctx)
    parts = v.details["parts"].set_index("id")
    assert parts.loc["gap_widens", "verdict"] == "untested" and "diverged" in parts.loc["gap_widens", "extra"]
    assert parts.loc["adam_falls", "verdict"] != "untested"


def test_glue_verdict_keys_are_the_registry_ids(monkeypatch):
    """The per-part keys of a claim's verdict are ``claimN_<id>`` for the ids of its design."""
    import myst_nb
    seen = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: seen.__setitem__(name, value))
    v = R.REGISTRY[6].rule(_synthetic(6), B.context("cpu"))
    keys = chapter.glue_verdict(v)
    per_part = {k for k in keys if not k.removeprefix("claim6_") in VERDICT_KEYS and k != "claim6"}
    want = {f"claim6_{i}{s}" for i in R.REGISTRY[6].ids("cpu") for s in PART_SUFFIXES}
    assert per_part == want, per_part ^ want
    assert seen["claim6_gap_widens_text"].endswith("(holds)") and "nan" not in seen["claim6_sgdm_falls_text"]


# -- the prose uses the registry's keys and counts -------------------------------------------
def _claim_refs(name: str) -> list[tuple[int, str]]:
    """The ``claimN_<rest>`` keys the notebook's prose pastes: ``[(N, rest)]``."""
    out = []
    for md in _markdown(name):
        for ref in GLUE_ROLE.findall(md):
            m = re.fullmatch(r"claim(\d+)(?:_(\w+))?", ref)
            if m:
                out.append((int(m.group(1)), m.group(2) or ""))
    return out


@pytest.mark.parametrize("name", _notebooks())
def test_prose_pastes_only_keys_of_its_claims_parts(name):
    """Static: a ``{glue:text}`claimN_<id>...``` in a chapter's prose names claim N of the
    registry, decided in that chapter, and a part id of claim N's design at both ci and cpu
    (or a key of the verdict as a whole, or one the chapter's code glues by name such as
    ``claim5_max_step``); the scorecard pastes verdicts only."""
    cells = json.loads((BOOK / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]
    code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    for n, rest in _claim_refs(name):
        assert n in R.REGISTRY, (name, n)
        if not rest or rest in VERDICT_KEYS or f'"claim{n}_{rest}"' in code:   # the chapter's own glue
            continue
        if rest in CLAIM_KEYS:      # glued by the setup cell and show_alternatives, for the claims it decides
            assert R.REGISTRY[n].chapter == name, f"{name} pastes claim{n}_{rest}, a claim of {R.REGISTRY[n].chapter}"
            continue
        assert R.REGISTRY[n].chapter == name, f"{name} pastes claim{n}_{rest}, a part of {R.REGISTRY[n].chapter}"
        ids = set(R.REGISTRY[n].ids("ci")) & set(R.REGISTRY[n].ids("cpu"))
        assert any(rest == i + s for i in ids for s in PART_SUFFIXES), \
            f"{name}: claim{n}_{rest} is no part of claim {n} (ids {sorted(ids)})"


def test_each_chapter_pastes_its_claims_verdicts():
    for c in R.REGISTRY.values():
        assert (c.number, "") in _claim_refs(c.chapter) or (c.number, "headline") in _claim_refs(c.chapter), c
        assert (c.number, "") in _claim_refs("scorecard") or "claim_by_claim" in "".join(_markdown("scorecard"))


WORDS = "|".join(R.NUMBER_WORDS[2:])


@pytest.mark.parametrize("name", _notebooks())
def test_prose_states_no_count_of_claims_by_hand(name):
    """"the paper's eight claims", "eight separate decisions": counts of claims come from the
    registry (``n_claims_word``), not from the prose."""
    for md in _markdown(name):
        found = re.findall(rf"\b(?:{WORDS}|\d+) (?:of the )?(?:paper's )?(?:claims|separate decisions|verdicts)\b",
                           md, flags=re.I)
        assert not found, (name, found)


def test_readme_counts_the_registry_s_claims():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    n, word = len(R.REGISTRY), R.count_word()
    found = re.findall(rf"\b({WORDS}|\d+) (?:of the )?(?:paper's )?(?:claims|separate decisions)\b", text, flags=re.I)
    assert found, "the README states how many claims the paper makes"
    assert all(f.lower() in (str(n), word) for f in found), found


def test_claim_by_claim_names_every_claim_with_its_verdict():
    v = R.REGISTRY[6].rule(_synthetic(6), B.context("cpu"))
    text = B.claim_by_claim({6: v})
    assert text.startswith("1 (Adam's lower loss) not computed, 2 (heavy-tailed noise) not computed")
    assert "6 (depth) holds" in text and text.count("(") == len(R.REGISTRY)


def test_chapters_state_claims_in_the_registry_s_words_only():
    """No chapter types a claim's statement again: it pastes ``claimN_statement`` (glued from the
    registry by its setup cell), and each chapter that decides a claim does so."""
    for name in _notebooks():
        text = " ".join(" ".join(_markdown(name)).split())
        for k, c in R.REGISTRY.items():
            assert " ".join(c.statement.split()) not in text, f"{name} types claim {k}'s statement"
    for c in R.REGISTRY.values():
        assert (c.number, "statement") in _claim_refs(c.chapter) or c.chapter in ("conditioning", "depth"), c.number

