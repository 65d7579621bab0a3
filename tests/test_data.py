"""lintf.data: layout, distributions, determinism, bad input."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

import lintf
from lintf.compute.data import Prompts, sample_covariates, target_mlp


def test_layout_and_targets():
    g = torch.Generator().manual_seed(0)
    Z, y = lintf.sample_prompts(64, 20, 5, generator=g, dtype=torch.float64)
    assert Z.shape == (64, 6, 21) and y.shape == (64,)
    assert torch.all(Z[:, -1, -1] == 0)                      # the query's label is hidden
    X, labels = Z[:, :5, :20], Z[:, 5, :20]                   # context: solve for w*, predict the query
    w = torch.linalg.lstsq(X.transpose(1, 2), labels.unsqueeze(-1)).solution
    assert torch.allclose((Z[:, :5, 20:].transpose(1, 2) @ w).reshape(-1), y, atol=1e-8)


def test_leading_batch_dims_and_determinism():
    a = lintf.sample_prompts((3, 4), 5, 2, "gamma", generator=torch.Generator().manual_seed(1))
    b = lintf.sample_prompts((3, 4), 5, 2, "gamma", generator=torch.Generator().manual_seed(1))
    assert a[0].shape == (3, 4, 3, 6) and a[1].shape == (3, 4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_sphere_is_unit_norm():
    x = sample_covariates((1000,), 5, "sphere", generator=torch.Generator().manual_seed(0))
    assert torch.allclose(x.norm(dim=-1), torch.ones(1000), atol=1e-6)


def test_gamma_with_k_half_d_theta_2_is_standard_gaussian():
    d = 5
    x = sample_covariates((20000,), d, "gamma", k=d / 2, theta=2.0,
                          generator=torch.Generator().manual_seed(0), dtype=torch.float64).numpy()
    for j in range(d):                                        # each coordinate is N(0, 1)
        assert stats.kstest(x[:, j], "norm").pvalue > 1e-3
    assert stats.kstest((x ** 2).sum(1), stats.chi2(d).cdf).pvalue > 1e-3


def test_default_gamma_is_heavier_tailed_than_gaussian():
    g = torch.Generator().manual_seed(0)
    gam = sample_covariates((20000,), 5, "gamma", generator=g)[:, 0]
    assert stats.kurtosis(gam.numpy()) > 3


def test_mlp_labels():
    g = torch.Generator().manual_seed(0)
    Z, y = lintf.sample_prompts(8, 4, 3, "mlp", generator=g, dtype=torch.float64)
    mlp = target_mlp(3, 0)
    feats = mlp(Z[:, :3, :].transpose(1, 2))                 # (8, 5, 3)
    # labels are linear in MLP*(x): the context determines w* when n >= d
    w = torch.linalg.lstsq(feats[:, :4], Z[:, 3, :4].unsqueeze(-1)).solution
    assert torch.allclose((feats[:, 4:] @ w).reshape(-1), y, atol=1e-8)


def test_prompts_object_matches_function():
    p = Prompts(7, 3, "gamma", {"k": 0.5})
    a = p.sample(4, generator=torch.Generator().manual_seed(3))
    b = lintf.sample_prompts(4, 7, 3, "gamma", k=0.5, theta=10.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0])


@pytest.mark.parametrize("kwargs, word", [
    (dict(batch_size=0, n=5, d=2), "batch_size"),
    (dict(batch_size=2, n=0, d=2), "n"),
    (dict(batch_size=2, n=5, d=-1), "d"),
    (dict(batch_size=2, n=5, d=2, covariates="cauchy"), "gaussian"),
    (dict(batch_size=2, n=5, d=2, covariates="gamma", k=-1.0), "k"),
    (dict(batch_size=2, n=5, d=2, covariates="gamma", theta=math.nan), "theta"),
    (dict(batch_size=2, n=5, d=2, covariates="sphere", k=1.0), "options"),
])
def test_bad_input(kwargs, word):
    with pytest.raises(ValueError, match=word):
        lintf.sample_prompts(**kwargs)


def test_non_integer_sizes_are_type_errors():
    with pytest.raises(TypeError, match="n"):
        lintf.sample_prompts(2, 2.5, 3)


# ---------------------------------------------------------------- the authors' evaluation batch


def _authors_generate_data(mode, N, d, B, shape_k=0.1):
    """The authors' ``generate_data`` (linear_transformer.py), transcribed line for line on
    the CPU: global generators, ``torch.FloatTensor(...).normal_``, in-place scaling."""
    W = torch.FloatTensor(B, d).normal_(0, 1)
    X = torch.FloatTensor(B, N, d).normal_(0, 1)
    X_test = torch.FloatTensor(B, 1, d).normal_(0, 1)
    if mode == 'sphere':
        X.div_(X.norm(p=2, dim=2)[:, :, None])
        X_test.div_(X_test.norm(p=2, dim=2)[:, :, None])
    elif mode == 'gamma':
        gamma_scales = np.random.gamma(shape=shape_k, scale=(10 / shape_k) ** (0.5), size=[B, N])
        gamma_scales = torch.Tensor(gamma_scales)
        gamma_scales = gamma_scales.sqrt()
        gamma_test_scales = np.random.gamma(shape=shape_k, scale=(10 / shape_k) ** (0.5), size=[B, 1])
        gamma_test_scales = torch.Tensor(gamma_test_scales)
        gamma_test_scales = gamma_test_scales.sqrt()
        X.div_(X.norm(p=2, dim=2)[:, :, None])
        X_test.div_(X_test.norm(p=2, dim=2)[:, :, None])
        X.mul_(gamma_scales[:, :, None])
        X_test.mul_(gamma_test_scales[:, :, None])
    else:
        assert mode == 'normal'
    y = torch.einsum('bi,bni->bn', (W, X)).unsqueeze(2)
    y_zero = torch.zeros(B, 1, 1)
    y_test = torch.einsum('bi,bni->bn', (W, X_test)).squeeze(1)
    X_comb = torch.cat([X, X_test], dim=1)
    y_comb = torch.cat([y, y_zero], dim=1)
    Z = torch.cat([X_comb, y_comb], dim=2)
    return Z, y_test


def _authors_batch(mode, N, d, B, seed=99):
    """What the authors' condition-number notebook evaluates on, global states restored after."""
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            return _authors_generate_data(mode, N, d, B)
        finally:
            np.random.set_state(np_state)


def test_private_generator_reproduces_the_global_one():
    """The premise of `authors_prompts`: a fresh Generator seeded s draws what the global
    generator draws after torch.manual_seed(s), FloatTensor(...).normal_ included."""
    g = torch.Generator().manual_seed(7)
    private = [torch.empty(*shape).normal_(0, 1, generator=g) for shape in [(6, 3), (6, 20, 3), (6, 1, 3)]]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        public = [torch.FloatTensor(*shape).normal_(0, 1) for shape in [(6, 3), (6, 20, 3), (6, 1, 3)]]
    for a, b in zip(private, public):
        assert a.dtype == b.dtype == torch.float32 and torch.equal(a, b)
    np_state = np.random.get_state()
    np.random.seed(7)
    try:
        expected = np.random.gamma(shape=0.1, scale=10.0, size=(6, 20))
    finally:
        np.random.set_state(np_state)
    assert np.array_equal(np.random.RandomState(7).gamma(shape=0.1, scale=10.0, size=(6, 20)), expected)


@pytest.mark.parametrize("covariates, mode", [("gaussian", "normal"), ("sphere", "sphere"), ("gamma", "gamma")])
@pytest.mark.parametrize("B, n, d, seed", [(1000, 20, 5, 99), (7, 3, 2, 0), (1, 1, 1, 12345)])
def test_authors_prompts_is_the_authors_batch_bit_for_bit(covariates, mode, B, n, d, seed):
    Z, y = lintf.authors_prompts(B, n, d, covariates, seed=seed)
    Z_authors, y_authors = _authors_batch(mode, n, d, B, seed)
    assert Z.shape == (B, d + 1, n + 1) and y.shape == (B,)
    assert Z.dtype == y.dtype == torch.float32 and Z.is_contiguous()
    assert torch.equal(Z, Z_authors.transpose(1, 2))
    assert torch.equal(y, y_authors)


def test_authors_prompts_default_seed_is_99():
    Z, y = lintf.authors_prompts(4, 5, 3, "gamma")
    Z99, y99 = lintf.authors_prompts(4, 5, 3, "gamma", seed=99)
    assert torch.equal(Z, Z99) and torch.equal(y, y99)
    assert not torch.equal(Z, lintf.authors_prompts(4, 5, 3, "gamma", seed=98)[0])


@pytest.mark.parametrize("covariates", ["gaussian", "sphere", "gamma"])
def test_authors_prompts_layout(covariates):
    B, n, d = 50, 8, 4
    Z, y = lintf.authors_prompts(B, n, d, covariates)
    assert torch.all(Z[:, -1, -1] == 0)                       # the query's label is hidden
    X, labels, query = Z[:, :d, :n], Z[:, d, :n], Z[:, :d, n]
    w = torch.linalg.lstsq(X.transpose(1, 2).double(), labels.double().unsqueeze(-1)).solution.squeeze(-1)
    assert torch.allclose((query.double() * w).sum(-1), y.double(), rtol=1e-4, atol=1e-4)
    norms = Z[:, :d, :].norm(dim=1)
    if covariates == "sphere":
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-6)
    if covariates == "gamma":                                 # |x|^2 = g ~ Gamma(0.1, 10): heavy, mean 1
        assert not torch.allclose(norms, torch.ones_like(norms), atol=1e-2)


@pytest.mark.parametrize("covariates", ["gaussian", "sphere", "gamma"])
def test_authors_prompts_leaves_global_rng_alone(covariates):
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    lintf.authors_prompts(16, 10, 3, covariates, seed=5)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]


@pytest.mark.parametrize("kwargs, word", [
    (dict(batch_size=0, n=5, d=2), "batch_size"),
    (dict(batch_size=2, n=0, d=2), "n"),
    (dict(batch_size=2, n=5, d=0), "d"),
    (dict(batch_size=2, n=5, d=2, covariates="mlp"), "covariates.*'gaussian', 'sphere', 'gamma'"),
    (dict(batch_size=2, n=5, d=2, covariates="normal"), "covariates.*'gaussian', 'sphere', 'gamma'"),
    (dict(batch_size=2, n=5, d=2, seed=-1), "seed"),
])
def test_authors_prompts_bad_input(kwargs, word):
    with pytest.raises(ValueError, match=word):
        lintf.authors_prompts(**kwargs)


def test_authors_prompts_non_integer_sizes_are_type_errors():
    with pytest.raises(TypeError, match="batch_size"):
        lintf.authors_prompts(2.0, 5, 3)
    with pytest.raises(TypeError, match="batch_size"):
        lintf.authors_prompts((2, 3), 5, 3)
