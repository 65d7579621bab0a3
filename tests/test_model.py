"""lintf.model: eqs. (7)-(8) against literal references, variants, bad input."""
import pytest
import torch

import lintf
from lintf.compute.model import Model, from_authors_block

f64 = torch.float64


def literal_predict(P, Q, Z, attention="linear"):
    """Eq. (7)-(8) in the paper's literal order, one prompt and one layer at a time."""
    out = []
    for z in Z:                                            # (d+1, n+1)
        n = z.shape[1] - 1
        M = torch.diag(torch.tensor([1.0] * n + [0.0], dtype=z.dtype))
        for l in range(P.shape[0]):
            S = z.T @ Q[l] @ z
            if attention == "softmax":
                S = torch.softmax(S, dim=0)
            z = z + P[l] @ z @ M @ S / n
        out.append(-z[-1, -1])
    return torch.stack(out)


def authors_predict(P_b, Q_b, Z):
    """The authors' block model: attention written as sum_M (z_N^T Q z_M) P z_M."""
    d = P_b.shape[-1]
    out = []
    for z in Z:
        n = z.shape[1] - 1
        for l in range(P_b.shape[0]):
            P = torch.zeros(d + 1, d + 1, dtype=z.dtype)
            P[:d, :d] = P_b[l]
            P[d, d] = 1.0
            Q = torch.zeros(d + 1, d + 1, dtype=z.dtype)
            Q[:d, :d] = Q_b[l]
            new = z.clone()
            for N in range(n + 1):
                new[:, N] += sum((z[:, N] @ Q @ z[:, m]) * (P @ z[:, m]) for m in range(n)) / n
            z = new
        out.append(-z[-1, -1])
    return torch.stack(out)


def draw(L=3, d=4, n=7, B=5, seed=0, std=0.3):
    g = torch.Generator().manual_seed(seed)
    P = std * torch.randn(L, d + 1, d + 1, generator=g, dtype=f64)
    Q = std * torch.randn(L, d + 1, d + 1, generator=g, dtype=f64)
    Z, y = lintf.sample_prompts(B, n, d, generator=g, dtype=f64)
    return P, Q, Z, y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("attention", ["linear", "softmax"])
def test_predict_matches_literal_order(seed, attention):
    P, Q, Z, y = draw(seed=seed)
    assert torch.allclose(lintf.predict(P, Q, Z, attention), literal_predict(P, Q, Z, attention),
                          rtol=1e-10, atol=1e-12)


def test_loss_is_batch_mse():
    P, Q, Z, y = draw()
    assert torch.allclose(lintf.loss(P, Q, Z, y), ((literal_predict(P, Q, Z) - y) ** 2).mean())


def test_leading_run_dims_broadcast():
    P, Q, Z, y = draw()
    g = torch.Generator().manual_seed(5)
    Ps = P + 0.1 * torch.randn(2, 3, *P.shape, generator=g, dtype=f64)
    Qs = Q + 0.1 * torch.randn(2, 3, *Q.shape, generator=g, dtype=f64)
    Zs = Z.expand(3, *Z.shape)                             # one batch per "seed", shared by configs
    batched = lintf.predict(Ps, Qs, Zs)
    assert batched.shape == (2, 3, 5)
    for i in range(2):
        for j in range(3):
            assert torch.allclose(batched[i, j], literal_predict(Ps[i, j], Qs[i, j], Z))


def test_block_parametrization_equals_authors_model_with_q_transposed():
    g = torch.Generator().manual_seed(0)
    d, L = 3, 2
    P_b = 0.4 * torch.randn(L, d, d, generator=g, dtype=f64)
    Q_b = 0.4 * torch.randn(L, d, d, generator=g, dtype=f64)
    Z, y = lintf.sample_prompts(4, 5, d, generator=g, dtype=f64)
    ours = Model(L=L, d=d, parametrization="block").predict(from_authors_block(P_b, Q_b), Z)
    assert torch.allclose(ours, authors_predict(P_b, Q_b, Z), rtol=1e-10)
    # and Q is genuinely transposed: without the transpose the numbers differ
    wrong = Model(L=L, d=d, parametrization="block").predict({"P": P_b, "Q": Q_b}, Z)
    assert not torch.allclose(wrong, authors_predict(P_b, Q_b, Z))


def test_block_embeds_into_full():
    m = Model(L=2, d=3, parametrization="block")
    params = m.init(torch.Generator().manual_seed(0), dtype=f64)
    P, Q = m.to_PQ(params)
    assert P.shape == (2, 4, 4) and torch.all(P[:, 3, 3] == 1) and torch.all(Q[:, 3] == 0)
    assert m.num_params == 2 * 2 * 9 and Model().num_params == 216 and Model(parametrization="block").num_params == 150


def test_separate_qk_is_wk_transpose_wq():
    m = Model(L=2, d=3, qk="separate")
    params = m.init(torch.Generator().manual_seed(0), dtype=f64)
    Z, y = lintf.sample_prompts(4, 5, 3, generator=torch.Generator().manual_seed(1), dtype=f64)
    Q = params["W_K"].transpose(-1, -2) @ params["W_Q"]
    assert torch.allclose(m.predict(params, Z), literal_predict(params["P"], Q, Z))


def test_mlp_frontend_matches_nn_sequential():
    m = Model(L=2, d=3, frontend="mlp")
    params = m.init(torch.Generator().manual_seed(0), dtype=f64)
    Z, y = lintf.sample_prompts(4, 5, 3, generator=torch.Generator().manual_seed(1), dtype=f64)
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 15), torch.nn.ReLU(), torch.nn.Linear(15, 3)).double()
    with torch.no_grad():
        mlp[0].weight.copy_(params["W1"]); mlp[0].bias.copy_(params["b1"])
        mlp[2].weight.copy_(params["W2"]); mlp[2].bias.copy_(params["b2"])
        x = mlp(Z[:, :3, :].transpose(1, 2)).transpose(1, 2)
    Z2 = torch.cat([x, Z[:, 3:]], dim=1)
    assert torch.allclose(m.predict(params, Z), literal_predict(params["P"], params["Q"], Z2))


def test_flatten_roundtrip():
    m = Model(frontend="mlp")
    params = {k: v.expand(2, *v.shape) for k, v in m.init(torch.Generator().manual_seed(0)).items()}
    theta = m.flatten(params)
    assert theta.shape == (2, m.num_params)
    assert all(torch.equal(params[k], v) for k, v in m.unflatten(theta).items())


@pytest.mark.parametrize("kwargs, word", [
    (dict(L=0), "L"), (dict(d=-1), "d"), (dict(attention="relu"), "linear"),
    (dict(qk="shared"), "separate"), (dict(frontend="cnn"), "mlp"),
    (dict(parametrization="sparse"), "block"), (dict(init_std=0.0), "init_std"),
])
def test_bad_model(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Model(**kwargs)


def test_bad_shapes():
    P, Q, Z, y = draw(d=4)
    with pytest.raises(ValueError, match="Z"):
        lintf.predict(P, Q, Z[:, :3])
    with pytest.raises(ValueError, match="Q"):
        lintf.predict(P, Q[:2], Z)
    with pytest.raises(ValueError, match="y"):
        lintf.loss(P, Q, Z, y[:2])
    with pytest.raises(ValueError, match="attention"):
        lintf.predict(P, Q, Z, "relu")


def test_mlp_frontend_with_run_dims_and_shared_batch():
    m = Model(L=2, d=3, frontend="mlp")
    g = torch.Generator().manual_seed(0)
    params = {k: torch.stack([m.init(g, dtype=f64)[k] for _ in range(2)]) for k in m.param_shapes()}
    Z, y = lintf.sample_prompts(4, 5, 3, generator=g, dtype=f64)
    batched = m.predict(params, Z)
    assert batched.shape == (2, 4)
    for r in range(2):
        assert torch.allclose(batched[r], m.predict({k: v[r] for k, v in params.items()}, Z))


def test_broadcast_shapes_matches_torch():
    """The plain-Python broadcast of the hot paths agrees with torch's, errors included."""
    from lintf.compute.checks import broadcast_shapes
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        shapes = [tuple(int(v) for v in torch.randint(0, 4, (int(torch.randint(0, 4, (1,), generator=g)),), generator=g))
                  for _ in range(int(torch.randint(1, 4, (1,), generator=g)))]
        try:
            expected = tuple(torch.broadcast_shapes(*shapes))
        except RuntimeError:
            with pytest.raises(RuntimeError):
                broadcast_shapes(*shapes)
            continue
        assert broadcast_shapes(*shapes) == expected, shapes
