"""lintf.fast: the hand-written loss, gradient and curvature against autograd in float64."""
import pytest
import torch

import lintf
from lintf import engine, fast, measure
from lintf.compute.data import Prompts
from lintf.compute.model import Model

f64 = torch.float64


def draw(model, n, lead_params, lead_batch, B=9, seed=0, std=0.15):
    """Fresh random parameters (run dims ``lead_params``) and prompts (run dims ``lead_batch``)."""
    g = torch.Generator().manual_seed(seed)
    params = {k: std * torch.randn(*lead_params, *s, generator=g, dtype=f64) for k, s in model.param_shapes().items()}
    Z, y = lintf.sample_prompts((*lead_batch, B), n, model.d, generator=g, dtype=f64)
    return params, Z, y


def autograd_loss_and_grad(model, params, Z, y):
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    loss = model.loss(leaves, Z, y)
    grads = torch.autograd.grad(loss.sum(), list(leaves.values()))
    return loss.detach(), dict(zip(leaves, grads))


SHAPES = [  # model, n, run dims of params, run dims of the batch (broadcast: seeds shared by configs)
    (Model(L=3, d=5), 20, (), ()),
    (Model(L=3, d=5), 20, (2, 3), (3,)),
    (Model(L=1, d=4), 7, (3,), (3,)),
    (Model(L=2, d=3), 1, (4,), ()),
    (Model(L=4, d=2), 6, (2, 2), (1, 2)),
    (Model(L=3, d=5, parametrization="block"), 20, (2, 3), (3,)),
    (Model(L=2, d=3, parametrization="block"), 6, (), ()),
    (Model(L=1, d=3, parametrization="block"), 4, (2,), (2,)),
]


@pytest.mark.parametrize("model, n, lead_p, lead_b", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_and_grad_match_autograd(model, n, lead_p, lead_b, seed):
    params, Z, y = draw(model, n, lead_p, lead_b, seed=seed)
    ref_loss, ref_grads = autograd_loss_and_grad(model, params, Z, y)
    A0, z0 = fast.summarize(Z)
    loss, grads = fast.loss_and_grad(model, params, A0, z0, y, n)
    assert loss.shape == ref_loss.shape
    assert torch.allclose(loss, ref_loss, rtol=1e-11, atol=1e-13)
    assert torch.allclose(fast.loss(model, params, A0, z0, y, n), ref_loss, rtol=1e-11, atol=1e-13)
    assert set(grads) == set(ref_grads)
    for k in grads:
        assert grads[k].shape == ref_grads[k].shape
        assert torch.allclose(grads[k], ref_grads[k], rtol=1e-10, atol=1e-12), k


@pytest.mark.parametrize("model, n, lead_p, lead_b", SHAPES)
def test_predict_matches_model(model, n, lead_p, lead_b):
    params, Z, y = draw(model, n, lead_p, lead_b, seed=3, std=0.4)
    A0, z0 = fast.summarize(Z)
    ref = model.predict(params, Z)
    assert torch.allclose(fast.predict(model, params, A0, z0, n), ref, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("model, n, lead_p, lead_b", SHAPES)
def test_curvature_matches_directional_smoothness(model, n, lead_p, lead_b):
    params, Z, y = draw(model, n, lead_p, lead_b, seed=5)
    g = torch.Generator().manual_seed(11)
    direction = {k: torch.randn(v.shape, generator=g, dtype=f64) for k, v in params.items()}
    A0, z0 = fast.summarize(Z)
    curv = fast.curvature(model, params, direction, A0, z0, y, n)
    norm2 = sum(v.reshape(*lead_p, -1).square().sum(-1) for v in direction.values())
    ref = measure.directional_smoothness(model, params, direction, Z, y)
    assert torch.allclose(curv / norm2, ref, rtol=1e-9, atol=1e-12)


def test_curvature_is_second_difference_of_loss():
    """Independent of autograd: a central second difference of the loss along the direction."""
    model, n = Model(L=3, d=4), 10
    params, Z, y = draw(model, n, (3,), (3,), B=50, seed=2)
    g = torch.Generator().manual_seed(4)
    direction = {k: torch.randn(v.shape, generator=g, dtype=f64) for k, v in params.items()}
    A0, z0 = fast.summarize(Z)

    def second_difference(h):
        f = [fast.loss(model, {k: params[k] + e * h * direction[k] for k in params}, A0, z0, y, n)
             for e in (-1, 0, 1)]
        return (f[0] - 2 * f[1] + f[2]) / h ** 2

    # Richardson: the O(h^2) error of two step sizes cancels
    second = (4 * second_difference(5e-4) - second_difference(1e-3)) / 3
    assert torch.allclose(fast.curvature(model, params, direction, A0, z0, y, n), second, rtol=1e-6)


def test_summarize_is_context_moment_and_query():
    Z, _ = lintf.sample_prompts((2, 7), 5, 3, generator=torch.Generator().manual_seed(0), dtype=f64)
    A0, z0 = fast.summarize(Z)
    M = torch.diag(torch.tensor([1.0] * 5 + [0.0], dtype=f64))
    assert A0.shape == (2, 4, 4, 7) and z0.shape == (2, 4, 7)
    assert torch.allclose(A0.permute(0, 3, 1, 2), Z @ M @ Z.transpose(-1, -2))
    assert torch.equal(z0.permute(0, 2, 1), Z[..., -1])


@pytest.mark.parametrize("variant", [dict(attention="softmax"), dict(qk="separate"), dict(frontend="mlp")])
def test_other_variants_are_refused(variant):
    model = Model(L=2, d=3, **variant)
    assert not fast.supports(model)
    params, Z, y = draw(model, 4, (), ())
    with pytest.raises(ValueError, match="attention='linear'"):
        fast.loss_and_grad(model, params, *fast.summarize(Z), y, 4)


def test_summarize_rejects_bad_shape():
    with pytest.raises(ValueError, match="Z must"):
        fast.summarize(torch.zeros(3, 4))


def test_bad_arguments_are_named():
    model, n = Model(L=2, d=3), 4
    params, Z, y = draw(model, n, (2,), (2,))
    A0, z0 = fast.summarize(Z)
    with pytest.raises(ValueError, match="params must be a dict"):
        fast.loss(model, {"P": params["P"]}, A0, z0, y, n)
    with pytest.raises(ValueError, match=r"params\['Q'\] must have shape"):
        fast.loss(model, {**params, "Q": params["Q"][..., :2]}, A0, z0, y, n)
    with pytest.raises(ValueError, match="A0 must have shape"):
        fast.loss(model, params, A0[..., :3, :], z0, y, n)
    with pytest.raises(ValueError, match="y must have shape|z0 must have shape"):
        fast.loss(model, params, A0, z0, y[..., :3], n)
    with pytest.raises(ValueError, match="do not broadcast"):
        fast.loss(model, params, A0[:1].expand(5, -1, -1, -1), z0, y, n)
    with pytest.raises(ValueError, match="n must"):
        fast.loss(model, params, A0, z0, y, 0)
    with pytest.raises(ValueError, match="direction must be a dict"):
        fast.curvature(model, params, {}, A0, z0, y, n)


# -- the engine's hand-written path against its autograd path ------------------------------
MODEL, PROMPTS = Model(L=2, d=3), Prompts(n=6, d=3)
CONFIGS = [("sgdm", 0.05), ("adam", 0.01), ("adam", 0.03)]


def _program(monkeypatch, hand, model=MODEL, chunk=None):
    if chunk is not None:
        monkeypatch.setattr(engine, "CHUNK_RUNS", chunk)
    return engine.train(model, PROMPTS, CONFIGS, [0, 1], steps=12, batch_size=40, eval_every=4, checkpoint_every=6,
                        record_smoothness=True, device="cpu", progress=False, dtype=f64,
                        backend="fast" if hand else "autograd")


@pytest.mark.parametrize("model", [MODEL, Model(L=2, d=3, parametrization="block")])
def test_engine_hand_path_equals_autograd_path(monkeypatch, model):
    hand = _program(monkeypatch, True, model, chunk=2)                  # 3 chunks of one configuration
    auto = _program(monkeypatch, False, model)
    assert hand.runs.equals(auto.runs)
    a, b = hand.history.value.to_numpy(), auto.history.value.to_numpy()
    assert hand.history.drop(columns="value").equals(auto.history.drop(columns="value"))
    assert torch.allclose(torch.tensor(a), torch.tensor(b), rtol=1e-9, atol=1e-12)
    for step, ps in hand.checkpoints.items():
        for k, v in ps.items():
            assert torch.allclose(v, auto.checkpoints[step][k], rtol=1e-9, atol=1e-12)


def test_curvature_reuses_the_forward_pass_of_the_gradient():
    model, n = Model(L=3, d=5), 20
    params, Z, y = draw(model, n, (2, 3), (3,))
    g = torch.Generator().manual_seed(6)
    direction = {k: torch.randn(v.shape, generator=g, dtype=f64) for k, v in params.items()}
    A0, z0 = fast.summarize(Z)
    loss, grads, forward = fast.loss_and_grad(model, params, A0, z0, y, n, keep_forward=True)
    again = fast.curvature(model, params, direction, A0, z0, y, n, forward=forward)
    assert torch.equal(again, fast.curvature(model, params, direction, A0, z0, y, n))


def test_engine_numbers_do_not_depend_on_threads_and_barely_on_chunks(monkeypatch):
    """Bit for bit whether chunks run on one thread or two; to rounding whatever the chunks."""
    def program(chunk, workers):
        monkeypatch.setattr(engine, "CHUNK_RUNS", chunk)
        monkeypatch.setattr(engine, "WORKERS", workers)
        return engine.train(Model(L=3, d=4), Prompts(n=8, d=4), CONFIGS, [0, 1], steps=8, batch_size=50,
                            eval_every=4, checkpoint_every=4, record_smoothness=True, device="cpu", progress=False,
                            dtype=f64)
    serial, threaded, whole = program(2, 1), program(2, 2), program(64, 1)
    assert threaded.history.equals(serial.history)
    for step, ps in serial.checkpoints.items():
        for k, v in ps.items():
            assert torch.equal(v, threaded.checkpoints[step][k])
    assert torch.allclose(torch.tensor(whole.history.value.to_numpy()), torch.tensor(serial.history.value.to_numpy()),
                          rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("variant", [dict(attention="softmax"), dict(qk="separate"), dict(frontend="mlp"),
                                     dict(parametrization="block")])
def test_engine_trains_every_variant(variant):
    """The autograd path (and the MLP front end, whose embedding needs the run axes) trains."""
    res = engine.train(Model(L=2, d=3, **variant), Prompts(n=6, d=3, covariates="mlp"), CONFIGS, [0, 1],
                       steps=3, batch_size=16, eval_every=2, record_smoothness=True, device="cpu", progress=False)
    assert res.history.value.notna().all()


@pytest.mark.parametrize("model, n, lead_p, lead_b", [(Model(L=2, d=2), 5, (2, 3), (3,)), SHAPES[2], SHAPES[3],
                                                     SHAPES[4], SHAPES[6], (Model(L=4, d=2, parametrization="block"), 5, (), ())])
@pytest.mark.parametrize("kw", [dict(method="jvp"), dict(method="jvp", chunk=3), dict(), dict(prompt_chunk=3)],
                         ids=["jvp", "jvp-chunk3", "direct", "direct-prompts3"])
def test_hessian_matches_autograd(model, n, lead_p, lead_b, kw):
    """Both routes (the hand-written second-order adjoint, default, and the layer-by-layer
    forward-over-reverse) equal autograd's Hessian of the textbook loss (eqs. 7-8 through
    :func:`lintf.model.loss`), run by run, in float64; ``prompt_chunk=3`` splits B=7 unevenly."""
    params, Z, y = draw(model, n, lead_p, lead_b, B=7, seed=8, std=0.4)
    A0, z0 = fast.summarize(Z)
    H = fast.hessian(model, params, A0, z0, y, n, **kw)
    runs = torch.broadcast_shapes(lead_p, lead_b)
    p = model.num_params
    theta = model.flatten(params).expand(*runs, p).reshape(-1, p)
    Zr, yr = Z.expand(*runs, *Z.shape[-3:]).reshape(-1, *Z.shape[-3:]), y.expand(*runs, y.shape[-1]).reshape(-1, y.shape[-1])
    ref = torch.stack([torch.autograd.functional.hessian(lambda t: model.loss(model.unflatten(t), Zr[r], yr[r]), theta[r])
                       for r in range(theta.shape[0])]).reshape(*runs, p, p)
    assert H.shape == ref.shape
    assert ref.abs().max() > 1e-3
    assert torch.allclose(H, ref, rtol=1e-9, atol=1e-11 * ref.abs().max())


@pytest.mark.parametrize("model, n", [(Model(L=3, d=5, parametrization="block"), 20), (Model(L=3, d=5), 5)])
def test_hessian_in_prompt_chunks_equals_unchunked(model, n):
    """The Hessian of the mean is the prompt-weighted mean of the chunks' Hessians: chunks
    smaller than B, one not dividing it, and the whole batch at once agree to rounding, with
    the forward-mode route too; several runs sharing a batch."""
    params, Z, y = draw(model, n, (2,), (), B=301, seed=9, std=0.3)
    A0, z0 = fast.summarize(Z)
    whole = fast.hessian(model, params, A0, z0, y, n, prompt_chunk=301)
    scale = whole.abs().max()
    for prompt_chunk in (64, 100, 1000):
        H = fast.hessian(model, params, A0, z0, y, n, prompt_chunk=prompt_chunk)
        assert (H - whole).abs().max() <= 1e-12 * scale, prompt_chunk
    assert (fast.hessian(model, params, A0, z0, y, n, method="jvp") - whole).abs().max() <= 1e-12 * scale
    assert torch.equal(whole, whole.transpose(-1, -2))


def test_hessian_does_not_depend_on_its_threads(monkeypatch):
    """The prompt chunks may be computed on any number of threads: their terms are added in
    chunk order, so the Hessian is the same bit for bit; one run alone, to float64 rounding."""
    model, n = Model(L=3, d=5, parametrization="block"), 20
    params, Z, y = draw(model, n, (3,), (), B=300, seed=4, std=0.3)
    A0, z0 = fast.summarize(Z)
    got = {}
    for workers in (1, 2, 3):
        monkeypatch.setattr(fast, "HESSIAN_WORKERS", workers)
        got[workers] = fast.hessian(model, params, A0, z0, y, n, prompt_chunk=64)
    assert torch.equal(got[1], got[2]) and torch.equal(got[1], got[3])
    # one run alone: other shapes, so other kernels may group its sums otherwise: equal to rounding
    one = {k: v[1] for k, v in params.items()}
    torch.testing.assert_close(fast.hessian(model, one, A0, z0, y, n, prompt_chunk=64), got[3][1], rtol=1e-12,
                               atol=1e-14 * got[3][1].abs().max().item())


def test_hessian_rejects_bad_method_and_chunk():
    model, n = Model(L=2, d=3), 4
    params, Z, y = draw(model, n, (), ())
    A0, z0 = fast.summarize(Z)
    with pytest.raises(ValueError, match="method"):
        fast.hessian(model, params, A0, z0, y, n, method="bfgs")
    with pytest.raises(ValueError, match="prompt_chunk"):
        fast.hessian(model, params, A0, z0, y, n, prompt_chunk=0)
