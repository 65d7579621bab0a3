"""The plan from declarations: each experiment function of lintf.compute.experiments declares
its store kind, size and what it needs next to itself; the claims declare what they read in the
registry, the figures in lintf.book.reads. These tests keep the declarations true: against the
functions' own store writes, against what each claim's inputs read, and against the plan of
the tree before them."""
import dataclasses

import pytest

import lintf.book as B
import lintf.compute.experiments as E
import lintf.plan as P
from lintf.book import reads as R
from lintf.book import registry
from lintf.compute.settings import FIGURE_EXTRAS, GROUPS, SETTINGS, get_scale, get_setting, group, members
from lintf.compute.store import ResultStore


def test_every_planned_function_is_declared_and_every_declaration_planned():
    used = {e.function for sc in ("ci", "cpu", "paper") for e in P.plan(sc)}
    assert used == set(E.DECLARED)
    for name, d in E.DECLARED.items():
        assert callable(getattr(E, name)) and d.function == name and d.unit in E.UNITS


def test_resolve_drops_defaults_and_what_the_scale_gives_anyway():
    sc, st = get_scale("cpu"), get_setting("setting1")
    d = E.DECLARED["training"]
    assert d.resolve(st, sc, {"lrs": "default", "steps": sc.steps_for(st)}) == {}
    assert d.resolve(st, sc, {"steps": 2000}) == {"steps": 2000}
    assert E.DECLARED["table_conditioning"].resolve(st, sc, {"eval_batch": "batches"}) == {"eval_batch": "large"}
    with pytest.raises(ValueError, match="no argument 'nope'"):
        d.resolve(st, sc, {"nope": 1})


def test_sizes_follow_the_scale():
    """A declared size against the count written out by hand (reference)."""
    sc = get_scale("cpu")
    st = get_setting("setting2")
    assert E.DECLARED["training"].size(st, sc) == 2 * len(sc.seeds) * sc.steps
    assert E.DECLARED["lr_sweep"].size(st, sc) == 2 * sc.grid_points * len(sc.sweep_seeds) * sc.sweep_steps
    depth8 = get_setting("depth8")
    assert E.DECLARED["conditioning"].size(depth8, sc, eval_batch="authors", at="table") == \
        2 * len(sc.seeds_for(depth8)) * len(sc.table_steps)
    big = dataclasses.replace(sc, hessian_max_params=10)
    assert E.DECLARED["conditioning"].size(depth8, big, eval_batch="authors", at="table") == 0


def test_groups_are_data_on_the_settings():
    assert set(GROUPS) == {g for s in SETTINGS.values() for g, _ in s.groups}
    assert B.BASE == members("base") == ("setting1", "setting2", "setting3")
    assert group("depths") == {2: "depth2", 4: "depth4", 6: "depth6", 8: "depth8"}
    assert group("tails") == {"gaussian": "setting1", "sphere": "sphere", "gamma": "gamma"}
    assert B.NOISE == B.BASE + B.TAILS + B.DEPTHS
    with pytest.raises(ValueError, match="group"):
        group("nope")
    assert P.twin("gamma") == "setting3"              # groups and names aside, the same experiment


def test_figure_extras_left_to_paper_leave_the_plan():
    cpu, paper = get_scale("cpu"), get_scale("paper")
    assert set(paper.figure_extras) == set(FIGURE_EXTRAS)
    names = {e.name for e in P.plan(cpu)}
    assert not [n for n in names if n.startswith("precision_pair/")]
    assert not [n for n in names if n.startswith("conditioning/depth") and "/table" not in n]
    assert R.depth_hessians_at(cpu) == "table" and R.depth_hessians_at(paper) == "checkpoints"
    with pytest.raises(ValueError, match="figure_extras"):
        dataclasses.replace(cpu, figure_extras=("nope",))


@pytest.mark.slow
def test_claims_read_exactly_what_they_declare(ci_store, monkeypatch):
    """Each claim's inputs (and each alternative's own), run on the computed ci store, read the
    store entries of the experiments its ``reads`` declares, and nothing else."""
    monkeypatch.setenv("LINTF_RESULTS", str(ci_store))
    sc, store = get_scale("ci"), ResultStore(ci_store)
    ctx = B.Context(sc, cached_only=True, progress=False)
    for claim in registry.REGISTRY.values():
        for inputs, reads in [(claim.inputs, claim.reads)] + [(a.inputs, a.reads) for a in claim.alternatives
                                                             if a.inputs is not None]:
            with E.touched() as seen:
                inputs(ctx)
            b = P._Builder(sc)
            names = [b.add(f, s, kw, ("scorecard",)) for f, s, kw in reads(sc)]
            declared = {entry for n in names for entry in P.entries(b.items[n], sc, store=store)}
            assert set(seen.entries) == declared, claim.number


@pytest.mark.slow
def test_each_declared_kind_is_what_the_function_writes(ci_store):
    sc, store = get_scale("ci"), ResultStore(ci_store)
    for exp in P.plan(sc):
        assert P.entries(exp, sc, store=store)[-1][0] == exp.kind, exp.name
