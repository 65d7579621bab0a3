"""lintf.fast_variants: the variants' hand-written loss, gradient and curvature against autograd
(float64), and the engine's hand-written path against its autograd path."""
import itertools

import pytest
import torch

import lintf
from lintf import engine, fast, fast_variants, measure
from lintf.compute.data import Prompts
from lintf.compute.model import Model

f64 = torch.float64

VARIANTS = [dict(attention=a, qk=q, frontend=f, parametrization=p)
            for a, q, f, p in itertools.product(("linear", "softmax"), ("joint", "separate"), ("none", "mlp"),
                                                ("full", "block"))
            if not (q == "separate" and p == "block")]
SHAPES = [  # L, d, n, run dims of params, run dims of the batch (broadcast: seeds shared by configs)
    (3, 5, 20, (2, 3), (3,)),
    (1, 3, 4, (2,), (2,)),
    (2, 2, 1, (), ()),
    (2, 3, 6, (2, 2), ()),
]


def _id(v):
    return "-".join(v.values())


def draw(model, n, lead_params, lead_batch, B=9, seed=0, std=0.3):
    """The model's initialisation plus noise (run dims ``lead_params``) and prompts (``lead_batch``)."""
    g = torch.Generator().manual_seed(seed)
    params = {k: v + std * torch.randn(*lead_params, *v.shape, generator=g, dtype=f64)
              for k, v in model.init(g, dtype=f64).items()}
    Z, y = lintf.sample_prompts((*lead_batch, B), n, model.d, generator=g, dtype=f64)
    return params, Z, y


def runs_of(model, params, Z, y):
    """The batch expanded to the run dims of ``params`` (the front end does not broadcast)."""
    lead = model.check_params(params)
    lead = torch.broadcast_shapes(lead, Z.shape[:-3])
    return Z.expand(*lead, *Z.shape[-3:]), y.expand(*lead, y.shape[-1])


def autograd_loss_and_grad(model, params, Z, y):
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    loss = model.loss(leaves, *runs_of(model, params, Z, y))
    grads = torch.autograd.grad(loss.sum(), list(leaves.values()))
    return loss.detach(), dict(zip(leaves, grads))


@pytest.mark.parametrize("variant", VARIANTS, ids=_id)
@pytest.mark.parametrize("L, d, n, lead_p, lead_b", SHAPES)
def test_loss_and_grad_match_autograd(variant, L, d, n, lead_p, lead_b):
    model = Model(L=L, d=d, hidden=4, **variant)
    params, Z, y = draw(model, n, lead_p, lead_b, seed=L + n)
    ref_loss, ref_grads = autograd_loss_and_grad(model, params, Z, y)
    batch = fast_variants.prepare(model, Z, y)
    loss, grads = fast_variants.loss_and_grad(model, params, batch)
    assert loss.shape == ref_loss.shape
    assert torch.allclose(loss, ref_loss, rtol=1e-12, atol=1e-14)
    assert torch.allclose(fast_variants.loss(model, params, batch), ref_loss, rtol=1e-12, atol=1e-14)
    assert set(grads) == set(ref_grads)
    for k in grads:
        assert grads[k].shape == ref_grads[k].shape, k
        assert torch.allclose(grads[k], ref_grads[k], rtol=1e-10, atol=1e-13), k


@pytest.mark.parametrize("variant", VARIANTS, ids=_id)
@pytest.mark.parametrize("L, d, n, lead_p, lead_b", SHAPES[:3])
def test_curvature_matches_directional_smoothness(variant, L, d, n, lead_p, lead_b):
    model = Model(L=L, d=d, hidden=4, **variant)
    params, Z, y = draw(model, n, lead_p, lead_b, seed=2 * L + n)
    g = torch.Generator().manual_seed(11)
    direction = {k: torch.randn(v.shape, generator=g, dtype=f64) for k, v in params.items()}
    norm2 = sum(v.reshape(*lead_p, -1).square().sum(-1) for v in direction.values())
    ref = measure.directional_smoothness(model, params, direction, *runs_of(model, params, Z, y))
    assert ref.abs().max() > 0
    batch = fast_variants.prepare(model, Z, y)
    curv = fast_variants.curvature(model, params, direction, batch)
    assert torch.allclose(curv / norm2, ref, rtol=1e-9, atol=1e-12)
    # the gradient's forward pass, reused, gives the same number
    _, _, forward = fast_variants.loss_and_grad(model, params, batch, keep_forward=True)
    again = fast_variants.curvature(model, params, direction, batch, forward=forward)
    assert torch.allclose(again, curv, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("variant", VARIANTS, ids=_id)
@pytest.mark.parametrize("L, d, n", [(2, 2, 4), (1, 2, 3)])
def test_hessian_matches_double_backward(variant, L, d, n):
    """Forward mode over the hand-written gradient (and, for a front end before joint-Q linear
    attention, lintf.fast's block of the attention) against double backward, float64."""
    model = Model(L=L, d=d, hidden=4, **variant)
    params, Z, y = draw(model, n, (), (), B=11, seed=L + d)
    theta = model.flatten(params)
    H = fast_variants.hessian(model, theta, Z, y, chunk=7)
    reference = measure._hessian_one_run(model, theta, Z, y, 16)
    assert H.shape == (model.num_params,) * 2 and H.dtype == f64
    assert torch.allclose(H, reference, rtol=1e-10, atol=1e-12 * reference.abs().max())
    assert torch.allclose(H, H.T, rtol=1e-10, atol=1e-12 * reference.abs().max())
    if not fast.supports(model):                   # lintf.measure routes the variants here
        # with its own chunk of directions (32, not 7): the same sums in other groupings, so equal to
        # float64 rounding, not bit for bit (that depends on the machine's kernels)
        torch.testing.assert_close(measure.hessian(model, params, Z, y), H, rtol=1e-12,
                                   atol=1e-14 * reference.abs().max().item())


def test_hessian_bad_arguments():
    model = Model(L=2, d=2, frontend="mlp", hidden=3)
    params, Z, y = draw(model, 3, (), ())
    theta = model.flatten(params)
    with pytest.raises(ValueError, match=r"theta must be one run's flat vector of shape \(\d+,\)"):
        fast_variants.hessian(model, theta.unsqueeze(0), Z, y)
    with pytest.raises(ValueError, match="chunk"):
        fast_variants.hessian(model, theta, Z, y, chunk=0)
    with pytest.raises(TypeError, match="model must be a lintf.compute.model.Model"):
        fast_variants.hessian("nonlinear", theta, Z, y)


def test_curvature_is_second_difference_of_loss():
    """Independent of autograd: a central second difference of the hand-written loss."""
    model, n = Model(L=2, d=3, frontend="mlp", qk="separate", hidden=5), 6
    params, Z, y = draw(model, n, (3,), (3,), B=40, seed=4)
    g = torch.Generator().manual_seed(5)
    direction = {k: torch.randn(v.shape, generator=g, dtype=f64) for k, v in params.items()}
    batch = fast_variants.prepare(model, Z, y)
    eps = 1e-5                                   # small: a step across a ReLU kink breaks the difference

    def at(e):
        return fast_variants.loss(model, {k: params[k] + e * direction[k] for k in params}, batch)

    second = (at(eps) - 2 * at(0.0) + at(-eps)) / eps ** 2
    curv = fast_variants.curvature(model, params, direction, batch)
    assert torch.allclose(curv, second, rtol=1e-4, atol=1e-6)


def test_plain_model_goes_through_lintf_fast_unchanged():
    model, n = Model(L=3, d=4, parametrization="block"), 8
    params, Z, y = draw(model, n, (2, 3), (3,))
    batch = fast_variants.prepare(model, Z, y)
    A0, z0 = fast.summarize(Z)
    assert batch.tokens is None and torch.equal(batch.A0, A0) and torch.equal(batch.z0, z0)
    loss, grads = fast_variants.loss_and_grad(model, params, batch)
    ref_loss, ref_grads = fast.loss_and_grad(model, params, A0, z0, y, n)
    assert torch.equal(loss, ref_loss) and all(torch.equal(grads[k], ref_grads[k]) for k in grads)


@pytest.mark.parametrize("L", [1, 2, 3])
def test_fast_adjoints_of_the_summaries(L):
    """lintf.compute.fast.loss_and_grad(inputs=True): the symmetric part of bar_A0 and bar_z0 are the
    gradient of the loss over symmetric A0 and over z0 (autograd through lintf.fast.loss)."""
    model, n = Model(L=L, d=3), 5
    params, Z, y = draw(model, n, (2,), (2,), B=7, seed=L)
    A0, z0 = fast.summarize(Z)
    *_, (bar_A0, bar_z0) = fast.loss_and_grad(model, params, A0, z0, y, n, inputs=True)
    A, z = A0.clone().requires_grad_(), z0.clone().requires_grad_()
    token = fast._IN_PLACE.set(False)
    try:
        ref_A, ref_z = torch.autograd.grad(fast.loss(model, params, A, z, y, n).sum(), [A, z])
    finally:
        fast._IN_PLACE.reset(token)
    sym = (bar_A0 + bar_A0.transpose(-3, -2)) / 2
    assert torch.allclose(sym, (ref_A + ref_A.transpose(-3, -2)) / 2, rtol=1e-11, atol=1e-14)
    assert torch.allclose(bar_z0, ref_z, rtol=1e-11, atol=1e-14)


def test_key_max_is_the_maximum():
    g = torch.Generator().manual_seed(0)
    for N in (1, 2, 3, 7, 21):
        S = torch.randn(4, 3, N, 5, generator=g)
        assert torch.equal(fast_variants._key_max(S), S.amax(-2, keepdim=True))


def test_softmax_is_stable_for_large_scores():
    """Scores of a few hundred: exp would overflow unshifted; the loss and gradient stay finite
    and equal autograd's (torch.softmax)."""
    model, n = Model(L=2, d=3, attention="softmax"), 6
    params, Z, y = draw(model, n, (2,), (2,))
    params = {k: 30 * v for k, v in params.items()}
    ref_loss, ref_grads = autograd_loss_and_grad(model, params, Z, y)
    loss, grads = fast_variants.loss_and_grad(model, params, fast_variants.prepare(model, Z, y))
    assert torch.isfinite(loss).all()
    assert torch.allclose(loss, ref_loss, rtol=1e-10)
    for k in grads:
        assert torch.allclose(grads[k], ref_grads[k], rtol=1e-8, atol=1e-10 * ref_grads[k].abs().max()), k


def test_softmax_overflowing_prompts_fall_back_alone():
    """float32, one prompt whose scores spread over hundreds: shifted by the mean score the
    weights overflow, so that prompt (and it alone) is shifted by the maximum. Its prediction
    and the batch's gradient are finite and match float64 autograd; the other prompts' numbers
    are bitwise those of the same batch without the overflow."""
    model, n = Model(L=3, d=3, attention="softmax"), 8
    params, Z, y = draw(model, n, (2,), (2,), B=6, seed=3)
    calm, Z = Z.clone(), Z.clone()
    Z[0, 2, :-1] *= 12.0                                     # run 0, prompt 2: scores in the hundreds
    P, Q = model.to_PQ(params)
    f32 = {k: v.float() for k, v in params.items()}
    batch = fast_variants.prepare(model, Z.float(), y.float())
    P32, Q32 = model.to_PQ(f32)
    h, (layers, *_) = fast_variants._softmax_forward(P32, Q32, batch.tokens, n)
    X, H, E, Us, inv = layers[0]
    D = model.d + 1
    mean_shifted = torch.bmm(X, H[..., :D + 1].transpose(-1, -2)).exp()
    assert not torch.isfinite(mean_shifted[2]).all() and torch.isfinite(mean_shifted[3:]).all()
    assert torch.isfinite(h).all() and torch.isfinite(E).all()
    ref = lintf.model.forward(P, Q, Z, "softmax")[..., -1, -1]     # h = [Z_L]_{D,N} = -TF
    assert torch.allclose(h.double(), ref, rtol=1e-4, atol=1e-5)
    # the other prompts: bitwise as in the same batch with prompt 2 back in range (the same shapes, the
    # same operations in the same order: only the overflowing prompt takes the fallback)
    keep = [0, 1, 3, 4, 5]
    quiet, (quiet_layers, *_) = fast_variants._softmax_forward(P32, Q32, fast_variants.prepare(
        model, calm.float(), y.float()).tokens, n)
    X, H = quiet_layers[0][:2]
    assert torch.isfinite(torch.bmm(X, H[..., :D + 1].transpose(-1, -2)).exp()).all()   # no fallback at all
    assert torch.equal(quiet[:, keep], h[:, keep])
    # one run on those prompts alone: the same to float32 rounding (other shapes, other kernels)
    alone, _ = fast_variants._softmax_forward(P32[:1], Q32[:1], batch.tokens[:1, keep], n)
    torch.testing.assert_close(alone[0], h[0, keep], rtol=1e-6, atol=1e-6 * h.abs().max().item())
    loss, grads = fast_variants.loss_and_grad(model, f32, batch)
    ref_loss, ref_grads = autograd_loss_and_grad(model, params, Z, y)
    assert torch.allclose(loss.double(), ref_loss, rtol=1e-4)
    for k in grads:
        assert torch.isfinite(grads[k]).all()
        assert torch.allclose(grads[k].double(), ref_grads[k], rtol=1e-3, atol=1e-4 * ref_grads[k].abs().max()), k


def test_front_end_carries_the_labels_exactly():
    """The front end's products carry every token's y-part through (times one plus zeros):
    bitwise the prompts' in float32; its x-part is model.embed's."""
    model, n = Model(L=2, d=3, frontend="mlp", hidden=5), 6
    params, Z, y = draw(model, n, (2, 3), (3,))
    p32 = {k: v.float() for k, v in params.items()}
    tokens = fast_variants.prepare(model, Z.float(), y.float()).tokens
    T, _ = fast_variants._embed(p32, tokens, model.d)
    assert torch.equal(T[..., model.d], tokens[..., model.d].expand(2, 3, *tokens.shape[-3:-1]))
    T64, _ = fast_variants._embed(params, Z.transpose(-1, -2), model.d)
    assert torch.allclose(T64, model.embed(params, Z).transpose(-1, -2), rtol=1e-12, atol=1e-14)


def test_use_and_bad_arguments():
    softmax = Model(L=2, d=3, attention="softmax")
    assert fast_variants.use(softmax, "fast") and fast_variants.use(softmax, "auto")
    assert not fast_variants.use(softmax, "autograd") and not fast_variants.use(Model(), "autograd")
    with pytest.raises(ValueError, match="backend"):
        fast_variants.use(softmax, "numpy")
    params, Z, y = draw(softmax, 4, (2,), (2,))
    with pytest.raises(ValueError, match="Z must have shape"):
        fast_variants.prepare(softmax, Z[..., :2, :], y)
    with pytest.raises(ValueError, match="y must have shape"):
        fast_variants.prepare(softmax, Z, y[..., :3])
    with pytest.raises(TypeError, match="model must be"):
        fast_variants.prepare("softmax", Z, y)
    batch = fast_variants.prepare(softmax, Z, y)
    with pytest.raises(TypeError, match="batch must be"):
        fast_variants.loss(softmax, params, (Z, y))
    with pytest.raises(ValueError, match="another kind of model"):
        fast_variants.loss(Model(L=2, d=3), {"P": params["P"], "Q": params["Q"]}, batch)
    with pytest.raises(ValueError, match=r"params\['Q'\] must have shape"):
        fast_variants.loss(softmax, {**params, "Q": params["Q"][..., :2]}, batch)
    with pytest.raises(ValueError, match="do not broadcast"):
        fast_variants.loss(softmax, {k: v[:1].expand(5, *v.shape[1:]) for k, v in params.items()}, batch)
    with pytest.raises(ValueError, match="direction must be a dict"):
        fast_variants.curvature(softmax, params, {}, batch)
    with pytest.raises(TypeError, match="forward must be"):
        fast_variants.curvature(softmax, params, params, batch, forward=(1, 2))


# -- the engine's hand-written path against its autograd path ------------------------------------
PROMPTS = Prompts(n=6, d=3, covariates="mlp")
CONFIGS = [("sgdm", 0.05), ("adam", 0.01), ("adam", 0.03)]
ENGINE_VARIANTS = [dict(attention="softmax", parametrization="block"), dict(qk="separate"),
                   dict(frontend="mlp", parametrization="block"), dict(attention="softmax", frontend="mlp")]


def _train(model, backend, dtype, steps=6, **kw):
    return engine.train(model, PROMPTS, CONFIGS, [0, 1], steps=steps, batch_size=32, eval_every=3, checkpoint_every=3,
                        record_smoothness=True, device="cpu", progress=False, dtype=dtype, backend=backend, **kw)


def _assert_same(a, b, rtol, atol):
    assert a.runs.equals(b.runs)
    assert a.history.drop(columns="value").equals(b.history.drop(columns="value"))
    x, y = torch.tensor(a.history.value.to_numpy()), torch.tensor(b.history.value.to_numpy())
    assert torch.isfinite(x).all()
    assert torch.allclose(x, y, rtol=rtol, atol=atol)
    for step, ps in a.checkpoints.items():
        for k, v in ps.items():
            assert torch.allclose(v, b.checkpoints[step][k], rtol=rtol, atol=atol), (step, k)


@pytest.mark.parametrize("variant", ENGINE_VARIANTS, ids=_id)
def test_engine_hand_path_equals_autograd_path(variant):
    model = Model(L=2, d=3, hidden=6, **variant)
    _assert_same(_train(model, "fast", f64), _train(model, "autograd", f64), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["softmax", "separate_qk", "nonlinear"])
def test_settings_train_alike_on_both_backends_in_float32(name):
    """The book's variant settings, a few steps at their own sizes (B reduced): both backends
    agree to float32 rounding."""
    s = lintf.get_setting(name)
    kw = dict(steps=4, batch_size=64, eval_every=2, checkpoint_every=2, record_smoothness=True, device="cpu",
              progress=False)
    runs = [("sgdm", s.lrs["sgdm"]), ("adam", s.lrs["adam"])]
    fast_ = lintf.train(s.model, s.prompts, runs, [0, 1, 2], backend="fast", **kw)
    auto = lintf.train(s.model, s.prompts, runs, [0, 1, 2], backend="autograd", **kw)
    _assert_same(fast_, auto, rtol=2e-4, atol=1e-6)


def test_engine_variant_numbers_do_not_depend_on_threads(monkeypatch):
    model = Model(L=2, d=3, attention="softmax", frontend="mlp", hidden=4)

    def program(workers):
        monkeypatch.setattr(engine, "WORKERS", workers)
        return _train(model, "auto", f64, steps=4)

    one, two = program(1), program(2)
    assert one.history.equals(two.history)
    for step, ps in one.checkpoints.items():
        for k, v in ps.items():
            assert torch.equal(v, two.checkpoints[step][k])
