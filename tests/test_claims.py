"""Claims: each claim on synthetic results whose truth is known (holds / does not hold /
inconclusive), decided by lintf.stats: 6 seeds where a decision is expected, 3 seeds (which
can never decide at 5%) where it must stay inconclusive."""
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from lintf import claims as C
from lintf.book import summaries as SU
from lintf import stats as S

NULL = dict(n_sims=40)  # simulations of the Gaussian null per (setting, seed)


# -- synthetic tidy results --------------------------------------------------------------
def make_history(final: dict, seeds=range(6), steps=200, eval_every=10, spread=0.05, lr=None,
                 smooth: dict | None = None, gn_corr: float | None = None, seed=0,
                 diverge=(), trend: bool = False) -> pd.DataFrame:
    """History whose losses decay to ``final[(setting, optimizer)]`` (times per-seed noise
    of relative size ``spread``). ``smooth[(setting, optimizer)]`` is the level of the
    directional smoothness; ``gn_corr`` the sign of its relation to grad_norm.
    ``diverge``: (setting, optimizer, seed) runs that turn NaN halfway. ``trend``: grad_norm
    and smoothness both decay as exp(-t / (steps / 2)) on top of their noise."""
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
                shared = np.exp(-t / (steps / 2)) if trend else 1.0
                gn = shared * np.exp(rng.standard_normal(steps))
                base = shared * smooth[(setting, opt)] * np.exp(0.3 * rng.standard_normal(steps))
                sm = base * (gn ** gn_corr if gn_corr else 1.0)
                if (setting, opt, s) in diverge:
                    sm[steps // 2:] = np.nan
                rows.append(pd.DataFrame({**run, "step": t, "quantity": "grad_norm", "value": gn}))
                rows.append(pd.DataFrame({**run, "step": t, "quantity": "smoothness", "value": sm}))
    return pd.concat(rows, ignore_index=True)


def make_noise(kinds: dict, n=1000, dim=30, seeds=range(6), seed=0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Noise norms and covariance spectra per setting and seed. 'gauss': norms of
    anisotropic Gaussian vectors (eigenvalues 1/i), 't3' / 't8': of multivariate Student t
    vectors with 3 / 8 degrees of freedom (same scale matrix: heavier, heavy). The spectrum is that of the sample
    covariance of the simulated deviations, as the experiments measure it."""
    rng = np.random.default_rng(seed)
    lam = 1.0 / np.arange(1, dim + 1)
    noise, spec = [], []
    for setting, kind in kinds.items():
        for s in seeds:
            dev = rng.standard_normal((n, dim)) * np.sqrt(lam)
            if kind != "gauss":  # "t3", "t8": Student t with that many degrees of freedom
                dof = int(kind[1:])
                dev *= np.sqrt(dof / rng.chisquare(dof, n))[:, None]
            ev = np.linalg.eigvalsh(np.cov(dev, rowvar=False))[::-1]
            noise.append(pd.DataFrame({"setting": setting, "seed": s, "sample": np.arange(n),
                                       "value": np.linalg.norm(dev, axis=1)}))
            spec.append(pd.DataFrame({"setting": setting, "seed": s, "index": np.arange(dim), "value": ev}))
    return pd.concat(noise, ignore_index=True), pd.concat(spec, ignore_index=True)


def make_conditioning(ratios: dict, seeds=range(6), steps=(750, 1250), spread=0.1, seed=0,
                      batches: int = 3):
    """R_med with per-seed ratio SGDM/Adam ~ ratios[setting] * exp(spread * N(0,1)), for the
    single-batch protocols 'large', 'fixed' and 'authors' and for ``batches`` batches of 'batches'."""
    rng = np.random.default_rng(seed)
    rows = []
    for setting, r in ratios.items():
        for s in seeds:
            for step in steps:
                for protocol, ks in (("large", [0]), ("fixed", [0]), ("authors", [0]), ("batches", range(batches))):
                    for k in ks:
                        adam = 10 * math.exp(rng.standard_normal())
                        sgdm = adam * r * math.exp(spread * rng.standard_normal())
                        for method in ("eig", "diag"):
                            for opt, v in (("sgdm", sgdm), ("adam", adam)):
                                rows.append(dict(setting=setting, optimizer=opt, lr=0.01, seed=s, step=step,
                                                 eval_batch=protocol, batch=k, eval_size=1000, method=method,
                                                 value=v, lambda_max=v, lambda_median=1.0))
    return pd.DataFrame(rows)


# -- verdict object ----------------------------------------------------------------------
def test_verdict_object_renders():
    v = C.claim1(make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1}))
    row = v.to_row()
    assert row["claim"] == 1 and row["verdict"] == "holds" and row["low"] > 0
    assert "Verdict: holds" in v._repr_markdown_() and "<li>" in v._repr_html_()
    assert list(C.scorecard([v]).columns) == ["text", "verdict", "statistic", "low", "high", "evidence"]
    assert list(v.details["parts"].columns) == ["id", "part", "statistic", "low", "high", "p_greater", "p_less",
                                                "threshold", "side", "n", "verdict", "what", "extra"]


def test_parts_are_stats_tests_on_the_per_seed_numbers():
    v = C.claim1(make_history({("s1", "sgdm"): 0.3, ("s1", "adam"): 0.25}, spread=0.1))
    t = S.test(v.details["data"]["log_gap"].to_numpy())
    row = v.details["parts"].iloc[0]
    assert (row.statistic, row.low, row.high, row.p_greater, row.p_less, row.verdict) == \
        (t.estimate, t.low, t.high, t.p_greater, t.p_less, t.verdict)


def test_three_seeds_never_decide():
    h = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1}, seeds=range(3))
    v = C.claim1(h)
    assert v.verdict == "inconclusive" and math.isnan(v.statistic) and v.part == "s1"
    row = v.details["parts"].iloc[0]
    assert row.verdict == "untested" and row.n == 3 and "fewer than the 5" in row.extra
    assert "-inf" not in v.evidence and "untested" in v.evidence and "untested" in v.sentence.lower()


def test_holm_guards_does_not_hold():
    """One reversed setting among many: 6 seeds give p >= 1/64, which survives Holm among
    2 parts (0.025) but not among 4 (0.0125)."""
    base = {("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1, ("s2", "sgdm"): 0.1, ("s2", "adam"): 0.4}
    assert C.claim1(make_history(base)).verdict == "does not hold"
    more = {**base, ("s3", "sgdm"): 0.5, ("s3", "adam"): 0.1, ("s4", "sgdm"): 0.5, ("s4", "adam"): 0.1}
    v = C.claim1(make_history(more))
    assert v.verdict == "inconclusive" and "Holm" in v.evidence
    assert v.details["parts"].set_index("part").loc["s2", "verdict"] == "does not hold"
    assert C.claim1(make_history(more, seeds=range(10))).verdict == "does not hold"


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
    b = SU.best_lr(sweep).iloc[0]
    assert b.best_lr == 0.01 and b.final_loss == pytest.approx(0.25) and b.diverged_lrs == (0.1,)
    assert b.diverged_runs == ((0.1, 1),)
    all_bad = sweep.assign(diverged=True)
    assert math.isnan(SU.best_lr(all_bad).iloc[0].best_lr)


def test_condition_ratio_table_against_plain_numbers():
    cond = make_conditioning({"setting1": 2.0}, seeds=range(6))
    t = SU.condition_ratio_table(cond, method="eig", paper={"setting1": {750: (1.76, 0.40)}})
    assert len(t) == 2 and (t.n_seeds == 6).all() and (t.n_batches == 1).all()
    c = cond[(cond.method == "eig") & (cond.step == 750) & (cond.eval_batch == "large")]
    w = c.pivot(index="seed", columns="optimizer", values="value")
    r = (w.sgdm / w.adam).to_numpy()
    row = t[t.step == 750].iloc[0]
    assert row["mean"] == pytest.approx(r.mean()) and row["std"] == pytest.approx(r.std(ddof=1))
    assert row.geo_mean == pytest.approx(np.exp(np.log(r).mean()))
    test = S.test(np.log(r))
    assert row.low == pytest.approx(math.exp(test.low)) and row.high == pytest.approx(math.exp(test.high))
    assert row.low < row.geo_mean < row.high and row.paper_mean == 1.76
    assert row.batch_median == pytest.approx(row["mean"])
    assert math.isnan(t[t.step == 1250].iloc[0].paper_mean)


def test_condition_ratio_table_over_batches():
    cond = make_conditioning({"setting1": 2.0}, seeds=range(6), batches=4)
    t = SU.condition_ratio_table(cond, eval_batch="batches")
    row = t[t.step == 750].iloc[0]
    c = cond[(cond.method == "diag") & (cond.step == 750) & (cond.eval_batch == "batches")]
    w = c.pivot_table(index=["seed", "batch"], columns="optimizer", values="value")
    lr = np.log(w.sgdm / w.adam)
    per_seed = lr.groupby("seed").mean()
    assert row.n_batches == 4 and row["mean"] == pytest.approx(np.exp(per_seed).mean())
    per_k = np.exp(lr).groupby("batch").mean()
    assert (row.batch_median, row.batch_min, row.batch_max) == pytest.approx(
        (per_k.median(), per_k.min(), per_k.max()))
    single = SU.condition_ratio_table(cond, eval_batch="fixed")
    assert (single.n_batches == 1).all()


def test_condition_ratio_needs_lrs_when_ambiguous():
    cond = make_conditioning({"s": 2.0})
    both = pd.concat([cond, cond.assign(lr=0.02)])
    with pytest.raises(ValueError, match="lrs="):
        SU.condition_ratio_table(both)
    t = SU.condition_ratio_table(both, lrs={"s": {"sgdm": 0.02, "adam": 0.02}})
    assert (t.n_seeds == 6).all()


# -- the claims ---------------------------------------------------------------------------
def test_claim1_holds_fails_inconclusive():
    good = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1, ("s2", "sgdm"): 0.3, ("s2", "adam"): 0.2})
    assert C.claim1(good).verdict == "holds"
    bad = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1, ("s2", "sgdm"): 0.1, ("s2", "adam"): 0.4})
    v = C.claim1(bad)
    assert v.verdict == "does not hold" and v.statistic < 0 and "s2" in v.evidence
    tie = make_history({("s1", "sgdm"): 0.3, ("s1", "adam"): 0.3}, spread=0.3)
    assert C.claim1(tie).verdict == "inconclusive"


def test_claim1_excludes_diverged_and_counts_them():
    h = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1}, diverge={("s1", "sgdm", 2)})
    v = C.claim1(h)
    assert v.details["parts"].n.tolist() == [5] and "diverged" in v.evidence


def test_claim1_missing_data_is_inconclusive():
    h = make_history({("s1", "adam"): 0.1})
    v = C.claim1(h)
    assert v.verdict == "inconclusive" and "no paired" in v.evidence
    v = C.claim1(make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1}), settings=["s1", "s9"])
    # an untested part counts: the claim can at best be inconclusive, and says which part
    assert v.verdict == "inconclusive" and v.details["untested"] == ["s9"], v.evidence
    assert v.details["parts"].set_index("part").loc["s9", "verdict"] == "untested" and v.part == "s9"
    assert "s9: untested" in v.evidence and "Untested: s9" in v.sentence


def test_claim1_picks_best_lr_when_several():
    h1 = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1})
    h2 = make_history({("s1", "adam"): 0.9}, lr=0.5)  # a worse Adam rate
    v = C.claim1(pd.concat([h1, h2]))
    assert v.verdict == "holds" and "chosen by lowest mean final loss" in v.evidence
    v = C.claim1(pd.concat([h1, h2]), lrs={("s1", "adam"): 0.5, ("s1", "sgdm"): 0.02})
    assert v.verdict == "does not hold"


def test_claim1_deterministic():
    h = make_history({("s1", "sgdm"): 0.3, ("s1", "adam"): 0.25}, spread=0.1)
    assert C.claim1(h) == C.claim1(h)


HEAVY = {"setting1": "t8", "setting2": "t8", "setting3": "t3", "gamma": "t3", "sphere": "gauss",
         "depth2": "gauss", "depth4": "gauss", "depth6": "t3", "depth8": "t3"}


def test_claim2_holds_and_does_not_hold():
    noise, spec = make_noise(HEAVY)
    v = C.claim2(noise, spec, **NULL)
    assert v.verdict == "holds", v.evidence
    parts = v.details["parts"]
    assert len(parts) == 3 + 2 + 4 and (parts.n == 6).all()
    assert "Hill deficit" in v.evidence
    data = v.details["data"]
    assert {"kurtosis_excess", "hill_deficit", "null_kurtosis"} <= set(data.columns) and len(data) == 9 * 6
    # L=8 lighter-tailed than L=2; only the depth parts, so that 6 seeds can survive Holm
    kinds = {"depth2": "t3", "depth4": "t3", "depth8": "gauss"}
    # the two untested covariate parts stay in Holm's family (4 parts): 6 seeds cannot refute, 7 can
    noise, spec = make_noise(kinds)
    v = C.claim2(noise, spec, heavy=(), deep=(8,), **NULL)
    assert v.verdict == "inconclusive" and "L=8 > L=2" in v.evidence, v.evidence
    noise, spec = make_noise(kinds, seeds=range(7))
    v = C.claim2(noise, spec, heavy=(), deep=(8,), **NULL)
    assert v.verdict == "does not hold" and "L=8 > L=2" in v.evidence, v.evidence
    assert "lighter-tailed in L=8 than in L=2" in v.sentence
    only = C.claim2(*make_noise({"setting1": "t3"}, n=300), **NULL)
    assert only.verdict == "inconclusive" and "untested" in only.evidence
    assert only.details["parts"].set_index("part").loc["heavy-tailed: setting1", "verdict"] == "holds"


def test_claim2_gaussian_noise_is_not_heavy_tailed():
    """The norm of an anisotropic Gaussian vector has positive excess kurtosis; against the
    null of its own spectrum it is not judged heavy-tailed. Multivariate t noise is."""
    noise, spec = make_noise({"setting1": "gauss", "setting2": "gauss", "setting3": "t3"}, dim=60)
    assert (noise.groupby(["setting", "seed"]).value.apply(S.excess_kurtosis) > 0).all()
    v = C.claim2(noise, spec, **NULL)
    parts = v.details["parts"].set_index("part")
    assert parts.loc["heavy-tailed: setting1", "verdict"] != "holds"
    assert parts.loc["heavy-tailed: setting2", "verdict"] != "holds"
    assert parts.loc["heavy-tailed: setting3", "verdict"] == "holds"
    assert v.verdict != "holds"


def test_claim2_three_seeds_and_table():
    noise, spec = make_noise({"setting3": "t3", "sphere": "gauss"}, seeds=range(3))
    assert C.claim2(noise, spec, **NULL).verdict == "inconclusive"
    t = SU.noise_tail_table(noise, spec, **NULL).set_index("setting")
    assert (t.n_seeds == 3).all() and t.loc["setting3", "kurtosis_excess"] > 1
    assert t.loc["sphere", "low"] == -math.inf  # 3 seeds: no finite bound
    per_seed = [scipy.stats.kurtosis(g.value) for _, g in noise[noise.setting == "sphere"].groupby("seed")]
    assert t.loc["sphere", "kurtosis"] == pytest.approx(np.mean(per_seed))
    assert t.loc["sphere", "kurtosis_excess"] == pytest.approx(t.loc["sphere", "kurtosis"] -
                                                                t.loc["sphere", "null_kurtosis"])
    assert t.loc["sphere", "hill_deficit"] == pytest.approx(t.loc["sphere", "null_hill"] - t.loc["sphere", "hill"])
    bare = SU.noise_tail_table(noise)  # no spectrum: observed columns only
    assert bare["null_kurtosis"].isna().all() and bare["kurtosis"].notna().all()
    missing = C.claim2(noise, spec[spec.seed != 0], **NULL)
    assert "no covariance spectrum for" in missing.evidence


def test_claim3():
    cond = make_conditioning({"setting1": 2.0, "gamma": 8.0, "sphere": 1.4, "depth2": 1.5, "depth4": 2,
                              "depth6": 4, "depth8": 8})
    v = C.claim3(cond)
    assert v.verdict == "holds", v.evidence
    # 7 settings x 2 steps + 2 tail orderings x 2 + 1 depth slope x 2
    assert len(v.details["parts"]) == 14 + 4 + 2
    assert C.claim3(cond, eval_batch="batches").verdict == "holds"
    assert C.claim3(cond, method="eig", eval_batch="fixed").verdict == "holds"
    flat = make_conditioning({"setting1": 2.0, "gamma": 2.0}, spread=0.05)
    v = C.claim3(flat)
    assert v.verdict == "inconclusive" and any("gamma > sphere" in u for u in v.details["untested"])
    # setting1 reversed; the 6 missing parts (tails, depth) count in Holm's family of 8: 6 seeds
    # cannot refute (1/64 > 0.05/8), 8 can
    reverse = make_conditioning({"setting1": 0.5})
    assert C.claim3(reverse).verdict == "inconclusive"
    reverse = make_conditioning({"setting1": 0.5}, seeds=range(8))
    assert C.claim3(reverse).verdict == "does not hold"
    assert C.claim3(reverse, method="eig", eval_batch="batches").verdict == "does not hold"
    few = make_conditioning({"setting1": 2.0}, seeds=range(3))
    assert C.claim3(few).verdict == "inconclusive"


def test_claim3_per_seed_value_is_the_mean_over_batches():
    cond = make_conditioning({"setting1": 2.0}, batches=5)
    v = C.claim3(cond, eval_batch="batches", steps=(750,))
    c = cond[(cond.method == "diag") & (cond.step == 750) & (cond.eval_batch == "batches")]
    w = c.pivot_table(index=["seed", "batch"], columns="optimizer", values="value")
    want = np.log(w.sgdm / w.adam).groupby("seed").mean()
    got = v.details["data"].set_index("seed")["log_ratio"]
    np.testing.assert_allclose(got.loc[want.index], want)
    assert (v.details["data"].n_batches == 5).all()


def test_claim3_depth_slope_is_per_seed():
    ratios = {"depth2": 1.5, "depth4": 1.4, "depth6": 1.3, "depth8": 1.2}
    cond = make_conditioning(ratios, steps=(750,), spread=0.02)
    v = C.claim3(cond, steps=(750,))
    row = v.details["parts"].set_index("part").loc["grows with depth (L = 2, 4, 6, 8), step 750"]
    assert row.verdict == "does not hold" and row.statistic < 0


def test_claim4_and_claim5():
    sm = {("s1", "sgdm"): 5.0, ("s1", "adam"): 1.0}
    h = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1}, smooth=sm, gn_corr=1.0)
    assert C.claim4(h).verdict == "holds"
    assert C.claim5(h).verdict == "holds"
    h = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1}, smooth={k: 1 / v for k, v in sm.items()},
                     gn_corr=-1.0)
    assert C.claim4(h).verdict == "does not hold"
    assert C.claim5(h).verdict == "does not hold"
    h = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1}, smooth=sm, gn_corr=0.0)
    assert C.claim5(h).verdict == "inconclusive"
    h3 = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1}, smooth=sm, gn_corr=1.0, seeds=range(3))
    assert C.claim4(h3).verdict == "inconclusive" and C.claim5(h3).verdict == "inconclusive"
    nothing = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1})
    assert C.claim4(nothing).verdict == "inconclusive"
    assert C.claim5(nothing).verdict == "inconclusive"


def test_claim5_two_independently_trending_series_do_not_hold():
    """grad_norm and smoothness independent but both decaying: the plain rank correlation
    is strongly positive, the detrended one is not."""
    h = make_history({("s1", "adam"): 0.1}, smooth={("s1", "adam"): 1.0}, gn_corr=0.0, trend=True,
                     steps=400)
    v = C.claim5(h)
    assert v.details["data"].spearman_raw.min() > 0.3
    assert v.verdict != "holds", v.evidence


def test_claim5_reference_detrended_spearman():
    h = make_history({("s1", "adam"): 0.1}, smooth={("s1", "adam"): 1.0}, gn_corr=0.5, seeds=range(3))
    v = C.claim5(h, max_step=100, window=11)
    for _, row in v.details["data"].iterrows():
        run = h[(h.seed == row.seed) & (h.step < 100)]
        g = np.log(run[run.quantity == "grad_norm"].value.to_numpy())
        s = np.log(run[run.quantity == "smoothness"].value.to_numpy())
        t = run[run.quantity == "grad_norm"].step.to_numpy()
        assert row.spearman == pytest.approx(S.detrended_spearman(g, s, t, window=11))
        assert row.spearman_raw == pytest.approx(scipy.stats.spearmanr(g, s).statistic)


DEPTH_FINAL = {2: (0.5, 0.3), 4: (0.3, 0.1), 6: (0.2, 0.04), 8: (0.15, 0.01)}


def depth_history(final=DEPTH_FINAL, **kw):
    out = {}
    for L, (sg, ad) in final.items():
        out[(f"depth{L}", "sgdm")], out[(f"depth{L}", "adam")] = sg, ad
    return make_history(out, **kw)


def test_claim6():
    v = C.claim6(depth_history())
    assert v.verdict == "holds", v.evidence
    assert len(v.details["parts"]) == 3 and set(v.details["data"].part) == set(v.details["parts"].part)
    worse = {**DEPTH_FINAL, 6: (0.55, 0.04), 8: (0.6, 0.01)}  # SGDM loss rises with depth
    v = C.claim6(depth_history(worse))
    assert v.verdict == "does not hold" and "sgdm loss falls" in v.evidence
    v = C.claim6(make_history({("depth2", "sgdm"): 0.5, ("depth2", "adam"): 0.3}))
    assert v.verdict == "inconclusive" and "need >= 2" in v.evidence
    assert C.claim6(depth_history(seeds=range(3))).verdict == "inconclusive"


def test_claim6_diverged_depth_makes_its_parts_inconclusive():
    h = depth_history(diverge={("depth8", "sgdm", 1)})
    v = C.claim6(h, lrs={(f"depth{L}", o): (0.01 if o == "adam" else 0.02) for L in DEPTH_FINAL
                         for o in ("sgdm", "adam")})
    parts = v.details["parts"].set_index("part")
    gap = [p for p in parts.index if p.startswith("gap")][0]
    assert parts.loc[gap, "verdict"] == "untested"
    assert parts.loc["sgdm loss falls with depth", "verdict"] == "untested"
    assert parts.loc["adam loss falls with depth", "verdict"] == "holds"
    assert v.verdict == "inconclusive" and "sgdm at L=8: 1" in v.evidence


def test_claim7():
    base = {("gamma", "sgdm"): 0.5, ("gamma", "adam"): 0.1}
    h = make_history({**base, ("sphere", "sgdm"): 0.05, ("sphere", "adam"): 0.01})
    v = C.claim7(h)
    assert v.verdict == "inconclusive", v.evidence  # the gaussian part is untested
    assert "gap not closed on sphere vs setting1: untested: no data" in v.evidence
    v = C.claim7(h, gaussian=None)
    assert v.verdict == "holds", v.evidence
    assert "gap(sphere) - gap(gamma)" in v.evidence and "part of the gap closes on sphere" in v.evidence
    # the gap on sphere shrinks to a quarter of gamma's (log 5 -> log 5 / 4): closed by more than half
    closed = make_history({**base, ("sphere", "sgdm"): 0.05 * 5 ** 0.25, ("sphere", "adam"): 0.05})
    v = C.claim7(closed, gaussian=None)
    assert v.verdict == "does not hold" and "gap not closed on sphere vs gamma" in v.evidence, v.evidence
    h = make_history({**base, ("sphere", "sgdm"): 0.01, ("sphere", "adam"): 0.05})
    assert C.claim7(h, gaussian=None).verdict == "does not hold"
    # exactly half of gamma's log gap left on sphere, with noise: the data cannot tell
    half = make_history({("sphere", "sgdm"): 0.01 * 5 ** 0.5, ("sphere", "adam"): 0.01}, spread=0.3, seed=1)
    v = C.claim7(pd.concat([make_history(base), half]), gaussian=None)
    assert v.verdict == "inconclusive", v.evidence
    missing = C.claim7(make_history(base))
    assert missing.verdict == "inconclusive" and "sphere" in missing.evidence


def test_claim7_against_gaussian_too():
    h = make_history({("gamma", "sgdm"): 0.5, ("gamma", "adam"): 0.1, ("setting1", "sgdm"): 0.3,
                      ("setting1", "adam"): 0.1, ("sphere", "sgdm"): 0.05, ("sphere", "adam"): 0.01})
    v = C.claim7(h)
    assert v.verdict == "holds" and len(v.details["parts"]) == 4
    h3 = make_history({("gamma", "sgdm"): 0.5, ("gamma", "adam"): 0.1, ("sphere", "sgdm"): 0.05,
                       ("sphere", "adam"): 0.01}, seeds=range(3))
    assert C.claim7(h3).verdict == "inconclusive"


def test_claim8():
    h = make_history({("setting1", "sgdm"): 0.1, ("setting1", "adam"): 0.05,
                      ("softmax", "sgdm"): 0.4, ("softmax", "adam"): 0.3})
    assert C.claim8(h).verdict == "holds"
    h = make_history({("setting1", "adam"): 0.3, ("softmax", "adam"): 0.05})
    v = C.claim8(h)
    assert v.verdict == "does not hold" and "sgdm (setting1 and softmax both needed): untested" in v.evidence


def test_claim8_each_attention_at_its_own_rate():
    lin = make_history({("setting1", "adam"): 0.05}, lr=0.01)
    soft_good = make_history({("softmax", "adam"): 0.02}, lr=0.001)  # softmax's own best rate
    soft_bad = make_history({("softmax", "adam"): 0.4}, lr=0.01)
    h = pd.concat([lin, soft_good, soft_bad])
    same = C.claim8(h, optimizers=("adam",), lrs={("setting1", "adam"): 0.01, ("softmax", "adam"): 0.01})
    own = C.claim8(h, optimizers=("adam",), lrs={("setting1", "adam"): 0.01, ("softmax", "adam"): 0.001})
    assert same.verdict == "holds" and own.verdict == "does not hold"
    assert "softmax lr 0.001" in own.evidence


def test_bad_arguments_name_the_parameter():
    h = make_history({("s1", "sgdm"): 0.5, ("s1", "adam"): 0.1})
    with pytest.raises(ValueError, match="history lacks"):
        C.claim1(h.drop(columns="step"))
    with pytest.raises(ValueError, match="frac"):
        C.final_loss(h, frac=0)
    with pytest.raises(ValueError, match="method"):
        C.claim3(make_conditioning({"s": 2.0}), method="svd")
    with pytest.raises(ValueError, match="eval_batch"):
        C.claim3(make_conditioning({"s": 2.0}), eval_batch="many")
    with pytest.raises(ValueError, match="conditioning lacks.*eval_batch"):
        C.claim3(make_conditioning({"s": 2.0}).drop(columns="eval_batch"))
    with pytest.raises(ValueError, match="level"):
        C.claim1(h, level=1.5)
    with pytest.raises(ValueError, match="window"):
        C.claim5(h, window=10)
    noise, spec = make_noise({"s": "gauss"}, n=50, dim=3, seeds=(0,))
    with pytest.raises(ValueError, match="spectrum lacks"):
        C.claim2(noise, spec.drop(columns="index"))
    with pytest.raises(ValueError, match="noise lacks"):
        C.claim2(noise.drop(columns="sample"), spec)


def test_cross_setting_claims_compare_at_the_common_horizon():
    """A setting trained longer must not win claim 7 or 8 by its horizon alone."""
    long = make_history({("setting1", "sgdm"): 0.1, ("setting1", "adam"): 0.05})
    short = make_history({("softmax", "sgdm"): 0.1, ("softmax", "adam"): 0.05})
    T = int(short.step.max())
    # the linear runs go on past the softmax horizon and reach a far lower loss there
    later = long[long.step == long.step.max()].assign(step=T + 1000, value=1e-6)
    v = C.claim8(pd.concat([long, later, short]))
    assert v.verdict != "holds" and f"iteration {T}" in v.evidence


def test_claim3_compares_covariates_and_depths_at_the_steps_their_runs_reach():
    """compare_steps: the covariate and depth parts at 750 only; a part missing there is
    untested and counts; empty tails/depths leave those parts out (one setting's check)."""
    cond = make_conditioning({"setting1": 2.0, "gamma": 8.0, "sphere": 1.4, "depth2": 1.5, "depth4": 2,
                              "depth6": 4, "depth8": 8})
    v = C.claim3(cond, settings=["setting1", "gamma"], compare_steps=(750,))
    assert v.verdict == "holds", v.evidence
    assert sorted(v.details["parts"].part) == sorted(
        [f"{s}, step {t}" for s in ("setting1", "gamma") for t in (750, 1250)]
        + ["gamma > sphere (gamma vs sphere), step 750", "gamma > gaussian (gamma vs setting1), step 750",
           "grows with depth (L = 2, 4, 6, 8), step 750"])
    cut = cond[~((cond.setting == "sphere") & (cond.step == 750))]
    v = C.claim3(cut, settings=["setting1", "gamma"], compare_steps=(750,))
    assert v.verdict == "inconclusive" and v.part.startswith("gamma > sphere") and "untested" in v.evidence
    one = C.claim3(cond, settings=["setting1"], tails={}, depths={})
    assert one.verdict == "holds" and len(one.details["parts"]) == 2


def _curvature_history(latent: float, seeds=range(6), steps=300, seed=0):
    """Adam runs of Setting 1 whose smoothness and gradient norm share the training batch's noise
    ``e`` (a batch with large residuals: both large), and, with weight ``latent``, a true
    step-to-step link ``z`` (curvature that follows the true gradient norm). ``grad_norm_probe``
    sees ``z`` but its own batch's noise. ``latent=0``: constant true curvature."""
    rng = np.random.default_rng(seed)
    rows = []
    t = np.arange(steps)
    for sd in seeds:
        trend = np.exp(-t / 150)
        z, e, e2 = rng.standard_normal((3, steps))
        true_norm = trend * np.exp(0.3 * z)
        smooth = 2.0 * np.exp(latent * 0.3 * z + 0.3 * e)
        series = {"grad_norm": true_norm * np.exp(0.3 * e), "grad_norm_probe": true_norm * np.exp(0.3 * e2),
                  "smoothness": smooth, "loss": trend, "eval_loss": trend}
        for q, v in series.items():
            rows.append(pd.DataFrame({"setting": "setting1", "optimizer": "adam", "lr": 0.02, "seed": sd, "step": t,
                                      "quantity": q, "value": v}))
    return pd.concat(rows, ignore_index=True)


def test_claim5_on_an_independent_batch_negative_and_positive_controls():
    """Negative control: constant true curvature, smoothness and gradient norm co-fluctuating only
    through the shared minibatch. On that one batch the claim 'holds' (the flaw of issue 20);
    on the probe batch it does not. Positive control: curvature that follows the true gradient
    norm holds on the probe batch too."""
    null = _curvature_history(latent=0.0)
    assert C.claim5(null, settings=["setting1"], norm="grad_norm").verdict == "holds"
    v = C.claim5(null, settings=["setting1"])          # the probe batch, recorded: the default
    assert v.verdict != "holds", v.evidence
    assert "same minibatch" not in v.evidence
    draws = [_curvature_history(0.0, seed=100 + s) for s in range(8)]   # the rate: about 5% false 'holds'
    assert sum(C.claim5(h, settings=["setting1"]).verdict == "holds" for h in draws) <= 2
    assert all(C.claim5(h, settings=["setting1"], norm="grad_norm").verdict == "holds" for h in draws)
    linked = _curvature_history(latent=1.0, seed=1)
    assert C.claim5(linked, settings=["setting1"]).verdict == "holds"
    old = null[null.quantity != "grad_norm_probe"]
    assert "same minibatch" in C.claim5(old, settings=["setting1"]).evidence
