"""lintf.measure: each fast path against a plain reference (autograd loops, finite differences)."""
import functools
import math

import numpy as np
import pytest
import torch

import lintf
from lintf import measure

VARIANTS = [dict(), dict(attention="softmax"), dict(qk="separate"), dict(frontend="mlp"),
            dict(parametrization="block")]
VARIANT_IDS = ["linear", "softmax", "separate", "mlp", "block"]


def runs_of(model, lead, generator, dtype=torch.float64, spread=1.0):
    """Independent parameters with leading run dims ``lead`` (bigger than init, to be generic)."""
    shapes = model.param_shapes()
    return {k: spread * torch.randn(*lead, *s, generator=generator, dtype=dtype) * 0.3
            for k, s in shapes.items()}


def flat_loss(model, Z, y):
    return lambda theta: model.loss(model.unflatten(theta), Z, y)


def per_run(tree, index):
    return {k: v[index] for k, v in tree.items()}


# -- directional smoothness ------------------------------------------------------------------
@pytest.mark.parametrize("kw", VARIANTS, ids=VARIANT_IDS)
def test_directional_smoothness_matches_hvp_and_finite_differences(kw):
    model = lintf.Model(L=2, d=3, **kw)
    g = torch.Generator().manual_seed(0)
    lead = (3, 2)
    params = runs_of(model, lead, g)
    direction = runs_of(model, lead, g)
    Z, y = lintf.sample_prompts((*lead, 20), 4, 3, generator=g, dtype=torch.float64)
    fast = measure.directional_smoothness(model, params, direction, Z, y)
    assert fast.shape == lead

    for i in range(lead[0]):
        for j in range(lead[1]):
            f = flat_loss(model, Z[i, j], y[i, j])
            theta = model.flatten(per_run(params, (i, j)))
            u = model.flatten(per_run(direction, (i, j)))
            u = u / u.norm()
            _, Hu = torch.autograd.functional.hvp(f, theta, u)      # double backward
            assert torch.allclose(fast[i, j], u @ Hu, rtol=1e-10, atol=1e-12)
            h = 1e-4
            fd = (f(theta + h * u) - 2 * f(theta) + f(theta - h * u)) / h ** 2
            assert torch.allclose(fast[i, j], fd, rtol=1e-5, atol=1e-6)


def test_directional_smoothness_shared_batch_scale_and_no_graph():
    model = lintf.Model(L=3, d=5)
    g = torch.Generator().manual_seed(1)
    params = {k: v.expand(4, *v.shape) + 0.01 * torch.randn(4, *v.shape, generator=g)
              for k, v in model.init(g).items()}
    direction = runs_of(model, (4,), g, dtype=torch.float32)
    Z, y = lintf.sample_prompts(50, 20, 5, generator=g)                # shared by all runs
    with torch.no_grad():
        shared = measure.directional_smoothness(model, params, direction, Z, y)
    expanded = measure.directional_smoothness(model, params, {k: 7.0 * v for k, v in direction.items()},
                                              Z.expand(4, *Z.shape), y.expand(4, *y.shape))
    assert shared.shape == (4,) and shared.dtype == torch.float32
    assert torch.allclose(shared, expanded, rtol=1e-4)                  # norm taken, batch broadcast
    assert shared.grad_fn is None and not shared.requires_grad
    assert all(not v.requires_grad and v.grad is None for v in params.values())


# -- Hessian ---------------------------------------------------------------------------
@pytest.mark.parametrize("kw", VARIANTS, ids=VARIANT_IDS)
def test_hessian_matches_autograd_and_finite_differences(kw):
    model = lintf.Model(L=2, d=2, hidden=3, **kw)
    g = torch.Generator().manual_seed(2)
    params = runs_of(model, (2,), g, dtype=torch.float32)
    Z, y = lintf.sample_prompts((2, 6), 3, 2, generator=g)
    H = measure.hessian(model, params, Z, y, chunk=5)
    p = model.num_params
    assert H.shape == (2, p, p) and H.dtype == torch.float64
    for r in range(2):
        f = flat_loss(model, Z[r].double(), y[r].double())
        theta = model.flatten(per_run(params, r)).double()
        reference = torch.autograd.functional.hessian(f, theta)
        assert torch.allclose(H[r], reference, rtol=1e-10, atol=1e-12)
        if r == 1:
            continue

        def gradient(t):
            t = t.clone().requires_grad_(True)
            return torch.autograd.grad(f(t), t)[0]
        h = 1e-5
        fd = torch.stack([(gradient(theta + h * e) - gradient(theta - h * e)) / (2 * h)
                          for e in torch.eye(p, dtype=torch.float64)])
        assert torch.allclose(H[r], fd, rtol=1e-6, atol=1e-7)


def test_hessian_of_base_model_is_symmetric_and_shared_batch_broadcasts():
    model = lintf.Model()
    g = torch.Generator().manual_seed(3)
    params = {k: torch.stack([model.init(g)[k] for _ in range(2)]) for k in model.param_shapes()}
    Z, y = lintf.sample_prompts(8, 20, 5, generator=g)
    H = measure.hessian(model, params, Z, y, chunk=108)
    assert H.shape == (2, 216, 216)
    assert torch.allclose(H, H.transpose(-1, -2), atol=1e-12)
    one = measure.hessian(model, per_run(params, 1), Z, y)
    assert torch.allclose(H[1], one, rtol=1e-12, atol=1e-14)
    chunked = measure.hessian(model, params, Z, y, prompt_chunk=3)     # 8 prompts as 3 + 3 + 2
    assert torch.allclose(chunked, H, rtol=1e-12, atol=1e-12 * H.abs().max())


# -- robust condition number -------------------------------------------------------------------
def test_robust_condition_definitions():
    eigenvalues = torch.tensor([0.5, 1.0, 2.0, 3.0, 10.0, 4.0], dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    H = Q @ torch.diag(eigenvalues) @ Q.T
    # sorted 0.5 1 2 3 4 10: torch.median takes the lower middle value, 2
    assert torch.allclose(measure.robust_condition(H, "eig"), torch.tensor(10.0 / 2.0, dtype=torch.float64))
    diag = H.diagonal().abs().sort().values
    assert torch.allclose(measure.robust_condition(H, "diag"), diag[-1] / diag[2])
    D = torch.diag(torch.tensor([-8.0, 1.0, 2.0, 4.0]))                 # |diag|: 1 2 4 8
    assert measure.robust_condition(D, "diag").item() == 8.0 / 2.0
    assert measure.robust_condition(D, "eig").item() == 4.0 / 2.0       # lambda_max / median |lambda|
    batch = torch.stack([H, 2 * H])
    assert torch.allclose(measure.robust_condition(batch, "eig"), torch.full((2,), 5.0, dtype=torch.float64))
    summary = measure.hessian_summary(H)
    assert torch.allclose(summary["eigenvalues"], eigenvalues.sort().values)
    assert torch.allclose(summary["lambda_median"], torch.tensor(2.0, dtype=torch.float64))
    assert set(summary) == {"eigenvalues", "diagonal", "lambda_max", "lambda_median", "R_med_eig", "R_med_diag"}


# -- gradient noise --------------------------------------------------------------------------
@pytest.mark.parametrize("attention", ["linear", "softmax"])      # hand-written and autograd paths
def test_gradient_noise_matches_a_plain_loop_for_any_chunk(attention):
    model = lintf.Model(L=2, d=2, attention=attention)
    params = model.init(torch.Generator().manual_seed(5), dtype=torch.float64)
    sample = functools.partial(lintf.sample_prompts, n=4, d=2, covariates="gamma", dtype=torch.float64)
    kw = dict(num_batches=7, batch_size=9, big_batch=31)
    fast = [measure.gradient_noise(model, params, sample, generator=torch.Generator().manual_seed(6),
                                   chunk=c, **kw) for c in (1, 3, 7)]

    def gradient(Z, y):
        leaf = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        return torch.cat([t.flatten() for t in torch.autograd.grad(model.loss(leaf, Z, y), list(leaf.values()))])

    generator = torch.Generator().manual_seed(6)                         # the documented draw order
    big = gradient(*sample((31,), generator=generator))
    seeds = torch.randint(2 ** 62, (7,), generator=generator).tolist()
    plain = torch.stack([(gradient(*sample((9,), generator=torch.Generator().manual_seed(s))) - big).norm()
                         for s in seeds])
    for result in fast:
        assert result.shape == (7,)
        assert torch.allclose(result, plain, rtol=1e-10)


# -- tail measures ----------------------------------------------------------------------------
def test_tail_measures_on_known_distributions():
    rng = np.random.default_rng(7)
    alpha = 3.0
    pareto = rng.pareto(alpha, 200_000) + 1.0                            # P(X > t) = t^-3, t >= 1
    assert measure.hill_index(pareto) == pytest.approx(alpha, rel=0.05)
    gauss = measure.tail_measures(torch.from_numpy(rng.standard_normal(200_000)))
    assert abs(gauss["excess_kurtosis"]) < 0.05
    assert gauss["n"] == 200_000 and gauss["hill_k"] == math.ceil(math.sqrt(200_000))
    assert gauss["mean"] == pytest.approx(0.0, abs=0.01) and gauss["std"] == pytest.approx(1.0, rel=0.01)
    assert measure.tail_measures(pareto)["excess_kurtosis"] > 10          # heavy tail


# -- gradient norm ---------------------------------------------------------------------------
def test_gradient_norm_matches_per_run_gradients():
    model = lintf.Model(L=2, d=3, frontend="mlp")
    g = torch.Generator().manual_seed(8)
    params = runs_of(model, (3,), g)
    Z, y = lintf.sample_prompts(20, 5, 3, generator=g, dtype=torch.float64)  # shared batch
    fast = measure.gradient_norm(model, params, Z, y)
    for r in range(3):
        theta = model.flatten(per_run(params, r)).requires_grad_(True)
        reference = torch.autograd.grad(flat_loss(model, Z, y)(theta), theta)[0].norm()
        assert torch.allclose(fast[r], reference, rtol=1e-12)


# -- argument checks --------------------------------------------------------------------------
def test_arguments_are_checked_before_compute():
    model = lintf.Model(L=2, d=2)
    params = model.init(torch.Generator().manual_seed(9))
    sample = functools.partial(lintf.sample_prompts, n=4, d=2)
    ok = dict(num_batches=2, batch_size=3, big_batch=4, generator=torch.Generator())
    for name in ("num_batches", "batch_size", "big_batch", "chunk"):
        with pytest.raises(ValueError, match=name):
            measure.gradient_noise(model, params, sample, **{**ok, name: 0})
    with pytest.raises(ValueError, match="single run"):
        measure.gradient_noise(model, {k: v.unsqueeze(0) for k, v in params.items()}, sample, **ok)
    with pytest.raises(ValueError, match="method"):
        measure.robust_condition(torch.eye(3), method="trace")
    with pytest.raises(ValueError, match="H must"):
        measure.robust_condition(torch.ones(2, 3))
    Z, y = lintf.sample_prompts(5, 4, 2)
    with pytest.raises(ValueError, match="y must"):
        measure.gradient_norm(model, params, Z, y[:-1])
    with pytest.raises(ValueError, match="Z must"):
        measure.hessian(model, params, Z[..., :2, :], y)
    with pytest.raises(ValueError, match="params"):
        measure.hessian(model, {"P": params["P"]}, Z, y)
    with pytest.raises(ValueError, match="direction"):
        measure.directional_smoothness(model, params, {k: v[None] for k, v in params.items()}, Z, y)
    with pytest.raises(ValueError, match="k must"):
        measure.hill_index(np.arange(1.0, 5.0), k=4)
