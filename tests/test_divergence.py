"""Divergence: a grid that reaches lr = 1e3 trains to the end, the runs that blow up are marked,
and nothing downstream (final losses, the best rate, the claims, the figures) averages them in
or does NaN arithmetic that warns. Every call runs under ``warnings.simplefilter("error")``.
"""
from __future__ import annotations

import math
import warnings
from contextlib import contextmanager

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lintf import book, claims, experiments, plots, store, summaries  # noqa: E402
from lintf.compute.data import Prompts  # noqa: E402
from lintf.compute.engine import train  # noqa: E402
from lintf.compute.model import Model  # noqa: E402
from lintf.compute.settings import Setting, get_scale  # noqa: E402

MODEL, PROMPTS = Model(L=2, d=3), Prompts(n=6, d=3)
GRID = {"sgdm": (0.01, 0.05, 1e3), "adam": (0.003, 0.01, 1e3)}
CONFIGS = [(o, lr) for o, lrs in GRID.items() for lr in lrs]
SEEDS = (0, 1, 2)
STEPS, B, EVAL_EVERY = 30, 32, 5
NAME = "tiny"


@contextmanager
def strict():
    """Every warning is an error (a RuntimeWarning from NaN arithmetic above all)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


class GridSetting(Setting):
    """A tiny Setting 1 whose learning-rate grid reaches 1e3."""

    def grid(self, optimizer: str, points: int = 10) -> tuple[float, ...]:
        return GRID[optimizer]


TINY = GridSetting(name=NAME, title="tiny Setting 1 with a grid up to lr 1e3", model=MODEL, prompts=PROMPTS,
                   lrs={"sgdm": 0.05, "adam": 0.01}, paper_lrs={"sgdm": 0.05, "adam": 0.01})


@pytest.fixture(scope="module")
def program():
    with strict():
        res = train(MODEL, PROMPTS, CONFIGS, SEEDS, steps=STEPS, batch_size=B, eval_every=EVAL_EVERY,
                    checkpoint_every=10, record_smoothness=True, device="cpu", progress=False)
    res.runs = res.runs.assign(setting=NAME)
    res.history = res.history.assign(setting=NAME)
    return res


def _run_rows(frame, r):
    return frame[(frame.optimizer == r.optimizer) & (frame.lr == r.lr) & (frame.seed == r.seed)]


def test_huge_rate_diverges_is_marked_and_frozen(program):
    runs, h = program.runs, program.history
    assert len(runs) == len(CONFIGS) * len(SEEDS)
    assert (runs.diverged == (runs.lr == 1e3)).all(), runs
    assert ((runs.diverged_step >= 0) == runs.diverged).all()
    assert runs.diverged_step.between(-1, STEPS - 1).all()
    for r in runs.itertuples():
        mine = _run_rows(h, r)
        if not r.diverged:
            assert np.isfinite(mine.value).all(), f"run {r.run} has non-finite records"
            continue
        for q in ("loss", "grad_norm", "smoothness"):
            v = mine[mine.quantity == q].sort_values("step")
            assert v[v.step < r.diverged_step].value.notna().all()
            assert v[v.step >= r.diverged_step].value.isna().all()
        ev = mine[mine.quantity == "eval_loss"]
        assert ev[ev.step > r.diverged_step].value.isna().all()
        # frozen at the last finite parameters: every later checkpoint is the same, and finite
        later = [s for s in sorted(program.checkpoints) if s > r.diverged_step]
        for k in program.checkpoints[later[0]]:
            first = program.checkpoints[later[0]][k][r.run]
            assert torch.isfinite(first).all()
            assert all(torch.equal(program.checkpoints[s][k][r.run], first) for s in later)


def _reference_final_loss(history, r, frac=0.1):
    """The plain definition: mean of the last ceil(frac * count) eval losses of one run."""
    v = list(_run_rows(history, r)[lambda f: f.quantity == "eval_loss"].sort_values("step").value)
    k = math.ceil(frac * len(v))
    return sum(v[-k:]) / k


def test_final_loss_leaves_diverged_runs_out(program):
    with strict():
        fl = summaries.final_loss(program.history, runs=program.runs)
    assert len(fl) == len(program.runs)
    merged = fl.merge(program.runs, on=["setting", "optimizer", "lr", "seed"], suffixes=("", "_run"))
    assert (merged.diverged == merged.diverged_run).all()
    assert merged[merged.diverged].final_loss.isna().all()
    for r in merged[~merged.diverged].itertuples():
        assert r.final_loss == pytest.approx(_reference_final_loss(program.history, r), rel=1e-12)


def _sweep(program):
    with strict():
        fl = summaries.final_loss(program.history, runs=program.runs)
    return fl[["setting", "optimizer", "lr", "seed", "final_loss", "diverged"]]


def _reference_best(sweep, optimizer):
    """Plain grid search: among rates where no seed diverged, the lowest mean over seeds."""
    means = {}
    for lr in GRID[optimizer]:
        rows = sweep[(sweep.optimizer == optimizer) & (sweep.lr == lr)]
        if not rows.diverged.any():
            means[lr] = sum(rows.final_loss) / len(rows)
    best = min(means, key=means.get)
    return best, means[best]


def test_best_lr_never_picks_a_diverged_rate(program):
    sweep = _sweep(program)
    with strict():
        best = summaries.best_lr(sweep).set_index("optimizer")
    for opt in GRID:
        lr, mean = _reference_best(sweep, opt)
        assert best.loc[opt, "best_lr"] == lr != 1e3
        assert best.loc[opt, "final_loss"] == pytest.approx(mean, rel=1e-12)
        assert best.loc[opt, "diverged_lrs"] == (1e3,)
        assert sorted(best.loc[opt, "diverged_runs"]) == [(1e3, s) for s in SEEDS]


def test_claim_means_leave_diverged_runs_out(program):
    sweep = _sweep(program)
    chosen = {(NAME, o): _reference_best(sweep, o)[0] for o in GRID}
    with strict():
        auto = claims.claim1(program.history, runs=program.runs)
        given = claims.claim1(program.history, lrs=chosen, runs=program.runs)
    assert auto.details["data"].log_gap.tolist() == given.details["data"].log_gap.tolist()
    # the claims compare each seed's own evaluation batch (the rates were chosen on the shared one)
    own = summaries.final_loss(program.history, "seed_eval_loss", runs=program.runs)

    def log_final(o, seed):
        r = own[(own.optimizer == o) & (own.lr == chosen[(NAME, o)]) & (own.seed == seed)].iloc[0]
        return math.log(r.final_loss)

    gaps = [log_final("sgdm", s) - log_final("adam", s) for s in SEEDS]
    assert given.details["data"].log_gap.mean() == pytest.approx(sum(gaps) / len(gaps), rel=1e-9)
    # 3 seeds cannot decide at 5% by the sign-flip rule: the part is untested, not a decision
    assert given.details["parts"].verdict.tolist() == ["untested"] and given.verdict == "inconclusive"


def test_a_seed_that_diverges_at_the_chosen_rate_is_left_out_of_the_mean(program):
    """One seed of Adam at its chosen rate made to diverge the way the engine records it."""
    sweep = _sweep(program)
    chosen = {(NAME, o): _reference_best(sweep, o)[0] for o in GRID}
    lost = 1
    h, runs = program.history.copy(), program.runs.copy()
    hit = (h.optimizer == "adam") & (h.lr == chosen[(NAME, "adam")]) & (h.seed == lost) & (h.step >= 12)
    h.loc[hit, "value"] = np.nan
    runs.loc[(runs.optimizer == "adam") & (runs.lr == chosen[(NAME, "adam")]) & (runs.seed == lost),
             ["diverged", "diverged_step"]] = [True, 12]
    with strict():
        v = claims.claim1(h, lrs=chosen, runs=runs)
        v4 = claims.claim4(h, lrs=chosen, runs=runs)
        v5 = claims.claim5(h, lrs=chosen, runs=runs)
    assert sorted(v.details["data"].seed) == [s for s in SEEDS if s != lost]
    full = summaries.final_loss(program.history, "seed_eval_loss", runs=program.runs)

    def log_final(o, seed):
        f = full[(full.optimizer == o) & (full.lr == chosen[(NAME, o)]) & (full.seed == seed)]
        return math.log(f.final_loss.iloc[0])

    gaps = [log_final("sgdm", s) - log_final("adam", s) for s in SEEDS if s != lost]
    assert v.details["data"].log_gap.mean() == pytest.approx(sum(gaps) / len(gaps), rel=1e-9)
    assert "diverged" in v.evidence
    assert sorted(v4.details["data"].seed) == [s for s in SEEDS if s != lost]
    assert sorted(v5.details["data"].seed) == [s for s in SEEDS if s != lost]


def test_claims_at_a_rate_where_every_run_diverged(program):
    """All SGDM runs at 1e3 diverged: the claims say so and stay untested, without NaN warnings."""
    lrs = {(NAME, "sgdm"): 1e3, (NAME, "adam"): 0.01}
    with strict():
        verdicts = [claims.claim1(program.history, lrs=lrs, runs=program.runs),
                    claims.claim4(program.history, lrs=lrs, runs=program.runs)]
    for v in verdicts:
        assert v.verdict == "inconclusive" and (v.details["parts"].verdict == "untested").all(), v.evidence
        assert math.isnan(v.statistic)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _drawn_values(ax):
    return np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.lines] or [np.array([])])


@pytest.mark.parametrize("quantity", ["eval_loss", "loss"])
def test_loss_curves_leave_diverged_runs_out(program, quantity):
    with strict():
        ax = plots.loss_curves(program.history, quantity=quantity)
        ax.figure.canvas.draw()
    assert np.isfinite(_drawn_values(ax)).all()
    notes = " ".join(t.get_text() for t in ax.texts)
    assert "diverged (faint, x: last finite value)" in notes and "lr 1000 3/3" in notes
    # the mean and band leave the diverged runs out; each is drawn faint up to its last finite record
    h = program.history
    bad = h[(h.quantity == quantity) & (h.lr == 1000)]
    finite = bad[np.isfinite(bad.value)]
    faint = [line for line in ax.lines if line.get_gid() == "diverged"]
    assert len(faint) == finite.groupby(["optimizer", "seed"]).ngroups > 0
    for line in faint:
        assert np.asarray(line.get_xdata(), dtype=float).max() < bad.step.max()


def test_lr_grid_plot_with_diverged_rates(program):
    sweep = _sweep(program)
    with strict():
        best = summaries.best_lr(sweep)
        ax = plots.lr_grid(sweep, chosen=best, published={"Table 2": {"sgdm": 0.01, "adam": 0.003}})
        ax.figure.canvas.draw()
    # lines in data coordinates carry losses; the diverged rates are marks on the panel's edge
    in_data = [line for line in ax.lines if line.get_transform() == ax.transData]
    assert in_data and all(np.isfinite(np.asarray(line.get_ydata(), dtype=float)).all() for line in in_data)
    assert all(1e3 not in np.asarray(line.get_xdata(), dtype=float) for line in in_data)


# -- the grid search of lintf.experiments, through the store --------------------------------
@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory):
    return store.ResultStore(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def sweep(sweep_store):
    with strict():
        res = experiments.lr_sweep(TINY, "ci", device="cpu", store=sweep_store, progress=False)
    assert not res.from_cache
    return res.frames["sweep"]


def test_lr_sweep_completes_and_marks_the_diverged(sweep):
    assert sorted(map(tuple, sweep[["optimizer", "lr"]].drop_duplicates().to_numpy().tolist())) == \
        sorted((o, lr) for o, lr in CONFIGS)
    assert (sweep.diverged == (sweep.lr == 1e3)).all(), sweep
    assert sweep[sweep.diverged].final_loss.isna().all()
    assert np.isfinite(sweep[~sweep.diverged].final_loss).all()


def test_lr_sweep_best_rate_and_figure(sweep):
    with strict():
        best = summaries.best_lr(sweep)
        ax = plots.lr_grid(sweep, chosen=best)
        ax.figure.canvas.draw()
    best = best.set_index("optimizer")
    for opt in GRID:
        lr, mean = _reference_best(sweep, opt)
        assert best.loc[opt, "best_lr"] == lr != 1e3
        assert best.loc[opt, "final_loss"] == pytest.approx(mean, rel=1e-12)


def test_learning_rates_from_the_grid_skip_diverged_rates(sweep, sweep_store):
    with strict():
        rates = experiments.learning_rates(TINY, "ci", lrs="grid", device="cpu", store=sweep_store, progress=False)
    assert rates == {opt: _reference_best(sweep, opt)[0] for opt in GRID}


def test_the_grid_s_choice_at_half_its_horizon_is_a_grid_of_half_the_horizon(sweep, sweep_store):
    """``final_loss_half`` is the final loss the same grid reaches in half the steps (the first
    half of a run is a run of half the length: same seeds, same batches)."""
    steps = get_scale("ci").sweep_steps
    with strict():
        short = experiments.lr_sweep(TINY, "ci", steps=steps // 2, device="cpu", store=sweep_store,
                                     progress=False).frames["sweep"]
    both = sweep.merge(short, on=["optimizer", "lr", "seed"], suffixes=("", "_short"))
    assert (both.diverged_half == both.diverged_short).all()
    ok = ~both.diverged_short
    assert np.allclose(both.final_loss_half[ok], both.final_loss_short[ok], rtol=1e-6)
    half, of_short = summaries.best_lr(sweep, at="half"), summaries.best_lr(short)
    assert half.best_lr.tolist() == of_short.best_lr.tolist()
    same, pairs = book.grid_settled(summaries.best_lr(sweep), half)
    assert pairs == len(GRID) and 0 <= same <= pairs
    with pytest.raises(ValueError, match="at"):
        summaries.best_lr(sweep, at="middle")


def test_a_skipped_step_is_not_a_divergence_in_the_final_loss():
    """A run of ``skip_nonfinite`` has NaN training loss at its skipped steps; the runs table
    (its ``skipped`` column) says it did not diverge, and the mean leaves the step out."""
    steps = np.arange(10)
    rows = []
    for seed, loss in ((0, np.linspace(1.0, 0.1, 10)), (1, np.linspace(1.0, 0.1, 10))):
        for t, v in zip(steps, loss):
            rows.append({"setting": "s", "optimizer": "adam", "lr": 0.1, "seed": seed, "step": t,
                         "quantity": "loss", "value": v})
    h = pd.DataFrame(rows)
    h.loc[(h.seed == 0) & (h.step == 9), "value"] = np.nan                 # seed 0 skipped its last step
    h.loc[(h.seed == 1) & (h.step >= 8), "value"] = np.nan                 # seed 1 diverged at step 8
    runs = pd.DataFrame({"setting": "s", "optimizer": "adam", "lr": 0.1, "seed": [0, 1],
                         "diverged": [False, True], "skipped": [1, 0]})
    out = summaries.final_loss(h, quantity="loss", frac=0.2, runs=runs).set_index("seed")
    assert not out.diverged[0] and out.final_loss[0] == pytest.approx(0.2)
    assert out.diverged[1] and math.isnan(out.final_loss[1])
    old = summaries.final_loss(h, quantity="loss", frac=0.2, runs=runs.drop(columns="skipped")).set_index("seed")
    assert old.diverged.all()                                 # without the column: any NaN is a divergence
