"""lintf.optim: the batched updates against torch.optim, one run at a time."""
import pytest
import torch

from lintf import optim


def reference(kind, lr, params, grads_seq, clip):
    p = torch.nn.Parameter(params.clone())
    opt = (torch.optim.SGD([p], lr=lr, momentum=0.9) if kind == "sgdm"
           else torch.optim.Adam([p], lr=lr, betas=(0.9, 0.9), eps=1e-8))
    for g in grads_seq:
        p.grad = g.clone()
        torch.nn.utils.clip_grad_norm_([p], clip)
        opt.step()
    return p.detach()


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
    is_adam = torch.tensor([k == "adam" for k in kinds])[:, None].expand(K, S)
    for gr in grads_seq:
        clipped, _ = optim.clip_by_global_norm({"w": gr}, clip, run_dims=2)
        params, _ = optim.update(params, clipped, state, lr, is_adam, cfg, run_dims=2)
    for k in range(K):
        for s in range(S):
            ref = reference(kinds[k], lrs[k], x0[k, s], [gr[k, s] for gr in grads_seq], clip)
            assert torch.allclose(params["w"][k, s], ref, rtol=1e-12, atol=1e-14)


def test_global_norm_spans_all_tensors():
    grads = {"a": torch.ones(2, 3), "b": 2 * torch.ones(2, 1, 4)}
    clipped, norms = optim.clip_by_global_norm(grads, 1.0, run_dims=1)
    assert torch.allclose(norms, torch.full((2,), (3 + 16) ** 0.5))
    assert torch.allclose(optim.global_norm(clipped, 1), torch.ones(2), atol=1e-5)


def test_bad_config():
    with pytest.raises(ValueError, match="clip"):
        optim.OptimConfig(clip=0)
    with pytest.raises(ValueError, match="betas"):
        optim.OptimConfig(betas=(0.9, 1.5))
