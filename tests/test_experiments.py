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
import lintf.compute.experiments as E
import lintf.compute.optim
from lintf import measure, settings
from lintf.compute.data import authors_prompts
from lintf.compute.engine import TrainResult
from lintf.compute.store import ResultStore

TINY = dataclasses.replace(
    settings.SCALES["ci"], name="tiny", steps=20, seeds=(0, 1), batch_size=50, eval_every=10, checkpoint_every=10,
    hessian_steps=(0, 10, 20), extra_hessian_steps=(0, 10), table_steps=(10, 20), table_seeds=(0, 1, 2),
    table_horizon=20, eval_size=30, eval_batches=2, eval_large=90, curve_sizes=(30, 60), curve_chunks=4,
    noise_batches=12, noise_batch_size=30, noise_big_batch=120, noise_seeds=(0, 1), sweep_steps=10,
    grid_points=2, variant_grid_points=2, depth_grid=(0.5, 1.0), depth_steps=20, extra_steps=20, large_steps=10,
    ablation_steps=20, ablation_sweep_steps=10, ablation_factors=(0.5, 1.0))


@pytest.fixture()
def tiny(monkeypatch, tmp_path):
    monkeypatch.setitem(settings.SCALES, "tiny", TINY)
    monkeypatch.setenv("LINTF_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("LINTF_PROGRESS", "0")
    return ResultStore(tmp_path / "results")


def _table_checkpoints(setting):
    trained = E.table_training(setting, "tiny")
    return trained.frames["runs"], TrainResult.checkpoints_from_tensors(trained.tensors)


def test_large_is_the_mean_of_its_chunks_and_batches_are_its_first(tiny):
    large = E.table_conditioning("setting1", "tiny", eval_batch="large").frames["conditioning"]
    batches = E.table_conditioning("setting1", "tiny", eval_batch="batches").frames["conditioning"]
    assert set(large.eval_batch) == {"large"} and set(large.eval_size) == {90} and set(large.batch) == {0}
    assert set(batches.eval_batch) == {"batches"} and set(batches.batch) == {0, 1} and set(batches.eval_size) == {30}
    runs, ckpt = _table_checkpoints("setting1")
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
    runs, ckpt = _table_checkpoints("setting2")
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
    the other stays; it chooses on the search seeds, disjoint from the tested ones, which then
    train at the chosen rates (the same store entry as training at those rates)."""
    depth = dataclasses.replace(settings.get_setting("depth2"), lrs={"sgdm": 1e100, "adam": 0.01})
    monkeypatch.setitem(settings.SETTINGS, "depth2", depth)
    rates, tries = E.stable_search("depth2", "tiny")
    # (1e100: float64, the depths' precision, computes the loss of a rate of 1e6 at L = 2)
    # every SGDM rate of the grid diverges: it keeps the smallest; Adam trains at its first rate
    assert rates == {"sgdm": 1e100 * 0.5, "adam": 0.01}
    search, tested = tries[tries.seeds == "search"], tries[tries.seeds == "tested"]
    assert search[search.optimizer == "sgdm"].lr.tolist() == [1e100, 5e99]
    assert (search[search.optimizer == "sgdm"].diverged == search[search.optimizer == "sgdm"].runs).all()
    assert search[search.optimizer == "adam"].diverged.tolist() == [0]
    assert set(search.runs) == {len(TINY.sweep_seeds)} and set(tested.runs) == {len(TINY.seeds)}
    assert dict(zip(tested.optimizer, tested.lr)) == rates
    assert E.learning_rates("depth2", "tiny", lrs="stable") == rates
    chosen = E.training("depth2", "tiny", lrs="stable")
    assert sorted(set(chosen.frames["runs"].seed)) == sorted(TINY.seeds)
    again = E.training("depth2", "tiny", lrs=rates)
    assert again.from_cache and again.key == chosen.key
    tried = E.training("depth2", "tiny", lrs={"sgdm": 1e100, "adam": 0.01}, seeds=TINY.sweep_seeds, smoothness=False)
    assert tried.from_cache and not set(tried.frames["runs"].seed) & set(TINY.seeds)
    # a search on seeds the runs are tested on is refused
    with pytest.raises(ValueError, match="disjoint"):
        E.stable_search("depth2", "tiny", seeds=[0, TINY.sweep_seeds[0]])


def test_scorecard_shows_the_chapters_verdicts(tiny):
    ctx = B.context("tiny", progress=False)
    chapters = {k: B.verdict(k, ctx) for k in (1, 7)}
    stored, missing = B.scorecard(ctx)
    # claims 4 and 5 read claim 1's runs, which are stored now
    for k, v in {**chapters, 4: B.verdict(4, ctx), 5: B.verdict(5, ctx)}.items():
        assert stored[k].verdict == v.verdict and stored[k].evidence == v.evidence
    assert {m["claim"] for m in missing} == {2, 3, 6, 8}
    assert all(m["chapter"] == B.CLAIM_CHAPTER[m["claim"]] for m in missing)


def test_the_backend_is_part_of_the_key(tiny, monkeypatch):
    """LINTF_BACKEND=autograd recomputes (never serves the hand-written path's numbers) and
    agrees with it to float32 rounding."""
    monkeypatch.delenv("LINTF_BACKEND", raising=False)
    a = E.training("setting1", "tiny")
    monkeypatch.setenv("LINTF_BACKEND", "autograd")
    b = E.training("setting1", "tiny")
    assert a.key != b.key and not b.from_cache
    ha, hb = (r.frames["history"].query("quantity == 'loss'").value.to_numpy() for r in (a, b))
    assert np.allclose(ha, hb, rtol=1e-3)


def test_table_runs_reuse_the_long_runs_of_their_seeds(tiny, monkeypatch):
    """The table's seeds that the loss runs train are those runs cut at the table's horizon:
    the same records and checkpoints as a program of that horizon (to float32 rounding), in
    the same order, and the other seeds are trained once."""
    cut = dataclasses.replace(TINY, name="cut", table_horizon=10, table_steps=(10,), hessian_steps=(0, 10, 20))
    monkeypatch.setitem(settings.SCALES, "cut", cut)
    joined = E.table_training("setting1", "cut")
    direct = E.training("setting1", "cut", seeds=cut.table_seeds, steps=10, smoothness=False)
    a, b = joined.frames["runs"], direct.frames["runs"]
    assert a[["optimizer", "seed", "run"]].values.tolist() == b[["optimizer", "seed", "run"]].values.tolist()
    assert (a.diverged == b.diverged).all()
    assert sorted(joined.tensors) == sorted(direct.tensors)
    for k in direct.tensors:
        assert torch.allclose(joined.tensors[k], direct.tensors[k], rtol=1e-4, atol=1e-6), k
    ha, hb = joined.frames["history"], direct.frames["history"]
    assert ha[["optimizer", "seed", "step", "quantity"]].values.tolist() == \
        hb[["optimizer", "seed", "step", "quantity"]].values.tolist()
    assert np.allclose(ha.value, hb.value, rtol=1e-4, atol=1e-7)
    long = E.training("setting1", "cut")
    assert long.from_cache and set(long.frames["runs"].seed) == set(cut.seeds)


# -- the ablation chapter's experiment ----------------------------------------------------
def test_ablation_runs_every_optimizer_at_its_best_grid_rate(tiny):
    chosen = ("sgdm", "adam", "signsgd", "normsgd")
    runs, best = E.ablation("setting1", "tiny", optimizers=chosen)
    r = runs.frames["runs"]
    assert list(r.optimizer.unique()) == list(chosen) and set(r.seed) == set(TINY.seeds)
    grid = dict(E.ablation_grid("setting1", "tiny", chosen))
    for o in chosen:
        rate = float(best.set_index("optimizer").loc[o, "best_lr"])
        assert set(r[r.optimizer == o].lr) == {rate}
        base = settings.get_setting("setting1").lrs[E.ABLATION_BASE[o]]
        assert rate in {base * f for f in TINY.ablation_factors}
    assert len(grid) == len(chosen)                       # one entry per optimizer name (dict of pairs)
    h = runs.frames["history"]
    assert {"loss", "eval_loss", "smoothness"} <= set(h.quantity)
    again, _ = E.ablation("setting1", "tiny", optimizers=chosen)
    assert again.from_cache


@pytest.mark.parametrize("kwargs, word", [
    (dict(optimizers=("sgdm", "lion")), "optimizers"), (dict(optimizers=()), "optimizers"),
    (dict(optimizers=("adam", "adam")), "distinct"), (dict(clip="yes"), "clip"), (dict(steps=0), "steps"),
])
def test_ablation_rejects_bad_input_before_compute(tiny, kwargs, word):
    with pytest.raises((ValueError, TypeError), match=word):
        E.ablation("setting1", "tiny", **kwargs)
    assert not list(tiny.root.glob("**/*.parquet"))


@pytest.mark.parametrize("kwargs, word", [
    (dict(optimizers=["sgdm", "signsgd"]), "adam"), (dict(optimizers="sgdm"), "optimizers"),
    (dict(optimizers=["sgdm", "adam", "lion"]), "optimizers"), (dict(clip=1), "clip"),
])
def test_chapter_options(kwargs, word):
    from lintf import chapter
    with pytest.raises((ValueError, TypeError), match=word):
        chapter.ablation_options(**kwargs)
    assert chapter.ablation_options() == (lintf.optim.ALL_OPTIMIZERS, True)


def test_scorecard_rows_beyond_the_paper_are_the_chapters(tiny):
    ctx = B.context("tiny", progress=False)
    stored, missing = B.beyond(ctx)
    assert not stored and [m["claim"] for m in missing] == list(claims_hypotheses())
    chapter = {k: B.hypothesis(k, ctx) for k in claims_hypotheses()}
    stored, missing = B.beyond(ctx)
    assert not missing
    for k, v in chapter.items():
        assert stored[k].verdict == v.verdict and stored[k].evidence == v.evidence
    card = B.card(stored, claims_hypotheses(), B.HYPOTHESIS_CHAPTER)
    assert card["claim"].tolist() == list(claims_hypotheses()) and set(card["chapter"]) == {"ablation"}


def claims_hypotheses():
    from lintf.book.claims import HYPOTHESES
    return HYPOTHESES


def test_the_books_display_tables(tiny):
    from lintf.book.claims import HYPOTHESES, VERDICT_COLORS
    from lintf.book.plots import LABELS
    from lintf.book.summaries import best_lr
    ctx = B.context("tiny", progress=False)
    data = B.ablation_runs(ctx)
    tables = B.ablation_tables(data)
    assert set(tables["rates"].optimizer) == {LABELS[o] for o in lintf.optim.ALL_OPTIMIZERS}
    assert (tables["rates"]["rates tried"] == 2).all() and "share of the gap" in tables["closed"]
    assert tables["gap"]["share"].tolist() == tables["closed"]["share of the gap"].tolist()
    curves = B.batch_curves(ctx, ["setting1"])
    pd.testing.assert_frame_equal(curves, E.batch_size_curve("setting1", "tiny").frames["curve"])
    verdicts = {k: B.hypothesis(k, ctx) for k in HYPOTHESES}
    parts = B.parts(verdicts, untested=True)
    assert len(parts) == sum(len(v.details["parts"]) for v in verdicts.values())
    assert (B.parts(verdicts)["verdict"] != "untested").all()  # the forest draws tested parts only
    assert list(pd.unique(parts["claim"])) == list(HYPOTHESES)
    assert B.parts({}).empty
    counts = B.counts(verdicts, [{"claim": "A9"}])
    assert sum(counts.values()) == len(verdicts) + 1 and counts["not computed"] == 1
    assert counts["holds"] == sum(v.verdict == "holds" for v in verdicts.values())
    html = B.styled_card(verdicts, HYPOTHESES, B.HYPOTHESIS_CHAPTER, "hypothesis").to_html()
    assert ">hypothesis<" in html and VERDICT_COLORS[verdicts["A1"].verdict].lower() in html.lower()

    rates = B.rate_table(best_lr(B.sweeps(ctx, ["setting1"])))
    assert sorted(rates.optimizer) == ["Adam", "SGDM"]
    paper = settings.get_setting("setting1").paper_lrs
    assert dict(zip(rates.optimizer, rates["paper Table 2"])) == {"SGDM": paper["sgdm"], "Adam": paper["adam"]}
    search = {"depth2": E.stable_search("depth2", "tiny")}
    stable = B.stable_table(search, with_hessians=["depth2"])
    assert stable["L"].tolist() == [2, 2] and set(stable["exact Hessians"]) == {"yes"}
    assert stable["rate used"].tolist() == [f"{search['depth2'][0][o]:g}" for o in ("sgdm", "adam")]
    noise = B.noise(ctx, ["setting1"])
    tails = B.tail_table(noise["noise"], noise["spectrum"])
    assert tails["title"].tolist() == [settings.get_setting("setting1").title] and "excess over the null" in tails


def test_rmed_medians_are_medians_over_seeds():
    cond = pd.DataFrame([dict(setting="setting1", step=10, optimizer=o, method=m, seed=s, value=v * (2 if m == "eig" else 1))
                         for o in ("sgdm", "adam") for m in ("diag", "eig") for s, v in enumerate((1.0, 3.0, 10.0))])
    rmed = B.rmed_medians(cond)
    assert rmed["R_med (diagonal)"].tolist() == [3.0, 3.0] and rmed["R_med (eigenvalues)"].tolist() == [6.0, 6.0]
    assert set(rmed.optimizer) == {"SGDM", "Adam"}


def test_batch_spread_and_eig_health_against_plain_loops():
    from lintf import summaries
    rng = np.random.default_rng(0)
    curve = pd.DataFrame([dict(setting="setting1", optimizer=o, size=z, batch=b, method=m, value=float(rng.uniform(1, 9)))
                          for o in ("sgdm", "adam") for z in (30, 60) for b in range(3) for m in ("diag", "eig")])
    spread = summaries.batch_spread(curve).set_index(["setting", "optimizer", "size"])["max/min"]
    for (s, o, z), v in spread.items():
        vals = curve[(curve.optimizer == o) & (curve["size"] == z) & (curve.method == "diag")].value
        assert v == pytest.approx(vals.max() / vals.min())
    cond = pd.DataFrame({"setting": ["setting1"] * 3 + ["setting2"], "method": ["eig", "eig", "diag", "eig"],
                         "lambda_max": [1.0, -2.0, np.nan, 4.0], "lambda_median": [1e-12, 0.5, np.nan, 1.0]})
    health = summaries.eig_health(cond).set_index("setting")
    assert health.loc["setting1", "hessians"] == 2 and health.loc["setting1", "tiny"] == 1
    assert health.loc["setting2", "relative_median"] == pytest.approx(0.25)


def test_scale_table_reads_the_scales():
    table = B.scale_table("cpu")
    assert list(table.columns) == ["paper", "cpu (this build)", "ci"]
    for name, column in zip(settings.SCALES, table.columns):
        sc = settings.SCALES[name]
        assert table.loc["iterations: Settings 1-3 (gamma = Setting 3)", column] == sc.steps_for(
            settings.get_setting("setting1"))
        assert table.loc["seeds", column] == ", ".join(map(str, sc.seeds))
    for name, column in zip(settings.SCALES, table.columns):
        sc = settings.SCALES[name]
        large = table.loc["iterations: L=8, d=20, n=60", column]
        assert large == ("left to scale paper" if "large" in sc.skip_variants
                         else sc.steps_for(settings.get_setting("large")))
