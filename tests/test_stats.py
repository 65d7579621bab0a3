"""The decision rule (lintf.stats): error rates under simulated nulls, power, exactness
against a plain loop, interval inversion, combine, the Gaussian norm null and the
detrended correlation.

Monte-Carlo margin: an error rate estimated from R replications is allowed to exceed its
bound 5% by 3 binomial standard deviations, 3 * sqrt(0.05 * 0.95 / R) (0.015 at R = 2000,
0.010 at R = 4000). Every simulation uses a fixed seed, so the tests are deterministic.
"""
import itertools
import math

import numpy as np
import pytest
import scipy.stats

from lintf import stats as S
from lintf.compute.measure import hill_index

ALPHA = 0.05


def margin(R):
    return 3 * math.sqrt(ALPHA * (1 - ALPHA) / R)


def null_draws(kind, R, n, rng):
    if kind == "normal":
        return rng.standard_normal((R, n))
    if kind == "t3":
        return rng.standard_t(3, (R, n))
    # symmetric bimodal: +/-1 plus N(0, 0.1^2), the case a t-interval gets wrong at n = 3
    return rng.choice([-1.0, 1.0], (R, n)) + 0.1 * rng.standard_normal((R, n))


# -- error rates and power ------------------------------------------------------------
@pytest.mark.parametrize("kind", ["normal", "t3", "bimodal"])
@pytest.mark.parametrize("n,R", [(3, 4000), (6, 4000), (20, 2000)])
def test_error_rates_under_symmetric_nulls(kind, n, R):
    rng = np.random.default_rng([n, len(kind)])
    X = null_draws(kind, R, n, rng)
    v = S.decide_rows(X)
    assert (v == "holds").mean() <= ALPHA + margin(R)
    assert (v == "does not hold").mean() <= ALPHA + margin(R)
    if n > 6:
        return
    v = S.decide_rows(X + 2.0, threshold=2.0, side="less")  # the same null about a threshold
    assert (v == "holds").mean() <= ALPHA + margin(R)
    assert (v == "does not hold").mean() <= ALPHA + margin(R)
    if n <= 4:
        assert (v == "inconclusive").all()  # 1/2^n > 5%: no decision is possible


def test_small_n_never_decides_and_bounds_are_infinite():
    for n in (1, 2, 3, 4):
        t = S.test(np.arange(1.0, n + 1) * 100)
        assert t.verdict == "inconclusive" and t.low == -math.inf and t.high == math.inf
        assert t.p_greater == pytest.approx(1 / 2 ** n)
    assert S.test(np.arange(1.0, 6)).verdict == "holds"  # n = 5: p = 1/32


def test_power():
    rng = np.random.default_rng(7)
    X = 1.0 + rng.standard_normal((1000, 20))  # effect of 1 sd, n = 20
    assert (S.decide_rows(X) == "holds").mean() >= 0.9
    clear = 3 + 0.5 * rng.standard_normal(6)
    assert S.decide(clear) == "holds"
    assert S.decide(-clear) == "does not hold"
    assert S.decide(clear, side="less") == "does not hold"
    assert S.decide(-clear, side="less") == "holds"


def test_decide_rows_equals_test_row_by_row():
    rng = np.random.default_rng(3)
    for n in (3, 6, 15):
        X = rng.standard_normal((30, n)) + 0.8
        rows = S.decide_rows(X, threshold=0.2)
        assert list(rows) == [S.decide(x, threshold=0.2) for x in X]


# -- exactness and inversion ----------------------------------------------------------
def plain_p(x, threshold):
    d = np.asarray(x) - threshold
    T = d.sum()
    ge = le = 0
    for signs in itertools.product((1.0, -1.0), repeat=d.size):
        t = float(np.dot(signs, np.abs(d)))
        ge += t >= T - 1e-12
        le += t <= T + 1e-12
    return ge / 2 ** d.size, le / 2 ** d.size


@pytest.mark.parametrize("n", [1, 2, 5, 8, 11])
def test_exact_enumeration_equals_a_plain_loop(n):
    x = np.random.default_rng(n).normal(0.4, 1.0, n)
    for thr in (0.0, 0.3, -0.5):
        t = S.test(x, threshold=thr)
        assert (t.p_greater, t.p_less) == pytest.approx(plain_p(x, thr), abs=1e-15)
        assert t.estimate == pytest.approx(x.mean())


@pytest.mark.parametrize("n", [6, 9, 20, 30])
def test_bounds_invert_the_test(n):
    x = np.random.default_rng(n).normal(1.0, 1.0, n)
    t = S.test(x)
    eps = 1e-6 * (1 + abs(t.low))
    # at the bound the test is not rejected; just beyond it is
    assert S.test(x, threshold=t.low).p_greater > ALPHA
    assert S.test(x, threshold=t.low - eps).p_greater <= ALPHA
    assert S.test(x, threshold=t.high).p_less > ALPHA
    assert S.test(x, threshold=t.high + eps).p_less <= ALPHA
    assert t.low < x.mean() < t.high
    # the verdict is the p-value's: holds iff rejected at the threshold
    for thr in np.linspace(t.low - 1, t.high + 1, 25):
        r = S.test(x, threshold=thr)
        assert (r.verdict == "holds") == (r.p_greater <= ALPHA)
        assert (r.verdict == "does not hold") == (r.p_less <= ALPHA)


def test_monte_carlo_is_valid_and_deterministic():
    x = np.random.default_rng(0).normal(0.3, 1.0, 25)
    a, b = S.test(x), S.test(x)
    assert a == b
    # p = (1 + count) / (1 + 20000)
    assert (a.p_greater * (S.MC_PATTERNS + 1)) == pytest.approx(round(a.p_greater * (S.MC_PATTERNS + 1)))
    assert a.p_greater >= 1 / (S.MC_PATTERNS + 1)
    assert S.test(x + 10).p_greater == pytest.approx(1 / (S.MC_PATTERNS + 1), abs=2e-4)


def test_ties_are_conservative():
    t = S.test(np.full(8, 2.0), threshold=2.0)
    assert t.p_greater == 1.0 and t.p_less == 1.0 and t.verdict == "inconclusive"
    t = S.test(np.full(8, 0.1))  # a constant positive value: holds
    assert t.verdict == "holds" and t.low == pytest.approx(0.1)


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="values"):
        S.test([1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="values"):
        S.decide([1.0, np.inf])
    with pytest.raises(ValueError, match="side.*'greater'.*'less'"):
        S.test([1.0, 2.0], side="up")
    with pytest.raises(ValueError, match=r"level.*\(0.5, 1\)"):
        S.test([1.0, 2.0], level=0.3)
    with pytest.raises(ValueError, match="level"):
        S.test([1.0, 2.0], level=True)
    with pytest.raises(ValueError, match="threshold"):
        S.test([1.0, 2.0], threshold=math.nan)
    with pytest.raises(ValueError, match="at least one"):
        S.test([])


# -- combine ----------------------------------------------------------------------------
def _t(verdict, p_greater=0.5, p_less=0.5, side="greater"):
    return S.Test(estimate=0.0, low=0.0, high=0.0, p_greater=p_greater, p_less=p_less, n=6,
                  verdict=verdict, side=side, threshold=0.0, level=0.95)


def test_combine_rules():
    assert S.combine([]) == "inconclusive"
    assert S.combine([_t("holds", 0.01), _t("holds", 0.02)]) == "holds"
    assert S.combine([_t("holds", 0.01), None]) == "inconclusive"
    # a lone "does not hold" at p = 0.04 does not survive Holm among 3 parts (0.04 > 0.05/3)
    parts = [_t("does not hold", p_less=0.04), _t("inconclusive"), _t("inconclusive")]
    assert S.combine(parts) == "inconclusive"
    parts[0] = _t("does not hold", p_less=0.01)
    assert S.combine(parts) == "does not hold"
    # side "less": the p-value against the claim is p_greater
    assert S.combine([_t("does not hold", p_greater=0.01, side="less")]) == "does not hold"
    assert list(S.survives_holm([_t("x", p_less=0.01), _t("x", p_less=0.03)])) == [True, True]
    assert list(S.holm([0.01, 0.04, 0.03], 0.05)) == [True, False, False]
    with pytest.raises(TypeError, match="tests"):
        S.combine(["holds"])


def test_combine_family_wise_error_with_three_parts():
    """Three true-null parts, n = 6 and n = 20: false 'holds' and false 'does not hold' of
    the claim stay <= 5% (plus the margin)."""
    R = 1000
    for n in (6, 20):
        rng = np.random.default_rng(n)
        X = rng.standard_normal((3, R, n))
        tests = [[S.test(X[k, r]) for k in range(3)] for r in range(R)]
        out = np.array([S.combine(t) for t in tests])
        assert (out == "holds").mean() <= ALPHA + margin(R)
        assert (out == "does not hold").mean() <= ALPHA + margin(R)
    # two true parts and one null part: still no more false 'holds' than 5%
    rng = np.random.default_rng(1)
    out = [S.combine([S.test(3 + rng.standard_normal(6)), S.test(3 + rng.standard_normal(6)),
                      S.test(rng.standard_normal(6))]) for _ in range(R)]
    assert np.mean(np.array(out) == "holds") <= ALPHA + margin(R)


# -- tails -----------------------------------------------------------------------------
def test_excess_kurtosis_is_scipys():
    x = np.random.default_rng(0).standard_t(4, size=(3, 500))
    np.testing.assert_allclose(S.excess_kurtosis(x), scipy.stats.kurtosis(x, axis=-1, fisher=True, bias=True))
    assert isinstance(S.excess_kurtosis(x[0]), float)


NOISE_EIGENVALUES = 1.0 / np.arange(1, 151)


@pytest.fixture(scope="module")
def null():
    return S.gaussian_norm_null(NOISE_EIGENVALUES, 2000, n_sims=100, seed=0)


def test_gaussian_norm_null_matches_a_plain_simulation(null):
    assert set(null) == {"kurtosis", "hill"} and null["kurtosis"].shape == (100,)
    # the norm of an anisotropic Gaussian vector is not Gaussian: excess kurtosis ~ 1.6-1.8
    assert 1.4 < null["kurtosis"].mean() < 2.0
    again = S.gaussian_norm_null(NOISE_EIGENVALUES, 2000, n_sims=100, seed=0)
    np.testing.assert_array_equal(again["kurtosis"], null["kurtosis"])
    # its law depends only on the spectrum: a rotated covariance gives the same statistics
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((150, 150)))
    cov_root = q @ np.diag(np.sqrt(NOISE_EIGENVALUES))
    ks = [S.excess_kurtosis(np.linalg.norm(rng.standard_normal((2000, 150)) @ cov_root.T, axis=1))
          for _ in range(40)]
    assert abs(np.mean(ks) - null["kurtosis"].mean()) < 4 * null["kurtosis"].std() / math.sqrt(40)
    small = S.gaussian_norm_null([2.0, 1.0, 0.0], 50, n_sims=5, seed=[3, 4])
    z = np.random.default_rng([3, 4]).standard_normal((5, 50, 2), dtype=np.float32)
    z *= np.sqrt([2.0, 1.0]).astype(np.float32)
    norms = np.sqrt((z.astype(float) ** 2).sum(-1))
    np.testing.assert_allclose(small["kurtosis"], scipy.stats.kurtosis(norms, axis=1), rtol=1e-5)
    np.testing.assert_allclose(small["hill"], [hill_index(r) for r in norms], rtol=1e-5)


def test_tail_excess_separates_gaussian_from_multivariate_t(null):
    rng = np.random.default_rng(11)
    gauss, heavy = [], []
    for _ in range(6):  # six "seeds"
        z = rng.standard_normal((2000, 150)) * np.sqrt(NOISE_EIGENVALUES)
        g = np.linalg.norm(z, axis=1)
        gauss.append(S.tail_excess(g, null=null))
        t3 = g * np.sqrt(3 / rng.chisquare(3, 2000))  # norms of multivariate t vectors, 3 dof
        heavy.append(S.tail_excess(t3, null=null))
    assert S.decide([e["kurtosis_excess"] for e in gauss]) != "holds"
    assert S.decide([e["kurtosis_excess"] for e in heavy]) == "holds"
    assert S.decide([e["hill_deficit"] for e in heavy]) == "holds"
    e = heavy[0]
    assert e["kurtosis_excess"] == pytest.approx(e["kurtosis"] - e["null_kurtosis_mean"])
    assert e["hill_deficit"] == pytest.approx(e["null_hill_mean"] - e["hill"])
    last = heavy[-1]
    assert last["kurtosis"] == pytest.approx(scipy.stats.kurtosis(t3)) and last["hill"] == pytest.approx(hill_index(t3))
    assert last["null_kurtosis_mean"] == pytest.approx(null["kurtosis"].mean())
    direct = S.tail_excess(np.linalg.norm(rng.standard_normal((300, 5)), axis=1), np.ones(5), n_sims=20)
    assert direct["n_sims"] == 20 and math.isfinite(direct["kurtosis_excess"])


def test_tail_bad_arguments():
    with pytest.raises(ValueError, match="spectrum"):
        S.gaussian_norm_null([1.0, np.nan], 100)
    with pytest.raises(ValueError, match="spectrum"):
        S.gaussian_norm_null([-1.0, 1.0], 100)
    with pytest.raises(ValueError, match="n_samples"):
        S.gaussian_norm_null([1.0], 2)
    with pytest.raises(ValueError, match="norms"):
        S.tail_excess([1.0, np.inf, 2.0], [1.0])
    with pytest.raises(ValueError, match="spectrum= or null="):
        S.tail_excess([1.0, 2.0, 3.0])


# -- detrended correlation ---------------------------------------------------------------
T = np.arange(300)


def test_detrended_spearman_removes_a_shared_trend():
    rng = np.random.default_rng(5)
    R = 800
    trend = np.exp(-T / 300)
    x = trend * np.exp(rng.standard_normal((R, 6, T.size)))
    y = trend * np.exp(rng.standard_normal((R, 6, T.size)))
    # the plain rank correlation sees the trend
    raw = np.mean([scipy.stats.spearmanr(x[i, 0], y[i, 0]).statistic for i in range(100)])
    assert raw > 0.05
    rho = S.detrended_spearman(x, y, T)
    assert rho.shape == (R, 6)
    # at most 5% false "holds" (plus the Monte-Carlo margin): not "holds" in >= 95% of them
    assert np.mean(S.decide_rows(rho) != "holds") >= 1 - (ALPHA + margin(R))
    # dependent series: y = x^0.5 * noise
    yd = x ** 0.5 * np.exp(rng.standard_normal((R, 6, T.size)))
    rho = S.detrended_spearman(np.log(x[:50]), np.log(yd[:50]), T)
    assert np.mean(S.decide_rows(rho) == "holds") == 1.0


def test_detrended_spearman_against_a_plain_computation():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal(40), rng.standard_normal(40)
    step = rng.permutation(40) * 10  # unsorted steps are sorted first
    got = S.detrended_spearman(x, y, step, window=5)
    order = np.argsort(step)
    xs, ys = x[order], y[order]
    rx = [xs[i] - np.median(xs[i - 2:i + 3]) for i in range(2, 38)]
    ry = [ys[i] - np.median(ys[i - 2:i + 3]) for i in range(2, 38)]
    assert got == pytest.approx(scipy.stats.spearmanr(rx, ry).statistic, rel=1e-12)
    assert isinstance(got, float)
    assert math.isnan(S.detrended_spearman(x[:6], y[:6], step[:6], window=5))
    assert S.spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic)
    assert [S.default_window(n) for n in (5, 9, 30, 62, 63, 1000)] == [3, 3, 9, 19, 21, 21]
    assert S.detrended_spearman(x, y, step) == S.detrended_spearman(x, y, step, window=13)
    with pytest.raises(ValueError, match="window"):
        S.detrended_spearman(x, y, step, window=4)
    with pytest.raises(ValueError, match="x"):
        S.detrended_spearman(np.r_[np.nan, x[1:]], y, step)
    with pytest.raises(ValueError, match="same shape"):
        S.detrended_spearman(x, y[:-1], step)


def test_min_seeds_is_the_fewest_that_can_decide():
    for level in (0.9, 0.95, 0.99):
        n = S.min_seeds(level)
        assert S.decide(np.ones(n), level=level) == "holds"
        assert S.decide(np.ones(n - 1), level=level) == "inconclusive"
    assert S.min_seeds() == 5
