"""Captions name the paper's figure, the settings, the scale, the seeds and the parametrization."""
from lintf import chapter


def test_caption_names_what_the_figure_shows():
    p = chapter.parameters(scale="ci", device="cpu", seeds=[0, 2])
    text = chapter.caption("Fig 9.", ("sphere", "gamma"), p, what="Loss.", steps=60)
    for part in ("**Fig 9.**", "Loss.", "Spherical covariates", "gamma", "Scale `ci`, 60 iterations",
                 "seeds [0, 2] (geometric mean over seeds, band from the lowest to the highest seed)", "parametrization `block`", "clipping at 0.1"):
        assert part in text, (part, text)


def test_caption_summary_can_say_otherwise_or_nothing():
    p = chapter.parameters(scale="ci", device="cpu")
    pooled = chapter.caption("Fig 3.", "setting1", p, summary="pooled over seeds")
    assert "(pooled over seeds)" in pooled and "band" not in pooled
    plain = chapter.caption("Fig 16.", "setting1", p, summary=None)
    assert f"seeds {list(p.scale.seeds)}, parametrization" in plain


def test_show_formats_floats_and_hides_the_index(monkeypatch):
    import IPython.display
    import pandas as pd
    seen = []
    monkeypatch.setattr(IPython.display, "display", seen.append)
    chapter.show(pd.DataFrame({"a": [1.23456789, float("nan")], "b": ["x", "y"]}), digits=3)
    html = seen[0].to_html()
    assert "1.23" in html and "1.2346" not in html and "—" in html and "row_heading" not in html


def test_rerun_line_names_the_chapter():
    line = chapter.rerun("depth", "-p scale ci")
    assert "papermill book/depth.ipynb out.ipynb --cwd book -p scale ci" in line


# ---------------------------------------------------------------- glue


def _glued(monkeypatch):
    """Capture what lintf.chapter.glue hands to myst-nb: {name: value}."""
    import myst_nb
    seen = {}

    def fake(name, value, display=True):
        assert display is False
        seen[name] = value
    monkeypatch.setattr(myst_nb, "glue", fake)
    return seen


def _verdict(statistic=0.7, what="mean log(SGDM/Adam final loss)"):
    import pandas as pd

    from lintf.book.claims import Verdict
    parts = pd.DataFrame({"part": ["setting1", "heavy-tailed: setting3"], "statistic": [statistic, float("nan")],
                          "low": [0.2, -float("inf")], "high": [1.1, float("inf")], "n": [6, 3],
                          "verdict": ["holds", "inconclusive"], "what": [what, what]})
    return Verdict(1, "Adam reaches a lower loss.", "inconclusive", statistic, (0.2, 1.1), "line", {"parts": parts})


def test_key_is_a_lower_case_identifier():
    assert chapter.key("claim2", "heavy-tailed: setting1") == "claim2_heavy_tailed_setting1"
    assert chapter.key("share", "setting1", "adam_b2_0.999") == "share_setting1_adam_b2_0_999"
    assert chapter.key("gap widens with depth L=[2, 4, 6, 8]") == "gap_widens_with_depth_l_2_4_6_8"


def test_glue_hands_plain_python_numbers_to_myst_nb(monkeypatch):
    import numpy as np
    import pytest
    import torch
    seen = _glued(monkeypatch)
    chapter.glue("a", np.float64(0.5))
    chapter.glue("b", torch.tensor(3))
    chapter.glue("c", np.int64(7))
    chapter.glue("d", "holds")
    chapter.glue("e", True)
    assert seen == {"a": 0.5, "b": 3, "c": 7, "d": "holds", "e": "True"}
    assert [type(seen[k]) for k in "abcd"] == [float, int, int, str]
    # a plain float's repr is what myst-nb's format spec parses; numpy's would be "np.float64(0.5)"
    from myst_nb.core.variables import format_plain_text
    assert format_plain_text(repr(seen["a"]), ".2f") == "0.50"
    with pytest.raises(ValueError, match="name must be"):
        chapter.glue("Bad key", 1.0)


def test_glue_verdict_glues_every_part_and_counts(monkeypatch):
    import math
    seen = _glued(monkeypatch)
    keys = chapter.glue_verdict(_verdict())
    assert set(keys) == set(seen)
    assert seen["claim1"] == "inconclusive" and seen["claim1_stat"] == 0.7
    assert (seen["claim1_low"], seen["claim1_high"]) == (0.2, 1.1)
    assert seen["claim1_setting1"] == 0.7 and seen["claim1_setting1_n"] == 6
    assert seen["claim1_setting1_verdict"] == "holds"
    assert math.isclose(seen["claim1_setting1_exp"], math.exp(0.7))
    assert math.isnan(seen["claim1_heavy_tailed_setting3"]) and seen["claim1_heavy_tailed_setting3_low"] == -math.inf
    assert math.isnan(seen["claim1_heavy_tailed_setting3_exp"])  # glued all the same: the prose never misses a key
    assert (seen["claim1_parts"], seen["claim1_parts_holds"], seen["claim1_parts_inconclusive"],
            seen["claim1_parts_does_not_hold"]) == (2, 1, 1, 0)


def test_glue_verdict_keys_come_from_the_part_ids_and_untested_parts_read_well(monkeypatch):
    """The per-part keys are ``name_<id>``: rewording a part's label changes no key; an untested
    part's ``_text`` says so with its reason instead of printing "nan"."""
    import math

    from lintf.book.claims import Verdict
    seen = _glued(monkeypatch)
    v = _verdict()
    parts = v.details["parts"].assign(id=["setting1", "heavy_setting3"], extra=["", "3 seed(s), fewer than 5"],
                                      verdict=["holds", "untested"], low=[0.2, math.nan], high=[1.1, math.nan])
    for label in ("gap widens with depth L=[2, 4, 6, 8]", "gap widens with depth L=[2, 8]"):
        seen.clear()
        w = Verdict(6, v.text, "inconclusive", 0.7, (0.2, 1.1), "line",
                    {"parts": parts.assign(part=[label, "untested one"])})
        keys = chapter.glue_verdict(w)
        assert {"claim6_setting1", "claim6_setting1_low", "claim6_setting1_text", "claim6_heavy_setting3_text"} \
            <= set(keys)
        assert not any("depth" in k for k in keys)
        assert seen["claim6_setting1_text"] == "0.70 [0.20, 1.10] (holds)"
        assert seen["claim6_heavy_setting3_text"] == "untested: 3 seed(s), fewer than 5"
    assert chapter.part_text(parts.iloc[0].copy(), digits=1) == "0.7 [0.2, 1.1] (holds)"
    assert chapter.part_text(parts.assign(high=math.inf).iloc[0]) == "0.70 [0.20, inf] (holds)"


def test_glue_verdict_exp_only_for_log_ratios_and_never_overflows(monkeypatch):
    seen = _glued(monkeypatch)
    chapter.glue_verdict(_verdict(what="excess kurtosis over the Gaussian null"), "k")
    assert "k_setting1_exp" not in seen
    chapter.glue_verdict(_verdict(statistic=1e4), "big")
    assert seen["big_setting1_exp"] == float("inf")


def test_show_verdict_displays_and_glues(monkeypatch):
    import IPython.display
    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    seen = _glued(monkeypatch)
    v = _verdict()
    chapter.show_verdict(v, "nl_claim1")
    assert shown == [v] and seen["nl_claim1"] == "inconclusive"


def test_records_counts_the_window_in_recorded_values():
    assert chapter.records(1250, 20) == 2          # 50 steps, one record every 20
    assert chapter.records(200, 1) == 10           # a twentieth of a short run
    assert chapter.records(200, 1, window=3) == 3 and chapter.records(10, 20) == 1


def test_choices_and_horizon():
    import pytest
    assert chapter.choices("methods", "eig", ("eig", "diag")) == ["eig"]
    with pytest.raises(ValueError, match=r"methods\[1\].*'diag'"):
        chapter.choices("methods", ["eig", "trace"], ("eig", "diag"))
    p = chapter.parameters(scale="ci", device="cpu")
    assert chapter.horizon(p, "setting1") == p.scale.steps_for(__import__("lintf").get_setting("setting1"))
    assert chapter.horizon(chapter.parameters(scale="ci", device="cpu", steps=70), ["setting1", "depth2"]) == 70


def test_rates_used_names_each_setting_and_optimizer():
    import pandas as pd
    runs = pd.DataFrame({"setting": ["setting1", "setting1", "gamma"], "optimizer": ["sgdm", "adam", "adam"],
                         "lr": [0.02, 0.005, 0.01]})
    assert chapter.rates_used(runs) == "Setting 1: gaussian, n=20: SGDM 0.02, Adam 0.005; " + \
        f"{__import__('lintf').get_setting('gamma').title}: Adam 0.01"


def test_caption_seeds_and_notes_can_be_the_figure_s():
    p = chapter.parameters(scale="ci", device="cpu")
    text = chapter.caption("Table.", "setting1", p, seeds=p.scale.table_seeds, summary="one dot each")
    assert f"seeds {list(p.scale.table_seeds)} (one dot each)" in text
    assert "Adam lr 0.02" in text                                   # Setting 1's note on its rate
    assert "Adam lr" not in chapter.caption("Fig 3.", "setting1", p, notes=False)


def test_a_chapter_s_seeds_are_those_its_settings_train():
    # at cpu the depth and covariate settings train comparison_seeds (8), the figure-only
    # variants variant_seeds (3), the rest the scale's seeds (6): the line a chapter prints
    # must be what lintf.experiments trains (scale.seeds_for when no seeds are given)
    from lintf.compute.settings import SETTINGS, get_scale
    sc = get_scale("cpu")
    assert len({sc.seeds, sc.comparison_seeds, sc.variant_seeds}) == 3       # the test needs them distinct
    depth = chapter.parameters(scale="cpu", device="cpu", settings=["depth2", "depth8"])
    assert depth.seed_list == sc.comparison_seeds != sc.seeds
    assert chapter.seeds_text(depth) == f"seeds {list(sc.comparison_seeds)}"
    base = chapter.parameters(scale="cpu", device="cpu", settings=["setting1", "setting3"])
    assert base.seed_list == sc.seeds and chapter.seeds_text(base) == f"seeds {list(sc.seeds)}"
    assert chapter.parameters(scale="cpu", device="cpu").seed_list == sc.seeds    # no settings
    for name, s in SETTINGS.items():
        assert depth.seeds_for(name) == depth.seeds_for(s) == sc.seeds_for(s)
    # settings of different roles: every seed any of them trains, and the text says which
    mixed = chapter.parameters(scale="cpu", device="cpu", settings=["setting1", "sphere"])
    assert mixed.seed_list == tuple(sorted(set(sc.seeds) | set(sc.comparison_seeds)))
    assert chapter.seeds_text(mixed, ["sphere", "gamma"]) == \
        f"seeds {list(sc.comparison_seeds)} for sphere; {list(sc.seeds)} for gamma"
    every = chapter.seeds_text(mixed, list(SETTINGS))
    assert every == chapter.seeds_text(chapter.parameters(scale="cpu", device="cpu"))   # None: every setting
    for seeds in {sc.seeds_for(s) for s in SETTINGS.values()}:
        names = [n for n, s in SETTINGS.items() if sc.seeds_for(s) == seeds]
        assert f"{list(seeds)} for {', '.join(names)}" in every
    # seeds the reader gives are every setting's
    given = chapter.parameters(scale="cpu", device="cpu", seeds=[3, 4], settings=["depth2"])
    assert given.seed_list == (3, 4) and chapter.seeds_text(given, ["sphere", "gamma"]) == "seeds [3, 4]"


def test_seeds_text_rejects_no_setting_or_an_unknown_one():
    import pytest
    p = chapter.parameters(scale="ci", device="cpu")
    with pytest.raises(ValueError, match="settings"):
        chapter.seeds_text(p, [])
    with pytest.raises(ValueError, match="setting.*setting1"):
        chapter.seeds_text(p, ["setting9"])


def test_caption_names_each_setting_s_own_seeds():
    p = chapter.parameters(scale="cpu", device="cpu")
    sc = p.scale
    text = chapter.caption("Fig 9.", ["sphere", "gamma"], p)
    assert f"seeds {list(sc.comparison_seeds)} for sphere; {list(sc.seeds)} for gamma" in text
    assert f"seeds {list(sc.comparison_seeds)} (" in chapter.caption("Fig 12.", ["depth2", "depth4"], p)
    assert f"seeds {list(sc.seeds)} (" in chapter.caption("Fig 2.", ["setting1"], p)


def test_caption_says_which_setting_each_note_is_about():
    from lintf.compute.settings import get_setting
    p = chapter.parameters(scale="ci", device="cpu")
    s1, s2, sphere = (get_setting(n) for n in ("setting1", "setting2", "sphere"))
    both = chapter.caption("Fig 2.", ["setting1", "setting2", "setting3"], p)
    assert f"{s1.title} — {s1.note} {s2.title} — {s2.note}" in both     # in the figure's order
    assert chapter.caption("Fig 9.", ["sphere", "gamma"], p).count(sphere.note) == 1
    assert f"{sphere.title} — {sphere.note}" in chapter.caption("Fig 9.", ["sphere", "gamma"], p)
    alone = chapter.caption("Fig 5.", "setting1", p)                  # one setting: the note alone
    assert s1.note in alone and f"— {s1.note}" not in alone
    assert s1.note not in chapter.caption("Fig 2.", ["setting1", "setting2"], p, notes=False)


def test_part_text_never_writes_a_negative_zero():
    import pandas as pd
    row = pd.Series({"statistic": 3.24, "low": -0.001, "high": 5.91, "verdict": "inconclusive", "extra": ""})
    assert chapter.part_text(row) == "3.24 [0.00, 5.91] (inconclusive)"
    assert chapter.fixed(-0.004) == "0.00" and chapter.fixed(-0.006) == "-0.01" and chapter.fixed(float("-inf")) == "-inf"
    assert chapter.fixed(-0.04, digits=1) == "0.0" and chapter.fixed(0.0) == "0.00"


def test_a_grid_or_noise_figure_carries_no_rate_note(monkeypatch):
    """A learning-rate grid shows every rate and the noise trains nothing: neither caption
    repeats a setting's note on its default rates (Setting 1: Adam lr 0.02 ...)."""
    import IPython.display
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lintf.compute.settings import get_setting
    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    monkeypatch.setattr(plt, "show", lambda: plt.close("all"))
    monkeypatch.setattr("lintf.book.plots.grid_of_settings", lambda plot, frame, **kw: None)
    p = chapter.parameters(scale="ci", device="cpu")
    note = get_setting("setting1").note
    assert note

    def lr_grid(*a, **k): ...

    def loss_curves(*a, **k): ...
    for plot, expect in ((lr_grid, False), (loss_curves, True)):
        shown.clear()
        chapter.figure(plot, None, ["setting1"], p, "Fig.")
        assert (note in shown[-1].data) is expect, (plot.__name__, shown[-1].data)


def test_show_parts_writes_its_notes_as_prose(monkeypatch):
    import IPython.display
    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    md = chapter.notes_markdown(["large: 2 diverged run(s) excluded (sgdm seed 1, sgdm seed 3)",
                                 "untested: separate_qk (1 run(s) left)",
                                 "large/SGDM vs large/Adam: seed(s) [1, 3] unpaired or diverged, excluded",
                                 "x: seed(s) [4] unpaired"])
    assert "seeds 1 and 3 unpaired" in md and "seed 4 unpaired" in md and "[" not in md
    assert md.startswith("**Notes.**") and "(s)" not in md and "sgdm" not in md
    assert "- large: 2 diverged runs excluded (SGDM seed 1, SGDM seed 3)" in md and "1 run left" in md
    import dataclasses
    v = dataclasses.replace(_verdict(), evidence="setting1: fine\nlarge: 1 diverged run(s) excluded (adam seed 0)")
    chapter.show_parts(v)
    assert "large: 1 diverged run excluded (Adam seed 0)" in shown[-1].data
