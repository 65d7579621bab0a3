"""lintf.experiments and lintf.book on a tiny scale: the evaluation protocols of R_med against
plain references (the large batch is the mean of its chunks, the batches are its first chunks,
the authors' batch is theirs), bad parameters rejected before any compute, and the scorecard
reading exactly what the chapters decided."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

import lintf.book as B
import lintf.experiments as E
from lintf import measure, settings
from lintf.data import authors_prompts
from lintf.engine import TrainResult
from lintf.store import ResultStore

TINY = dataclasses.replace(
    settings.SCALES["ci"], name="tiny", steps=20, seeds=(0, 1), batch_size=50, eval_every=10, checkpoint_every=10,
    hessian_steps=(0, 10, 20), extra_hessian_steps=(0, 10), table_steps=(10, 20), table_seeds=(0, 1, 2),
    table_horizon=20, eval_size=30, eval_batches=2, eval_large=90, curve_sizes=(30, 60), curve_chunks=4,
    noise_batches=12, noise_batch_size=30, noise_big_batch=120, noise_seeds=(0, 1), sweep_steps=10,
    grid_points=2, variant_grid_points=2, depth_grid=(0.5, 1.0), depth_steps=20, extra_steps=20, large_steps=10)


@pytest.fixture()
def tiny(monkeypatch, tmp_path):
    monkeypatch.setitem(settings.SCALES, "tiny", TINY)
    monkeypatch.setenv("LINTF_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("LINTF_PROGRESS", "0")
    return ResultStore(tmp_path / "results")


def _checkpoints(setting, seeds, steps):
    trained = E.training(setting, "tiny", seeds=seeds, steps=steps)
    return trained.frames["runs"], TrainResult.checkpoints_from_tensors(trained.tensors)


def test_large_is_the_mean_of_its_chunks_and_batches_are_its_first(tiny):
    large = E.table_conditioning("setting1", "tiny", eval_batch="large").frames["conditioning"]
    batches = E.table_conditioning("setting1", "tiny", eval_batch="batches").frames["conditioning"]
    assert set(large.eval_batch) == {"large"} and set(large.eval_size) == {90} and set(large.batch) == {0}
    assert set(batches.eval_batch) == {"batches"} and set(batches.batch) == {0, 1} and set(batches.eval_size) == {30}
    runs, ckpt = _checkpoints("setting1", TINY.table_seeds, TINY.table_horizon)
    model = settings.get_setting("setting1").model
    for r, run in runs.iterrows():
        Z, y = E.eval_chunks("setting1", "tiny", int(run.seed), 3)
        params = {k: v[r].double() for k, v in ckpt[10].items()}
        H = [measure.hessian(model, params, Z[k], y[k]) for k in range(3)]             # plain: one by one
        whole = measure.hessian(model, params, Z.reshape(-1, *Z.shape[2:]), y.reshape(-1))
        torch.testing.assert_close(sum(H) / 3, whole, rtol=1e-10, atol=1e-12)        # the loss is a mean
        for method in ("eig", "diag"):
            got = large[(large.seed == run.seed) & (large.optimizer == run.optimizer) & (large.step == 10)
                        & (large.method == method)].value.item()
            assert got == pytest.approx(float(measure.robust_condition(whole, method)), rel=1e-8)
            for k in range(2):
                got = batches[(batches.seed == run.seed) & (batches.optimizer == run.optimizer) & (batches.step == 10)
                              & (batches.method == method) & (batches.batch == k)].value.item()
                assert got == pytest.approx(float(measure.robust_condition(H[k], method)), rel=1e-8)


def test_chunks_are_per_seed_independent_and_deterministic(tiny):
    a0, _ = E.eval_chunks("setting1", "tiny", 0, 3)
    b0, _ = E.eval_chunks("setting1", "tiny", 0, 2)
    a1, _ = E.eval_chunks("setting1", "tiny", 1, 3)
    c0, _ = E.eval_chunks("setting1", "tiny", 0, 2, stream=1)
    assert torch.equal(a0[:2], b0)                       # the first chunks do not depend on the count
    assert not torch.equal(a0, a1) and not torch.equal(b0, c0)
    assert a0.dtype == torch.float64 and a0.shape == (3, 30, 6, 21)


def test_authors_protocol_uses_the_authors_batch(tiny):
    cond = E.table_conditioning("setting2", "tiny", eval_batch="authors").frames["conditioning"]
    runs, ckpt = _checkpoints("setting2", TINY.table_seeds, TINY.table_horizon)
    Z, y = authors_prompts(30, 5, 5)
    model = settings.get_setting("setting2").model
    H = measure.hessian(model, {k: v.double() for k, v in ckpt[20].items()}, Z.double(), y.double())
    want = measure.robust_condition(H, "diag")
    for r, run in runs.iterrows():
        got = cond[(cond.seed == run.seed) & (cond.optimizer == run.optimizer) & (cond.step == 20)
                   & (cond.method == "diag")].value.item()
        assert got == pytest.approx(float(want[r]), rel=1e-8)
    assert set(cond.eval_size) == {30}


def test_batch_size_curve_groups_chunks(tiny):
    curve = E.batch_size_curve("setting1", "tiny").frames["curve"]
    assert curve.groupby("size").batch.nunique().to_dict() == {30: 4, 60: 2}
    assert set(curve.optimizer) == {"sgdm", "adam"} and set(curve.seed) == {0} and set(curve.step) == {10}


@pytest.mark.parametrize("call, match", [
    (lambda: E.conditioning("setting1", "tiny", eval_batch="huge"), "eval_batch"),
    (lambda: E.table_conditioning("setting1", "tiny", eval_batch=3), "eval_batch"),
    (lambda: E.conditioning("nonlinear", "tiny", eval_batch="authors"), "eval_batch='authors'"),
    (lambda: E.conditioning("setting1", "tiny", at="sometimes"), "at"),
    (lambda: dataclasses.replace(TINY, eval_size=0), "eval_size"),
    (lambda: dataclasses.replace(TINY, eval_batches=0), "eval_batches"),
    (lambda: dataclasses.replace(TINY, eval_large=100), "eval_large"),
    (lambda: dataclasses.replace(TINY, eval_batches=4), "eval_batches"),
    (lambda: dataclasses.replace(TINY, eval_protocol="one"), "eval_protocol"),
])
def test_bad_protocols_fail_before_any_compute(tiny, call, match):
    with pytest.raises(ValueError, match=match):
        call()
    assert not list((tiny.root).glob("**/*.parquet"))          # nothing was trained or stored


def test_stable_search_takes_the_largest_rate_without_divergence(tiny, monkeypatch):
    """With a rate that diverges every run, the search moves that optimizer down the grid and
    the other stays; the runs at the paper's rates are the first try."""
    depth = dataclasses.replace(settings.get_setting("depth2"), lrs={"sgdm": 1e6, "adam": 0.01})
    monkeypatch.setitem(settings.SETTINGS, "depth2", depth)
    rates, tries = E.stable_search("depth2", "tiny")
    # every SGDM rate of the grid diverges: it keeps the smallest; Adam trains at its first rate
    assert rates == {"sgdm": 1e6 * 0.5, "adam": 0.01}
    assert tries[tries.optimizer == "sgdm"].lr.tolist() == [1e6, 5e5]
    assert (tries[tries.optimizer == "sgdm"].diverged == tries[tries.optimizer == "sgdm"].runs).all()
    assert tries[tries.optimizer == "adam"].diverged.tolist() == [0]
    assert E.learning_rates("depth2", "tiny", lrs="stable") == rates


def test_scorecard_shows_the_chapters_verdicts(tiny):
    ctx = B.context("tiny", progress=False)
    chapters = {k: B.verdict(k, ctx) for k in (1, 7)}
    stored, missing = B.scorecard(ctx)
    # claims 4 and 5 read claim 1's runs, which are stored now
    for k, v in {**chapters, 4: B.verdict(4, ctx), 5: B.verdict(5, ctx)}.items():
        assert stored[k].verdict == v.verdict and stored[k].evidence == v.evidence
    assert {m["claim"] for m in missing} == {2, 3, 6, 8}
    assert all(m["chapter"] == B.CLAIM_CHAPTER[m["claim"]] for m in missing)
