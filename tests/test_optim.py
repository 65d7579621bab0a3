"""lintf.optim: the batched updates against torch.optim and textbook loops, one run at a time."""
import math

import pytest
import torch

from lintf import optim
from lintf.compute.data import Prompts
from lintf.compute.engine import _check_configs, train
from lintf.compute.model import Model


def reference(kind, lr, params, grads_seq, clip):
    p = torch.nn.Parameter(params.clone())
    opt = (torch.optim.SGD([p], lr=lr, momentum=0.9) if kind == "sgdm"
           else torch.optim.Adam([p], lr=lr, betas=(0.9, 0.9), eps=1e-8))
    for g in grads_seq:
        p.grad = g.clone()
        torch.nn.utils.clip_grad_norm_([p], clip)
        opt.step()
    return p.detach()


def kinds_of(names):
    return torch.tensor([optim.ALL_OPTIMIZERS.index(n) for n in names])


@pytest.mark.parametrize("clip", [1.0, 0.1])
def test_batched_update_matches_torch_optim(clip):
    g = torch.Generator().manual_seed(0)
    K, S, shape = 4, 3, (2, 5)
    kinds = ["sgdm", "adam", "adam", "sgdm"]
    lrs = [0.05, 0.01, 0.2, 0.5]
    x0 = torch.randn(K, S, *shape, generator=g, dtype=torch.float64)
    grads_seq = [torch.randn(K, S, *shape, generator=g, dtype=torch.float64) * 3 for _ in range(7)]
    cfg = optim.OptimConfig(clip=clip)
    params, state = {"w": x0.clone()}, optim.init_state({"w": x0})
    lr = torch.tensor(lrs, dtype=torch.float64)[:, None].expand(K, S)
    kind = kinds_of(kinds)[:, None].expand(K, S)
    for gr in grads_seq:
        clipped, _ = optim.clip_by_global_norm({"w": gr}, clip, run_dims=2)
        params, _ = optim.update(params, clipped, state, lr, kind, cfg, run_dims=2)
    for k in range(K):
        for s in range(S):
            ref = reference(kinds[k], lrs[k], x0[k, s], [gr[k, s] for gr in grads_seq], clip)
            assert torch.allclose(params["w"][k, s], ref, rtol=1e-12, atol=1e-14)


# A noisy quadratic per run, two tensors (so global norms span both): g = a (x - c) + noise_t.
SHAPES = {"w": (2, 5), "b": (3,)}
STEPS = 20


def quadratic(K, S, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = {k: torch.randn(K, S, *s, generator=g, dtype=dtype) for k, s in SHAPES.items()}
    a = {k: 0.5 + 1.5 * torch.rand(K, S, *s, generator=g, dtype=dtype) for k, s in SHAPES.items()}
    c = {k: torch.randn(K, S, *s, generator=g, dtype=dtype) for k, s in SHAPES.items()}
    noise = [{k: torch.randn(K, S, *s, generator=g, dtype=dtype) for k, s in SHAPES.items()}
             for _ in range(STEPS)]

    def grad(x, t, run=()):
        return {k: a[k][run] * (x[k] - c[k][run]) + noise[t][k][run] for k in SHAPES}
    return x0, grad


def batched(names, lrs, x0, grad, cfg, update=optim.update, steps=STEPS):
    """Run the vectorised program; ``names``, ``lrs`` of shape ``(K, S)`` (nested lists)."""
    K, S = len(names), len(names[0])
    kind = torch.tensor([[optim.ALL_OPTIMIZERS.index(n) for n in row] for row in names])
    if update is not optim.update:
        kind = kind == optim.ALL_OPTIMIZERS.index("adam")
    lr = torch.tensor(lrs, dtype=x0["w"].dtype)
    assert kind.shape == lr.shape == (K, S)
    params, state = {k: v.clone() for k, v in x0.items()}, optim.init_state(x0)
    for t in range(steps):
        clipped, _ = optim.clip_by_global_norm(grad(params, t), cfg.clip, run_dims=2)
        params, _ = update(params, clipped, state, lr, kind, cfg, run_dims=2)
    return params, state


def textbook(name, lr, x0, grad, cfg, steps=STEPS):
    """One run, written from the rules in ALL_OPTIMIZERS' docstring; returns ``x, m, v``."""
    x = {k: v.clone() for k, v in x0.items()}
    m = {k: torch.zeros_like(v) for k, v in x.items()}
    v = {k: torch.zeros_like(u) for k, u in x.items()}
    mu, (b1, b2), eps, c = cfg.momentum, cfg.betas, cfg.eps, cfg.coord_clip
    b1 = 0.0 if name == "rmsprop" else b1
    b2 = {"adam_b2_0.99": 0.99, "adam_b2_0.999": 0.999}.get(name, b2)
    for t in range(1, steps + 1):
        g = grad(x, t - 1)
        norm = math.sqrt(sum(float(gi.square().sum()) for gi in g.values()))
        if cfg.clip is not None:
            g = {k: gi * min(1.0, cfg.clip / (norm + 1e-6)) for k, gi in g.items()}
            norm = math.sqrt(sum(float(gi.square().sum()) for gi in g.values()))
        for k in x:
            gk = g[k]
            if name == "sgdm":
                m[k] = mu * m[k] + gk
                x[k] = x[k] - lr * m[k]
            elif name == "sgdm_coordclip":
                m[k] = mu * m[k] + gk.clamp(-c, c)
                x[k] = x[k] - lr * m[k]
            elif name == "signsgd":
                m[k] = mu * m[k] + (1 - mu) * gk
                x[k] = x[k] - lr * m[k].sign()
            elif name == "normsgd":
                m[k] = mu * m[k] + gk / (norm + 1e-12)
                x[k] = x[k] - lr * m[k]
            else:
                m[k] = b1 * m[k] + (1 - b1) * gk
                v[k] = b2 * v[k] + (1 - b2) * gk ** 2
                if name == "adam_nobias":
                    x[k] = x[k] - lr * m[k] / (v[k].sqrt() + eps)
                else:
                    m_hat, v_hat = m[k] / (1 - b1 ** t), v[k] / (1 - b2 ** t)
                    x[k] = x[k] - lr * m_hat / (v_hat.sqrt() + eps)
    return x, m, v


def torch_reference(name, lr, x0, grad, cfg, steps=STEPS):
    """One run with torch.optim, for the rules it has."""
    p = {k: torch.nn.Parameter(v.clone()) for k, v in x0.items()}
    b1, b2 = cfg.betas
    opt = {"sgdm": lambda: torch.optim.SGD(p.values(), lr=lr, momentum=cfg.momentum),
           "adam": lambda: torch.optim.Adam(p.values(), lr=lr, betas=(b1, b2), eps=cfg.eps),
           "adam_b2_0.99": lambda: torch.optim.Adam(p.values(), lr=lr, betas=(b1, 0.99), eps=cfg.eps),
           "adam_b2_0.999": lambda: torch.optim.Adam(p.values(), lr=lr, betas=(b1, 0.999), eps=cfg.eps),
           "rmsprop": lambda: torch.optim.Adam(p.values(), lr=lr, betas=(0.0, b2), eps=cfg.eps)}[name]()
    for t in range(steps):
        with torch.no_grad():
            g = grad({k: q.detach() for k, q in p.items()}, t)
        for k, q in p.items():
            q.grad = g[k].clone()
        if cfg.clip is not None:
            torch.nn.utils.clip_grad_norm_(p.values(), cfg.clip)
        opt.step()
    return {k: q.detach() for k, q in p.items()}


TORCH_HAS = ("sgdm", "adam", "adam_b2_0.99", "adam_b2_0.999", "rmsprop")
K, S = 6, 3


def mixed_grid():
    """Every optimizer at two rates, scattered over a (6, 3) run grid."""
    runs = [(n, lr) for n in optim.ALL_OPTIMIZERS for lr in (0.01, 0.08)]
    order = torch.randperm(len(runs), generator=torch.Generator().manual_seed(1)).tolist()
    runs = [runs[i] for i in order]
    names = [[runs[i * S + s][0] for s in range(S)] for i in range(K)]
    lrs = [[runs[i * S + s][1] for s in range(S)] for i in range(K)]
    return names, lrs


@pytest.mark.parametrize("clip", [None, 0.5])
def test_every_optimizer_matches_textbook_loop_and_torch_optim(clip):
    cfg = optim.OptimConfig(clip=clip, coord_clip=0.05)
    names, lrs = mixed_grid()
    x0, grad = quadratic(K, S, torch.float64)
    params, state = batched(names, lrs, x0, grad, cfg)
    seen = set()
    for i in range(K):
        for s in range(S):
            name, lr = names[i][s], lrs[i][s]
            seen.add(name)
            run = lambda x, t: grad(x, t, (i, s))  # noqa: E731
            x0_run = {k: v[i, s] for k, v in x0.items()}
            x, m, v = textbook(name, lr, x0_run, run, cfg)
            for k in SHAPES:
                assert torch.allclose(state["m"][k][i, s], m[k], rtol=1e-10, atol=1e-12), (name, lr, k)
                assert torch.allclose(state["v"][k][i, s], v[k], rtol=1e-10, atol=1e-12), (name, lr, k)
            refs = [x]
            if name in TORCH_HAS:
                refs.append(torch_reference(name, lr, x0_run, run, cfg))
            for ref in refs:
                for k in SHAPES:
                    assert torch.allclose(params[k][i, s], ref[k], rtol=1e-10, atol=1e-12), (name, lr, k)
            assert not torch.allclose(params["w"][i, s], x0_run["w"])
    assert seen == set(optim.ALL_OPTIMIZERS)


def previous_update(params, grads, state, lr, is_adam, config, run_dims):
    """``lintf.optim.update`` as it was with only sgdm and adam (verbatim formulae)."""
    def per_run(x, like):
        return x.reshape(*x.shape, *([1] * (like.dim() - run_dims)))
    state["t"] += 1
    t = state["t"]
    b1, b2 = config.betas
    bias1, bias2 = 1 - b1 ** t, 1 - b2 ** t
    new, steps = {}, {}
    for k, g in grads.items():
        m, v = state["m"][k], state["v"][k]
        adam = per_run(is_adam, g)
        rate = per_run(lr, g)
        m_sgd = config.momentum * m + g
        m_adam = b1 * m + (1 - b1) * g
        v_new = b2 * v + (1 - b2) * g * g
        step_sgd = -rate * m_sgd
        step_adam = -(rate / bias1) * m_adam / (v_new.sqrt() / bias2 ** 0.5 + config.eps)
        state["m"][k] = torch.where(adam, m_adam, m_sgd)
        state["v"][k] = torch.where(adam, v_new, v)
        steps[k] = torch.where(adam, step_adam, step_sgd)
        new[k] = params[k] + steps[k]
    return new, steps


@pytest.mark.parametrize("row", [["sgdm", "adam", "adam", "sgdm"], ["adam"] * 3, ["sgdm"] * 2,
                                 ["signsgd", "sgdm", "adam_nobias", "adam", "normsgd", "rmsprop", "sgdm",
                                  "adam_b2_0.99", "sgdm_coordclip"]])
def test_paper_pair_is_bit_identical_to_previous_update(row):
    cfg = optim.OptimConfig()
    names = [[n] * 2 for n in row]
    lrs = [[0.02 * (i + 1), 0.01] for i in range(len(row))]
    x0, grad = quadratic(len(row), 2, torch.float32)
    new, new_state = batched(names, lrs, x0, grad, cfg)
    old, old_state = batched(names, lrs, x0, grad, cfg, update=previous_update)
    keep = torch.tensor([n in optim.OPTIMIZERS for n in row])
    for k in SHAPES:
        for a, b in [(new[k], old[k]), (new_state["m"][k], old_state["m"][k]),
                     (new_state["v"][k], old_state["v"][k])]:
            assert torch.equal(a[keep], b[keep])


def test_unused_rules_and_other_runs_cannot_leak():
    """An infinite gradient coordinate: sgdm_coordclip clamps it (its Adam and SGDM branches
    would be inf or NaN), and a NaN run changes no other run."""
    cfg = optim.OptimConfig(clip=None, coord_clip=0.05)
    names = [["sgdm_coordclip", "adam"], ["normsgd", "sgdm"], ["signsgd", "rmsprop"]]
    lrs = [[0.1, 0.01], [0.05, 0.02], [0.01, 0.03]]
    x0, grad = quadratic(3, 2, torch.float64)

    def poisoned(big, nan_run=None):
        def g(x, t, run=()):
            out = grad(x, t, run)
            out["w"] = out["w"].clone()
            out["w"][0, 0, 0, 0], out["w"][0, 0, 1, 3] = big, -big
            if nan_run is not None:
                out["w"][nan_run] = float("nan")
            return out
        return g
    finite, _ = batched(names, lrs, x0, poisoned(1e3), cfg)
    inf, _ = batched(names, lrs, x0, poisoned(math.inf), cfg)
    for k in SHAPES:
        assert torch.equal(finite[k], inf[k])
    nan, _ = batched(names, lrs, x0, poisoned(1e3, nan_run=(1, 0)), cfg)
    assert nan["w"][1, 0].isnan().all()
    others = torch.ones(3, 2, dtype=torch.bool)
    others[1, 0] = False
    for k in SHAPES:
        assert torch.equal(nan[k][others], finite[k][others])


def test_clip_none_means_no_clipping():
    grads = {"a": 10 * torch.ones(2, 3), "b": torch.ones(2, 1, 4)}
    same, norms = optim.clip_by_global_norm(grads, None, run_dims=1)
    assert all(same[k] is grads[k] for k in grads)
    assert torch.allclose(norms, torch.full((2,), (300 + 4) ** 0.5))
    assert optim.OptimConfig(clip=None).clip is None
    assert optim.OptimConfig().clip == 1.0


def test_global_norm_spans_all_tensors():
    grads = {"a": torch.ones(2, 3), "b": 2 * torch.ones(2, 1, 4)}
    clipped, norms = optim.clip_by_global_norm(grads, 1.0, run_dims=1)
    assert torch.allclose(norms, torch.full((2,), (3 + 16) ** 0.5))
    assert torch.allclose(optim.global_norm(clipped, 1), torch.ones(2), atol=1e-5)


def test_optimizer_names():
    assert optim.OPTIMIZERS == ("sgdm", "adam")
    assert optim.ALL_OPTIMIZERS[:2] == optim.OPTIMIZERS
    assert len(set(optim.ALL_OPTIMIZERS)) == len(optim.ALL_OPTIMIZERS) == 9
    assert [c[0] for c in _check_configs([(n, 0.1) for n in optim.ALL_OPTIMIZERS])] == list(optim.ALL_OPTIMIZERS)
    with pytest.raises(ValueError, match="optimizer.*adam_nobias.*'lion'"):
        _check_configs([("lion", 0.1)])


def test_engine_trains_a_mixed_program_without_clipping():
    configs = [(n, 0.01) for n in optim.ALL_OPTIMIZERS]
    res = train(Model(L=1, d=2), Prompts(n=4, d=2), configs, [0], steps=3, batch_size=8, eval_every=3,
                eval_size=8, checkpoint_every=None, device="cpu", progress=False,
                optim_config=optim.OptimConfig(clip=None))
    assert list(res.runs.optimizer) == list(optim.ALL_OPTIMIZERS)
    assert not res.runs.diverged.any()


def test_bad_config():
    with pytest.raises(ValueError, match="clip"):
        optim.OptimConfig(clip=0)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="clip must be None .* > 0"):
            optim.OptimConfig(clip=bad)
    with pytest.raises(TypeError, match="clip"):
        optim.OptimConfig(clip="1")
    for bad in (0, -0.01, math.inf):
        with pytest.raises(ValueError, match="coord_clip"):
            optim.OptimConfig(coord_clip=bad)
    with pytest.raises(ValueError, match="betas"):
        optim.OptimConfig(betas=(0.9, 1.5))


def test_bad_kind():
    x = {"w": torch.zeros(2, 3)}
    lr = torch.full((2,), 0.1)
    with pytest.raises(ValueError, match="kind.*ALL_OPTIMIZERS"):
        optim.update(x, x, optim.init_state(x), lr, torch.tensor([0, 9]), optim.OptimConfig(), run_dims=1)
    for bad in (torch.tensor([0.0, 1.0]), torch.tensor([True, False]), [0, 1]):
        with pytest.raises(TypeError, match="kind"):
            optim.update(x, x, optim.init_state(x), lr, bad, optim.OptimConfig(), run_dims=1)
