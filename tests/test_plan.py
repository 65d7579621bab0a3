"""lintf.plan: the declared plan of the book's experiments, setting roles, read-only stores,
provenance, and the same frames in-process and on a Dask cluster."""
import dataclasses
import datetime
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

import lintf.book as B
import lintf.compute.experiments as E
import lintf.plan as P
from lintf import claims
from lintf.compute.engine import precision_flags
from lintf.compute.settings import SCALES, SETTINGS, get_scale, get_setting
from lintf.compute.store import ResultStore, provenance_sentence


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("LINTF_RESULTS", str(tmp_path / "store"))
    monkeypatch.delenv("LINTF_READ_ONLY", raising=False)
    return ResultStore(tmp_path / "store")


@pytest.mark.parametrize("scale", list(SCALES))
def test_plan_is_ordered_unique_and_closed(scale):
    exps = P.plan(scale)
    names = [e.name for e in exps]
    assert len(names) == len(set(names))
    seen = set()
    for e in exps:
        assert set(e.after) <= seen, f"{e.name} comes before what it needs"
        assert e.chapters and set(e.chapters) <= set(P.CHAPTERS)
        assert list(e.chapters) == sorted(e.chapters, key=P.CHAPTERS.index)
        assert e.unit in P.UNITS and e.iterations >= 0 and e.kind in ("training", "sweep", "conditioning", "curve",
                                                                      "noise", "precision")
        seen.add(e.name)
    # the same call is planned once, whichever chapters read it
    calls = [(e.function, e.setting, repr(sorted(e.kwargs.items()))) for e in exps]
    assert len(calls) == len(set(calls))


def test_plan_follows_the_books_constants():
    exps = P.plan("ci")
    by = {e.name: e for e in exps}
    twins = {P.twin(s) for s in B.NOISE}                      # gamma is Setting 3: measured once
    assert P.twin("gamma") == "setting3" and len(twins) == len(B.NOISE) - 1
    assert {e.setting for e in exps if e.function == "noise_at_seeds"} == twins | {"nonlinear"}
    assert "training/setting3" in by and "training/gamma" not in by
    assert "heavy_tails" in by["training/setting3"].chapters
    for s in B.BASE:
        assert {"adaptive_vs_sgd", "smoothness", "scorecard"} <= set(by[f"training/{s}"].chapters)
        # the "batches" and "large" protocols are one computation, planned once
        assert {f"table_conditioning/{s}/authors", f"table_conditioning/{s}/large"} <= set(by)
        assert f"table_conditioning/{s}/batches" not in by
    for s in B.DEPTHS:
        assert by[f"training/{s}/stable"].after == (f"stable/{s}",)
    assert {e.setting for e in exps if e.function == "ablation"} == set(claims.ABLATION_SETTINGS)
    # a scale that leaves out a variant plans none of it
    short = dataclasses.replace(get_scale("cpu"), skip_variants=("large",))
    assert not [e for e in P.plan(short) if e.setting == "large"]
    assert [e for e in exps if e.setting == "large"] and not [e for e in P.plan("cpu") if e.setting == "large"]


def test_plan_only_keeps_what_the_chapters_need():
    exps = P.plan("ci", only=["depth"])
    names = {e.name for e in exps}
    assert all("depth" in e.chapters or any(e.name in x.after for x in exps) for e in exps)
    assert all(set(e.after) <= names for e in exps)
    assert P.plan("ci", only="smoothness") == P.plan("ci", only=["smoothness"])
    with pytest.raises(ValueError, match="only"):
        P.plan("ci", only=["nope"])


def test_compute_command_names_a_chapter_that_computes_it():
    assert P.compute_command("conditioning", "setting2", "ci") == "python -m lintf compute --scale ci --only conditioning"
    assert P.compute_command("training", "depth4", "ci").endswith("--only conditioning")
    assert P.compute_command("training", "setting1", "paper").endswith("--scale paper --only adaptive_vs_sgd")


# -- setting roles ----------------------------------------------------------------------------
def _old_steps_for(sc, s):
    """The name tests the roles replaced (reference)."""
    if s.name in ("setting1", "setting2", "setting3", "gamma"):
        return sc.steps
    if s.name.startswith("depth"):
        return sc.depth_steps or sc.steps
    if s.name == "large":
        return sc.large_steps or sc.steps
    if s.name in ("softmax", "separate_qk", "nonlinear"):
        return sc.variant_steps or sc.extra_steps or sc.steps
    return sc.extra_steps or sc.steps


@pytest.mark.parametrize("scale", list(SCALES))
def test_roles_give_the_old_horizons_seeds_and_grids(scale):
    sc = get_scale(scale)
    for s in SETTINGS.values():
        assert sc.steps_for(s) == _old_steps_for(sc, s), s.name
        if s.name in ("separate_qk", "large") and sc.variant_seeds:
            assert sc.seeds_for(s) == sc.variant_seeds
        points = sc.variant_grid_points if s.name in ("softmax", "separate_qk", "large") else sc.grid_points
        assert len(E.sweep_rates(s, sc)) == len(E.sweep_rates(s, sc, points=points))
    assert E.VARIANTS == ("softmax", "separate_qk", "large")


def test_role_is_checked():
    with pytest.raises(ValueError, match="role"):
        dataclasses.replace(get_setting("setting1"), role="main")
    with pytest.raises(ValueError, match="horizon"):
        dataclasses.replace(get_setting("setting1"), horizon="forever")


# -- read-only stores, touched entries, provenance ---------------------------------------------
def test_read_only_names_the_experiment_and_the_command(store, monkeypatch):
    monkeypatch.setenv("LINTF_READ_ONLY", "1")
    with pytest.raises(E.MissingExperiment) as err:
        E.training("setting2", "ci", store=store, progress=False)
    text = str(err.value)
    assert "training" in text and "setting2" in text and "'ci'" in text
    assert "`python -m lintf compute --scale ci`" in text
    assert isinstance(err.value, LookupError) and not store.root.exists()


def test_touched_records_dependencies_and_provenance(store):
    sc = get_scale("ci")
    exp = next(e for e in P.plan(sc) if e.name == "training/softmax/grid")
    with E.touched() as seen:
        result = P.call(exp, sc, store=store, progress=False)
    assert [k for k, _ in seen.entries] == ["sweep", "training"]
    assert P.stored(exp, sc, store=store)
    assert P.entries(exp, sc, store=store) == seen.entries
    record = result.frames["history"].attrs["provenance"][0]
    assert record["scale"] == "ci" and record["device"] == "cpu" and record["host"] and record["torch"]
    assert record["kind"] == "training" and record["precision"] == {}
    sentence = provenance_sentence([record])
    created = datetime.datetime.fromisoformat(record["created"]).strftime("%Y-%m-%d %H:%M UTC")
    assert sentence == (f"Computed at scale ci on cpu ({record['host']}, {created}), lintf compute source "
                        f"{record['compute_hash'][:8]}, by lintf.compute.experiments.training.")
    merged = B.concat([result.frames["runs"], result.frames["runs"]])
    assert merged.attrs["provenance"] == [record]


def test_precision_flags_on_cpu_are_empty_and_keys_unchanged():
    assert precision_flags("cpu") == {} and precision_flags(torch.device("cpu")) == {}


# -- in-process and Dask give the same frames ----------------------------------------------------
def _frames(exps, sc, store):
    out = {}
    for e in exps:
        got = P.call(e, sc, store=store, progress=False, cached_only=True)
        results = got if isinstance(got, tuple) else (got,)
        for i, r in enumerate(results):
            frames = r.frames if hasattr(r, "frames") else (r if isinstance(r, dict) else {"frame": r})
            for k, v in frames.items():
                if isinstance(v, pd.DataFrame):
                    out[(e.name, i, k)] = v
    return out


DASK_ENVIRON = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")


def test_in_process_and_dask_frames_are_identical(tmp_path, monkeypatch):
    from dask.distributed import Client, LocalCluster
    monkeypatch.delenv("LINTF_READ_ONLY", raising=False)
    sc = get_scale("ci")
    # training, float64 Hessians and a noise spectrum: the last two change with torch's thread count
    wanted = ("training/setting1", "table_training/setting1", "curve/setting1", "noise/setting1")
    exps = [e for e in P.plan(sc) if e.name in wanted]
    local, remote = ResultStore(tmp_path / "local"), ResultStore(tmp_path / "dask")
    lines = {"local": [], "dask": []}
    first = P.compute(sc, experiments=exps, store=local, progress=False, report=lines["local"].append)
    assert first["failed"] == [] and first["computed"] == len(wanted)
    for name in DASK_ENVIRON:                       # Dask's LocalCluster sets these in this process's
        monkeypatch.setenv(name, "")                # environment for its workers and leaves them: restored
        monkeypatch.delenv(name)                    # after the test (children of later tests inherit them)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": ":0"}) as cluster, \
            Client(cluster) as client:
        second = P.compute(sc, experiments=exps, store=remote, client=client, progress=False,
                           report=lines["dask"].append)
    assert second["failed"] == [] and second["computed"] == first["computed"]
    for where, got in (("in this process", lines["local"]), ("on 2 Dask workers", lines["dask"])):
        n = len(wanted)                                 # a start line, then one per finished experiment
        assert got[0] == f"lintf compute: {n} of {n} experiments to compute at scale ci {where} (0 stored)"
        assert [ln.split()[2] for ln in got[1:]] == [f"{i}/{n}" for i in range(1, n + 1)], got
        assert all(re.search(r"; [\d.]+ s so far, about .+ left$", ln) for ln in got[1:-1]), got
        assert got[-1].endswith(" so far"), got
    for out in (first, second):                     # each computed task's seconds: a clock, the task stream
        assert sorted(out["times"]) == sorted(wanted) and all(t > 0 for t in out["times"].values())
    a, b = _frames(exps, sc, local), _frames(exps, sc, remote)
    assert a.keys() == b.keys() and len(a) >= 6
    for k in a:
        pd.testing.assert_frame_equal(a[k].drop(columns="seconds", errors="ignore"),
                                      b[k].drop(columns="seconds", errors="ignore"), check_exact=True, obj=str(k))
    def files(root):                        # the stored bytes too (meta: the wall time of each program)
        return {q.relative_to(root): q.read_bytes() for q in root.glob("*/*.parquet") if q.name != "meta.parquet"}
    assert files(local.root) == files(remote.root)
    again = P.compute(sc, experiments=exps, store=local, progress=False)
    assert again["computed"] == 0 and again["reused"] == first["computed"] and again["times"] == {}


def test_caption_ends_with_the_provenance():
    import lintf.book.chapter as C
    p = C.parameters(scale="ci")
    record = {"kind": "sweep", "scale": "ci", "device": "cpu", "host": "box", "created": "2026-12-04T16:40:05+00:00",
              "compute_hash": "1a2b3c4d5e6f", "source_hash": "9f9f9f9f", "setting": "setting1"}
    later = {**record, "created": "2026-12-04T17:02:00+00:00", "kind": "training"}
    text = C.caption("Fig 2.", ["setting1"], p, what="Loss.", provenance=[record, later])
    assert text.endswith("Computed at scale ci on cpu (box, 2026-12-04 16:40 UTC to 2026-12-04 17:02 UTC), lintf "
                         "compute source 1a2b3c4d, by lintf.compute.experiments.lr_sweep, "
                         "lintf.compute.experiments.training.")
    frame = pd.DataFrame({"x": [1]})
    frame.attrs["provenance"] = [record]
    assert C.caption("Fig 2.", ["setting1"], p, provenance=frame).endswith("by lintf.compute.experiments.lr_sweep.")
    assert "Computed" not in C.caption("Fig 2.", ["setting1"], p)


def test_part_sizes():
    from lintf.pack import parse_size
    assert parse_size("4096") == 4096 and parse_size("64K") == 65536 and parse_size("2g") == 2 * 1024 ** 3
    for bad in ("", "1.5M", "12Q", "-5", "100"):
        with pytest.raises(ValueError, match="--part-size"):
            parse_size(bad)


def _book_extension():
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "book" / "_ext" / "lintf_book.py"
    spec = importlib.util.spec_from_file_location("lintf_book_ext", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_build_computes_on_every_core_of_a_cpu_and_in_one_process_on_a_gpu(monkeypatch):
    ext = _book_extension()
    assert ext.build_workers({}, cpus=2, cuda=False) == 2
    assert ext.build_workers({}, cpus=16, cuda=False) == 16
    assert ext.build_workers({}, cpus=1, cuda=False) == 1
    assert ext.build_workers({}, cpus=16, cuda=True) == 1
    assert ext.build_workers({"LINTF_BUILD_WORKERS": "0"}, cpus=2, cuda=False) == 0
    assert ext.build_workers({"LINTF_BUILD_WORKERS": "4"}, cpus=2, cuda=False) == 4
    for bad in ("-1", "two"):
        with pytest.raises(ValueError, match="LINTF_BUILD_WORKERS"):
            ext.build_workers({"LINTF_BUILD_WORKERS": bad})
    # the cores this process may use (a container's or taskset's limit), not the machine's
    if hasattr(os, "sched_getaffinity"):
        assert ext.available_cpus() == len(os.sched_getaffinity(0))
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
        assert ext.available_cpus() == 3 and ext.build_workers({}, cuda=False) == 3
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 5)
    assert ext.available_cpus() == 5
    # the command the build echoes is the one a reader types
    assert ext.shown(ext.compute_command(4)) == "python -m lintf compute --workers 4"
    assert ext.shown(ext.compute_command(1)) == "python -m lintf compute"


def test_the_build_encrypts_its_kernels(monkeypatch):
    """jupyter_client's transport encryption set to "auto" for the kernels the build starts, so
    that ipykernel does not log "Kernel is running over TCP without encryption" per chapter."""
    zmq = pytest.importorskip("zmq")
    manager = pytest.importorskip("jupyter_client.manager")
    trait = manager.KernelManager.class_traits().get("transport_encryption")
    if trait is None or not zmq.has("curve"):
        pytest.skip("this jupyter_client or pyzmq has no CurveZMQ transport encryption")
    monkeypatch.setattr(trait, "default_value", trait.default_value)      # restored after the test
    assert _book_extension().encrypt_kernels()
    assert manager.AsyncKernelManager().transport_encryption == "auto"


def test_durations_read_as_hours_minutes_seconds():
    cases = {None: "-", 0: "0.0 s", 4.24: "4.2 s", 38.4: "38 s", 59.6: "1 min 00 s", 252: "4 min 12 s", 3599.4: "59 min 59 s",
             7500: "2 h 05 min", 98932: "27 h 29 min"}
    assert {x: P.duration(x) for x in cases} == cases


def test_empty_experiments_say_why():
    ci, paper = get_scale("ci"), get_scale("paper")
    why = {e.name: P.counted_in(e, ci) for e in P.plan(ci)}
    assert why["training/depth2/stable"] == "counted in stable/depth2"          # its runs are the search's
    assert why["table_training/setting1"] == "counted in training/setting1"     # its seeds ran to the horizon
    assert why["conditioning/depth8/authors/table/stable"].startswith("no Hessians at scale ci")
    assert all((why[e.name] == "") == (e.iterations > 0) for e in P.plan(ci))
    assert {e.name for e in P.plan(paper) if P.counted_in(e, paper)} == \
        {f"training/depth{L}/stable" for L in (2, 4, 6, 8)}


def test_calibration_is_cached_per_machine_and_scale(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    sc = get_scale("ci")
    exps = [e for e in P.plan(sc) if e.name in ("training/setting1", "noise/setting1", "curve/setting1")]
    rates, measured = P.calibration(exps, sc, budget=0.5)
    assert measured is not None and P.calibration_path() == tmp_path / "lintf" / "calibration.json"
    assert all(P.estimate(e, rates) > 0 for e in exps if e.iterations)
    again, measured = P.calibration(exps, sc)
    assert measured is None and again == rates                             # read, not measured
    key = json.loads(P.calibration_key(sc))
    assert key["scale"] == "ci" and key["torch"] == torch.__version__ and set(key) == \
        {"host", "device", "torch", "compute_hash", "scale"}
    assert P.cached_rates("cpu") == {}                                      # another scale: measured anew
    _, measured = P.calibration(exps, sc, recalibrate=True, budget=0.5)
    assert measured is not None
    P.calibration_path().write_text("{not json")                            # a damaged cache: measured again
    assert P.calibration(exps, sc, budget=0.5)[1] is not None


def test_estimate_is_stable_between_two_calibrations():
    """Two calibrations of the same small plan agree on its total within 20% (each timing is
    the fastest of its repeats of one thread's CPU time: other jobs on the machine barely move
    it), and on every experiment within a factor 2 on a shared machine."""
    sc = get_scale("ci")
    exps = [e for e in P.plan(sc, only="smoothness")] + [e for e in P.plan(sc) if e.name == "curve/setting1"]
    a, b = (P.calibrate(exps, sc, budget=2.0) for _ in range(2))
    ea, eb = ([P.estimate(e, r) for e in exps] for r in (a, b))
    assert 0.8 <= sum(ea) / sum(eb) <= 1.25, (ea, eb)
    assert all(0.5 <= x / y <= 2 for x, y in zip(ea, eb) if x or y), (ea, eb)


def test_priorities_start_the_longest_chains_first():
    exps = P.plan(get_scale("cpu"))
    first = P.priorities(exps)
    assert set(first) == {e.name for e in exps}
    for e in exps:                                    # a task comes before what waits for it
        for a in e.after:
            assert first[a] >= first[e.name]
    assert max(first, key=first.get).startswith(("stable/depth8", "training/setting"))
