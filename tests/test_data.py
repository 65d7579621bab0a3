"""lintf.data: layout, distributions, determinism, bad input."""
import math

import pytest
import torch
from scipy import stats

import lintf
from lintf.data import Prompts, sample_covariates, target_mlp


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
