"""The precision a setting trains in: float64 training against a plain float64 loop, the same
draws in both precisions, the precision in the store key, the depths in float64, and
:func:`lintf.experiments.precision_pair`."""
import dataclasses

import numpy as np
import pytest
import torch

import lintf
import lintf.compute.experiments as E
from lintf import settings
from lintf.compute.data import Prompts
from lintf.compute.engine import BatchStream, initial_params, train
from lintf.compute.model import Model
from lintf.compute.store import ResultStore

from test_engine import losses_of, reference_run

DEEP, PROMPTS = Model(L=4, d=3, parametrization="block"), Prompts(n=6, d=3)
TINY = dataclasses.replace(settings.SCALES["ci"], name="tiny_precision", steps=12, depth_steps=12, batch_size=40,
                           eval_every=4, checkpoint_every=4, hessian_steps=(0, 4, 8), extra_hessian_steps=(0, 4),
                           table_steps=(4, 8), table_horizon=12, depth_grid=(0.5, 1.0), seeds=(0, 1))


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    monkeypatch.setitem(settings.SCALES, TINY.name, TINY)
    monkeypatch.setenv("LINTF_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("LINTF_PROGRESS", "0")
    return ResultStore(tmp_path / "results")


@pytest.mark.parametrize("optimizer,lr", [("adam", 0.02), ("sgdm", 0.05)])
def test_float64_training_of_a_deep_block_model_matches_a_plain_float64_loop(optimizer, lr):
    """The hand-written path in float64, step for step, against nn.Module + torch.optim."""
    res = train(DEEP, PROMPTS, [(optimizer, lr)], [3], steps=15, batch_size=32, checkpoint_every=15,
                device="cpu", progress=False, dtype=torch.float64, backend="fast")
    ref_losses, ref_params = reference_run(DEEP, PROMPTS, optimizer, lr, 3, 15, 32)
    assert torch.allclose(losses_of(res, 0), ref_losses, rtol=1e-9, atol=1e-12)
    for k, v in res.params_at(15).items():
        assert v.dtype == torch.float64
        assert torch.allclose(v[0], ref_params[k], rtol=1e-8, atol=1e-12), k


def test_float64_fast_path_equals_autograd():
    kw = dict(steps=8, batch_size=24, checkpoint_every=8, device="cpu", progress=False, dtype=torch.float64,
              record_smoothness=True)
    fast = train(DEEP, PROMPTS, [("adam", 0.02), ("sgdm", 0.05)], [0, 1], backend="fast", **kw)
    slow = train(DEEP, PROMPTS, [("adam", 0.02), ("sgdm", 0.05)], [0, 1], backend="autograd", **kw)
    a, b = fast.history.value.to_numpy(), slow.history.value.to_numpy()
    assert np.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_a_seed_draws_the_same_numbers_in_both_precisions():
    p32 = initial_params(DEEP, [0, 5])
    p64 = initial_params(DEEP, [0, 5], dtype=torch.float64)
    for k in p32:
        assert p64[k].dtype == torch.float64 and torch.equal(p64[k], p32[k].double())
    s32, s64 = BatchStream(PROMPTS, [2], 50, "cpu", torch.float32), BatchStream(PROMPTS, [2], 50, "cpu", torch.float64)
    for _ in range(2):
        (Z32, y32), (Z64, y64) = s32.next(), s64.next()
        assert Z64.dtype == torch.float64 and torch.equal(Z64, Z32.double()) and torch.equal(y64, y32.double())
    # so the first losses agree to float32 rounding
    r = {dt: train(DEEP, PROMPTS, [("adam", 0.02)], [0], steps=3, batch_size=50, device="cpu", progress=False,
                   dtype=dt) for dt in (torch.float32, torch.float64)}
    assert torch.allclose(losses_of(r[torch.float32], 0), losses_of(r[torch.float64], 0), rtol=1e-5)


def test_bad_precision_and_dtype_name_the_parameter():
    with pytest.raises(ValueError, match="precision"):
        dataclasses.replace(settings.get_setting("setting1"), precision="float16")
    with pytest.raises(ValueError, match="dtype"):
        train(DEEP, PROMPTS, [("adam", 0.02)], [0], steps=2, batch_size=8, device="cpu", progress=False,
              dtype=torch.float16)


def test_the_depths_train_in_float64_and_the_precision_is_in_the_key(tiny):
    assert {settings.get_setting(f"depth{L}").precision for L in (2, 4, 6, 8)} == {"float64"}
    assert settings.get_setting("setting1").precision == "float32"
    deep = E.training("depth2", TINY.name, lrs="paper")
    assert {v.dtype for v in deep.tensors.values()} == {torch.float64}
    as32 = E.training(dataclasses.replace(settings.get_setting("depth2"), precision="float32"), TINY.name,
                      lrs="paper")
    assert {v.dtype for v in as32.tensors.values()} == {torch.float32}
    assert as32.key != deep.key and not as32.from_cache
    assert E.training("depth2", TINY.name, lrs="paper").from_cache
    # the grid search of a setting keys its precision too
    sweeps = {p: E.lr_sweep(dataclasses.replace(settings.get_setting("depth2"), precision=p), TINY.name, points=2)
              for p in ("float32", "float64")}
    assert sweeps["float32"].key != sweeps["float64"].key


def test_precision_pair_trains_raw_arithmetic_and_finds_where_they_part(tiny):
    pair = E.precision_pair("depth2", TINY.name)
    raw = dataclasses.replace(settings.get_setting("depth2"), skip_nonfinite=0)
    assert settings.get_setting("depth2").skip_nonfinite > 0     # the chapter's runs skip; the pair does not
    own = E.training(raw, TINY.name, lrs="paper", seeds=TINY.seeds[:E.PAIR_SEEDS], smoothness=False)
    assert own.from_cache                                       # the float64 half: depth2 without skipping
    t = pair["pairs"]
    n = len(TINY.seeds[:E.PAIR_SEEDS])
    assert len(t) == 2 * n and set(pair["history"].precision) == {"float32", "float64"}
    h = pair["history"]
    for r in t.itertuples():
        run = h[(h.optimizer == r.optimizer) & (h.seed == r.seed) & (h.quantity == "loss")]
        wide = run.pivot(index="step", columns="precision", values="value")
        differ = (wide.float32 / wide.float64 - 1).abs() > 0.01
        expected = [s for s in (r.diverged32, r.diverged64) if s >= 0] + list(wide.index[differ.to_numpy()][:1])
        assert r.part == (min(expected) if expected else -1)
        assert r.spikes64 == int((h[(h.optimizer == r.optimizer) & (h.seed == r.seed) & (h.precision == "float64")
                                    & (h.quantity == "grad_norm")].value > E.FLOAT32_NORM_LIMIT).sum())
    assert E.precision_pair("depth2", TINY.name)["pairs"].equals(t)
    with pytest.raises(ValueError, match="rtol"):
        E.precision_pair("depth2", TINY.name, rtol=2)


def test_the_stable_search_chooses_on_seeds_disjoint_from_the_tested_ones(tiny):
    rates, tries = E.stable_search("depth2", TINY.name)
    search = E.training("depth2", TINY.name, lrs=dict(settings.get_setting("depth2").lrs),
                        seeds=TINY.sweep_seeds, smoothness=False)
    assert search.from_cache and not set(search.frames["runs"].seed) & set(TINY.seeds)
    tested = tries[tries.seeds == "tested"]
    assert set(tested.runs) == {len(TINY.seeds)}
    assert set(E.training("depth2", TINY.name, lrs="stable").frames["runs"].seed) == set(TINY.seeds)


def test_a_hessian_that_overflowed_gives_nan_not_an_error():
    """A deep model's Hessian can be non-finite on some evaluation batch: R_med is NaN there."""
    import pandas as pd
    runs = pd.DataFrame({"optimizer": ["sgdm", "adam"], "lr": [0.1, 0.1], "seed": [0, 0], "diverged": [False, False],
                         "diverged_step": [-1, -1]})
    H = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1) * torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    H[1, 0, 0] = float("inf")
    rows = pd.DataFrame(E._rows(runs, 10, H, "authors", 0, 100))
    good, bad = rows[rows.optimizer == "sgdm"], rows[rows.optimizer == "adam"]
    assert np.allclose(good.sort_values("method").value, [4.0 / 2.0, 4.0 / 2.0])
    assert bad.value.isna().all() and bad.lambda_max.isna().all()
