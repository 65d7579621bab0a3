"""Plots: each figure kind from small synthetic tidy frames; labels, scales, lines, and
the plotted curves against a plain geometric-mean reference."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lintf import claims as C  # noqa: E402
from lintf.book import summaries as SU  # noqa: E402
from lintf import plots as P  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def history(settings=("s1",), lrs=None, steps=60, seeds=range(3), diverge=()):
    rng = np.random.default_rng(0)
    rows = []
    t = np.arange(steps)
    for setting in settings:
        for opt in ("sgdm", "adam"):
            for lr in (lrs or {"sgdm": [0.02], "adam": [0.01]})[opt]:
                for s in seeds:
                    loss = np.exp(-t / (20 if opt == "adam" else 40) + 0.1 * rng.standard_normal(steps))
                    sm = np.exp(rng.standard_normal(steps)) * (3 if opt == "sgdm" else 1)
                    sm[::17] *= -1  # directional smoothness can be negative
                    if (setting, opt, s) in diverge:
                        loss[30:] = np.nan
                    run = dict(setting=setting, optimizer=opt, lr=lr, seed=s)
                    for q, v, every in (("loss", loss, 1), ("eval_loss", loss, 5),
                                        ("grad_norm", np.exp(rng.standard_normal(steps)), 1),
                                        ("smoothness", sm, 1)):
                        rows.append(pd.DataFrame({**run, "step": t[::every], "quantity": q, "value": v[::every]}))
    return pd.concat(rows, ignore_index=True)


def conditioning(settings=("s1",)):
    rng = np.random.default_rng(1)
    rows = [dict(setting=st, optimizer=o, lr=0.01, seed=s, step=step, method=m,
                 value=float(np.exp(rng.standard_normal()) * (5 if o == "sgdm" else 1)))
            for st in settings for o in ("sgdm", "adam") for s in range(3) for step in range(0, 1001, 250)
            for m in ("eig", "diag")]
    return pd.DataFrame(rows)


def sweep():
    rows = []
    for opt in ("sgdm", "adam"):
        for lr in (1e-3, 1e-2, 1e-1, 1.0):
            for s in range(3):
                div = lr == 1.0 or (lr == 0.1 and opt == "adam" and s == 0)
                rows.append(dict(setting="s1", optimizer=opt, lr=lr, seed=s,
                                 final_loss=np.nan if div else 0.1 / (1 + lr * 10) + 0.01 * s, diverged=div))
    return pd.DataFrame(rows)


def test_palette_and_labels():
    from lintf.compute.optim import ALL_OPTIMIZERS
    assert set(P.PALETTE) == set(P.LABELS) == set(ALL_OPTIMIZERS)
    assert len(set(P.PALETTE.values())) == len(P.PALETTE)           # one colour each
    with P.style():
        assert matplotlib.rcParams["figure.dpi"] == 110
    assert P.RC["figure.figsize"][0] <= 8


def test_loss_curves_geometric_mean_matches_reference():
    h = history()
    ax = P.loss_curves(h)
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "iteration"
    assert "evaluation" in ax.get_ylabel()
    lines = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    assert [ln.get_label() for ln in lines] == ["SGDM", "Adam"]
    assert len(ax.collections) == 2  # one band per optimizer
    ref = (h[(h.optimizer == "adam") & (h.quantity == "eval_loss")]
           .assign(lv=lambda d: np.log(d.value)).groupby("step").lv.mean().pipe(np.exp))
    np.testing.assert_allclose(lines[1].get_xdata(), ref.index)
    np.testing.assert_allclose(lines[1].get_ydata(), ref.to_numpy(), rtol=1e-12)
    assert lines[0].get_color() == P.PALETTE["sgdm"]


def test_loss_curves_leaves_out_diverged_and_styles_lrs():
    h = history(diverge={("s1", "adam", 0)}, lrs={"sgdm": [0.02], "adam": [0.01, 0.1]})
    ax = P.loss_curves(h, quantity="loss", rolling=5, band="none")
    means = [ln for ln in ax.get_lines() if ln.get_gid() != "diverged"]
    assert [ln.get_label() for ln in means] == ["SGDM", "Adam, lr 0.01", "Adam, lr 0.1"]
    assert len(ax.collections) == 0
    assert means[1].get_linestyle() != means[2].get_linestyle()
    faint = [ln for ln in ax.get_lines() if ln.get_gid() == "diverged"]       # the diverged seed at each Adam rate
    assert len(faint) == 2 and all(ln.get_color() == P.PALETTE["adam"] for ln in faint)
    assert [ln.get_linestyle() for ln in faint] == [ln.get_linestyle() for ln in means[1:]]
    assert any("diverged" in t.get_text() for t in ax.texts)
    assert "training" in ax.get_ylabel()


def test_diverged_note_sits_outside_the_axes_below_the_x_label():
    h = history(diverge={("s1", "adam", 0)}, lrs={"sgdm": [0.02], "adam": [0.01, 0.1]})
    with P.style():
        ax = P.loss_curves(h, quantity="loss", rolling=5, band="none")
        fig = ax.figure
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        note = next(t for t in ax.texts if "diverged" in t.get_text())
        box, axes_box = note.get_window_extent(renderer), ax.get_window_extent(renderer)
        label_box = ax.xaxis.label.get_window_extent(renderer)
        assert box.y1 <= axes_box.y0 and box.y1 <= label_box.y0 + 1     # off the data, under the x label
        assert fig.bbox.contains(box.x0, box.y0)                         # and still inside the figure
    plt.close(fig)


def test_loss_curves_rejects_bad_input():
    h = history(settings=("s1", "s2"))
    with pytest.raises(ValueError, match="several settings"):
        P.loss_curves(h)
    with pytest.raises(ValueError, match="quantity"):
        P.loss_curves(h, setting="s1", quantity="grad_norm")
    with pytest.raises(ValueError, match="setting"):
        P.loss_curves(h, setting="s9")
    with pytest.raises(TypeError, match="ax"):
        P.loss_curves(h, setting="s1", ax="left")


def test_noise_histogram_with_qq_inset():
    x = np.random.default_rng(0).standard_t(3, 3000)
    ax = P.noise_histogram(x, bins=50)
    assert len(ax.patches) == 50 and ax.get_ylabel() == "density"
    assert len(ax.child_axes) == 1
    inset = ax.child_axes[0]
    pts, diag = inset.get_lines()
    np.testing.assert_allclose(pts.get_ydata(), np.sort(x))
    assert "Gaussian" in inset.get_xlabel()
    frame = pd.DataFrame({"setting": "s", "seed": 0, "sample": range(3000), "value": x})
    assert len(P.noise_histogram(frame, qq=False).child_axes) == 0
    with pytest.raises(ValueError, match="finite"):
        P.noise_histogram([1.0])


def test_rmed_curves():
    c = conditioning()
    ax = P.rmed_curves(c, "eig")
    assert ax.get_yscale() == "log" and "lambda" in ax.get_ylabel()
    assert [ln.get_label() for ln in ax.get_lines()] == ["SGDM", "Adam"]
    assert len(ax.get_lines()[0].get_xdata()) == 5
    assert "H_{ii}" in P.rmed_curves(c, "diag").get_ylabel()
    with pytest.raises(ValueError, match="method"):
        P.rmed_curves(c, "svd")


def test_smoothness_curves():
    ax = P.smoothness_curves(history(), window=10)
    assert ax.get_yscale() == "log"
    assert all("10-step rolling mean" in ln.get_label() for ln in ax.get_lines())
    assert len(ax.get_lines()) == 2
    with pytest.raises(ValueError, match="smoothness"):
        P.smoothness_curves(history().query("quantity != 'smoothness'"))


def test_smoothness_vs_gradnorm():
    h = history()
    ax = P.smoothness_vs_gradnorm(h, max_step=40)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    (pts,) = ax.collections
    n_pos = ((h.quantity == "smoothness") & (h.optimizer == "adam") & (h.step < 40) & (h.value > 0)).sum()
    assert len(pts.get_offsets()) == n_pos
    assert pts.get_array().max() < 40 and pts.norm.vmax == 40
    assert len(ax.figure.axes) == 2  # the colour bar
    h2 = history(lrs={"sgdm": [0.02], "adam": [0.01, 0.1]})
    with pytest.raises(ValueError, match="lr="):
        P.smoothness_vs_gradnorm(h2)
    assert P.smoothness_vs_gradnorm(h2, lr=0.1, colorbar=False).figure.axes.__len__() == 1


def test_lr_grid():
    sw = sweep()
    ax = P.lr_grid(sw, chosen=SU.best_lr(sw), published={"Table 2": {"sgdm": 0.01, "adam": 0.1},
                                                       "README": {"sgdm": 0.1, "adam": 0.001}})
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "learning rate"
    mean_lines = [ln for ln in ax.get_lines() if ln.get_label() in ("SGDM", "Adam")]
    assert [len(ln.get_xdata()) for ln in mean_lines] == [3, 2]  # adam 0.1 had a diverged seed
    crosses = [ln for ln in ax.get_lines() if ln.get_marker() == "x"]
    assert [len(ln.get_xdata()) for ln in crosses] == [1, 2]
    stars = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert [ln.get_xdata()[0] for ln in stars] == [0.1, 0.01]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Table 2 rate" in legend and "README rate" in legend and "diverged (any seed)" in legend
    ax = P.lr_grid(sw, published={"sgdm": 0.01, "adam": 0.1})
    assert "published rate" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_grid_of_settings_shares_one_legend():
    h = history(settings=("s1", "s2", "s3", "s4"), diverge={("s2", "adam", 1)})
    fig, axes = P.grid_of_settings(P.loss_curves, h, titles={"s1": "Setting 1"})
    assert axes.shape == (2, 3)
    live = [a for a in axes.flat if a.figure is fig and a in fig.axes]
    assert len(live) == 4
    assert [a.get_title() for a in live] == ["Setting 1", "s2", "s3", "s4"]
    assert all(a.get_legend() is None for a in live)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["SGDM", "Adam"]
    assert live[1].get_ylabel() == "" and live[0].get_ylabel() != ""


def test_grid_of_settings_for_other_kinds():
    fig, axes = P.grid_of_settings(P.rmed_curves, conditioning(("a", "b")), method="diag", ncols=2)
    assert axes.shape == (1, 2)
    noise = pd.DataFrame({"setting": np.repeat(["a", "b"], 500), "seed": 0, "sample": np.tile(range(500), 2),
                          "value": np.random.default_rng(0).standard_normal(1000)})
    fig, axes = P.grid_of_settings(P.noise_histogram, noise, bins=20)
    assert [len(a.patches) for a in axes.flat] == [20, 20]
    fig, axes = P.grid_of_settings(P.smoothness_vs_gradnorm, history(settings=("a", "b")))
    assert len(fig.axes) == 3  # two panels and one shared colour bar
    with pytest.raises(ValueError, match="settings"):
        P.grid_of_settings(P.loss_curves, history(), settings=["zz"])


def test_figures_render_to_png(tmp_path):
    fig, _ = P.grid_of_settings(P.loss_curves, history(settings=("a", "b", "c")))
    fig.savefig(tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_rmed_vs_batch_size_draws_medians_per_size():
    rows = [{"setting": "s1", "optimizer": o, "lr": 0.01, "seed": 0, "step": 750, "size": size, "batch": b,
             "method": "diag", "value": float(10 * (1 + b) / size ** 0.1)}
            for o in ("sgdm", "adam") for size, n in ((1000, 4), (2000, 2), (4000, 1)) for b in range(n)]
    ax = P.rmed_vs_batch_size(pd.DataFrame(rows), "diag")
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    lines = [ln for ln in ax.get_lines() if ln.get_label().startswith(("SGDM", "Adam"))]
    assert len(lines) == 2 and list(lines[0].get_xdata()) == [1000, 2000, 4000]
    med = pd.DataFrame(rows).query("optimizer == 'sgdm'").groupby("size")["value"].median().to_numpy()
    np.testing.assert_allclose(lines[0].get_ydata(), med)


def test_ratio_by_protocol_marks_the_geometric_means():
    rng = np.random.default_rng(1)
    ratios = pd.DataFrame([{"setting": "s1", "eval_batch": pr, "step": st, "seed": s, "ratio": float(np.exp(rng.normal()))}
                           for pr in ("authors", "large") for st in (750, 1250) for s in range(6)])
    ax = P.ratio_by_protocol(ratios)
    assert ax.get_yscale() == "log" and len(ax.collections) >= 4
    assert [t.get_text() for t in ax.get_xticklabels()] == ["iteration 750", "iteration 1250"]


def test_forest_puts_the_claimed_side_right_and_colours_by_verdict():
    parts = pd.DataFrame([
        {"claim": 1, "part": "a", "statistic": 2.0, "low": 1.0, "high": 3.0, "threshold": 0.0, "side": "greater",
         "verdict": "holds"},
        {"claim": 6, "part": "b", "statistic": -2.0, "low": -3.0, "high": -1.0, "threshold": 0.0, "side": "less",
         "verdict": "holds"},
        {"claim": 2, "part": "c", "statistic": 0.1, "low": -np.inf, "high": np.inf, "threshold": 0.0,
         "side": "greater", "verdict": "inconclusive"}])
    ax = P.forest(parts)
    dots = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert [d.get_xdata()[0] for d in dots] == [2.0, 2.0, 0.1]         # a "less" claim is mirrored
    assert dots[0].get_color() == P.VERDICT_COLORS["holds"]


def test_lr_grid_marks_the_settings_own_published_rates():
    sw = sweep().assign(setting="setting1")
    ax = P.lr_grid(sw, published="setting")
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "default (README) rate" in legend and "Table 2 rate" in legend
    with pytest.raises(ValueError, match="published"):
        P.lr_grid(sw, published="paper")


def test_panels_draws_titled_panels_and_removes_the_rest():
    h = history()
    fig, axes = P.panels([("Loss", lambda ax: P.loss_curves(h, ax=ax)),
                          ("Smoothness", lambda ax: P.smoothness_curves(h, ax=ax)),
                          ("Again", lambda ax: P.loss_curves(h, ax=ax))], ncols=2)
    assert axes.shape == (2, 2) and len(fig.axes) >= 3
    assert [a.get_title() for a in axes.flat[:3]] == ["Loss", "Smoothness", "Again"]
    assert axes.flat[3] not in fig.axes
    with pytest.raises(ValueError, match="draws"):
        P.panels([])


@pytest.mark.parametrize("rows", [3, 12, 40])
def test_forest_sizes_the_figure_to_its_rows_so_labels_stay_legible(rows):
    parts = pd.DataFrame([{"claim": 1 + i % 8, "part": f"part {i}", "statistic": 0.5, "low": 0.1, "high": 0.9,
                           "threshold": 0.0, "side": "greater", "verdict": "holds"} for i in range(rows)])
    ax = P.forest(parts)
    labels = ax.get_yticklabels()
    assert len(labels) == rows and all(t.get_fontsize() >= 9 for t in labels)
    # every row gets at least 1.5 times its label's height (points), however many rows there are
    height_pt = ax.get_position().height * ax.figure.get_figheight() * 72
    assert height_pt / rows >= 1.5 * min(t.get_fontsize() for t in labels)
    plt.close(ax.figure)
