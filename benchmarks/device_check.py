"""One prepared device check: what a GPU lent for ~15 minutes should run, within a budget.

    python benchmarks/device_check.py --budget 480                 # cuda if available, else cpu
    python benchmarks/device_check.py --device cpu --budget 90 --only smoothness --no-paper   # CI

Five phases, each within its share of ``--budget`` seconds (counted from the start of this
script; a phase that ends early leaves its time to the next ones):

1. the machine: device, torch, CUDA, cuDNN and driver versions, host, CPUs, and the numerics
   flags lintf sets (:func:`lintf.compute.engine.precision_flags` with ``apply=True``);
2. the ``ci`` plan (``--only``: those chapters') computed on the device into an empty store
   and on the CPU into another (a ``python -m lintf compute`` child process, running beside
   the device; ``--reference-store``: an existing CPU store instead), then every frame of every
   experiment stored in both compared (:func:`compare_stores`; tolerances:
   :data:`EXACT`, :data:`CUDA_FLOAT32`, :data:`CUDA_FLOAT64`);
3. each kind of ``paper``-scale program timed for a few iterations on the device (:data:`KINDS`,
   and the exact Hessian on ``scale.eval_large`` prompts), and the whole ``paper`` plan's
   estimated time per chapter on the device beside :func:`lintf.plan.calibrate`'s CPU estimate
   (skipped, and said so, when it does not fit the budget);
4. as much of the ``paper`` plan as the rest of the budget allows (``--no-paper``: skipped), the
   experiments the claims need first, each in a child process killed at the budget, none
   started whose estimate exceeds the time left;
5. what phase 4 computed, packed with :func:`lintf.pack.pack` (``--part-size``) into ``--out``,
   with ``report.json`` and ``report.txt`` (everything printed, and the data behind it).

Exit status 0 when no compared frame is outside its tolerance, 1 when one is (or an experiment
failed, or nothing could be compared), 2 for a bad argument (one line on standard error).
"""
from __future__ import annotations

import time

_T0 = time.perf_counter()      # the budget counts from here, before torch and lintf are imported

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

COMPARE_SCALE = "ci"
"""The scale of phase 2: every experiment of the book, small enough to compute twice."""

MIN_BUDGET = 30.0
"""The smallest ``--budget`` accepted (seconds): below it not even the ci comparison starts."""

SHARES = {"compare": 0.40, "calibrate": 0.20}
"""Each phase's share of the budget, with the paper phase (it gets the rest). With
``--no-paper`` the comparison gets :data:`SHARES_NO_PAPER` instead."""
SHARES_NO_PAPER = {"compare": 0.55}
"""The comparison's share without the paper phase (the calibration gets the rest)."""


def reserve(budget: float) -> float:
    """Seconds kept at the end of the budget for the pack and the report (what phase 5 needs
    for a few paper experiments' entries, with room to spare)."""
    return max(15.0, 0.04 * budget)


CHILD_OVERHEAD_S = 10.0
"""Seconds a child process of phase 4 needs besides its experiment (interpreter, torch and
lintf imports, CUDA context, the plan): added to each estimate before it is compared with
the time left."""

CPU_CALIBRATION_S = 30.0
"""Seconds of the calibration share that must be left to start :func:`lintf.plan.calibrate` on
the CPU after the device's calibration, when the device IS the CPU (a child process, killed at
the end of the share if it has not finished). For the whole paper plan it took 57 s on the
2-core development machine, then 21 s (load average 6) once lintf.plan.calibrate measured
within a time budget of its own (2026-12-06). On a CUDA device it runs beside phases 2 and 3
instead, from the start of phase 2."""

R_SMALL, R_LARGE = 2, 12
"""Run counts at which each kind of program is timed (2 optimizers x 1 seed, x 6 seeds: the
book's typical program): time per step = ``a + b * runs``, ``a`` the per-step cost of the
program whatever its size (what dominates a GPU), ``b`` the cost per run (what dominates a CPU)."""


# -- comparing stores ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far two float columns may differ: ``|a - b| <= rtol * max(|a|, |b|) + floor * s``
    at every position, ``s`` the largest finite ``|b|`` of the column (so that a column's
    values near zero, such as the small eigenvalues of a spectrum, are judged against the
    column's scale), NaN and infinities at the same positions on both sides. Columns that are
    not float (flags, counts, steps, names) must be equal whatever the tolerance. ``rtol = floor
    = 0``: the frames must be equal (:func:`pandas.testing.assert_frame_equal` with
    ``check_exact=True``: NaN equals NaN, nothing else is forgiven)."""

    name: str
    rtol: float
    floor: float

    @property
    def exact(self) -> bool:
        """Whether only equal frames pass."""
        return self.rtol == 0 and self.floor == 0

    def describe(self) -> str:
        """One line: the name and the numbers."""
        return "exact" if self.exact else f"{self.name} (rtol {self.rtol:g}, floor {self.floor:g} x column scale)"


EXACT = Tolerance("exact", 0.0, 0.0)
"""Two stores computed on the same kind of device (cpu against cpu; cuda against cuda with the
deterministic flags lintf sets): the same code on the same inputs must give the same bits.
lintf promises that its numbers do not depend on thread counts or on how the work is spread
(``engine.WORKERS``, ``fast.HESSIAN_WORKERS``, ``plan.run_task``), so any difference is a bug."""

CUDA_FLOAT32 = Tolerance("cuda-float32", rtol=1e-2, floor=1e-6)
"""cuda against cpu, frames of float32 programs (every setting but the depths, and the float32
half of the precision pair, and the gradient noise, drawn in float32 for every setting):
cuBLAS and the GPU's reductions add in other orders than the CPU, so each operation differs
by a few units of float32 rounding (1e-7 relative), which training amplifies step after step
(Adam divides by small second moments). 1% of each value (losses, gradient norms, smoothness,
R_med, noise norms) lets 60 ci iterations of that through and still catches a wrong kernel, a
dropped term or TF32 left on; the floor, a millionth of the column's largest value, covers
values that rounding alone makes (the smallest eigenvalues of a noise spectrum). An a priori
choice: no GPU had run this check when it was written (2026-12-06)."""

CUDA_FLOAT64 = Tolerance("cuda-float64", rtol=1e-4, floor=1e-10)
"""cuda against cpu, frames of float64 programs (the depths, their stable-rate search and
Hessians): rounding is 1e-16 relative, so even a 1e12-fold amplification over 60 steps stays
below 1e-4."""

FLOAT32_FUNCTIONS = ("precision_pair", "noise_at_seeds")
"""Experiments that compute in float32 whatever their setting's precision: the precision pair
(it trains both) and the gradient noise (initial parameters and prompts in float32)."""

SKIPPED_FRAMES = ("meta",)
"""Frames not compared: ``meta`` holds the wall time of the program."""

EQUAL, WITHIN, DIFFERS, MISSING, ERROR = "equal", "within tolerance", "differs", "missing", "error"
"""The statuses of a comparison row; :data:`FAILING` make the exit status 1."""
FAILING = (DIFFERS, ERROR)


def _device_type(device) -> str:
    return str(device).split(":")[0]


def tolerance_for(exp, devices) -> Tolerance:
    """The tolerance of experiment ``exp`` between stores computed on ``devices`` (two device
    names): :data:`EXACT` on the same kind of device, else :data:`CUDA_FLOAT64` for a float64
    setting's experiments (but :data:`FLOAT32_FUNCTIONS`), :data:`CUDA_FLOAT32` otherwise."""
    from lintf.compute.settings import get_setting
    a, b = (_device_type(d) for d in devices)
    if a == b:
        return EXACT
    if exp.function not in FLOAT32_FUNCTIONS and get_setting(exp.setting).precision == "float64":
        return CUDA_FLOAT64
    return CUDA_FLOAT32


TUPLE_NAMES = {"stable_search": ("rates", "tries"), "ablation": (None, "best")}
"""Frame names of the parts of experiments that return a tuple (None: a Result, its frames)."""


def frames_of(exp, value) -> dict:
    """The frames of ``value``, what :func:`lintf.plan.call` returned for ``exp``: a Result's
    frames, a dict of frames, the parts of a tuple (:data:`TUPLE_NAMES`; a dict of rates becomes
    a frame ``optimizer, lr``); without :data:`SKIPPED_FRAMES`."""
    def flat(v, name):
        if hasattr(v, "frames"):
            return dict(v.frames)
        if isinstance(v, pd.DataFrame):
            return {name: v}
        if isinstance(v, dict) and all(isinstance(x, pd.DataFrame) for x in v.values()):
            return dict(v)
        if isinstance(v, dict):
            return {name: pd.DataFrame({"optimizer": list(v), "lr": [float(x) for x in v.values()]})}
        raise TypeError(f"{exp.name}: cannot compare a {type(v).__name__}")

    if isinstance(value, tuple):
        names = TUPLE_NAMES.get(exp.function, [f"part{i}" for i in range(len(value))])
        out = {}
        for v, name in zip(value, names):
            out.update(flat(v, name or "result"))
    else:
        out = flat(value, "result")
    return {k: v for k, v in out.items() if k not in SKIPPED_FRAMES}


def _bare(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without ``attrs`` (the provenance: host, time, device, which always differ)."""
    frame = frame.copy(deep=False)
    frame.attrs = {}
    return frame


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:300]


def compare_frames(a: pd.DataFrame, b: pd.DataFrame, tolerance: Tolerance = EXACT) -> dict:
    """Compare two frames: ``{"status", "max_abs", "max_rel", "detail"}``. ``status``
    :data:`EQUAL` (``pandas.testing.assert_frame_equal(check_exact=True)`` passes: NaN equals
    NaN), :data:`WITHIN` (not equal, but every float column within ``tolerance`` and every
    other column equal), :data:`DIFFERS` otherwise (shape, columns, dtypes, a non-float value,
    NaN positions, or a float beyond the tolerance; ``detail`` says which, with an example).
    ``max_abs``, ``max_rel``: the largest absolute and relative difference over the float
    columns' finite positions (relative to ``max(|a|, |b|)``)."""
    a, b = _bare(a), _bare(b)
    out = {"status": EQUAL, "max_abs": 0.0, "max_rel": 0.0, "detail": ""}
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        return out
    except AssertionError as err:
        message = _first_line(err)
    if a.shape != b.shape or list(a.columns) != list(b.columns) or not a.index.equals(b.index):
        return {**out, "status": DIFFERS, "max_abs": math.nan, "max_rel": math.nan,
                "detail": f"shape {a.shape} against {b.shape}, or other columns or index: {message}"}
    bad = []
    for col in a.columns:
        x, y = a[col], b[col]
        if x.dtype != y.dtype:
            bad.append(f"{col}: dtype {x.dtype} against {y.dtype}")
            continue
        if pd.api.types.is_float_dtype(x.dtype):
            xv, yv = x.to_numpy(dtype=float, na_value=np.nan), y.to_numpy(dtype=float, na_value=np.nan)
            finite = np.isfinite(xv) & np.isfinite(yv)
            same_special = (np.isnan(xv) & np.isnan(yv)) | (np.isinf(xv) & (xv == yv))
            diff = np.where(finite, np.abs(xv - yv), 0.0)
            big = np.where(finite, np.maximum(np.abs(xv), np.abs(yv)), 0.0)
            rel = np.divide(diff, big, out=np.zeros_like(diff), where=big > 0)
            if finite.any():
                out["max_abs"] = max(out["max_abs"], float(diff.max()))
                out["max_rel"] = max(out["max_rel"], float(rel.max()))
            scale = float(np.abs(yv[np.isfinite(yv)]).max()) if np.isfinite(yv).any() else 0.0
            allowed = tolerance.rtol * big + tolerance.floor * scale
            wrong = (finite & (diff > allowed)) | (~finite & ~same_special)
            if wrong.any():
                i = int(np.flatnonzero(wrong)[0])
                bad.append(f"{col}: {int(wrong.sum())} of {len(xv)} values beyond {tolerance.describe()}, "
                           f"e.g. row {i}: {xv[i]!r} against {yv[i]!r}")
        else:
            same = (x == y).fillna(False).to_numpy(dtype=bool) | (x.isna() & y.isna()).to_numpy(dtype=bool)
            if not same.all():
                i = int(np.flatnonzero(~same)[0])
                bad.append(f"{col}: {int((~same).sum())} of {len(x)} values differ (a column that is not float "
                           f"must be equal), e.g. row {i}: {x.iloc[i]!r} against {y.iloc[i]!r}")
    if tolerance.exact and not bad:               # equal values, yet assert_frame_equal objects
        bad.append(message)
    if bad:
        return {**out, "status": DIFFERS, "detail": "; ".join(bad)}
    return {**out, "status": WITHIN}


def _store(root):
    from lintf.compute.store import ResultStore
    return root if isinstance(root, ResultStore) else ResultStore(root)


def _experiments(experiments, scale) -> list:
    from lintf import plan as P
    items = list(experiments)
    if all(not isinstance(e, str) for e in items):
        return items
    known = {e.name: e for e in P.plan(scale)}
    bad = [e for e in items if isinstance(e, str) and e not in known]
    if bad:
        raise ValueError(f"experiments must be names of the {getattr(scale, 'name', scale)} plan; unknown: {bad[0]!r}")
    return [known[e] if isinstance(e, str) else e for e in items]


def compare_stores(a, b, experiments, scale, *, devices=("cpu", "cpu"), tolerance: Tolerance | None = None) -> list:
    """Compare every frame of ``experiments`` (plan entries, or their names) at ``scale``
    between the stores ``a`` and ``b`` (folders or :class:`lintf.compute.store.ResultStore`),
    each read with ``lintf.plan.call(exp, scale, store=..., cached_only=True, progress=False,
    device=...)`` on its device of ``devices``: nothing is computed.

    ``tolerance``: one :class:`Tolerance` for every experiment; None: :func:`tolerance_for`
    (exact on the same kind of device). Returns one row per frame (dicts): ``experiment``,
    ``setting``, ``frame``, ``status`` (:data:`EQUAL`, :data:`WITHIN`, :data:`DIFFERS`; an
    experiment that either store lacks is one row :data:`MISSING`, one that fails to load one
    row :data:`ERROR`), ``rows``, ``max_abs``, ``max_rel``, ``tolerance``, ``detail``.
    :data:`SKIPPED_FRAMES` are left out."""
    from lintf import plan as P
    from lintf.compute.settings import get_scale
    sc = scale if hasattr(scale, "name") else get_scale(scale)
    stores = (_store(a), _store(b))
    rows = []
    for exp in _experiments(experiments, sc):
        tol = tolerance or tolerance_for(exp, devices)
        base = {"experiment": exp.name, "setting": exp.setting, "tolerance": tol.describe()}
        got, missing = [], []
        try:
            for side, store, device in zip("ab", stores, devices):
                try:
                    got.append(frames_of(exp, P.call(exp, sc, store=store, cached_only=True, progress=False,
                                                      device=device)))
                except LookupError:
                    missing.append(side)
        except Exception as err:                                   # reported, the others go on
            rows.append({**base, "frame": "-", "status": ERROR, "rows": 0, "max_abs": math.nan,
                         "max_rel": math.nan, "detail": f"{type(err).__name__}: {_first_line(err)}"})
            continue
        if missing:
            rows.append({**base, "frame": "-", "status": MISSING, "rows": 0, "max_abs": math.nan, "max_rel": math.nan,
                         "detail": "not stored in " + " and ".join(missing)})
            continue
        fa, fb = got
        for name in list(fa) + [n for n in fb if n not in fa]:
            if name not in fa or name not in fb:
                rows.append({**base, "frame": name, "status": DIFFERS, "rows": 0, "max_abs": math.nan,
                             "max_rel": math.nan, "detail": f"frame only in {'a' if name in fa else 'b'}"})
                continue
            res = compare_frames(fa[name], fb[name], tol)
            rows.append({**base, "frame": name, "rows": len(fb[name]), **res})
    return rows


def summarize(rows) -> dict:
    """Counts of :func:`compare_stores` rows per status, the experiments compared (every frame
    loaded on both sides) and whether none is :data:`FAILING` (and something was compared)."""
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in (EQUAL, WITHIN, DIFFERS, MISSING, ERROR)}
    compared = sorted({r["experiment"] for r in rows if r["status"] in (EQUAL, WITHIN, DIFFERS)})
    frames = counts[EQUAL] + counts[WITHIN] + counts[DIFFERS]
    return {"counts": counts, "frames_compared": frames, "experiments_compared": len(compared),
            "ok": frames > 0 and counts[DIFFERS] == 0 and counts[ERROR] == 0}


# -- the report ------------------------------------------------------------------------------
class Report:
    """What the check prints, kept for ``report.txt``, and the data behind it for ``report.json``."""

    def __init__(self, budget: float):
        self.budget, self.lines, self.data = budget, [], {"budget": {"seconds": budget}}

    def elapsed(self) -> float:
        """Seconds since the script started (:data:`_T0`)."""
        return time.perf_counter() - _T0

    def left(self) -> float:
        """Seconds of the budget left."""
        return self.budget - self.elapsed()

    def line(self, text: str = "") -> None:
        """Print ``text`` (now, flushed: a killed run keeps what it printed) and keep it."""
        print(text, flush=True)
        self.lines.append(text)

    def head(self, text: str) -> None:
        """A phase's heading, with the time used so far."""
        self.line("")
        self.line(f"== {text} (at {self.elapsed():.0f} s of {self.budget:.0f}) ==")


def _clean(value):
    """``value`` as plain JSON data (NaN and infinities as None, numpy scalars as numbers)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def _secs(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:,.0f}" if x >= 10 else f"{x:.1f}" if x >= 0.1 else f"{x:.3f}"


# -- phase 1: the machine --------------------------------------------------------------------
def driver_version() -> dict:
    """The GPU driver: ``torch.cuda.driver_version()`` where torch has it, else the CUDA driver
    API version torch reports, and ``nvidia-smi``'s driver version and GPU where it is
    installed; ``"none"`` for what is absent."""
    import torch
    out = {"driver": "none", "driver_api": "none", "nvidia_smi": "none"}
    if torch.cuda.is_available():
        fn = getattr(torch.cuda, "driver_version", None)
        get = getattr(torch._C, "_cuda_getDriverVersion", None)
        try:
            if callable(fn):
                out["driver"] = str(fn())
            if callable(get):
                v = int(get())
                out["driver_api"] = f"{v // 1000}.{v % 1000 // 10}"
        except Exception as err:                 # a broken driver is worth a line, not a crash
            out["driver_api"] = f"error: {_first_line(err)}"
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            got = subprocess.run([smi, "--query-gpu=driver_version,name,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            text = got.stdout.strip().splitlines()
            out["nvidia_smi"] = text[0] if got.returncode == 0 and text else f"exit {got.returncode}"
            if out["driver"] == "none" and got.returncode == 0 and text:
                out["driver"] = text[0].split(",")[0].strip()
        except (OSError, subprocess.TimeoutExpired) as err:
            out["nvidia_smi"] = f"error: {_first_line(err)}"
    if out["driver"] == "none" and out["driver_api"] != "none":
        out["driver"] = f"CUDA driver API {out['driver_api']}"
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine(device: str) -> dict:
    """Phase 1's record: device and its name, torch, CUDA, cuDNN, driver, host, CPUs, load,
    Python, lintf's source hashes, and the precision flags lintf applies on ``device``."""
    import torch

    from lintf.compute import store as S
    from lintf.compute.engine import precision_flags
    flags = precision_flags(device, apply=True)        # before the first cuBLAS call, as lintf does
    info = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda or "none",
            "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none",
            **driver_version(), "host": socket.gethostname(), "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "cpu_name": _cpu_name(), "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(), "platform": platform.platform(),
            "compute_hash": S.compute_hash(), "source_hash": S.source_hash(), "precision_flags": flags}
    if _device_type(device) == "cuda":
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(device_name=props.name, capability=f"{props.major}.{props.minor}",
                    memory_gib=round(props.total_memory / 2 ** 30, 1))
        torch.ones(1, device=device).sum().item()      # the CUDA context, outside every timing
    else:
        info["device_name"] = info["cpu_name"]
    return info


def phase_machine(report: Report, device: str) -> dict:
    """Phase 1: print and record :func:`machine`."""
    report.head("1. the machine")
    info = machine(device)
    load = " ".join(f"{x:.2f}" for x in info["load_average"] or [])
    gpu = f", compute capability {info['capability']}, {info['memory_gib']} GiB" if "capability" in info else ""
    report.line(f"device        {device}: {info['device_name']}{gpu}")
    report.line(f"torch         {info['torch']}, CUDA {info['cuda']}, cuDNN {info['cudnn']}")
    report.line(f"driver        {info['driver']} (CUDA driver API {info['driver_api']}; "
                f"nvidia-smi: {info['nvidia_smi']})")
    report.line(f"host          {info['host']}, {info['cpu_count']} CPUs ({info['cpu_affinity']} usable), "
                f"{info['cpu_name']}, load average {load}")
    report.line(f"python        {info['python']} on {info['platform']}")
    report.line(f"lintf         compute source {info['compute_hash'][:12]}, package source {info['source_hash'][:12]}")
    report.line(f"precision     lintf.compute.engine.precision_flags({device!r}, apply=True): "
                f"{info['precision_flags'] or '{} (nothing to set on the CPU)'}")
    report.data["machine"] = info
    return info


# -- phase 2: the ci plan on the device and on the CPU -----------------------------------------
def _child_env(root) -> dict:
    env = {**os.environ, "LINTF_RESULTS": str(root), "LINTF_PROGRESS": "0"}
    env.pop("LINTF_READ_ONLY", None)               # the check computes, whatever the caller's shell says
    return env


def _stop(proc: subprocess.Popen, grace: float = 5.0) -> str:
    """Stop a child: SIGINT first (``python -m lintf`` stops cleanly), then SIGKILL; every
    store write is atomic, so a killed child leaves whole entries or none."""
    if proc.poll() is not None:
        return f"exited {proc.returncode}"
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(grace)
        return "stopped at the end of its share (SIGINT)"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "killed at the end of its share"


def _tail(path: Path, n: int = 15) -> list:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def store_sources(root) -> dict:
    """``{compute hash: entries}`` of the entries in the store folder ``root`` (their manifests):
    entries of another compute source than this process's are never read (lintf/compute edited
    between the computation and the comparison)."""
    out = {}
    for manifest in Path(root).glob("*/manifest.json"):
        try:
            h = json.loads(manifest.read_bytes()).get("compute_hash") or "unknown"
        except (OSError, ValueError):
            h = "unreadable"
        out[h] = out.get(h, 0) + 1
    return out


CPU_ESTIMATE_CODE = """
import json, sys
from lintf import plan as P
exps = P.plan(sys.argv[1])
rates = P.calibrate(exps, sys.argv[1], device="cpu")
print(json.dumps({e.name: P.estimate(e, rates) for e in exps}))
"""
"""A child process's code: :func:`lintf.plan.calibrate` on the CPU and :func:`lintf.plan.estimate`
of every experiment of the scale ``argv[1]``, printed as one JSON line."""


def start_cpu_estimate(scale: str, work: Path) -> subprocess.Popen:
    """Start :data:`CPU_ESTIMATE_CODE` for ``scale`` in a child process (output to
    ``work / "cpu-estimate.log"``; it reads no store, ``work`` stands in for one)."""
    with open(work / "cpu-estimate.log", "w") as log:      # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-c", CPU_ESTIMATE_CODE, scale], stdout=log,
                                stderr=subprocess.STDOUT, env=_child_env(work / "no-store"))


def phase_compare(report: Report, args, device: str, stores: dict, deadline: float) -> dict:
    """Phase 2: the ci plan (``--only``) on ``device`` into ``stores["device"]`` in this
    process, one experiment at a time until ``deadline`` (seconds since the start); on the CPU
    into ``stores["cpu"]`` by ``python -m lintf compute`` in a child process at the same time
    (``--reference-store``: that store, nothing computed), stopped at ``deadline``; then
    :func:`compare_stores` of every experiment stored in both."""
    from lintf import plan as P
    report.head(f"2. the {COMPARE_SCALE} plan: {device} against cpu")
    exps = P.plan(COMPARE_SCALE, only=args.only)
    ref_root = Path(args.reference_store) if args.reference_store else stores["cpu"]
    child, log = None, stores["work"] / "reference-compute.log"
    if not args.reference_store:
        command = [sys.executable, "-m", "lintf", "compute", "--scale", COMPARE_SCALE, "--device", "cpu"]
        if args.only:
            command += ["--only", ",".join(args.only)]
        with open(log, "w") as handle:                 # the child keeps its own descriptor
            child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=_child_env(ref_root))
        report.line(f"reference: `{' '.join(command[1:])}` into {ref_root}, in a child process beside the device")
    else:
        report.line(f"reference: the existing store {ref_root} (nothing recomputed)")
    report.line(f"device: {len(exps)} experiments of the {COMPARE_SCALE} plan"
                f"{' (' + ','.join(args.only) + ')' if args.only else ''} on {device} into {stores['device']}, "
                f"until {deadline:.0f} s")
    start = report.elapsed()
    times, failed, not_started = {}, [], []
    for exp in exps:
        if report.elapsed() >= deadline:
            not_started.append(exp.name)
            continue
        out = P.compute(COMPARE_SCALE, experiments=[exp], store=_store(stores["device"]), device=device,
                        progress=False)
        times.update(out["times"])
        failed += out["failed"]
    device_seconds = report.elapsed() - start
    child_state = None
    if child is not None:
        try:
            child.wait(max(0.0, deadline - report.elapsed()))
            child_state = f"exited {child.returncode}"
        except subprocess.TimeoutExpired:
            child_state = _stop(child)
    ref_seconds = report.elapsed() - start
    report.line(f"device: computed {len(times)} in {device_seconds:.1f} s, failed {len(failed)}, "
                f"not started (share used) {len(not_started)}")
    for name, err in failed:
        report.line(f"  FAILED on {device}: {name}: {err}")
    if child is not None:
        report.line(f"reference: {child_state} after {ref_seconds:.1f} s; its last line: "
                    f"{(_tail(log, 1) or ['(none)'])[0]}")
    rows = compare_stores(stores["device"], ref_root, exps, COMPARE_SCALE, devices=(device, "cpu"))
    summary = summarize(rows)
    c = summary["counts"]
    tol = sorted({r["tolerance"] for r in rows if r["status"] != MISSING})
    report.line(f"compared {summary['frames_compared']} frames of {summary['experiments_compared']} experiments "
                f"({', '.join(tol) or 'none'}): {c[EQUAL]} equal, {c[WITHIN]} within tolerance, {c[DIFFERS]} differ, "
                f"{c[ERROR]} errors; {c[MISSING]} experiments not stored in both (not compared)")
    within = sorted((r for r in rows if r["status"] == WITHIN), key=lambda r: -r["max_rel"])
    for r in within[:10]:
        report.line(f"  within tolerance: {r['experiment']} / {r['frame']}: max abs {r['max_abs']:.3g}, "
                    f"max rel {r['max_rel']:.3g}")
    for r in rows:
        if r["status"] in FAILING:
            report.line(f"  {r['status'].upper()}: {r['experiment']} / {r['frame']} ({r['tolerance']}): {r['detail']}")
    if failed:
        summary["ok"] = False
    if not summary["frames_compared"]:
        report.line("  nothing compared: no experiment is stored in both stores")
        from lintf.compute.store import compute_hash
        for side, root in (("device", stores["device"]), ("reference", ref_root)):
            other = {h[:12]: n for h, n in store_sources(root).items() if h != compute_hash()}
            if other:
                report.line(f"  the {side} store holds entries of another lintf compute source ({other}; this "
                            f"process: {compute_hash()[:12]}): lintf/compute changed in between, or another checkout")
    report.data["compare"] = {"scale": COMPARE_SCALE, "only": args.only, "devices": [device, "cpu"],
                              "reference": str(ref_root), "reference_given": bool(args.reference_store),
                              "tolerances": {t.name: dataclasses.asdict(t)
                                             for t in (EXACT, CUDA_FLOAT32, CUDA_FLOAT64)},
                              "device_times": times, "device_failed": failed, "not_started": not_started,
                              "device_seconds": device_seconds, "reference_state": child_state,
                              "reference_log_tail": _tail(log) if child is not None else [],
                              "rows": rows, "summary": summary}
    return summary


# -- phase 3: timings and the estimate -----------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Kind:
    """A kind of paper-scale program: the ``setting`` it is timed on, with or without the
    per-step directional ``smoothness``, and what it stands for."""

    setting: str
    smoothness: bool
    what: str


KINDS = {
    "settings": Kind("setting1", True, "Settings 1-3 training, directional smoothness at every step"),
    "grid": Kind("setting1", False, "the rate grid, the table's, the sphere's and the ablation grid's runs "
                                    "(Setting 1's model, no smoothness); the gradient noise"),
    "depths": Kind("depth8", False, "the depths in float64 (timed at L=8; L=2, 4, 6 scaled by L/8)"),
    "softmax": Kind("softmax", False, "softmax attention"),
    "separate_qk": Kind("separate_qk", False, "separate W_K, W_Q"),
    "nonlinear": Kind("nonlinear", True, "the MLP front end (nonlinear regression), smoothness at every step"),
    "large": Kind("large", False, "the large model, L=8, d=20, n=60"),
}
"""The kinds of training program of the paper plan, each timed at :data:`R_SMALL` and
:data:`R_LARGE` runs (:func:`kind_of` maps an experiment's programs onto them)."""

HESSIAN_MODELS = ("setting1", "nonlinear", "depth8", "depth6", "depth4", "depth2")
"""The settings whose model's exact Hessian is timed (Setting 1's on ``scale.eval_large``
prompts, the paper's protocol; the others on one evaluation batch), in this order while the
share lasts; a model not timed is scaled from Setting 1's by ``(p / 150)^3`` (``p`` parameters:
on this project's CPU that rule fits the depths' measured Hessians within 25%)."""


def kind_of(setting: str, smoothness: bool) -> tuple[str, float]:
    """The :data:`KINDS` entry a program of ``setting`` (with or without smoothness) is
    estimated from, and the factor on its time (L/8 for the depths)."""
    from lintf.compute.settings import get_setting
    st = get_setting(setting)
    if st.role == "depth":
        return "depths", st.model.L / 8
    if setting in KINDS:
        return setting, 1.0
    return ("settings" if smoothness else "grid"), 1.0


def hessian_model(setting: str) -> str:
    """The :data:`HESSIAN_MODELS` entry whose timing a setting's Hessians use (Setting 1's model
    for every L=3 linear model: Setting 2's shorter prompts make it an upper bound)."""
    from lintf.compute.settings import get_setting
    st = get_setting(setting)
    if st.model.frontend == "mlp":
        return "nonlinear"
    if st.role == "depth":
        return setting
    return "setting1"


def programs_of(exp, scale) -> list:
    """What experiment ``exp`` of the plan at ``scale`` runs, as its plan counts it:
    ``("train", setting, runs, steps, smoothness)`` per batched training program,
    ``("hessian", setting, n)`` (``n`` exact Hessians of one run on ``scale.eval_size`` prompts),
    ``("gradient", setting, n)`` (``n`` gradients of one run on ``scale.noise_batch_size``
    prompts). It leaves out what :mod:`lintf.plan` leaves out: the smaller rates a stable search
    tries after a divergence, and what an experiment reads that is stored already."""
    from lintf.compute import experiments as E
    from lintf.compute.settings import get_setting
    st, sc, s, f = get_setting(exp.setting), scale, exp.setting, exp.function
    if exp.iterations == 0:
        return []
    if exp.unit in ("hessian", "gradient"):
        return [(exp.unit, s, exp.iterations)]
    seeds = len(sc.seeds_for(st))
    if f == "lr_sweep":
        runs = len(E.sweep_rates(s, sc, points=exp.kwargs.get("points"))) * len(sc.sweep_seeds)
        return [("train", s, runs, exp.iterations // runs, False)]
    if f == "stable_search":
        search, tested = 2 * len(sc.sweep_seeds), 2 * seeds
        steps = exp.iterations // (search + tested)
        return [("train", s, search, steps, False), ("train", s, tested, steps, st.record_smoothness)]
    if f == "table_training":
        return [("train", s, exp.iterations // sc.table_horizon, sc.table_horizon, False)]
    if f == "precision_pair":
        runs = 2 * len(sc.seeds_for(st)[:E.PAIR_SEEDS])
        return [("train", s, runs, exp.iterations // (2 * runs), False)] * 2
    if f == "ablation":
        n = len(E.ALL_OPTIMIZERS)
        grid = n * len(sc.ablation_factors) * len(sc.sweep_seeds)
        return [("train", s, grid, min(sc.ablation_sweep_steps, sc.ablation_steps), False),
                ("train", s, n * len(sc.seeds), sc.ablation_steps, True)]
    runs = 2 * seeds                                      # training: both optimizers, every seed
    return [("train", s, runs, exp.iterations // runs, st.record_smoothness)]


def estimate(exp, scale, calibration: dict):
    """Estimated seconds of ``exp`` from :func:`calibrate`'s ``calibration`` (None when a kind
    it needs was not timed): per training program ``steps x (a + b x runs) + overhead`` of its
    kind (x the depth factor), per Hessian the timed one of its model (:func:`hessian_model`,
    or scaled), per gradient ``a + b`` of its kind (one run, one step)."""
    total = 0.0
    for prog in programs_of(exp, scale):
        if prog[0] == "train":
            _, s, runs, steps, smooth = prog
            kind, factor = kind_of(s, smooth)
            k = calibration["kinds"].get(kind)
            if not k or k.get("b") is None:
                return None
            total += factor * (steps * (k["a"] + k["b"] * runs) + k["overhead"])
        elif prog[0] == "gradient":
            kind, factor = kind_of(prog[1], False)
            k = calibration["kinds"].get(kind)
            if not k or k.get("b") is None:
                return None
            total += factor * prog[2] * (k["a"] + k["b"])
        else:
            h = _hessian_seconds(prog[1], calibration)
            if h is None:
                return None
            total += prog[2] * h
    return total


def _hessian_seconds(setting: str, calibration: dict):
    """Seconds of one Hessian (one run, ``eval_size`` prompts) of ``setting``'s model: timed,
    else scaled from Setting 1's by ``(p / p1)^3`` (:data:`HESSIAN_MODELS`)."""
    from lintf.compute.settings import get_setting
    hs = calibration["hessians"]
    model = hessian_model(setting)
    if hs.get(model, {}).get("per_chunk") is not None:
        return hs[model]["per_chunk"]
    ref = hs.get("setting1", {}).get("per_chunk")
    if ref is None:
        return None
    p, p1 = get_setting(setting).model.num_params, get_setting("setting1").model.num_params
    return ref * (p / p1) ** 3


class _Single:
    """Inside: one torch thread, one pool thread for the engine and the Hessian, as
    :func:`lintf.plan.run_task` computes every experiment; restored after."""

    def __enter__(self):
        import torch

        from lintf.compute import engine, fast
        self.before = torch.get_num_threads(), engine.POOL_THREADS, fast.HESSIAN_POOL
        torch.set_num_threads(1)
        engine.POOL_THREADS = fast.HESSIAN_POOL = 1
        return self

    def __exit__(self, *exc):
        import torch

        from lintf.compute import engine, fast
        torch.set_num_threads(self.before[0])
        engine.POOL_THREADS, fast.HESSIAN_POOL = self.before[1], self.before[2]
        return False


def _time_program(setting: str, scale, runs: int, steps: int, smoothness: bool, device: str) -> float:
    """Wall seconds of :func:`lintf.compute.engine.train` of ``setting``'s model, both optimizers
    at their default rates from ``runs // 2`` seeds, ``steps`` iterations at the scale's batch."""
    import torch

    from lintf.compute.engine import train
    from lintf.compute.optim import OptimConfig
    from lintf.compute.settings import get_setting
    st = get_setting(setting)
    t0 = time.perf_counter()
    train(st.model, st.prompts, [("sgdm", st.lrs["sgdm"]), ("adam", st.lrs["adam"])], list(range(max(1, runs // 2))),
          steps=steps, batch_size=scale.batch_size, optim_config=OptimConfig(clip=st.clip),
          eval_every=scale.eval_every, checkpoint_every=None, record_smoothness=smoothness,
          smoothness_every=scale.smoothness_every, device=device, dtype=st.dtype, progress=False,
          skip_nonfinite=st.skip_nonfinite)
    if _device_type(device) == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def _hessian_inputs(setting: str, scale, chunks: int, device: str = "cpu"):
    """One run's float64 parameters (seed 0's initialisation) and ``chunks`` evaluation batches
    of ``scale.eval_size`` prompts, shaped as :mod:`lintf.compute.experiments` passes them: one
    batch per run (``large`` protocol), or one shared batch (the nonlinear setting's ``fixed``)."""
    import torch

    from lintf.compute import experiments as E
    from lintf.compute.engine import eval_batch, initial_params
    from lintf.compute.settings import get_setting
    st = get_setting(setting)
    params = {k: v[:1].double().to(device) for k, v in initial_params(st.model, [0]).items()}
    if st.model.frontend == "mlp":
        Z, y = eval_batch(st.prompts, scale.eval_size, dtype=torch.float64)
        return params, [(Z.to(device), y.to(device))] * chunks
    Z, y = E.eval_chunks(st, scale, 0, chunks)
    return params, [(Z[k].unsqueeze(0).to(device), y[k].unsqueeze(0).to(device)) for k in range(chunks)]


def _time_hessians(setting: str, scale, chunks: int, device: str = "cpu") -> list:
    """Wall seconds of each of ``chunks`` exact Hessians (:func:`lintf.compute.measure.hessian`)
    of ``setting``'s model on ``scale.eval_size`` prompts each."""
    import torch

    from lintf.compute import measure
    from lintf.compute.settings import get_setting
    model = get_setting(setting).model
    params, batches = _hessian_inputs(setting, scale, chunks, device)
    out = []
    for Z, y in batches:
        t0 = time.perf_counter()
        measure.hessian(model, params, Z, y)
        if _device_type(device) == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return out


def calibrate(report: Report, scale, device: str, deadline: float, steps: int) -> dict:
    """Time each of :data:`KINDS` on ``device`` at ``scale`` (``steps`` timed iterations at
    :data:`R_SMALL` and at :data:`R_LARGE` runs; per step and per run, ``a + b x runs``), the
    exact Hessians of :data:`HESSIAN_MODELS` on the CPU (where lintf computes every Hessian,
    whatever the device: its checkpoints come back from the store on the CPU), and on CUDA one
    Hessian on the device for comparison; nothing is started whose predicted time exceeds what
    is left before ``deadline``. Everything as :func:`lintf.plan.run_task` runs (one thread)."""
    from lintf.compute.settings import get_setting
    kinds, hessians, skipped = {}, {}, []

    def left():
        return deadline - report.elapsed()

    def point(name, runs):
        """``(per-step, overhead)`` at ``runs`` runs: from programs of 2 and 2 + steps iterations."""
        k = KINDS[name]
        short = _time_program(k.setting, scale, runs, 2, k.smoothness, device)
        long = _time_program(k.setting, scale, runs, 2 + steps, k.smoothness, device)
        per = max((long - short) / steps, 1e-9)
        return per, max(short - 2 * per, 0.0), short + long

    with _Single():
        for name, k in KINDS.items():                          # every kind once, small: cheap, needed
            if left() < 2.0:
                skipped.append(f"{name}: not timed, the share was used")
                continue
            warm = _time_program(k.setting, scale, R_SMALL, 1, k.smoothness, device)   # allocations, caches
            predicted = warm * (4 + steps)
            if predicted > left():
                skipped.append(f"{name}: not timed, about {predicted:.0f} s > {left():.0f} s left")
                continue
            per, over, spent = point(name, R_SMALL)
            kinds[name] = {"setting": k.setting, "smoothness": k.smoothness, "what": k.what, "warmup_s": warm,
                           "points": {R_SMALL: per}, "overhead": over, "seconds_spent": warm + spent,
                           "a": 0.0, "b": per / R_SMALL, "fit": f"one point ({R_SMALL} runs): a = 0, an upper bound "
                                                              "for larger programs where a per-step cost dominates"}
        if left() > 2.0:                                       # the paper's protocol: eval_large prompts
            count = scale.eval_large // scale.eval_size
            first = _time_hessians("setting1", scale, 1)[0]
            rec = {"per_chunk": first, "chunks_timed": 1, "prompts": scale.eval_size, "where": "cpu"}
            if first * count < left():
                t = _time_hessians("setting1", scale, count)
                rec.update(per_chunk=sum(t) / count, chunks_timed=count, prompts=scale.eval_large,
                           eval_large_s=sum(t))
            else:
                rec["note"] = (f"{count} batches ({scale.eval_large} prompts) would take about {first * count:.0f} s, "
                               f"{left():.0f} s left: one batch timed, the rest extrapolated")
            hessians["setting1"] = rec
        for name in KINDS:                                     # the second point where it fits
            if name not in kinds:
                continue
            rec = kinds[name]
            per1 = rec["points"][R_SMALL]
            predicted = (4 + steps) * per1 * R_LARGE / R_SMALL + 2 * rec["overhead"]
            if predicted > left():
                skipped.append(f"{name} at {R_LARGE} runs: not timed, about {predicted:.0f} s > {left():.0f} s left")
                continue
            per2, over2, spent = point(name, R_LARGE)
            b = (per2 - per1) / (R_LARGE - R_SMALL)
            a = per1 - b * R_SMALL
            if b <= 0:                  # no cost per run measurable (a GPU's noise): the slower point, flat
                a, b = max(per1, per2), 0.0
            elif a < 0:                 # the CPU's measurements scatter: proportional through the larger point
                a, b = 0.0, per2 / R_LARGE
            rec.update(a=a, b=b, overhead=max(rec["overhead"], over2), fit=f"two points ({R_SMALL}, {R_LARGE} runs)",
                       seconds_spent=rec["seconds_spent"] + spent)
            rec["points"][R_LARGE] = per2
        for name in HESSIAN_MODELS[1:]:
            if name in hessians:
                continue
            ref = hessians.get("setting1", {}).get("per_chunk")
            guess = (ref or 1.0) * (get_setting(name).model.num_params / 150) ** 3
            if guess * 2 > left():
                skipped.append(f"Hessian of {name}: not timed, about {guess:.0f} s > {left():.0f} s left; scaled")
                continue
            t = _time_hessians(name, scale, 1)[0]
            hessians[name] = {"per_chunk": t, "chunks_timed": 1, "prompts": scale.eval_size, "where": "cpu"}
    device_hessian = None
    if _device_type(device) == "cuda" and left() > 5.0:        # what moving the Hessians to the GPU would give
        try:
            t = _time_hessians("setting1", scale, 2, device)
            device_hessian = {"per_chunk": t[-1], "first": t[0], "prompts": scale.eval_size}
        except Exception as err:                                # information only
            device_hessian = {"error": f"{type(err).__name__}: {_first_line(err)}"}
    if _device_type(device) == "cuda":                          # phase 4's children share the GPU
        import torch
        torch.cuda.empty_cache()
    return {"scale": scale.name, "device": device, "steps": steps, "kinds": kinds, "hessians": hessians,
            "device_hessian": device_hessian, "skipped": skipped}


def claims_need(exps) -> set:
    """Names of the experiments the claims need: those the scorecard reads, with what they
    need first (their ``after``, transitively)."""
    by = {e.name: e for e in exps}
    need, todo = set(), [e.name for e in exps if "scorecard" in e.chapters]
    while todo:
        n = todo.pop()
        if n not in need and n in by:
            need.add(n)
            todo += list(by[n].after)
    return need


def phase_calibrate(report: Report, args, device: str, deadline: float, cpu_child, work: Path) -> dict:
    """Phase 3: :func:`calibrate` on the device at the target scale, the whole plan's estimate
    per chapter (device, and :func:`lintf.plan.calibrate`'s on the CPU where it finished:
    ``cpu_child`` already running, else started here when :data:`CPU_CALIBRATION_S` are left)."""
    from lintf import plan as P
    from lintf.compute.settings import get_scale
    report.head(f"3. timings at scale {args.target_scale} on {device}, and the {args.target_scale} plan's estimate")
    sc = get_scale(args.target_scale)
    cal = calibrate(report, sc, device, deadline, args.calibration_steps)
    report.line(f"training programs ({args.calibration_steps} timed iterations at B={sc.batch_size}, "
                f"one thread as `python -m lintf compute`; a: s per step whatever the runs, b: s per run-step):")
    report.line(f"  {'kind':<12} {'setting':<12} {'ms/step @' + str(R_SMALL):>12} {'ms/step @' + str(R_LARGE):>13} "
                f"{'a ms':>8} {'b ms':>8}  stands for")
    for name, k in cal["kinds"].items():
        p2 = k["points"].get(R_LARGE)
        p2 = "-" if p2 is None else f"{p2 * 1e3:.2f}"
        report.line(f"  {name:<12} {k['setting']:<12} {k['points'][R_SMALL] * 1e3:12.2f} {p2:>13} "
                    f"{k['a'] * 1e3:8.3f} {k['b'] * 1e3:8.3f}  {k['what']}")
    report.line("exact float64 Hessians, one run (on the CPU, one thread, where lintf computes them whatever "
                "the device):")
    for name, h in cal["hessians"].items():
        extra = f", {h['eval_large_s']:.2f} s for all {h['prompts']} prompts" if "eval_large_s" in h else ""
        report.line(f"  {name:<12} {h['per_chunk']:.3f} s per {sc.eval_size} prompts ({h['chunks_timed']} timed{extra})"
                    + (f"; {h['note']}" if "note" in h else ""))
    if cal["device_hessian"]:
        dh = cal["device_hessian"]
        report.line(f"  on {device}: " + (dh["error"] if "error" in dh else
                                          f"setting1 {dh['per_chunk']:.3f} s per {dh['prompts']} prompts "
                                          f"(first call {dh['first']:.3f} s): what moving the Hessians would give"))
    for s in cal["skipped"]:
        report.line(f"  skipped: {s}")
    # plan's CPU estimate: the child started beside phase 2 (CUDA), else here if the share allows
    cpu_est, cpu_note = None, ""
    log = work / "cpu-estimate.log"
    if cpu_child is None and args.cpu_estimate and deadline - report.elapsed() >= CPU_CALIBRATION_S:
        cpu_child = start_cpu_estimate(args.target_scale, work)
    elif cpu_child is None:
        cpu_note = (f"skipped: lintf.plan.calibrate on the CPU starts with {CPU_CALIBRATION_S:.0f} s of this "
                    f"phase's share left, {max(0.0, deadline - report.elapsed()):.0f} s were"
                    if args.cpu_estimate else "skipped (--no-cpu-estimate)")
    if cpu_child is not None:
        try:
            cpu_child.wait(max(0.0, deadline - report.elapsed()))
            text = _tail(log, 1)
            cpu_est = json.loads(text[0]) if cpu_child.returncode == 0 and text else None
            cpu_note = "lintf.plan.calibrate + estimate on the CPU" if cpu_est else \
                f"failed (exit {cpu_child.returncode}): {' | '.join(_tail(log, 3))}"
        except subprocess.TimeoutExpired:
            cpu_note = f"not finished within the share ({_stop(cpu_child)})"
        except ValueError:
            cpu_note = "its output was not JSON: " + " | ".join(_tail(log, 3))
    exps = P.plan(sc)
    need = claims_need(exps)
    per_exp = {e.name: estimate(e, sc, cal) for e in exps}
    chapters = {}
    for e in exps:
        for c in e.chapters:
            t = chapters.setdefault(c, {"experiments": 0, "device_s": 0.0, "cpu_s": 0.0, "untimed": 0})
            t["experiments"] += 1
            if per_exp[e.name] is None:
                t["untimed"] += 1
            else:
                t["device_s"] += per_exp[e.name]
            t["cpu_s"] += (cpu_est or {}).get(e.name) or 0.0
    report.line(f"the whole {sc.name} plan ({len(exps)} experiments; an experiment counts for every chapter that "
                f"reads it), estimated seconds:")
    report.line(f"  {'chapter':<16} {'exps':>4} {'on ' + device:>14} {'CPU (plan)':>12}")
    for c in P.CHAPTERS:
        if c in chapters:
            t = chapters[c]
            dev_s = ("≥ " if t["untimed"] else "") + _secs(t["device_s"])
            report.line(f"  {c:<16} {t['experiments']:>4} {dev_s:>14} {_secs(t['cpu_s']) if cpu_est else '-':>12}")
    total_dev = sum(v for v in per_exp.values() if v is not None)
    untimed = [n for n, v in per_exp.items() if v is None]
    total_cpu = sum(v or 0.0 for v in (cpu_est or {}).values())
    report.line(f"  {'all (once each)':<16} {len(exps):>4} {('≥ ' if untimed else '') + _secs(total_dev):>14} "
                f"{_secs(total_cpu) if cpu_est else '-':>12}")
    report.line(f"  the claims need {len(need)} of them: {_secs(sum(per_exp[n] or 0 for n in need))} s on {device}")
    report.line(f"  CPU column: {cpu_note}" + ("" if cpu_est else f"; the estimate is from this run's calibration "
                                                                  f"on {device} only"))
    if untimed:
        report.line(f"  not estimated ({len(untimed)}: a kind they need was not timed): {', '.join(untimed[:6])}"
                    + (" ..." if len(untimed) > 6 else ""))
    report.line("  (leaves out, as lintf.plan does: the smaller rates a stable search tries after a divergence, "
                "and divergence itself)")
    longest = sorted(((v, n) for n, v in per_exp.items() if v is not None), reverse=True)[:8]
    report.line("  longest on the device: " + "; ".join(f"{n} {_secs(v)} s" for v, n in longest))
    report.data["calibration"] = cal
    report.data["estimate"] = {"scale": sc.name, "device": device, "per_experiment": per_exp, "per_chapter": chapters,
                               "cpu_per_experiment": cpu_est, "cpu_note": cpu_note, "device_total_s": total_dev,
                               "cpu_total_s": total_cpu if cpu_est else None, "untimed": untimed,
                               "claims_need": sorted(need)}
    return {"per_experiment": per_exp, "need": need}


# -- phase 4: the paper plan, as far as the budget goes ---------------------------------------------
RUN_ONE_CODE = """
import sys
from lintf import plan as P
name, scale, device, root = sys.argv[1:5]
exp = next(e for e in P.plan(scale) if e.name == name)
P.run_task(exp, scale, device, root)
"""
"""A child process's code: :func:`lintf.plan.run_task` of the experiment named ``argv[1]`` of
the plan at scale ``argv[2]`` on device ``argv[3]`` into the store at ``argv[4]``."""


def phase_paper(report: Report, args, device: str, root: Path, deadline: float, est: dict) -> dict:
    """Phase 4: experiments of the target plan (``--only``) into the store ``root``, one child
    process each (killed at ``deadline``), greedily: among those whose ``after`` are stored and
    whose estimate (+ :data:`CHILD_OVERHEAD_S`) fits the time left, first the ones the claims
    need, then the longest chain of work (:func:`lintf.plan.priorities`)."""
    from lintf import plan as P
    from lintf.compute.settings import get_scale
    report.head(f"4. the {args.target_scale} plan on {device}, as far as the budget goes")
    sc = get_scale(args.target_scale)
    exps = P.plan(sc, only=args.only)
    order = {e.name: i for i, e in enumerate(exps)}
    prio, need = P.priorities(exps), est["need"]
    store = _store(root)
    done = {e.name for e in exps if P.stored(e, sc, device=device, store=store)}
    todo = [e for e in exps if e.name not in done]
    computed, failed, stopped = [], [], None
    report.line(f"{len(todo)} of {len(exps)} experiments to compute into {root}, until {deadline:.0f} s "
                f"(estimates + {CHILD_OVERHEAD_S:.0f} s per child process)")
    while todo:
        left = deadline - report.elapsed()
        ready = [e for e in todo if set(e.after) <= done]
        for e in [e for e in ready if e.iterations == 0]:       # stored by what it selects from
            if P.stored(e, sc, device=device, store=store):
                done.add(e.name)
                todo.remove(e)
                computed.append({"name": e.name, "seconds": 0.0, "estimate": 0.0, "status": "stored by its dependency"})
        ready = [e for e in todo if set(e.after) <= done]
        fits = [e for e in ready if est["per_experiment"].get(e.name) is not None
                and est["per_experiment"][e.name] + CHILD_OVERHEAD_S <= left]
        if not fits:
            break
        exp = max(fits, key=lambda e: (e.name in need, prio.get(e.name, 0), -order[e.name]))
        guess = est["per_experiment"][exp.name]
        report.line(f"  start {exp.name} (estimate {_secs(guess)} s, {left:.0f} s left)")
        t0 = report.elapsed()
        try:
            got = subprocess.run([sys.executable, "-c", RUN_ONE_CODE, exp.name, sc.name, device, str(root)],
                                 capture_output=True, text=True, env=_child_env(root), timeout=max(1.0, left))
            status = "computed" if got.returncode == 0 else f"failed (exit {got.returncode})"
            tail = " | ".join((got.stdout + got.stderr).strip().splitlines()[-3:])
        except subprocess.TimeoutExpired:
            status, tail = "stopped at the budget (killed; the store keeps whole entries only)", ""
        seconds = report.elapsed() - t0
        todo.remove(exp)
        rec = {"name": exp.name, "seconds": seconds, "estimate": guess, "status": status}
        if status == "computed" and P.stored(exp, sc, device=device, store=store):
            done.add(exp.name)
            computed.append(rec)
        else:
            rec["detail"] = tail
            failed.append(rec)
            if status.startswith("stopped"):
                stopped = exp.name
                break
        report.line(f"    {status} in {seconds:.1f} s" + (f": {tail}" if tail and status != "computed" else ""))
    skipped = []
    left = deadline - report.elapsed()
    for e in todo:
        missing = [a for a in e.after if a not in done]
        guess = est["per_experiment"].get(e.name)
        why = (f"needs {missing[0]}, not computed" if missing else "not timed" if guess is None
               else f"estimate {_secs(guess)} s + {CHILD_OVERHEAD_S:.0f} s > {max(left, 0):.0f} s left")
        skipped.append({"name": e.name, "estimate": guess, "why": why})
    report.line(f"computed {sum(1 for c in computed if c['status'] == 'computed')} "
                f"(+{sum(1 for c in computed if c['status'] != 'computed')} stored by a dependency), "
                f"failed or stopped {len(failed)}, not started {len(skipped)}")
    for s in skipped[:8]:
        report.line(f"  not started: {s['name']}: {s['why']}")
    if len(skipped) > 8:
        report.line(f"  ... and {len(skipped) - 8} more (report.json)")
    out = {"scale": sc.name, "store": str(root), "computed": computed, "failed": failed, "stopped": stopped,
           "not_started": skipped, "stored_before": sorted(done - {c["name"] for c in computed})}
    report.data["paper"] = out
    return out


# -- phase 5: the pack and the report --------------------------------------------------------------
PACK_NAME = "paper-results.tar"
"""The pack's file name in ``--out`` (parts ``.000``, ``.001``... with ``--part-size``)."""


def phase_pack(report: Report, args, device: str, root: Path, out_dir: Path) -> dict:
    """Phase 5a: :func:`lintf.pack.pack` of the target plan's entries in ``root`` into
    ``out_dir / PACK_NAME`` (parts of ``--part-size``), checked with :func:`lintf.pack.verify`."""
    from lintf import pack as K
    report.head("5. the pack")
    for old in out_dir.glob(PACK_NAME + "*"):         # stale parts would be read as part of the new pack
        old.unlink()
    if not any(c["status"] == "computed" or c["status"].startswith("stored") for c in
               report.data.get("paper", {}).get("computed", [])):
        report.line("nothing computed at the target scale: no pack")
        report.data["pack"] = {"paths": [], "entries": 0}
        return report.data["pack"]
    got = K.pack(out_dir / PACK_NAME, args.target_scale, only=args.only, part_size=args.part_size, device=device,
                 store=_store(root))
    K.verify(out_dir / PACK_NAME)
    sizes = {p: Path(p).stat().st_size for p in got["paths"]}
    report.line(f"packed {got['entries']} store entries of {got['experiments']} experiments "
                f"(scale {args.target_scale}) into {len(got['paths'])} file(s) of at most {args.part_size:,} bytes, "
                "verified: "
                + ", ".join(f"{Path(p).name} {s:,} B" for p, s in sizes.items()))
    report.line(f"read them elsewhere: python -m lintf unpack {out_dir / PACK_NAME}")
    report.data["pack"] = {**got, "sizes": sizes}
    return report.data["pack"]


def write_report(report: Report, out_dir: Path) -> None:
    """Phase 5b: ``report.json`` (everything recorded) and ``report.txt`` (everything printed)."""
    (out_dir / "report.json").write_text(json.dumps(_clean(report.data), indent=1))
    (out_dir / "report.txt").write_text("\n".join(report.lines) + "\n")


# -- the command line --------------------------------------------------------------------------
# the command line's own: one line on standard error, exit status 2; and its check of --only
from lintf.__main__ import UsageError, _only  # noqa: E402


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _budget(text) -> float:
    try:
        x = float(text)
    except ValueError:
        x = math.nan
    if not (math.isfinite(x) and x >= MIN_BUDGET):
        raise UsageError(f"--budget must be a number of seconds >= {MIN_BUDGET:g}; got {text!r}")
    return x



def parse(argv) -> argparse.Namespace:
    """The command line, checked: a :class:`UsageError` naming the option and what it accepts."""
    p = _Parser(prog="python benchmarks/device_check.py", description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="480", help="seconds for the whole check, from its start (default 480)")
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda or cuda:N")
    p.add_argument("--only", default=None, help="chapters, comma-separated: the ci comparison and the paper phase "
                                                "compute only their experiments (the estimate covers the whole plan)")
    p.add_argument("--out", default="./device-check-out", help="folder of the pack and the reports "
                                                                "(default ./device-check-out)")
    p.add_argument("--part-size", default="15M", help="largest pack part, bytes with K, M or G (default 15M: "
                                                      "parts fit a 16 MiB transfer limit)")
    p.add_argument("--reference-store", default=None, help="an existing CPU store of the ci plan to compare "
                                                           "against (nothing recomputed on the CPU)")
    p.add_argument("--no-paper", action="store_true", help="skip phase 4 (the paper plan) and the pack")
    p.add_argument("--no-cpu-estimate", dest="cpu_estimate", action="store_false",
                   help="skip lintf.plan.calibrate on the CPU (the estimate's CPU column)")
    p.add_argument("--keep-stores", action="store_true", help="keep the stores in --out (store-device, store-cpu, "
                                                              "store-paper) instead of a temporary folder")
    p.add_argument("--calibration-steps", default="5", help="timed iterations per calibration program (default 5)")
    p.add_argument("--target-scale", default="paper", help="the scale of phases 3-5 (default paper; ci tests the "
                                                           "script quickly)")
    args = p.parse_args(argv)
    args.budget = _budget(args.budget)
    from lintf.compute.engine import resolve_device
    try:
        args.device_resolved = str(resolve_device(args.device))
    except ValueError as err:
        raise UsageError(f"--device: {err}") from None
    args.only = None if args.only is None else _only(args.only)
    from lintf.pack import parse_size
    try:
        args.part_size = parse_size(args.part_size)
    except ValueError as err:
        raise UsageError(str(err)) from None
    text = args.calibration_steps
    args.calibration_steps = int(text) if str(text).strip().isdigit() else 0
    if not 1 <= args.calibration_steps <= 1000:
        raise UsageError(f"--calibration-steps must be an integer from 1 to 1000; got {text!r}")
    from lintf.compute.settings import SCALES
    if args.target_scale not in SCALES:
        raise UsageError(f"--target-scale must be one of {', '.join(SCALES)}; got {args.target_scale!r}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out must be a folder (created if missing); {out} exists and is not a folder")
    if args.reference_store is not None and not Path(args.reference_store).is_dir():
        raise UsageError(f"--reference-store must be an existing store folder; got {args.reference_store!r}")
    if args.keep_stores:
        for name in ("store-device", "store-cpu", "store-paper"):
            if (out / name).is_dir() and any((out / name).iterdir()):
                raise UsageError(f"--keep-stores needs empty stores: {out / name} holds an earlier check's; "
                                 "remove it or choose another --out")
    return args


def run(args) -> int:
    """The five phases; the exit status."""
    os.environ.pop("LINTF_READ_ONLY", None)        # in this process too: the check computes
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lintf-device-check-"))
    base = out if args.keep_stores else work
    stores = {"device": base / "store-device", "cpu": base / "store-cpu", "paper": base / "store-paper", "work": work}
    device = args.device_resolved
    report = Report(args.budget)
    final = args.budget - reserve(args.budget)
    shares = SHARES_NO_PAPER if args.no_paper else SHARES
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report.line(f"lintf device check, {stamp}: budget {args.budget:.0f} s ({reserve(args.budget):.0f} s kept for the "
                f"pack and report), device {device}, target scale {args.target_scale}"
                + (", no paper phase" if args.no_paper else ""))
    phases, cpu_child, ok, errors = {}, None, False, []

    def guarded(name, fn, *a):
        """``fn(*a)``, timed into ``phases[name]``; an exception is reported (one line, the
        traceback in report.json) and returns None: the other phases and the report go on."""
        t = report.elapsed()
        try:
            return fn(*a)
        except Exception as err:
            report.line(f"PHASE {name} FAILED: {type(err).__name__}: {_first_line(err)}")
            errors.append({"phase": name, "error": f"{type(err).__name__}: {_first_line(err)}",
                           "traceback": traceback.format_exc()})
            return None
        finally:
            phases[name] = report.elapsed() - t

    try:
        guarded("machine", phase_machine, report, device)
        if _device_type(device) == "cuda" and args.cpu_estimate:   # beside phases 2-3: the CPU is free there
            cpu_child = start_cpu_estimate(args.target_scale, work)
        summary = guarded("compare", phase_compare, report, args, device, stores,
                          min(final, args.budget * shares["compare"]))
        ok = bool(summary and summary["ok"])
        share = shares.get("calibrate")
        end3 = final if share is None else min(final, report.elapsed() + args.budget * share)
        est = guarded("calibrate", phase_calibrate, report, args, device, end3, cpu_child, work)
        if not args.no_paper and est is None:
            report.line("no estimate, so no paper phase (it never starts what it cannot estimate)")
        elif not args.no_paper:
            paper = guarded("paper", phase_paper, report, args, device, stores["paper"], final, est)
            packed = guarded("pack", phase_pack, report, args, device, stores["paper"], out)
            if paper is None or packed is None or (paper["failed"] and not paper["stopped"]):
                ok = False
        if errors:
            ok = False
    except KeyboardInterrupt:
        report.line("interrupted: the report holds what was done so far")
        ok = None
    finally:
        if cpu_child is not None:
            _stop(cpu_child)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
        elapsed = report.elapsed()
        report.head("summary")
        report.line("seconds per phase: " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()))
        respected = elapsed <= args.budget
        report.line(f"total {elapsed:.1f} s of the {args.budget:.0f} s budget: "
                    f"{'respected' if respected else 'EXCEEDED'}; load average at the end {load}")
        status = 130 if ok is None else 0 if ok else 1
        report.line(f"exit status {status}: " + {0: "no compared frame outside its tolerance",
                                                 1: "a frame outside its tolerance, a failed experiment, or "
                                                    "nothing compared (see above)",
                                                 130: "interrupted"}[status])
        report.data["budget"].update(phases=phases, elapsed=elapsed, respected=respected, final_load_average=load,
                                     reserve=reserve(args.budget), shares=shares)
        report.data["exit_status"] = status
        report.data["errors"] = errors
        report.data["args"] = {k: v for k, v in vars(args).items()}
        write_report(report, out)
        if not args.keep_stores:
            shutil.rmtree(work, ignore_errors=True)
    return status


def main(argv=None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the check; the exit status."""
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
    except UsageError as err:
        print(f"device_check.py: error: {err}", file=sys.stderr)
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
