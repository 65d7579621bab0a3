"""Every claim can come out each way at the cpu and paper scales, rates are chosen on seeds
disjoint from the tested ones, and verdicts say what was found (issue 20 items 1, 2, 4)."""
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from lintf import book as B
from lintf import claims as C
from lintf import stats as S
from lintf.compute.settings import SCALES, get_scale

LEVEL = 0.95


@pytest.mark.parametrize("scale", ["cpu", "paper"])
@pytest.mark.parametrize("claim", sorted(B.CLAIM_CHAPTER))
def test_every_claim_can_come_out_each_way(scale, claim):
    """2^-n <= (1 - level) / k, with k the claim's declared parts and n its fewest-seeded part's
    seeds, from the scale (not from a run); and n >= 5 so that every part can hold."""
    d = B.design(claim, scale)
    k, n = len(d), int(d["seeds"].min())
    assert k >= 1 and 0.5 ** n <= (1 - LEVEL) / k, (claim, scale, k, n)
    assert n >= S.min_seeds(LEVEL) and B.could_fail(n, k)


def test_could_fail_matches_holm_on_simulated_parts():
    """The bound is what Holm's step-down over k parts can reach: with every seed of one part on
    the wrong side and the other parts holding, the claim does not hold exactly when 2^-n <= 5%/k."""
    rng = np.random.default_rng(0)
    for k in (2, 3, 4, 9):
        for n in (5, 6, 7, 8):
            tests = [S.test(-1 - rng.random(n), level=LEVEL)] + [S.test(1 + rng.random(n)) for _ in range(k - 1)]
            assert (S.combine(tests) == "does not hold") == B.could_fail(n, k), (k, n)


def test_design_matches_the_claims_parts():
    """The declared parts are the ones the claims decide: claim 3 compares covariates and depths
    at the table iterations their runs reach, claim 7 against gamma only."""
    short = dataclasses.replace(get_scale("cpu"), depth_steps=750)
    assert B.compare_steps(short) == (750,) and B.compare_steps(get_scale("paper")) == (750, 1250)
    assert len(B.design(3, short)) == 6 + 3 and len(B.design(3, "paper")) == 6 + 6
    assert B.compare_steps(short, steps=2000) == (750, 1250)  # a chapter run longer reaches both
    assert len(B.design(7, "cpu")) == 3 and len(B.design(2, "cpu")) == 9


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_sweep_seeds_are_disjoint_from_the_tested_seeds(scale):
    sc = get_scale(scale)
    tested = set(sc.seeds) | set(sc.table_seeds) | set(sc.noise_seeds) | set(sc.comparison_seeds or ()) \
        | set(sc.variant_seeds or ())
    assert not set(sc.sweep_seeds) & tested


def test_scale_rejects_sweep_seeds_shared_with_tested_ones():
    cpu = get_scale("cpu")
    for field in ("seeds", "table_seeds", "noise_seeds", "comparison_seeds"):
        with pytest.raises(ValueError, match=f"sweep_seeds.*disjoint.*{field}"):
            dataclasses.replace(cpu, sweep_seeds=(getattr(cpu, field)[0], 1001))


def test_count_words():
    assert C.count_words({"holds": 1, "does not hold": 1, "inconclusive": 1}) == \
        "1 holds, 1 does not hold and 1 is inconclusive"
    assert C.count_words({"holds": 2, "does not hold": 0, "inconclusive": 3, "untested": 1}) == \
        "2 hold, 3 are inconclusive and 1 is untested"
    assert C.count_words({"holds": 0}) == "none"
    with pytest.raises(ValueError, match="counts keys"):
        C.count_words({"maybe": 1})


def _history(final: dict, seeds=range(6), spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for (s, o), f in final.items():
        for sd in seeds:
            v = f * math.exp(spread * rng.standard_normal())
            rows += [{"setting": s, "optimizer": o, "lr": 0.01, "seed": sd, "step": t, "quantity": "eval_loss",
                      "value": v} for t in range(0, 100, 10)]
    return pd.DataFrame(rows)


def test_headline_names_the_deciding_part_and_sentence_says_the_finding():
    h = _history({("setting1", "sgdm"): 0.5, ("setting1", "adam"): 0.1, ("setting2", "sgdm"): 0.11,
                  ("setting2", "adam"): 0.1, ("setting3", "sgdm"): 0.1, ("setting3", "adam"): 0.5})
    v = C.claim1(h)
    assert v.verdict == "does not hold" and v.part == "setting3"
    assert v.headline.startswith("Claim 1 does not hold (deciding part setting3: mean log(SGDM/Adam final loss)")
    assert "Shown: Adam's final loss is below SGDM's in Setting 1" in v.sentence
    assert "Shown the other way: SGDM's final loss is below Adam's in Setting 3" in v.sentence
    assert "setting3" in v._repr_html_() and v.sentence in v._repr_markdown_()


def test_an_untested_part_keeps_a_claim_from_holding():
    """Holds on two settings, the third untested (no runs, or fewer seeds than the rule needs):
    inconclusive, and the part is listed as untested, never as a decision."""
    good = {("setting1", "sgdm"): 0.5, ("setting1", "adam"): 0.1, ("setting2", "sgdm"): 0.5, ("setting2", "adam"): 0.1}
    v = C.claim1(_history(good), settings=["setting1", "setting2", "setting3"])
    assert v.verdict == "inconclusive" and v.details["untested"] == ["setting3"]
    short = pd.concat([_history(good), _history({("setting3", "sgdm"): 0.5, ("setting3", "adam"): 0.1}, seeds=[0])])
    v = C.claim1(short)
    row = v.details["parts"].set_index("part").loc["setting3"]
    assert v.verdict == "inconclusive" and row.verdict == "untested" and row.n == 1
    assert math.isnan(row.statistic) and "[-inf, inf]" not in v.evidence and "n=1" not in v.evidence
    assert C.claim1(_history(good), settings=["setting1", "setting2"]).verdict == "holds"
    card = B.card({1: v}, {1: C.CLAIMS[1]}, B.CLAIM_CHAPTER, scale="cpu")
    assert "setting3" in card.loc[0, "untested"] and card.loc[0, "could come out each way"].startswith("yes")


def test_probe_gradient_norm_is_on_an_independent_batch():
    """``grad_norm_probe``: the gradient norm at x_t on the probe stream's batch (a plain float64
    reference), recorded beside the smoothness; the training trajectory is unchanged by it."""
    import torch

    from lintf.compute.engine import probe_stream, seed_streams, train
    from lintf.compute.settings import get_setting
    st = get_setting("setting1")
    kw = dict(steps=6, batch_size=50, eval_size=50, checkpoint_every=3, progress=False)
    rec = train(st.model, st.prompts, [("adam", 0.02)], [3], record_smoothness=True, smoothness_every=3, **kw)
    plain = train(st.model, st.prompts, [("adam", 0.02)], [3], **kw)
    loss = lambda r: r.history[r.history.quantity == "loss"]["value"].to_numpy()   # noqa: E731
    np.testing.assert_array_equal(loss(rec), loss(plain))
    probe = rec.history[rec.history.quantity == "grad_norm_probe"].set_index("step")["value"]
    assert list(probe.index) == [0, 3] and probe_stream(3) not in seed_streams(3)
    gen = torch.Generator().manual_seed(probe_stream(3))
    draws = [st.prompts.sample(50, generator=gen, dtype=torch.float32) for _ in range(2)]
    for i, step in enumerate((0, 3)):
        p = {k: v[0].double().requires_grad_() for k, v in rec.params_at(step).items()}
        Z, y = (t.double() for t in draws[i])
        g = torch.autograd.grad(st.model.loss(p, Z, y), list(p.values()))
        ref = float(torch.sqrt(sum((x ** 2).sum() for x in g)))
        assert probe[step] == pytest.approx(ref, rel=1e-4)
        same = rec.history[(rec.history.quantity == "grad_norm") & (rec.history.step == step)]["value"].item()
        assert same != pytest.approx(ref, rel=1e-3)     # another batch than the training one


def test_seed_eval_loss_is_each_seeds_own_batch():
    """``seed_eval_loss``: the loss on the seed's own evaluation batch (a plain float64 reference),
    a different batch per seed and not the shared one; the claims read it when recorded."""
    import torch

    from lintf.compute.engine import eval_batch, seed_eval_batch, train
    from lintf.compute.settings import get_setting
    st = get_setting("setting1")
    r = train(st.model, st.prompts, [("sgdm", 0.02), ("adam", 0.02)], [0, 5], steps=4, batch_size=40,
              eval_size=60, eval_every=2, checkpoint_every=2, progress=False)
    Z, y = seed_eval_batch(st.prompts, [0, 5], 60)
    assert Z.shape[:2] == (2, 60) and not torch.equal(Z[0], Z[1])
    assert not torch.equal(Z[0], eval_batch(st.prompts, 60)[0])
    h = r.history[r.history.quantity == "seed_eval_loss"]
    for run in r.runs.itertuples():
        i = [0, 5].index(run.seed)
        for step in (0, 2, 4):
            p = {k: v[run.run].double() for k, v in r.params_at(step).items()}
            ref = float(st.model.loss(p, Z[i].double(), y[i].double()))
            got = h[(h.optimizer == run.optimizer) & (h.seed == run.seed) & (h.step == step)]["value"].item()
            assert got == pytest.approx(ref, rel=1e-4)
    assert C._loss_quantity(r.history, None) == "seed_eval_loss"
    assert C._loss_quantity(r.history[r.history.quantity != "seed_eval_loss"], None) == "eval_loss"
