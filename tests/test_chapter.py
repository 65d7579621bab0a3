"""Captions name the paper's figure, the settings, the scale, the seeds and the parametrization."""
from lintf import chapter


def test_caption_names_what_the_figure_shows():
    p = chapter.parameters(scale="ci", device="cpu", seeds=[0, 2])
    text = chapter.caption("Fig 9.", ("sphere", "gamma"), p, what="Loss.", steps=60)
    for part in ("**Fig 9.**", "Loss.", "Spherical covariates", "gamma", "Scale `ci`, 60 iterations",
                 "seeds [0, 2] (mean and band over seeds)", "parametrization `block`", "clipping at 0.1"):
        assert part in text, (part, text)


def test_caption_summary_can_say_otherwise_or_nothing():
    p = chapter.parameters(scale="ci", device="cpu")
    pooled = chapter.caption("Fig 3.", "setting1", p, summary="pooled over seeds")
    assert "(pooled over seeds)" in pooled and "mean and band" not in pooled
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
