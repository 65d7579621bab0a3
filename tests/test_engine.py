"""lintf.engine: the batched program against one run alone and a plain torch loop."""
import math

import numpy as np
import pandas as pd

import pytest
import torch

import lintf
from lintf.compute.data import Prompts
from lintf.compute.engine import BatchStream, initial_params, train
from lintf.compute.model import Model

MODEL, PROMPTS = Model(L=2, d=3), Prompts(n=6, d=3)
STEPS, B = 30, 64


class Reference(torch.nn.Module):
    """One run as the authors would write it: an nn.Module and torch.optim."""

    def __init__(self, model, params):
        super().__init__()
        self.model = model
        self.params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.clone()) for k, v in params.items()})

    def forward(self, Z, y):
        return self.model.loss(dict(self.params), Z, y)


def reference_run(model, prompts, optimizer, lr, seed, steps, batch_size, dtype=torch.float64):
    net = Reference(model, {k: v[0] for k, v in initial_params(model, [seed], dtype=dtype).items()})
    opt = (torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9) if optimizer == "sgdm"
           else torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.9), eps=1e-8))
    stream = BatchStream(prompts, [seed], batch_size, "cpu", dtype)
    losses = []
    for _ in range(steps):
        Z, y = stream.next()
        loss = net(Z[0], y[0])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return torch.tensor(losses, dtype=torch.float64), {k: v.detach() for k, v in net.params.items()}


def losses_of(result, run):
    h = result.history
    r = result.runs.loc[run]
    sel = h[(h.quantity == "loss") & (h.optimizer == r.optimizer) & (h.lr == r.lr) & (h.seed == r.seed)]
    return torch.tensor(sel.sort_values("step").value.to_numpy())


CONFIGS = [("sgdm", 0.02), ("sgdm", 0.1), ("adam", 0.005), ("adam", 0.02)]
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def program():
    return train(MODEL, PROMPTS, CONFIGS, SEEDS, steps=STEPS, batch_size=B, checkpoint_every=10,
                 eval_every=10, device="cpu", progress=False)


@pytest.fixture(scope="module")
def program64():
    """Float64, so that a chaotic run (SGDM at lr 0.1) can be compared tightly with the reference."""
    return train(MODEL, PROMPTS, CONFIGS, SEEDS, steps=STEPS, batch_size=B, checkpoint_every=10,
                 eval_every=10, device="cpu", progress=False, dtype=torch.float64)


@pytest.mark.parametrize("run", [0, 5, 7, 11])
def test_twelve_run_program_equals_run_alone_and_reference(program64, run):
    assert len(program64.runs) == 12
    r = program64.runs.loc[run]
    alone = train(MODEL, PROMPTS, [(r.optimizer, r.lr)], [int(r.seed)], steps=STEPS, batch_size=B,
                  checkpoint_every=10, device="cpu", progress=False, dtype=torch.float64)
    assert torch.allclose(losses_of(program64, run), losses_of(alone, 0), rtol=1e-10, atol=1e-12)
    ref_losses, ref_params = reference_run(MODEL, PROMPTS, r.optimizer, r.lr, int(r.seed), STEPS, B)
    assert torch.allclose(losses_of(program64, run), ref_losses, rtol=1e-8, atol=1e-10)
    for k, v in program64.params_at(STEPS).items():
        assert torch.allclose(v[run], ref_params[k], rtol=1e-8, atol=1e-10)


def test_float32_program_tracks_reference_early(program):
    """In float32 the runs agree with the float64 reference until chaos amplifies rounding."""
    for run in range(12):
        r = program.runs.loc[run]
        ref_losses, _ = reference_run(MODEL, PROMPTS, r.optimizer, r.lr, int(r.seed), 10, B, torch.float32)
        assert torch.allclose(losses_of(program, run)[:10], ref_losses, rtol=1e-3)


def test_shared_seed_shares_init_and_batches(program):
    first = program.params_at(0)["P"]
    runs = program.runs
    for seed in SEEDS:
        idx = runs.index[runs.seed == seed]
        assert all(torch.equal(first[idx[0]], first[i]) for i in idx)
    assert not torch.equal(first[0], first[1])


def test_records_and_checkpoints(program):
    h = program.history
    assert set(h.quantity) == {"loss", "grad_norm", "eval_loss", "seed_eval_loss"}
    assert sorted(h[h.quantity == "eval_loss"].step.unique()) == [0, 10, 20, 30]
    assert sorted(program.checkpoints) == [0, 10, 20, 30]
    assert program.params_at(30)["P"].shape == (12, 2, 4, 4)
    with pytest.raises(ValueError, match="checkpoints"):
        program.params_at(5)


def test_deterministic(program):
    again = train(MODEL, PROMPTS, CONFIGS, SEEDS, steps=STEPS, batch_size=B, checkpoint_every=10,
                  eval_every=10, device="cpu", progress=False)
    assert again.history.equals(program.history)


def test_divergent_run_is_marked_and_frozen_and_others_unaffected():
    configs = [("adam", 0.01), ("sgdm", 1e3)]
    res = train(MODEL, PROMPTS, configs, [0], steps=40, batch_size=B, device="cpu", progress=False)
    assert not res.runs.diverged[0] and res.runs.diverged[1]
    step = res.runs.diverged_step[1]
    bad = res.history[(res.history.optimizer == "sgdm") & (res.history.quantity == "loss")]
    assert bad[bad.step >= step].value.isna().all()
    assert bad[bad.step < step].value.notna().all()
    alone = train(MODEL, PROMPTS, configs[:1], [0], steps=40, batch_size=B, device="cpu", progress=False)
    assert torch.allclose(losses_of(res, 0), losses_of(alone, 0), rtol=1e-5)


def test_smoothness_recorded():
    res = train(MODEL, PROMPTS, CONFIGS[:1], [0], steps=5, batch_size=B, device="cpu", progress=False,
                record_smoothness=True)
    s = res.history[res.history.quantity == "smoothness"].value
    assert len(s) == 5 and s.notna().all()


@pytest.mark.parametrize("kwargs, word", [
    (dict(configs=[("lion", 0.1)]), "optimizer"),
    (dict(configs=[("adam", 0.0)]), "lr"),
    (dict(configs=[("adam", -1.0)]), "lr"),
    (dict(configs=[("adam", math.nan)]), "lr"),
    (dict(configs=[("adam", math.inf)]), "lr"),
    (dict(configs=[]), "configs"),
    (dict(seeds=[]), "seeds"),
    (dict(steps=0), "steps"),
    (dict(batch_size=0), "batch_size"),
    (dict(device="tpu"), "device"),
])
def test_bad_input(kwargs, word):
    args = dict(configs=[("adam", 0.01)], seeds=[0], steps=2, batch_size=4, progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        train(MODEL, PROMPTS, **args)


def test_seed_must_be_integer():
    with pytest.raises(TypeError, match="seeds"):
        train(MODEL, PROMPTS, [("adam", 0.01)], [0.5], steps=2, batch_size=4, progress=False)


def test_autograd_and_fast_backends_agree_on_setting1():
    """The switch that makes lintf.model the only definition in use: Setting 1 trained 50
    steps through autograd and through the hand-written path (float64), the same losses,
    gradient norms, smoothness and checkpoints; the Hessians at the end the same too."""
    from lintf import measure, settings
    s = settings.get_setting("setting1")
    kw = dict(steps=50, batch_size=200, eval_every=10, checkpoint_every=50, record_smoothness=True,
              smoothness_every=5, dtype=torch.float64, progress=False)
    runs = [("sgdm", 0.02), ("adam", 0.02)]
    fast_ = lintf.train(s.model, s.prompts, runs, [0, 1, 2], backend="fast", **kw)
    auto = lintf.train(s.model, s.prompts, runs, [0, 1, 2], backend="autograd", **kw)
    for q in ("loss", "grad_norm", "smoothness", "eval_loss"):
        a = fast_.history.query("quantity == @q").value.to_numpy()
        b = auto.history.query("quantity == @q").value.to_numpy()
        assert a.shape == b.shape and len(a)
        assert np.allclose(a, b, rtol=1e-8, atol=1e-12), q
    for k, v in fast_.checkpoints[50].items():
        assert torch.allclose(v, auto.checkpoints[50][k], rtol=1e-8, atol=1e-12), k
    Z, y = s.prompts.sample(100, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    params = fast_.checkpoints[50]
    H_fast = measure.hessian(s.model, params, Z, y, backend="fast")
    H_auto = measure.hessian(s.model, params, Z, y, backend="autograd")
    assert torch.allclose(H_fast, H_auto, rtol=1e-8, atol=1e-10)


def test_backend_choice_and_environment(monkeypatch):
    from lintf import fast
    monkeypatch.delenv("LINTF_BACKEND", raising=False)
    assert fast.backend() == "auto"
    monkeypatch.setenv("LINTF_BACKEND", "autograd")
    assert fast.backend() == "autograd" and not fast.use(lintf.Model())
    monkeypatch.setenv("LINTF_BACKEND", "jax")
    with pytest.raises(ValueError, match="LINTF_BACKEND"):
        fast.backend()
    with pytest.raises(ValueError, match="backend"):
        fast.use(lintf.Model(), "numpy")
    with pytest.raises(ValueError, match="fast"):
        fast.use(lintf.Model(attention="softmax"), "fast")
    assert fast.use(lintf.Model(), "auto") and not fast.use(lintf.Model(attention="softmax"), "auto")


def _poisoned(monkeypatch, bad):
    """Make the training stream's draws number ``t`` in ``bad[seed]`` non-finite for that seed
    (every prompt of the batch is multiplied by inf)."""
    calls = {}
    plain = BatchStream.next

    def next_(self):
        Z, y = plain(self)
        t = calls[id(self)] = calls.get(id(self), -1) + 1
        for i, seed in enumerate(self.seeds):
            if t in bad.get(seed, ()):
                Z = Z.clone()
                Z[i] = Z[i] * math.inf
        return Z, y

    monkeypatch.setattr(BatchStream, "next", next_)


def skipping_reference(model, prompts, optimizer, lr, seed, steps, batch_size, bad=()):
    """One run written out by hand, float64: clip to norm 1, then SGDM or Adam (betas 0.9, 0.9;
    the step counter advances on every step, as the engine's shared one does); a step whose
    loss or gradient norm is non-finite (``bad``: the draws poisoned) changes nothing."""
    params = {k: v[0].clone().requires_grad_(True) for k, v in initial_params(model, [seed], dtype=torch.float64).items()}
    m = {k: torch.zeros_like(v) for k, v in params.items()}
    v2 = {k: torch.zeros_like(v) for k, v in params.items()}
    stream = BatchStream(prompts, [seed], batch_size, "cpu", torch.float64)
    for t in range(1, steps + 1):
        Z, y = stream.next()
        if t - 1 in bad:
            Z = Z * math.inf
        loss = model.loss(params, Z[0], y[0])
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        grads = {k: torch.zeros_like(p) if g is None else g for (k, p), g in zip(params.items(), grads)}
        norm = torch.sqrt(sum((g * g).sum() for g in grads.values()))
        if not (torch.isfinite(loss) and torch.isfinite(norm)):
            continue
        coef = min(1.0, 1.0 / (float(norm) + 1e-6))
        with torch.no_grad():
            for k, p in params.items():
                g = grads[k] * coef
                if optimizer == "sgdm":
                    m[k] = 0.9 * m[k] + g
                    p -= lr * m[k]
                else:
                    m[k] = 0.9 * m[k] + 0.1 * g
                    v2[k] = 0.9 * v2[k] + 0.1 * g * g
                    p -= (lr / (1 - 0.9 ** t)) * m[k] / (v2[k].sqrt() / (1 - 0.9 ** t) ** 0.5 + 1e-8)
    return {k: v.detach() for k, v in params.items()}


def test_skip_nonfinite_skips_the_step_and_matches_a_reference(monkeypatch):
    bad = {0: (4,), 1: (7, 8)}
    _poisoned(monkeypatch, bad)
    configs = [("sgdm", 0.05), ("adam", 0.02)]
    res = train(MODEL, PROMPTS, configs, [0, 1], steps=12, batch_size=B, device="cpu", progress=False,
                dtype=torch.float64, skip_nonfinite=3, checkpoint_every=12)
    assert not res.runs.diverged.any()
    assert res.runs.set_index(["optimizer", "seed"]).skipped.to_dict() == {
        ("sgdm", 0): 1, ("sgdm", 1): 2, ("adam", 0): 1, ("adam", 1): 2}
    monkeypatch.undo()
    final = res.checkpoints[12]
    for run in res.runs.itertuples():
        ref = skipping_reference(MODEL, PROMPTS, run.optimizer, run.lr, run.seed, 12, B, bad[run.seed])
        for k, v in ref.items():
            assert torch.allclose(final[k][run.run], v, rtol=1e-10, atol=1e-12), (run, k)
    h = res.history
    loss = h[(h.quantity == "loss") & (h.seed == 1) & (h.optimizer == "adam")].set_index("step").value
    assert loss[[7, 8]].isna().all() and loss.drop([7, 8]).notna().all()


def test_skip_nonfinite_diverges_after_too_many_in_a_row(monkeypatch):
    _poisoned(monkeypatch, {1: tuple(range(5, 12))})
    res = train(MODEL, PROMPTS, [("adam", 0.02)], [0, 1], steps=12, batch_size=B, device="cpu", progress=False,
                dtype=torch.float64, skip_nonfinite=3, checkpoint_every=None)
    runs = res.runs.set_index("seed")
    assert not runs.diverged[0] and runs.diverged[1] and runs.diverged_step[1] == 5
    assert runs.skipped[1] == 3 and runs.skipped[0] == 0
    monkeypatch.undo()
    alone = train(MODEL, PROMPTS, [("adam", 0.02)], [0], steps=12, batch_size=B, device="cpu", progress=False,
                  dtype=torch.float64, checkpoint_every=None)
    assert torch.allclose(losses_of(res, 0), losses_of(alone, 0), rtol=1e-12)


def test_skip_nonfinite_zero_is_the_old_rule(monkeypatch):
    _poisoned(monkeypatch, {0: (4,)})
    res = train(MODEL, PROMPTS, [("sgdm", 0.05)], [0], steps=8, batch_size=B, device="cpu", progress=False,
                dtype=torch.float64, checkpoint_every=None)
    assert res.runs.diverged[0] and res.runs.diverged_step[0] == 4 and res.runs.skipped[0] == 0
    with pytest.raises(ValueError, match="skip_nonfinite"):
        train(MODEL, PROMPTS, [("sgdm", 0.05)], [0], steps=2, batch_size=B, skip_nonfinite=-1, progress=False)


def test_one_pool_thread_gives_the_same_numbers(monkeypatch):
    """What ``python -m lintf compute`` sets inside a task: the chunks taken in turn by one
    thread, for training and for the hand-written Hessian; bit for bit the same."""
    from lintf import fast, measure
    from lintf.compute.settings import get_setting
    s = get_setting("setting1")
    monkeypatch.setattr(lintf.engine, "CHUNK_RUNS", 3)             # a chunk per configuration: two chunks
    runs = dict(configs=[("sgdm", 0.02), ("adam", 0.02)], seeds=[0, 1, 2], steps=6, batch_size=B, device="cpu",
                progress=False, record_smoothness=True)
    many = train(s.model, PROMPTS.__class__(n=20, d=5), **runs)
    params = {k: v[:3] for k, v in many.params_at(6).items()}
    Z, y = lintf.sample_prompts(300, n=20, d=5, generator=torch.Generator().manual_seed(0))
    H = measure.hessian(s.model, params, Z, y)
    monkeypatch.setattr(lintf.engine, "POOL_THREADS", 1)
    monkeypatch.setattr(fast, "HESSIAN_POOL", 1)
    one = train(s.model, PROMPTS.__class__(n=20, d=5), **runs)
    assert one.history.equals(many.history)
    assert torch.equal(measure.hessian(s.model, params, Z, y), H)


def test_flush_denormal_sets_and_restores_the_mode():
    from lintf.compute.engine import _flushing, flush_denormal
    before = _flushing()
    with flush_denormal():
        assert _flushing() or not torch.set_flush_denormal(True)       # a CPU that cannot: nothing changes
        with flush_denormal(False):
            assert not _flushing()
        assert _flushing() or not torch.set_flush_denormal(True)
    assert _flushing() == before
    torch.set_flush_denormal(before)


@pytest.mark.parametrize("flush", [True, False])
def test_training_flushes_subnormals_on_every_chunk_thread(monkeypatch, flush):
    """Each chunk of runs computes with the engine's mode, whichever thread of the pool takes it."""
    from lintf import fast_variants
    from lintf.compute.engine import _flushing
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush subnormal numbers")
    torch.set_flush_denormal(False)
    seen, inner = [], fast_variants.loss_and_grad

    def spy(*args, **kwargs):
        seen.append(_flushing())
        return inner(*args, **kwargs)
    monkeypatch.setattr(fast_variants, "loss_and_grad", spy)
    monkeypatch.setattr(lintf.engine, "CHUNK_RUNS", 1)
    monkeypatch.setattr(lintf.engine, "POOL_THREADS", 2)
    monkeypatch.setattr(lintf.engine, "FLUSH_DENORMAL", flush)
    model = lintf.Model(L=2, d=3, attention="softmax")
    train(model, lintf.Prompts(n=5, d=3), [("sgdm", 0.01), ("adam", 0.01)], [0, 1], steps=3, batch_size=16,
          device="cpu", progress=False, checkpoint_every=None)
    assert len(seen) >= 6 and set(seen) == {flush}
    assert not _flushing()                                             # the caller's mode again


# -- the declared alternatives' protocols, recorded inside the same program -------------------
@pytest.mark.parametrize("setting", ["setting1", "softmax"])
def test_shared_batch_protocols_match_plain_references(setting):
    """Every quantity ``shared_batch`` adds, against a plain per-run computation from the
    checkpoints (float64): the loss and the median squared error on the shared batch and on
    each seed's evaluation batch, the gradient norm on the shared batch, and the directional
    smoothness along the step actually taken on the shared, probe-free seed and shared batches.
    Training itself is unchanged by them (bit for bit)."""
    from lintf.compute import measure
    from lintf.compute.data import authors_prompts
    from lintf.compute.engine import seed_eval_batch
    from lintf.compute.settings import get_setting
    st = get_setting(setting)
    Zs, ys = authors_prompts(24, st.prompts.n, st.prompts.d)
    kw = dict(steps=6, batch_size=20, eval_every=2, eval_size=16, checkpoint_every=1, record_smoothness=True,
              smoothness_every=2, device="cpu", dtype=torch.float64, progress=False)
    configs, seeds = [("sgdm", 0.01), ("adam", 0.005)], [0, 3]
    res = train(st.model, st.prompts, configs, seeds, shared_batch=(Zs, ys), **kw)
    plain = train(st.model, st.prompts, configs, seeds, **kw)
    base = res.history[res.history["quantity"].isin(set(plain.history["quantity"]))].reset_index(drop=True)
    pd.testing.assert_frame_equal(base, plain.history, check_exact=True)
    h = res.history.set_index(["optimizer", "seed", "step", "quantity"])["value"]
    Zs, ys = Zs.double(), ys.double()
    Ze, ye = seed_eval_batch(st.prompts, seeds, 16, dtype=torch.float64)
    for opt, _ in configs:
        for i, seed in enumerate(seeds):
            for t in (0, 2, 4):
                x = res.run_params(t, opt, seed)
                u = {k: res.run_params(t + 1, opt, seed)[k] - v for k, v in x.items()}
                err_s = (st.model.predict(x, Zs) - ys).square()
                err_e = (st.model.predict(x, Ze[i]) - ye[i]).square()
                close = lambda q, ref: torch.testing.assert_close(  # noqa: E731
                    torch.tensor(h[(opt, seed, t, q)], dtype=torch.float64), ref.detach(), rtol=1e-9, atol=1e-12)
                close("shared_eval_loss", err_s.mean())
                close("shared_eval_median", err_s.median() if len(err_s) % 2 else torch.quantile(err_s, 0.5))
                close("seed_eval_median", torch.quantile(err_e, 0.5))
                close("smoothness_shared", measure.directional_smoothness(st.model, x, u, Zs, ys))
                close("smoothness_seed", measure.directional_smoothness(st.model, x, u, Ze[i], ye[i]))
                leaves = {k: v.detach().clone().requires_grad_() for k, v in x.items()}
                g = torch.autograd.grad(st.model.loss(leaves, Zs, ys), list(leaves.values()))
                close("grad_norm_shared", torch.sqrt(sum(v.square().sum() for v in g)))
                assert math.isfinite(h[(opt, seed, t, "smoothness_probe")])
