"""The one decision rule of the book, and the statistics the claims reduce their data to.

**The rule.** A part of a claim is reduced to one number per independent unit (a seed: an
initialisation, its own data stream, its own evaluation batches), and those numbers are
judged by an exact **sign-flip (randomization) test** on their mean:

* under the null hypothesis the values are symmetric about ``threshold`` (for instance a
  per-seed difference of two exchangeable runs, or a per-seed log ratio of two optimizers
  that do equally well). Then every pattern of signs of ``values - threshold`` is equally
  likely, and the p-value of the observed mean is its rank among the means of all ``2^n``
  sign patterns (``n <= 14``: enumerated exactly; beyond, a fixed-seed Monte Carlo of
  20000 patterns with ``p = (1 + #{T* >= T}) / (1 + m)``, which stays valid);
* ``low`` is the one-sided ``level`` lower confidence bound of the centre, found by
  inverting the same test: the infimum of the shifts ``d`` for which "centre <= d" is not
  rejected at ``alpha = 1 - level``; ``high`` is the matching upper bound. For a sign-flip
  test of the mean, flipping a set ``A`` of signs beats the observed mean exactly when the
  mean of ``values[A]`` is below the shift, so both bounds are order statistics of the
  subset means and are computed exactly (no bisection);
* a part **holds** when ``low > threshold`` (claimed side "greater"; mirrored for "less"),
  **does not hold** when ``high < threshold``, and is **inconclusive** otherwise.
  ``[low, high]`` is a ``2 * level - 1`` two-sided interval (90% at the default), and each
  error is controlled on its own: a false "holds" and a false "does not hold" each happen
  with probability at most ``1 - level`` = 5%, exactly (not asymptotically), **when the
  values are symmetric about the threshold under the null**, whatever their shape otherwise.

**What the guarantee rests on.** Symmetry, not just a centre at the threshold. For a paired
comparison (a per-seed difference or log ratio of two optimizers or settings on the same
seed) the null that makes the values symmetric is *exchangeability*: the two runs of a seed
would be equally likely with their labels swapped. That is the null the book tests ("the two
optimizers do equally well in distribution"), and under it the test is exact. It is **not**
a test of "the mean is at the threshold" for any distribution: values with mean 0 but a
skewed law (a lognormal minus its mean) give false "holds" far above 5% (16-21% simulated at
6-20 seeds). A statistic that is not a paired difference (a kurtosis excess over a simulated
null, a correlation, a slope) carries the same assumption: symmetric about the threshold when
the claim is false at the margin.

**Many claims.** Each claim, and each hypothesis beyond the paper, is its own decision at 5%
per error; nothing controls the error across them. Read a page of eight verdicts as eight
separate 5% decisions: if every claim's null were exactly at its margin, about 0.4 of the
eight would come out wrong on average, and the chance that at least one does is up to
``1 - 0.95^8`` = 34% (independent claims).

**Consequence.** The smallest attainable p-value is ``1 / 2^n``, so **n <= 4 units can never
decide at 5%** (1/16 > 0.05): with 3 or 4 seeds every part is inconclusive, and the bounds
are infinite. With 5 seeds a decision needs every seed on the same side; with 6, at most
one of the 64 sign patterns may beat the observed one besides the observed pattern itself.

**Why not a t-interval or a percentile bootstrap.** A t-interval assumes normal means;
with 3 seeds from a tight symmetric bimodal null (values near +1 or -1, spread 0.1) all
three values are near +1 with probability 1/8, the t statistic is then about 17, and the
one-sided t-test says "holds" 12.5% of the time instead of 5%. A 95% percentile bootstrap
over 3 seeds is the range ``[min, max]`` of the values (a resample of three copies of the
minimum has probability 1/27 > 2.5%), so it says "holds" whenever the 3 values are
positive: 1/8 = 12.5% of the time under *any* continuous symmetric null. The sign-flip test
keeps both error rates at most 5% for every symmetric null and says "inconclusive" when the
data cannot say more.

**Several parts.** :func:`combine` decides a claim from its parts: it **holds** when every
part holds (an intersection-union test: a claim whose parts are not all true is declared
to hold only if a false part holds, which has probability <= 5%), it **does not hold** when
some part's "does not hold" survives Holm's step-down on the parts' p-values against the
claim (``p_less`` for a part claimed "greater", ``p_greater`` for one claimed "less") at
``1 - level`` (family-wise false "does not hold" <= 5%), and it is inconclusive otherwise.
A part that could not be tested enters as ``None``: it never holds (so neither does the claim)
and its p-value 1 stays in Holm's family, so a claim of ``k`` parts whose fewest-seeded part
has ``n`` seeds can come out "does not hold" only when ``2^-n <= (1 - level) / k``.

The module also holds the statistics the claims reduce their data to: the excess kurtosis
(one definition, :func:`excess_kurtosis`), the Gaussian null of gradient-noise norms
(:func:`gaussian_norm_null`, :func:`tail_excess`) and the detrended rank correlation of two
series recorded along training (:func:`detrended_spearman`).
"""
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import scipy.stats

from ..compute.checks import check_choice, check_int

VERDICTS = ("holds", "does not hold", "inconclusive")
SIDES = ("greater", "less")
EXACT_MAX_N = 14
"""Up to this many units every sign pattern is enumerated; beyond, Monte Carlo."""
MC_PATTERNS = 20000
"""Sign patterns drawn (from a fixed seed) when ``n > EXACT_MAX_N``."""
_MC_SEED = 20240407
_TOL = 1e-12  # relative: subset means within this of the shift count as ties (conservative)


# -- argument checks -------------------------------------------------------------------
def _check_side(side) -> str:
    return check_choice("side", side, SIDES)


def _check_level(level) -> float:
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0.5 < level < 1:
        raise ValueError(f"level must be a number in (0.5, 1) (e.g. 0.95), got {level!r}")
    return float(level)


def _check_threshold(threshold) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    return float(threshold)


def _finite(name: str, values, ndim: int | None = 1) -> np.ndarray:
    try:
        x = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be an array of numbers: {err}") from None
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite (no NaN or inf); drop diverged runs first")
    return x


# -- the sign-flip test ----------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _patterns(n: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The non-empty flip sets as columns of ``W`` (shape (n, P), ``1/|A|`` on the set), their
    sizes, how many empty patterns (the observed one) count always, and the denominator of
    the p-value."""
    if n <= EXACT_MAX_N:
        codes = np.arange(1, 2 ** n)
        B = ((codes[:, None] >> np.arange(n)) & 1).astype(float)
        extra, total = 1, 2 ** n
    else:
        B = np.random.default_rng([_MC_SEED, n]).integers(0, 2, size=(MC_PATTERNS, n)).astype(float)
        empty = B.sum(axis=1) == 0
        B = B[~empty]
        extra, total = 1 + int(empty.sum()), MC_PATTERNS + 1
    sizes = B.sum(axis=1)
    W = np.ascontiguousarray((B / sizes[:, None]).T)  # x @ W: the mean of x over each flip set
    W.setflags(write=False)
    return W, sizes, extra, total


def _needed(extra: int, total: int, alpha: float) -> int:
    """Smallest count c >= 0 of subset means at or below a shift with (extra + c) / total > alpha."""
    c = max(0, math.ceil(alpha * total - extra))
    while (extra + c) / total <= alpha:
        c += 1
    while c > 0 and (extra + c - 1) / total > alpha:
        c -= 1
    return c


def _sign_flip(X: np.ndarray, threshold: float, level: float) -> dict[str, np.ndarray]:
    """The test on every row of ``X`` (shape (R, n)): estimate, low, high, p_greater, p_less.

    Flipping the signs of the deviations in a set ``A`` gives a statistic at least the
    observed one (``T* >= T``) exactly when ``sum_{i in A} (x_i - d) <= 0``, i.e. when the
    mean of ``x[A]`` is at most the shift ``d``; so ``p_greater(d) = (extra + #{A: mean_A <=
    d}) / total``, nondecreasing in ``d``, and the bounds are order statistics of the means.
    """
    R, n = X.shape
    W, _, extra, total = _patterns(n)
    P = W.shape[1]
    alpha = 1.0 - level
    need = _needed(extra, total, alpha)
    out = {k: np.empty(R) for k in ("low", "high", "p_greater", "p_less")}
    out["estimate"] = X.mean(axis=1)
    rows = max(1, 1_000_000 // P)
    for start in range(0, R, rows):
        x = X[start:start + rows]
        tol = _TOL * np.maximum(np.abs(x).max(axis=1), abs(threshold))
        tol = np.where(tol > 0, tol, 1e-300)[:, None]
        means = x @ W
        le = (means <= threshold + tol).sum(axis=1)
        ge = (means >= threshold - tol).sum(axis=1)
        out["p_greater"][start:start + rows] = (extra + le) / total
        out["p_less"][start:start + rows] = (extra + ge) / total
        if need == 0:
            out["low"][start:start + rows] = -math.inf
            out["high"][start:start + rows] = math.inf
        else:
            part = np.sort(means, axis=1)
            out["low"][start:start + rows] = part[:, need - 1] - tol[:, 0]
            out["high"][start:start + rows] = part[:, P - need] + tol[:, 0]
    return out


def _verdicts(low, high, threshold: float, side: str) -> np.ndarray:
    above, below = low > threshold, high < threshold
    yes, no = (above, below) if side == "greater" else (below, above)
    return np.where(yes, "holds", np.where(no, "does not hold", "inconclusive"))


@dataclass(frozen=True)
class Test:
    """The sign-flip test of one part (see the module docstring).

    estimate : mean of the values. low, high : one-sided ``level`` lower and upper
        confidence bounds of the centre (``-inf`` / ``+inf`` when the test cannot reject
        at any shift, e.g. ``n <= 4`` at level 0.95). p_greater, p_less : p-values of
        "centre <= threshold" against "> threshold" and of ">= threshold" against "<".
    n : number of units. verdict : "holds" / "does not hold" / "inconclusive" for the
        claimed ``side`` of ``threshold``. level : the confidence level used.
    """

    __test__ = False  # not a pytest test class

    estimate: float
    low: float
    high: float
    p_greater: float
    p_less: float
    n: int
    verdict: str
    side: str
    threshold: float
    level: float

    def __repr__(self) -> str:
        """Numbers to 4 significant digits (``low=0.35``, not ``0.34999999999889997``)."""
        nums = ", ".join(f"{k}={getattr(self, k):.4g}" for k in ("estimate", "low", "high", "p_greater", "p_less"))
        return (f"Test({nums}, n={self.n}, verdict={self.verdict!r}, side={self.side!r}, "
                f"threshold={self.threshold:.4g}, level={self.level:.4g})")

    @property
    def p_against(self) -> float:
        """p-value of the side opposite to the claim (what Holm's step-down uses)."""
        return self.p_less if self.side == "greater" else self.p_greater


def min_seeds(level: float = 0.95) -> int:
    """The fewest units that can decide at ``level``: the smallest ``n`` with ``1 / 2^n <=
    1 - level`` (5 at the default: 1/32 <= 5% < 1/16)."""
    alpha = 1.0 - _check_level(level)
    return next(n for n in range(1, 64) if 0.5 ** n <= alpha + 1e-12)


def test(values, *, side: str = "greater", level: float = 0.95, threshold: float = 0.0) -> Test:
    """Sign-flip test of the mean of ``values`` (one per independent unit) against ``threshold``.

    values : shape (n,), finite, n >= 1. side : the claimed side, "greater" or "less".
    level : confidence level of each one-sided bound, in (0.5, 1).
    Returns a :class:`Test`; deterministic (Monte Carlo patterns come from a fixed seed).
    """
    x = _finite("values", values)
    side, level, threshold = _check_side(side), _check_level(level), _check_threshold(threshold)
    if x.size == 0:
        raise ValueError("values must hold at least one value")
    r = _sign_flip(x[None, :], threshold, level)
    low, high = float(r["low"][0]), float(r["high"][0])
    return Test(estimate=float(r["estimate"][0]), low=low, high=high,
                p_greater=float(r["p_greater"][0]), p_less=float(r["p_less"][0]), n=int(x.size),
                verdict=str(_verdicts(low, high, threshold, side)), side=side, threshold=threshold,
                level=level)


def decide(values, *, side: str = "greater", level: float = 0.95, threshold: float = 0.0) -> str:
    """``test(values, ...).verdict``: "holds", "does not hold" or "inconclusive"."""
    return test(values, side=side, level=level, threshold=threshold).verdict


def decide_rows(values, *, side: str = "greater", level: float = 0.95,
                threshold: float = 0.0) -> np.ndarray:
    """:func:`decide` on every row of ``values`` (shape (R, n)) at once; returns (R,) strings.

    The same computation as :func:`test`, vectorised (for simulations of the rule).
    """
    X = _finite("values", values, ndim=2)
    side, level, threshold = _check_side(side), _check_level(level), _check_threshold(threshold)
    if X.shape[1] == 0:
        raise ValueError("values must hold at least one value per row")
    r = _sign_flip(X, threshold, level)
    return _verdicts(r["low"], r["high"], threshold, side)


def holm(pvalues, alpha: float) -> np.ndarray:
    """Holm's step-down: which hypotheses are rejected at family-wise level ``alpha``.

    Sorted ascending, ``p_(i)`` is rejected while ``p_(j) <= alpha / (m - j + 1)`` for all
    ``j <= i``. Returns a boolean array in the order of ``pvalues``.
    """
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1 or np.isnan(p).any():
        raise ValueError("pvalues must be a 1-D array of numbers (no NaN)")
    reject = np.zeros(p.size, dtype=bool)
    for i, j in enumerate(np.argsort(p, kind="stable")):
        if p[j] > alpha / (p.size - i):
            break
        reject[j] = True
    return reject


def combine(tests: Iterable[Test | None], *, level: float | None = None) -> str:
    """Decide a claim from the tests of its parts (see the module docstring).

    tests : the parts; ``None`` stands for a part that could not be tested (it is
        inconclusive and enters Holm's family with p-value 1).
    level : defaults to the parts' common level (ValueError if they differ).
    "holds" iff every part holds (intersection-union test, false "holds" <= 1 - level);
    "does not hold" iff some part's p-value against the claim survives Holm's step-down at
    ``1 - level`` (family-wise false "does not hold" <= 1 - level); else "inconclusive".
    No parts -> "inconclusive".
    """
    tests = list(tests)
    for i, t in enumerate(tests):
        if t is not None and not isinstance(t, Test):
            raise TypeError(f"tests[{i}] must be a stats.Test or None, got {type(t).__name__}")
    real = [t for t in tests if t is not None]
    if level is None:
        levels = {t.level for t in real}
        if len(levels) > 1:
            raise ValueError(f"tests have different levels {sorted(levels)}; pass level=")
        level = levels.pop() if levels else 0.95
    level = _check_level(level)
    if not tests:
        return "inconclusive"
    if all(t is not None and t.verdict == "holds" for t in tests):
        return "holds"
    against = [t.p_against if t is not None else 1.0 for t in tests]
    if holm(against, 1.0 - level).any():
        return "does not hold"
    return "inconclusive"


def survives_holm(tests: Sequence[Test | None], *, level: float = 0.95) -> np.ndarray:
    """Which parts' "does not hold" survive Holm's step-down (boolean, in order)."""
    level = _check_level(level)
    against = [t.p_against if t is not None else 1.0 for t in tests]
    return holm(against, 1.0 - level) if against else np.zeros(0, dtype=bool)


# -- tail statistics -------------------------------------------------------------------
def excess_kurtosis(values, axis: int = -1):
    """Excess kurtosis ``m4 / m2^2 - 3`` (population moments) along ``axis``:
    ``scipy.stats.kurtosis(values, fisher=True, bias=True)``. 0 for a Gaussian sample in
    the limit, larger for heavier tails."""
    out = scipy.stats.kurtosis(np.asarray(values, dtype=float), axis=axis, fisher=True, bias=True)
    return float(out) if np.ndim(out) == 0 else out


def _spectrum(spectrum) -> np.ndarray:
    lam = _finite("spectrum", spectrum)
    if lam.size == 0 or lam.max() <= 0:
        raise ValueError("spectrum must hold at least one positive eigenvalue")
    if lam.min() < -1e-8 * lam.max():
        raise ValueError(f"spectrum must be eigenvalues of a covariance (>= 0), got {lam.min():g}")
    # directions with no variance add nothing to the norm
    return np.sort(lam[lam > 1e-12 * lam.max()])[::-1]


def _seed_words(seed) -> tuple[int, ...]:
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        seed = (int(seed),)
    try:
        words = tuple(check_int(f"seed[{i}]", s, minimum=0) for i, s in enumerate(seed))
    except TypeError:
        raise TypeError(f"seed must be an integer >= 0 or a sequence of them, got {seed!r}") from None
    if not words:
        raise ValueError("seed must not be empty")
    return words


@functools.lru_cache(maxsize=256)
def _null_cached(lam_bytes: bytes, n_samples: int, n_sims: int, seed: tuple[int, ...]):
    from ..compute.measure import hill_index
    lam = np.frombuffer(lam_bytes, dtype=float)
    root = np.sqrt(lam).astype(np.float32)
    rng = np.random.default_rng(list(seed))
    kurt, hill = np.empty(n_sims), np.empty(n_sims)
    rows = max(1, 4_000_000 // (n_samples * lam.size))
    for start in range(0, n_sims, rows):
        c = min(rows, n_sims - start)
        z = rng.standard_normal((c, n_samples, lam.size), dtype=np.float32)
        z *= root
        norms = np.sqrt(np.einsum("csd,csd->cs", z, z, dtype=np.float64))
        kurt[start:start + c] = scipy.stats.kurtosis(norms, axis=1, fisher=True, bias=True)
        hill[start:start + c] = [hill_index(r) for r in norms]
    kurt.setflags(write=False)
    hill.setflags(write=False)
    return kurt, hill


def gaussian_norm_null(spectrum, n_samples: int, *, n_sims: int = 200, seed=0) -> dict[str, np.ndarray]:
    """Tail statistics of the norms of Gaussian vectors with covariance eigenvalues ``spectrum``.

    The law of ``||x||`` for ``x ~ N(0, Sigma)`` depends only on the eigenvalues of Sigma
    (``||x||^2 = sum_i lambda_i chi2_1``), so the null of "Gaussian gradient noise" for a
    measured covariance is simulated from its spectrum: ``n_sims`` samples of ``n_samples``
    norms each (zero eigenvalues dropped; float32 draws, float64 sums).
    seed : an integer or a sequence of integers for ``numpy.random.default_rng``.
    Returns ``{"kurtosis": (n_sims,), "hill": (n_sims,)}``: per simulation the excess
    kurtosis (:func:`excess_kurtosis`) and the Hill tail index
    (:func:`lintf.compute.measure.hill_index`, default ``k``). Deterministic; cached.
    """
    lam = _spectrum(spectrum)
    n_samples = check_int("n_samples", n_samples, minimum=3)
    n_sims = check_int("n_sims", n_sims, minimum=2)
    kurt, hill = _null_cached(lam.tobytes(), n_samples, n_sims, _seed_words(seed))
    return {"kurtosis": kurt.copy(), "hill": hill.copy()}


def tail_excess(norms, spectrum=None, *, n_sims: int = 200, seed=0, null: dict | None = None) -> dict:
    """Tail weight of observed noise norms against the Gaussian null of the same spectrum.

    norms : shape (n,), the observed ``||g_B - g||``. spectrum : eigenvalues of their
    covariance (ignored when ``null``, a :func:`gaussian_norm_null` result, is given).
    Returns floats: n, kurtosis, hill (observed), null_kurtosis_mean, null_kurtosis_sd,
    null_hill_mean, null_hill_sd, n_sims, ``kurtosis_excess = kurtosis -
    null_kurtosis_mean`` and ``hill_deficit = null_hill_mean - hill``; both > 0 for tails
    heavier than Gaussian.
    """
    from ..compute.measure import hill_index
    x = _finite("norms", norms)
    if x.size < 3:
        raise ValueError(f"norms must hold at least 3 values, got {x.size}")
    if null is None:
        if spectrum is None:
            raise ValueError("tail_excess needs spectrum= or null=")
        null = gaussian_norm_null(spectrum, x.size, n_sims=n_sims, seed=seed)
    nk, nh = np.asarray(null["kurtosis"], dtype=float), np.asarray(null["hill"], dtype=float)
    k, h = excess_kurtosis(x), hill_index(x)
    return {"n": int(x.size), "kurtosis": k, "hill": h,
            "null_kurtosis_mean": float(nk.mean()), "null_kurtosis_sd": float(nk.std(ddof=1)),
            "null_hill_mean": float(nh.mean()), "null_hill_sd": float(nh.std(ddof=1)),
            "n_sims": int(nk.size), "kurtosis_excess": k - float(nk.mean()),
            "hill_deficit": float(nh.mean()) - h}


# -- rank correlation ------------------------------------------------------------------
def _pearson_last(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    num = (a * b).sum(axis=-1)
    ok = den > 1e-300
    return np.where(ok, num / np.where(ok, den, 1.0), np.nan)


def spearman(x, y) -> float:
    """Spearman rank correlation of two equal-length 1-D arrays (average ranks for ties);
    NaN for fewer than 3 points or a constant series."""
    x, y = _finite("x", x), _finite("y", y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
    if x.size < 3:
        return math.nan
    return float(_pearson_last(scipy.stats.rankdata(x), scipy.stats.rankdata(y)))


DETREND_WINDOW = 21
"""Default window of :func:`detrended_spearman`, in recorded points."""


def default_window(n: int) -> int:
    """The default detrending window for ``n`` points: :data:`DETREND_WINDOW`, or for
    shorter series (``n < 3 * DETREND_WINDOW``) the largest odd number <= n / 3, at least 3."""
    w = min(DETREND_WINDOW, n // 3)
    w -= (w % 2 == 0)
    return max(3, w)


def detrended_spearman(x, y, step, *, window: int | None = None):
    """Spearman correlation of two series after removing each one's trend along ``step``.

    x, y : shape (..., n) (the last axis follows ``step``; leading axes are independent
        series, e.g. replications). step : shape (n,), the iteration of each point.
    window : odd number (>= 3) of consecutive recorded points of the centred rolling
        median; default :func:`default_window` of ``n`` (21 points for 63 or more).

    Each series (sorted by step) minus its centred rolling median over ``window`` points;
    the ``window // 2`` points at each end, whose window would be one-sided, are dropped
    (a one-sided median lags a trend in the same direction for both series and would
    create a correlation); then the Spearman correlation of the two residual series.

    Why a rolling median: two series that both trend with the iteration (a loss that
    falls, a sharpness that rises) are rank-correlated whatever their relation; the
    question is whether they move together *beyond* the shared trend. A centred rolling
    median assumes nothing about the trend's shape (a polynomial or a parametric fit in
    the step would leave structure behind at kinks and phase changes), follows it locally,
    and is robust to the spikes whose coincidence is the signal (one spike barely moves the
    median of its window). Returns a float for 1-D input, else an array of shape (...);
    NaN when fewer than 3 points remain or a residual series is constant.
    """
    if window is not None:
        window = check_int("window", window, minimum=3)
        if window % 2 == 0:
            raise ValueError(f"window must be an odd integer >= 3, got {window}")
    x, y = _finite("x", x, ndim=None), _finite("y", y, ndim=None)
    t = _finite("step", step)
    if window is None:
        window = default_window(t.size)
    if x.shape != y.shape or x.ndim == 0 or x.shape[-1] != t.size:
        raise ValueError(f"x and y must have the same shape (..., n) with n = len(step); got "
                         f"{x.shape}, {y.shape} and {t.size} steps")
    order = np.argsort(t, kind="stable")
    x, y = x[..., order], y[..., order]
    n = t.size
    if n - window + 1 < 3:
        out = np.full(x.shape[:-1], np.nan)
        return float(out) if out.ndim == 0 else out
    h = window // 2

    def residual(v):
        med = np.median(np.lib.stride_tricks.sliding_window_view(v, window, axis=-1), axis=-1)
        return v[..., h:n - h] - med

    rx = scipy.stats.rankdata(residual(x), axis=-1)
    ry = scipy.stats.rankdata(residual(y), axis=-1)
    out = _pearson_last(rx, ry)
    return float(out) if np.ndim(out) == 0 else out
