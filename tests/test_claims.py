"""Claims: bootstrap against a plain loop, verdict rules, and each claim on synthetic
results whose truth is known (holds / does not hold / inconclusive)."""
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from lintf import claims as C

FAST = dict(n_boot=400)  # enough resamples to decide the clear-cut synthetic cases


# -- synthetic tidy results --------------------------------------------------------------
def make_history(final: dict, seeds=range(6), steps=200, eval_every=10, spread=0.05, lr=None,
                 smooth: dict | None = None, gn_corr: float | None = None, seed=0,
                 diverge=()) -> pd.DataFrame:
    """History whose losses decay to ``final[(setting, optimizer)]`` (times per-seed noise
    of relative size ``spread``). ``smooth[(setting, optimizer)]`` is the level of the
    directional smoothness; ``gn_corr`` the sign of its relation to grad_norm.
    ``diverge``: (setting, optimizer, seed) runs that turn NaN halfway."""
    rng = np.random.default_rng(seed)
    rows = []
    t = np.arange(steps)
    for (setting, opt), level in final.items():
        for s in seeds:
            f = level * math.exp(spread * rng.standard_normal())
            loss = f + (1.0 - f) * np.exp(-t / (steps / 8))
            if (setting, opt, s) in diverge:
                loss = loss.copy()
                loss[steps // 2:] = np.nan
            run = dict(setting=setting, optimizer=opt, lr=lr or (0.01 if opt == "adam" else 0.02), seed=s)
            rows.append(pd.DataFrame({**run, "step": t, "quantity": "loss", "value": loss}))
            ev = t[::eval_every]
            rows.append(pd.DataFrame({**run, "step": ev, "quantity": "eval_loss", "value": loss[::eval_every]}))
            if smooth is not None:
                gn = np.exp(rng.standard_normal(steps))
                base = smooth[(setting, opt)] * np.exp(0.3 * rng.standard_normal(steps))
                sm = base * (gn ** gn_corr if gn_corr else 1.0)
                if (setting, opt, s) in diverge:
                    sm[steps // 2:] = np.nan
                rows.append(pd.DataFrame({**run, "step": t, "quantity": "grad_norm", "value": gn}))
                rows.append(pd.DataFrame({**run, "step": t, "quantity": "smoothness", "value": sm}))
    return pd.concat(rows, ignore_index=True)


def make_noise(kinds: dict, n=4000, seeds=(0,), seed=0) -> pd.DataFrame:
    """Noise norms per setting: 'gauss' (normal), 't8' / 't3' (Student t: heavy, heavier)."""
    rng = np.random.default_rng(seed)
    rows = []
    for setting, kind in kinds.items():
        for s in seeds:
            if kind == "gauss":
                v = 10 + rng.standard_normal(n)
            elif kind == "t8":
                v = 10 + rng.standard_t(8, n)
            else:
                v = 10 + rng.standard_t(3, n)
            rows.append(pd.DataFrame({"setting": setting, "seed": s, "sample": np.arange(n), "value": v}))
    return pd.concat(rows, ignore_index=True)


def make_conditioning(ratios: dict, seeds=range(6), steps=(750, 1250), spread=0.1, seed=0):
    """R_med with per-seed ratio SGDM/Adam ~ ratios[setting] * exp(spread * N(0,1))."""
    rng = np.random.default_rng(seed)
    rows = []
    for setting, r in ratios.items():
        for s in seeds:
            for step in steps:
                adam = 10 * math.exp(rng.standard_normal())
                sgdm = adam * r * math.exp(spread * rng.standard_normal())
                for method in ("eig", "diag"):
                    for opt, v in (("sgdm", sgdm), ("adam", adam)):
                        rows.append(dict(setting=setting, optimizer=opt, lr=0.01, seed=s, step=step,
                                         method=method, value=v))
    return pd.DataFrame(rows)


# -- bootstrap ----------------------------------------------------------------------------
def test_bootstrap_matches_plain_loop():
    x = np.random.default_rng(1).standard_normal(7)
    got = C.bootstrap_ci(x, n_boot=500, seed=3)
    rng = np.random.default_rng(3)
    idx = rng.integers(0, x.size, size=(500, x.size))
    ref = [np.mean([x[i] for i in row]) for row in idx]
    assert got == pytest.approx(tuple(np.quantile(ref, [0.025, 0.975])), rel=1e-12)


def test_bootstrap_statistic_without_axis_falls_back_to_loop():
    x = np.random.default_rng(2).standard_normal(9)
    median_no_axis = lambda v: float(np.median(v))  # noqa: E731
    assert C.bootstrap_ci(x, median_no_axis, n_boot=300) == C.bootstrap_ci(x, np.median, n_boot=300)


def test_bootstrap_covers_and_is_deterministic():
    x = np.random.default_rng(0).normal(2.0, 1.0, 200)
    lo, hi = C.bootstrap_ci(x)
    assert lo < 2.0 < hi and hi - lo < 0.5
    assert C.bootstrap_ci(x) == (lo, hi)
    assert C.bootstrap_ci(x, seed=1) != (lo, hi)


def test_paired_bootstrap_aligns_series_by_seed():
    a = pd.Series([1.0, 2.0, 3.0, 4.0], index=[0, 1, 2, 3])
    b = pd.Series([0.5, 1.0, 1.0], index=[3, 1, 0])  # seed 2 unpaired
    got = C.paired_bootstrap_ci(a, b, n_boot=200)
    assert got == C.bootstrap_ci(np.array([0.0, 1.0, 3.5]), n_boot=200)


def test_bootstrap_degenerate_and_bad_input():
    assert all(math.isnan(v) for v in C.bootstrap_ci([1.0]))
    with pytest.raises(ValueError, match="finite"):
        C.bootstrap_ci([1.0, np.nan])
    with pytest.raises(ValueError, match="level"):
        C.bootstrap_ci([1.0, 2.0], level=1.5)
    with pytest.raises(TypeError, match="n_boot"):
        C.bootstrap_ci([1.0, 2.0], n_boot=100.0)


def test_bootstrap_diff_ci():
    rng = np.random.default_rng(0)
    lo, hi = C.bootstrap_diff_ci(rng.normal(1, 1, 300), rng.normal(0, 1, 300))
    assert 0.6 < lo < 1 < hi < 1.4


# -- verdict rules ---------------------------------------------------------------------
@pytest.mark.parametrize("interval,side,want", [
    ((0.1, 0.5), "greater", "holds"), ((-0.5, -0.1), "greater", "does not hold"),
    ((-0.1, 0.5), "greater", "inconclusive"), ((0.0, 0.5), "greater", "inconclusive"),
    ((-0.5, -0.1), "less", "holds"), ((0.1, 0.5), "less", "does not hold"),
    ((math.nan, math.nan), "greater", "inconclusive")])
def test_verdict(interval, side, want):
    assert C.verdict(interval, 0.0, side) == want


def test_combine():
    assert C.combine(["holds", "holds"]) == "holds"
    assert C.combine(["holds", "inconclusive"]) == "inconclusive"
    assert C.combine(["inconclusive", "does not hold", "holds"]) == "does not hold"
    assert C.combine([]) == "inconclusive"
    with pytest.raises(ValueError, match="holds"):
        C.combine(["yes"])


def test_verdict_object_renders():
    v = C.claim1(make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1}), **FAST)
    row = v.to_row()
    assert row["claim"] == 1 and row["verdict"] == "holds" and row["low"] > 0
    assert "Verdict: holds" in v._repr_markdown_() and "<li>" in v._repr_html_()
    assert list(C.scorecard([v]).columns) == ["text", "verdict", "statistic", "low", "high", "evidence"]


# -- shared tables ---------------------------------------------------------------------
def test_final_loss_matches_plain_reference():
    h = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1}, seeds=range(2),
                     diverge={("s1", "sgdm", 1)})
    fl = C.final_loss(h, frac=0.1).set_index(["optimizer", "seed"])
    for (opt, s), row in fl.iterrows():
        v = h[(h.optimizer == opt) & (h.seed == s) & (h.quantity == "eval_loss")].sort_values("step").value
        tail = v.to_numpy()[-math.ceil(0.1 * len(v)):]
        if opt == "sgdm" and s == 1:
            assert row.diverged and math.isnan(row.final_loss)
        else:
            assert not row.diverged and row.final_loss == pytest.approx(tail.mean())
            assert row.n_values == 2
    fallback = C.final_loss(h[h.quantity == "loss"])
    assert (fallback.quantity == "loss").all()


def test_final_loss_uses_runs_table():
    h = make_history({("s1", "sgdm"): 0.5}, seeds=range(2))
    runs = pd.DataFrame(dict(setting="s1", optimizer="sgdm", lr=0.02, seed=[0, 1], diverged=[False, True],
                             diverged_step=[-1, 50]))
    assert C.final_loss(h, runs=runs).diverged.tolist() == [False, True]


def test_best_lr_never_picks_a_diverged_rate():
    sweep = pd.DataFrame(dict(
        setting="s", optimizer="adam", lr=[0.1, 0.1, 0.01, 0.01, 0.001, 0.001], seed=[0, 1] * 3,
        final_loss=[0.001, np.nan, 0.2, 0.3, 0.5, 0.4], diverged=[False, True, False, False, False, False]))
    b = C.best_lr(sweep).iloc[0]
    assert b.best_lr == 0.01 and b.final_loss == pytest.approx(0.25) and b.diverged_lrs == (0.1,)
    assert b.diverged_runs == ((0.1, 1),)
    all_bad = sweep.assign(diverged=True)
    assert math.isnan(C.best_lr(all_bad).iloc[0].best_lr)


def test_condition_ratio_table_against_plain_numbers():
    cond = make_conditioning({"setting1": 2.0}, seeds=range(4))
    t = C.condition_ratio_table(cond, paper={"setting1": {750: (1.76, 0.40)}}, n_boot=200)
    assert len(t) == 2 and (t.n_seeds == 4).all()
    w = cond[(cond.method == "eig") & (cond.step == 750)].pivot(index="seed", columns="optimizer", values="value")
    r = (w.sgdm / w.adam).to_numpy()
    row = t[t.step == 750].iloc[0]
    assert row["mean"] == pytest.approx(r.mean()) and row["std"] == pytest.approx(r.std(ddof=1))
    assert row.low < row["mean"] < row.high and row.paper_mean == 1.76
    assert math.isnan(t[t.step == 1250].iloc[0].paper_mean)


def test_condition_ratio_needs_lrs_when_ambiguous():
    cond = make_conditioning({"s": 2.0})
    both = pd.concat([cond, cond.assign(lr=0.02)])
    with pytest.raises(ValueError, match="lrs="):
        C.condition_ratio_table(both)
    t = C.condition_ratio_table(both, lrs={"s": {"sgdm": 0.02, "adam": 0.02}}, n_boot=200)
    assert (t.n_seeds == 6).all()


def test_excess_kurtosis_matches_scipy():
    x = np.random.default_rng(0).standard_t(4, size=(3, 500))
    np.testing.assert_allclose(C.excess_kurtosis(x), scipy.stats.kurtosis(x, axis=-1), rtol=1e-10)


# -- the claims ---------------------------------------------------------------------------
def test_claim1_holds_fails_inconclusive():
    good = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1, ("s2", "sgdm"): 0.3, ("s2", "adam"): 0.2})
    assert C.claim1(good, **FAST).verdict == "holds"
    bad = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1, ("s2", "sgdm"): 0.1, ("s2", "adam"): 0.4})
    v = C.claim1(bad, **FAST)
    assert v.verdict == "does not hold" and v.statistic < 0 and "s2" in v.evidence
    tie = make_history({("s1", "sgdm"): 0.3, ("s1", "adam"): 0.3}, spread=0.3)
    assert C.claim1(tie, **FAST).verdict == "inconclusive"


def test_claim1_excludes_diverged_and_counts_them():
    h = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1}, diverge={("s1", "sgdm", 2)})
    v = C.claim1(h, **FAST)
    assert v.details["parts"].n.tolist() == [5] and "diverged" in v.evidence


def test_claim1_missing_data_is_inconclusive():
    h = make_history({("s1", "adam"): 0.1})
    v = C.claim1(h, **FAST)
    assert v.verdict == "inconclusive" and "no paired" in v.evidence
    v = C.claim1(make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1}), settings=["s1", "s9"], **FAST)
    assert v.verdict == "holds" and v.details["untested"] == ["s9"]


def test_claim1_picks_best_lr_when_several():
    h1 = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1})
    h2 = make_history({("s1", "adam"): 0.9}, lr=0.5)  # a worse Adam rate
    v = C.claim1(pd.concat([h1, h2]), **FAST)
    assert v.verdict == "holds" and "chosen by lowest mean final loss" in v.evidence
    v = C.claim1(pd.concat([h1, h2]), lrs={("s1", "adam"): 0.5, ("s1", "sgdm"): 0.02}, **FAST)
    assert v.verdict == "does not hold"


def test_claim1_deterministic():
    h = make_history({("s1", "sgdm"): 0.3, ("s1", "adam"): 0.25}, spread=0.1)
    assert C.claim1(h, **FAST) == C.claim1(h, **FAST)


def test_claim2():
    kinds = {"setting1": "t8", "setting2": "t8", "setting3": "t3", "gamma": "t3", "sphere": "gauss",
             "depth2": "gauss", "depth4": "gauss", "depth6": "t3", "depth8": "t3"}
    v = C.claim2(make_noise(kinds), n_boot=300)
    assert v.verdict == "holds", v.evidence
    assert len(v.details["parts"]) == 3 + 2 + 4
    kinds["depth8"], kinds["depth2"] = "gauss", "t3"  # L=8 lighter-tailed than L=2
    v = C.claim2(make_noise(kinds), n_boot=300)
    assert v.verdict == "does not hold" and "L=8 > L=2" in v.evidence
    only = C.claim2(make_noise({"setting1": "gauss"}, n=500), n_boot=300)
    assert only.verdict == "inconclusive" and "untested" in only.evidence


def test_claim2_several_seeds_and_table():
    noise = make_noise({"setting3": "t3", "sphere": "gauss"}, n=2000, seeds=(0, 1, 2))
    t = C.noise_tail_table(noise, n_boot=200)
    assert t.set_index("setting").loc["setting3", "low"] > 0 and (t.n_seeds == 3).all()
    per_seed = [scipy.stats.kurtosis(g.value) for _, g in noise[noise.setting == "sphere"].groupby("seed")]
    assert t.set_index("setting").loc["sphere", "excess_kurtosis"] == pytest.approx(np.mean(per_seed))


def test_claim3():
    cond = make_conditioning({"setting1": 2.0, "gamma": 8.0, "sphere": 1.2, "depth2": 1.5, "depth4": 2, "depth6": 4, "depth8": 8})
    v = C.claim3(cond, n_boot=300)
    assert v.verdict == "holds", v.evidence
    # 7 settings x 2 steps + 2 tail orderings x 2 + 1 depth slope x 2
    assert len(v.details["parts"]) == 14 + 4 + 2
    flat = make_conditioning({"setting1": 2.0, "gamma": 2.0}, spread=0.05)
    v = C.claim3(flat, n_boot=300)
    assert v.verdict == "inconclusive" and any("gamma > sphere" in u for u in v.details["untested"])
    reverse = make_conditioning({"setting1": 0.5})
    assert C.claim3(reverse, n_boot=300).verdict == "does not hold"
    assert C.claim3(reverse, method="diag", n_boot=300).verdict == "does not hold"


def test_claim4_and_claim5():
    sm = {("s1", "sgdm"): 5.0, ("s1", "adam"): 1.0}
    h = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1}, smooth=sm, gn_corr=1.0)
    assert C.claim4(h, **FAST).verdict == "holds"
    assert C.claim5(h, **FAST).verdict == "holds"
    h = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1}, smooth={k: 1 / v for k, v in sm.items()},
                     gn_corr=-1.0)
    assert C.claim4(h, **FAST).verdict == "does not hold"
    assert C.claim5(h, **FAST).verdict == "does not hold"
    h = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1}, smooth=sm, gn_corr=0.0)
    assert C.claim5(h, **FAST).verdict == "inconclusive"
    nothing = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1})
    assert C.claim4(nothing, **FAST).verdict == "inconclusive"
    assert C.claim5(nothing, **FAST).verdict == "inconclusive"


def test_claim5_reference_spearman():
    h = make_history({("s1", "adam"): 0.1}, smooth={("s1", "adam"): 1.0}, gn_corr=0.5, seeds=range(3))
    v = C.claim5(h, max_step=100, **FAST)
    for _, row in v.details["data"].iterrows():
        run = h[(h.seed == row.seed) & (h.step < 100)]
        g = run[run.quantity == "grad_norm"].value.to_numpy()
        s = run[run.quantity == "smoothness"].value.to_numpy()
        assert row.spearman == pytest.approx(scipy.stats.spearmanr(g, s).statistic)


def test_claim6():
    final = {}
    for L, (sg, ad) in {2: (0.5, 0.3), 4: (0.3, 0.1), 6: (0.2, 0.04), 8: (0.15, 0.01)}.items():
        final[(f"depth{L}", "sgdm")], final[(f"depth{L}", "adam")] = sg, ad
    assert C.claim6(make_history(final), **FAST).verdict == "holds"
    final[("depth8", "sgdm")] = 0.6  # SGDM loss rises at L=8
    final[("depth6", "sgdm")] = 0.55
    v = C.claim6(make_history(final), **FAST)
    assert v.verdict == "does not hold" and "sgdm loss falls" in v.evidence
    v = C.claim6(make_history({("depth2", "sgdm"): 0.5, ("depth2", "adam"): 0.3}), **FAST)
    assert v.verdict == "inconclusive" and "need >= 2" in v.evidence


def test_claim7():
    base = {("gamma", "sgdm"): 0.5, ("gamma", "adam"): 0.1}
    h = make_history({**base, ("sphere", "sgdm"): 0.05, ("sphere", "adam"): 0.01})
    assert C.claim7(h, **FAST).verdict == "holds"
    h = make_history({**base, ("sphere", "sgdm"): 0.01, ("sphere", "adam"): 0.05})
    v = C.claim7(h, **FAST)
    assert v.verdict == "does not hold" and "gap stays open on sphere" in v.evidence
    tie = make_history({("sphere", "sgdm"): 0.03, ("sphere", "adam"): 0.03}, spread=0.3, seed=1)
    v = C.claim7(pd.concat([make_history(base), tie]), **FAST)
    assert v.verdict == "inconclusive", v.evidence
    missing = C.claim7(make_history(base), **FAST)
    assert missing.verdict == "inconclusive" and "sphere" in missing.evidence


def test_claim8():
    h = make_history({("setting1", "sgdm"): 0.1, ("setting1", "adam"): 0.05,
                      ("softmax", "sgdm"): 0.4, ("softmax", "adam"): 0.3})
    assert C.claim8(h, **FAST).verdict == "holds"
    h = make_history({("setting1", "adam"): 0.3, ("softmax", "adam"): 0.05})
    v = C.claim8(h, **FAST)
    assert v.verdict == "does not hold" and "untested (no data): sgdm" in v.evidence


def test_bad_arguments_name_the_parameter():
    h = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1})
    with pytest.raises(ValueError, match="history lacks"):
        C.claim1(h.drop(columns="step"))
    with pytest.raises(ValueError, match="frac"):
        C.final_loss(h, frac=0)
    with pytest.raises(ValueError, match="method"):
        C.claim3(make_conditioning({"s": 2.0}), method="svd")
    with pytest.raises(ValueError, match="side"):
        C.verdict((0, 1), side="up")


def test_cross_setting_claims_compare_at_the_common_horizon():
    """A setting trained longer must not win claim 7 or 8 by its horizon alone."""
    long = make_history({("setting1", "sgdm"): 0.1, ("setting1", "adam"): 0.05})
    short = make_history({("softmax", "sgdm"): 0.1, ("softmax", "adam"): 0.05})
    T = int(short.step.max())
    # the linear runs go on past the softmax horizon and reach a far lower loss there
    later = long[long.step == long.step.max()].assign(step=T + 1000, value=1e-6)
    v = C.claim8(pd.concat([long, later, short]), **FAST)
    assert v.verdict != "holds" and f"iteration {T}" in v.evidence
