"""benchmarks/device_check.py, the prepared device check, on the CPU (CI never has a GPU).

- the script end to end at ci scale (``--device cpu --budget 90 --only smoothness --no-paper``):
  exit 0, both reports, the budget respected;
- :func:`compare_stores` on two CPU stores of the same ci experiments computed with 1 and with 2
  torch threads (and lintf's pools at 1 thread and at their default): every frame equal, but the
  last bits of LAPACK's eigenvalues (:data:`EIGEN_FRAMES`, a finding of this test);
- the same on a copy where one value of one frame was altered: that frame, and only it, differs
  (exactly), and is within the cuda-vs-cpu tolerance (a relative change of 1e-6);
- :func:`compare_frames`' rules on small frames; the paper phase's choice and the pack, at ci
  scale; bad arguments.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lintf import plan as P
from lintf.compute.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.py"

BUDGET = 90
SLACK_S = 20
"""Seconds the subprocess may run beyond ``--budget``: the interpreter's start and the imports of
numpy and pandas before the script's clock starts (about 1 s), and its exit, on a 2-core machine
shared with other jobs."""

EXPERIMENTS = ["training/setting1", "sweep/setting1", "noise/setting1", "table_training/setting1",
               "table_conditioning/setting1/large", "stable/depth2"]
"""A few ci experiments that cover the engine (float32 and float64), the rate grid, the noise's
covariance spectrum (LAPACK, threaded), the cut-and-joined table runs and their Hessians."""

STORE_CODE = """
import sys
import torch
root, threads, names = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
torch.set_num_threads(threads)
from lintf import plan as P
from lintf.compute import engine, fast
from lintf.compute.store import ResultStore
if threads == 1:          # lintf's own pools too (else their defaults: min(4, cores) threads)
    engine.POOL_THREADS = fast.HESSIAN_POOL = 1
store = ResultStore(root)
for exp in P.plan("ci"):
    if exp.name in names:
        P.call(exp, "ci", device="cpu", store=store, progress=False)
"""
"""Compute the experiments named in ``argv[3]`` at ci scale on the CPU into the store ``argv[1]``
with ``argv[2]`` torch threads, through :func:`lintf.plan.call` (not ``run_task``, which would set
one thread whatever we ask)."""


@pytest.fixture(scope="module")
def dc():
    """The script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["device_check"] = module          # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("device_check", None)


def _env(**extra) -> dict:
    env = {**os.environ, "LINTF_PROGRESS": "0", **extra}
    env.pop("LINTF_READ_ONLY", None)
    return env


@pytest.fixture(scope="module")
def cpu_stores(tmp_path_factory):
    """Two stores of :data:`EXPERIMENTS`, one computed on 1 thread, one on 2, at the same time
    (the compute source cannot change between them)."""
    base = tmp_path_factory.mktemp("device-check-stores")
    procs = {}
    for threads in (1, 2):
        root = base / f"threads{threads}"
        env = _env(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), LINTF_RESULTS=str(root))
        procs[threads] = (root, subprocess.Popen([sys.executable, "-c", STORE_CODE, str(root), str(threads),
                                                  ",".join(EXPERIMENTS)], env=env, stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT, text=True))
    for threads, (root, proc) in procs.items():
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"computing the store on {threads} threads failed:\n{out[-3000:]}"
    return procs[1][0], procs[2][0]


@pytest.mark.slow
def test_script_on_the_cpu_exits_0_within_its_budget(tmp_path):
    out = tmp_path / "out"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--budget", str(BUDGET), "--only",
                           "smoothness", "--no-paper", "--out", str(out)], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=BUDGET + 120)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert wall < BUDGET + SLACK_S, f"{wall:.1f} s for a {BUDGET} s budget"
    report = json.loads((out / "report.json").read_text())
    text = (out / "report.txt").read_text()
    assert report["budget"]["respected"] and report["budget"]["elapsed"] <= BUDGET
    assert report["exit_status"] == 0 and not report["errors"]
    summary = report["compare"]["summary"]
    assert summary["ok"] and summary["frames_compared"] > 0
    assert summary["counts"]["equal"] == summary["frames_compared"]          # cpu against cpu: exact
    assert {r["experiment"] for r in report["compare"]["rows"]} == {e.name for e in P.plan("ci", only="smoothness")}
    assert report["machine"]["device"] == "cpu" and report["machine"]["driver"] == "none"
    assert report["calibration"]["kinds"], "no kind of paper program was timed"
    assert set(report["estimate"]["per_chapter"]) >= set(P.CHAPTERS) - {"scorecard"}
    assert "paper" not in report and "pack" not in report                 # --no-paper
    for heading in ("== 1. the machine", "== 2. the ci plan", "== 3. timings", "== summary"):
        assert heading in text
    assert text.strip() in proc.stdout                                     # report.txt is what it printed


EIGEN_FRAMES = ("conditioning", "curve", "spectrum")
"""Frames computed through torch's BLAS and LAPACK on float64 matrices (``torch.linalg.eigvalsh``
of the Hessians; the noise's covariance ``X.T @ X`` and its eigenvalues), whose results depend
on the number of torch threads in their last bits. Found by this test on 2026-12-06: the
Hessians themselves are bit-identical on 1 and 2 threads, their eigenvalues differ by 4e-14
(``R_med`` by eigenvalues up to 2e-15 relative), the noise spectrum's by up to 3.2e-11 of each
seed's largest eigenvalue (more, relatively, for the small ones; anything for those near 0).
``python -m lintf compute`` runs every task on one thread, so its stores agree with each other;
a chapter that computes in-process on more threads would not, in those bits."""

LAPACK = (1e-9, 1e-9)
"""``rtol, floor`` within which :data:`EIGEN_FRAMES` of the two thread counts must agree: each
value to 1e-9 of itself or of its column's largest, about 30x the differences measured."""


@pytest.mark.slow            # the two stores: 30 to 81 s here (2 cores shared with other jobs)
def test_thread_counts_give_equal_frames(dc, cpu_stores):
    one, two = cpu_stores
    rows = dc.compare_stores(one, two, EXPERIMENTS, "ci")
    assert {r["experiment"] for r in rows} == set(EXPERIMENTS)
    assert all(r["frame"] != "meta" for r in rows)
    assert {"runs", "history", "sweep", "noise", "spectrum", "conditioning", "rates", "tries"} <= {r["frame"]
                                                                                                 for r in rows}
    bad = [r for r in rows if r["status"] != dc.EQUAL]
    # every frame equal, but for BLAS's and LAPACK's last bits (EIGEN_FRAMES), within LAPACK of each
    # value or of the column's largest (a spectrum's smallest eigenvalues are rounding, near 0)
    assert all(r["frame"] in EIGEN_FRAMES for r in bad), [(r["experiment"], r["frame"]) for r in bad]
    lapack = dc.Tolerance("blas-lapack", *LAPACK)
    again = dc.compare_stores(one, two, sorted({r["experiment"] for r in bad}), "ci", tolerance=lapack)
    assert all(r["status"] in (dc.EQUAL, dc.WITHIN) for r in again), [r["detail"] for r in again]
    for r in bad:
        if r["frame"] != "conditioning":
            continue
        exp = next(e for e in P.plan("ci") if e.name == r["experiment"])
        a, b = (P.call(exp, "ci", device="cpu", store=ResultStore(root), cached_only=True, progress=False)
                .frames["conditioning"] for root in (one, two))
        diag = (a["method"] == "diag").to_numpy()
        assert dc.compare_frames(a[diag], b[diag])["status"] == dc.EQUAL          # from the Hessians alone


def _alter(root: Path, experiment: str, frame: str, factor: float) -> None:
    """Multiply one value of ``frame`` of ``experiment``'s own store entry by ``factor``, and
    update the entry's manifest so that the store still reads it."""
    exp = next(e for e in P.plan("ci") if e.name == experiment)
    kind, key = P.entries(exp, "ci", device="cpu", store=ResultStore(root))[-1]
    folder = root / f"{kind}-{key[:16]}"
    df = pd.read_parquet(folder / f"{frame}.parquet")
    i = int(np.flatnonzero(np.isfinite(df["value"].to_numpy()) & (df["value"].to_numpy() != 0))[3])
    df.loc[i, "value"] = df.loc[i, "value"] * factor
    data = df.to_parquet(None)
    (folder / f"{frame}.parquet").write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][f"{frame}.parquet"] = hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.slow            # the stores of the test above (whichever runs first computes them)
def test_an_altered_value_is_reported(dc, cpu_stores, tmp_path):
    one, _ = cpu_stores
    altered = tmp_path / "altered"
    shutil.copytree(one, altered)
    _alter(altered, "training/setting1", "history", 1 + 1e-6)
    rows = dc.compare_stores(one, altered, EXPERIMENTS, "ci")
    bad = [(r["experiment"], r["frame"]) for r in rows if r["status"] != dc.EQUAL]
    assert bad == [("training/setting1", "history")]
    row = next(r for r in rows if r["frame"] == "history" and r["experiment"] == "training/setting1")
    assert row["status"] == dc.DIFFERS and "value: 1 of" in row["detail"] and 0 < row["max_rel"] < 2e-6
    assert not dc.summarize(rows)["ok"]
    # the cuda-vs-cpu tolerance lets a change of a millionth through, not one of a tenth
    loose = dc.compare_stores(one, altered, ["training/setting1"], "ci", tolerance=dc.CUDA_FLOAT32)
    assert {r["frame"]: r["status"] for r in loose} == {"runs": dc.EQUAL, "history": dc.WITHIN}
    _alter(altered, "training/setting1", "history", 1.1)
    far = dc.compare_stores(one, altered, ["training/setting1"], "ci", tolerance=dc.CUDA_FLOAT32)
    assert {r["frame"]: r["status"] for r in far} == {"runs": dc.EQUAL, "history": dc.DIFFERS}


def test_a_store_that_lacks_an_experiment_is_missing_not_different(dc, tmp_path):
    rows = dc.compare_stores(tmp_path / "a", tmp_path / "b", ["training/setting1"], "ci")
    assert [(r["status"], r["detail"]) for r in rows] == [(dc.MISSING, "not stored in a and b")]
    assert not dc.summarize(rows)["ok"]                                # nothing compared: not a pass
    with pytest.raises(ValueError, match="unknown: 'training/nope'"):
        dc.compare_stores(tmp_path / "a", tmp_path / "b", ["training/nope"], "ci")


def test_compare_frames_rules(dc):
    base = pd.DataFrame({"optimizer": ["sgdm", "adam", "adam"], "step": [0, 1, 2], "diverged": [False, False, True],
                         "value": [1.0, 1e-9, np.nan], "lr": [0.02, 0.02, 0.02]})

    def status(other, tol=dc.EXACT):
        return dc.compare_frames(base, other, tol)["status"]

    same = base.copy()
    same.attrs = {"provenance": ["another host, another time"]}
    assert status(same) == dc.EQUAL                                     # NaN equals NaN; attrs ignored
    near = base.assign(value=[1.0 + 1e-7, 2e-9, np.nan])                # 1e-7 relative; a tiny value doubled
    assert status(near) == dc.DIFFERS
    assert status(near, dc.CUDA_FLOAT32) == dc.WITHIN                   # the floor covers 1e-9 against 1
    assert status(near, dc.CUDA_FLOAT64) == dc.DIFFERS                  # rtol 1e-4, floor 1e-10 x 1: 1e-9 is out
    assert status(base.assign(value=[1.05, 1e-9, np.nan]), dc.CUDA_FLOAT32) == dc.DIFFERS
    assert status(base.assign(value=[1.0, 1e-9, 1.0]), dc.CUDA_FLOAT32) == dc.DIFFERS    # NaN against a number
    assert status(base.assign(value=[np.inf, 1e-9, np.nan]), dc.CUDA_FLOAT32) == dc.DIFFERS
    flag = dc.compare_frames(base, base.assign(diverged=[False, True, True]), dc.CUDA_FLOAT32)
    assert flag["status"] == dc.DIFFERS and "diverged" in flag["detail"]              # flags must be equal
    assert status(base.assign(step=[0, 1, 3]), dc.CUDA_FLOAT32) == dc.DIFFERS           # so must integers
    assert status(base.iloc[:2], dc.CUDA_FLOAT32) == dc.DIFFERS                          # and shapes
    assert status(base.assign(step=base["step"].astype(float)), dc.CUDA_FLOAT32) == dc.DIFFERS   # and dtypes
    got = dc.compare_frames(base, near, dc.CUDA_FLOAT32)
    assert got["max_abs"] == pytest.approx(1e-7) and got["max_rel"] == pytest.approx(0.5)


def test_tolerance_for_each_experiment(dc):
    exps = {e.name: e for e in P.plan("ci")}
    assert dc.tolerance_for(exps["training/setting1"], ("cpu", "cpu")) is dc.EXACT
    assert dc.tolerance_for(exps["training/setting1"], ("cuda:0", "cuda")) is dc.EXACT
    assert dc.tolerance_for(exps["training/setting1"], ("cuda", "cpu")) is dc.CUDA_FLOAT32
    assert dc.tolerance_for(exps["stable/depth2"], ("cuda", "cpu")) is dc.CUDA_FLOAT64
    assert dc.tolerance_for(exps["noise/depth2"], ("cuda", "cpu")) is dc.CUDA_FLOAT32           # drawn in float32
    assert dc.tolerance_for(exps["precision_pair/depth6"], ("cuda", "cpu")) is dc.CUDA_FLOAT32  # trains float32 too


def test_every_paper_experiment_has_programs_and_an_estimate(dc):
    """The cost model covers the whole paper plan, and agrees with the plan's own count of work."""
    from lintf.compute.settings import get_scale
    sc = get_scale("paper")
    one = {"a": 1e-3, "b": 1e-4, "overhead": 0.5}
    cal = {"kinds": {k: one for k in dc.KINDS}, "hessians": {"setting1": {"per_chunk": 0.1}}}
    for exp in P.plan(sc):
        progs = dc.programs_of(exp, sc)
        train = sum(p[2] * p[3] for p in progs if p[0] == "train")
        other = sum(p[2] for p in progs if p[0] != "train")
        assert train + other == exp.iterations, exp.name
        assert dc.estimate(exp, sc, cal) is not None and dc.estimate(exp, sc, cal) >= 0, exp.name
    assert dc.estimate(next(e for e in P.plan(sc) if e.name == "sweep/setting1"), sc, {"kinds": {}, "hessians": {}}) \
        is None                                                          # a kind not timed: no estimate


def test_paper_phase_respects_estimates_and_packs(dc, tmp_path):
    """Phase 4 at ci scale (the smoothness chapter's 3 experiments): what the claims need first,
    none whose estimate exceeds the time left, children that store whole entries; then the pack."""
    from lintf import pack as K
    report = dc.Report(budget=3600)
    args = argparse.Namespace(target_scale="ci", only=["smoothness"], part_size=64 * 1024)
    est = {"per_experiment": {"training/setting1": 1.0, "training/setting2": 1.0, "training/setting3": 1e6},
           "need": {"training/setting2"}}
    out = dc.phase_paper(report, args, "cpu", tmp_path / "store", report.elapsed() + 300, est)
    assert [c["name"] for c in out["computed"]] == ["training/setting2", "training/setting1"]
    assert [s["name"] for s in out["not_started"]] == ["training/setting3"]
    assert "estimate" in out["not_started"][0]["why"] and not out["failed"]
    packed = dc.phase_pack(report, args, "cpu", tmp_path / "store", tmp_path)
    assert packed["entries"] == 2 and len(packed["paths"]) > 1                   # 64 KiB parts
    assert len(K.verify(tmp_path / dc.PACK_NAME)["entries"]) == 2


@pytest.mark.parametrize("argv, words", [(["--budget", "abc"], "--budget"), (["--only", "nope"], "--only"),
                                         (["--device", "tpu"], "--device"), (["--part-size", "1"], "--part-size")])
def test_a_bad_argument_is_one_line_and_exit_2(tmp_path, argv, words):
    proc = subprocess.run([sys.executable, str(SCRIPT), *argv, "--out", str(tmp_path / "out")], env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and words in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
