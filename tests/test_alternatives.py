"""The declared alternatives of each claim and the rule that says how far a verdict carries:
declared before any number (they do not depend on the data), decided by each claim's own rule,
and "fragile" or "robust" by a rule that can come out either way (simulated data)."""
import math

import numpy as np
import pandas as pd
import pytest

import lintf.book as B
from lintf.book import registry as R
from lintf.book import verdicts as V

SETTINGS = ("setting1", "setting2", "setting3")
QUANTITIES = ("shared_eval_loss", "shared_eval_median", "seed_eval_loss", "seed_eval_median", "eval_loss", "loss")


def history(gaps: dict, seeds=range(8), steps=(0, 50, 100), seed=0) -> pd.DataFrame:
    """Per (quantity), Adam's loss is SGDM's times exp(-gap[quantity]) (times noise); a quantity
    missing from ``gaps`` has no gap. The same across settings."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in SETTINGS:
        for sd in seeds:
            for q in QUANTITIES:
                for t in steps:
                    sgdm = math.exp(rng.normal(-2, 0.3))
                    adam = sgdm * math.exp(-gaps.get(q, 0.0) + 0.05 * rng.standard_normal())
                    for o, v in (("sgdm", sgdm), ("adam", adam)):
                        rows.append({"setting": s, "optimizer": o, "lr": 0.01, "seed": sd, "step": t, "quantity": q,
                                     "value": v})
    return pd.DataFrame(rows)


def frame_of(history_):
    return V.alternatives(1, B.context("cpu"), data={"history": history_, "runs": None})


def test_every_claim_declares_its_paper_protocol_first_and_distinct_alternatives():
    for k, c in R.REGISTRY.items():
        assert c.alternatives[0].paper and sum(a.paper for a in c.alternatives) == 1, k
        assert len(c.alternatives) >= 2 and len({a.id for a in c.alternatives}) == len(c.alternatives), k
        assert c.protocol and c.margin > 0, k
    with pytest.raises(ValueError, match="exactly one alternative"):
        R.Claim(9, "s", "x", "depth", None, None, None, (R.Alternative("a", "a"), R.Alternative("b", "b")))
    with pytest.raises(ValueError, match="declare reads"):
        R.Claim(9, "s", "x", "depth", None, None, None, (R.Alternative("a", "a", paper=True),))


def test_the_declared_alternatives_do_not_depend_on_the_data():
    """The same alternatives, in the same order, with the same options, whatever the runs say:
    declared in the registry, read from it, never chosen from results."""
    declared = [(a.id, a.label, a.paper) for a in R.REGISTRY[1].alternatives]
    one = frame_of(history({q: 1.0 for q in QUANTITIES}))
    other = frame_of(history({q: -1.0 for q in QUANTITIES}, seed=3))
    assert list(zip(one["id"], one["label"], one["paper"])) == declared
    assert list(zip(other["id"], other["label"], other["paper"])) == declared
    assert set(one["verdict"]) == {"holds"} and set(other["verdict"]) == {"does not hold"}


def test_an_alternative_set_that_disagrees_with_the_primary_makes_it_fragile():
    # the paper's batch says Adam is lower; every other measurement says the reverse
    h = history({"shared_eval_loss": 1.0, "shared_eval_median": -1.0, "seed_eval_loss": -1.0,
                 "seed_eval_median": -1.0, "eval_loss": -1.0, "loss": -1.0})
    f = frame_of(h)
    assert f.loc[f["paper"], "verdict"].item() == "holds"
    r = V.robustness(f, R.REGISTRY[1].margin)
    assert r["fragile"] and any("opposite" in w for w in r["why"])
    assert r["text"].startswith("of 9 alternatives: ") and "do not hold" in r["text"]


def test_agreeing_alternatives_far_from_the_threshold_are_robust():
    f = frame_of(history({q: 1.0 for q in QUANTITIES}))
    r = V.robustness(f, R.REGISTRY[1].margin)
    assert not r["fragile"] and r["why"] == [] and r["text"] == "of 9 alternatives: 9 hold"


def test_a_bound_within_the_margin_is_fragile_even_when_all_agree():
    f = frame_of(history({q: 1.0 for q in QUANTITIES}))
    primary = f[f["paper"]].iloc[0]
    gap = primary["low"] - primary["threshold"]
    assert V.robustness(f, margin=gap * 0.5)["fragile"] is False
    r = V.robustness(f, margin=gap * 2)
    assert r["fragile"] and "margin" in r["why"][0]


def test_robustness_on_hand_made_frames_comes_out_each_way():
    def frame(primary, others):
        rows = [{"paper": True, "verdict": primary, "statistic": 1.0, "low": 0.5, "high": math.inf, "threshold": 0.0,
                 "side": "greater"}]
        rows += [{"paper": False, "verdict": v, "statistic": 1.0, "low": 0.5, "high": math.inf, "threshold": 0.0,
                  "side": "greater"} for v in others]
        return pd.DataFrame(rows)
    assert not V.robustness(frame("holds", ["holds"] * 4), 0.1)["fragile"]
    assert V.robustness(frame("holds", ["holds"] * 3 + ["inconclusive"] * 2), 0.1)["fragile"]    # 3 of 5 < 3/4
    assert not V.robustness(frame("holds", ["holds"] * 3 + ["inconclusive"]), 0.1)["fragile"]    # 3 of 4
    assert V.robustness(frame("holds", ["holds"] * 9 + ["does not hold"]), 0.1)["fragile"]       # opposite
    assert not V.robustness(frame("inconclusive", ["inconclusive"] * 3), 0.1)["fragile"]
    assert V.robustness(frame("inconclusive", ["inconclusive", "holds"]), 0.1)["fragile"]
    assert not V.robustness(frame("holds", ["not measured"] * 3), 0.1)["fragile"]
    assert V.robustness(frame("holds", ["not measured"] * 3), 0.1)["text"] == "of 3 alternatives: none measured"


def test_an_alternative_whose_quantity_was_not_recorded_is_not_measured():
    h = history({q: 1.0 for q in QUANTITIES})
    h = h[~h["quantity"].isin(["shared_eval_median", "seed_eval_median"])]
    f = frame_of(h)
    missing = f[f["verdict"] == "not measured"]["id"].tolist()
    assert missing == ["shared_median_last", "shared_median_tail", "seed_median_last", "seed_median_tail"]
    assert V.robustness(f, 0.05)["text"] == "of 9 alternatives: 5 hold, 4 not measured"


@pytest.mark.parametrize("claim", [4, 5])
def test_the_smoothness_alternatives_read_their_own_batch(claim):
    """Claim 4 and 5 on a history where only the shared batch's smoothness favours Adam: the
    paper's protocol holds (claim 4) while the minibatch's does not."""
    rng = np.random.default_rng(1)
    rows = []
    for s in SETTINGS:
        for sd in range(8):
            for t in range(0, 3000, 20):
                g = math.exp(rng.normal(0, 0.5))
                for o in ("sgdm", "adam"):
                    base = {"setting": s, "optimizer": o, "lr": 0.01, "seed": sd, "step": t}
                    shared = math.exp((0.0 if o == "adam" else 1.0) + 0.1 * rng.standard_normal()) * g
                    own = math.exp((1.0 if o == "adam" else 0.0) + 0.1 * rng.standard_normal()) * g
                    for q, v in (("smoothness_shared", shared), ("grad_norm_shared", g), ("smoothness", own),
                                 ("grad_norm_probe", math.exp(rng.normal(0, 0.5))), ("grad_norm", g),
                                 ("smoothness_probe", own), ("smoothness_seed", own), ("loss", 0.1),
                                 ("seed_eval_loss", 0.1)):
                        rows.append({**base, "quantity": q, "value": v})
    f = V.alternatives(claim, B.context("cpu"), data={"history": pd.DataFrame(rows), "runs": None})
    by = f.set_index("id")["verdict"]
    if claim == 4:
        assert by["sm_shared_all_mean"] == "holds" and by["sm_all_mean"] == "does not hold"
        assert V.robustness(f, R.REGISTRY[4].margin)["fragile"]
    else:   # smoothness tracks the gradient norm on the shared batch by construction
        assert by["sm_shared_g_shared_first2000"] == "holds"


@pytest.mark.parametrize("key", ["F1", "F2"])
def test_the_findings_come_out_each_way(key):
    """F1 and F2 on simulated runs where Adam has (or SGDM has) the heavier tail."""
    from lintf.book import claims as C

    def runs(adam_tail: bool, seed=0):
        rng = np.random.default_rng(seed)
        rows = []
        for s in SETTINGS:
            for sd in range(8):
                for t in range(0, 2000, 20):
                    spike = rng.random() < 0.1
                    for o in ("sgdm", "adam"):
                        tailed = (o == "adam") == adam_tail
                        mean, median = (3.0, 1.0) if tailed else (1.2, 1.0)
                        sm = math.exp(rng.normal(0, 0.1) + (3.0 if spike and tailed else 0.0))   # its own spikes
                        for q, v in (("shared_eval_loss", mean * math.exp(0.05 * rng.standard_normal())),
                                     ("shared_eval_median", median), ("smoothness_shared", sm), ("loss", 0.1),
                                     ("seed_eval_loss", 0.1)):
                            rows.append({"setting": s, "optimizer": o, "lr": 0.01, "seed": sd, "step": t,
                                         "quantity": q, "value": v})
        return pd.DataFrame(rows)
    assert C.finding(key, runs(True)).verdict == "holds"
    assert C.finding(key, runs(False)).verdict == "does not hold"
    none = C.finding(key, runs(True)[lambda f: f["quantity"].isin(["loss", "seed_eval_loss"])])
    assert none.verdict == "inconclusive" and len(none.details["parts"]) == 0 or \
        set(none.details["parts"]["verdict"]) <= {"untested"}
