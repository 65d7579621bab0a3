"""Many independent training runs as one batched tensor program.

A program trains every pair of a *configuration* ``(optimizer, lr)`` and a *seed*. Its
parameters are stacked on two leading run axes ``(K, S)``: ``K`` configurations by ``S``
seeds. Runs that share a seed share their initialisation and their stream of batches
(common random numbers): a step draws one batch per seed, shape ``(S, B, d+1, n+1)``, which
broadcasts against every configuration without a copy. Nothing in a step mixes runs, so a
run's numbers do not depend on which other runs share the program
(``tests/test_engine.py`` checks this against one run alone and against a plain
``nn.Module`` + ``torch.optim`` loop).

A run whose loss or gradient turns non-finite is marked diverged at that step and frozen;
the others go on. With ``skip_nonfinite=k > 0`` a non-finite step is skipped instead (the
run's parameters and optimizer moments stay as they were, the step is counted in the run's
``skipped``), and the run is marked diverged only when more than ``k`` steps in a row are
non-finite (from the first of them): a deep model's rare minibatch whose loss overflows even
float64 is then one lost step, not a lost run (the depth chapter).

Speed (``benchmarks/bench_engine.py``). Every model is differentiated by hand, directional
smoothness included: the plain linear model (``attention="linear"``, ``qk="joint"``, no front
end; full or block parametrization) by :mod:`lintf.compute.fast`, the variants (softmax, separate
``W_K, W_Q``, the MLP front end) by :mod:`lintf.compute.fast_variants`; backend ``"autograd"`` sends
them all through autograd instead. On the CPU: each op runs on one thread (:data:`CPU_THREADS`); the runs are cut
into chunks of about :data:`CHUNK_RUNS` that :data:`WORKERS` threads take in turn; the next
step's batch is drawn and summarised in a background thread while this step computes; and
glibc is asked to keep freed memory (:func:`_keep_freed_memory`). None of this changes a
number: ``tests/test_fast.py`` checks the hand-written path against autograd and the
threaded program against the serial one.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from . import fast, fast_variants, optim
from .checks import check_choice, check_int, check_positive, check_seeds
from .data import Prompts
from .model import Model
from .progress import bar as progress_bar

EVAL_SEED = 99
"""Seed of the fixed evaluation batch (the authors' choice), shared by every run."""

CHUNK_RUNS = 8
"""Runs per chunk of the hand-written path: at B=1000 a chunk's ``(runs, 6, 6, B)`` float32
tensor is ~1 MB, about one core's L2 cache; 120 runs at once (17 MB each) run ~1.5x slower
per run, a single run pays Python overhead on every small operation."""

WORKERS = max(1, min(4, os.cpu_count() or 1))
"""Threads that work on different chunks of runs at once (hand-written path on the CPU).
Runs are independent and each chunk is computed in the same order whichever thread takes
it, so the numbers do not depend on this. Measured at 40 runs on 2 cores: 0.67 ms per
run-iteration with two threads, 0.96 with one; at 6-12 runs (one or two chunks) no gain."""

POOL_THREADS: int | None = None
"""Threads that take the chunks in turn (None: :data:`WORKERS`). The chunks stay the same, so
the numbers do too; ``python -m lintf compute`` sets 1 inside each task, whose worker process
shares the cores with the others (:func:`lintf.plan.run_task`)."""

CPU_THREADS = 1
"""Intra-op threads while training on the CPU. The ops here are ~0.1 ms each: with two
threads every op waits for both, and on a loaded machine a descheduled thread costs a
whole scheduler slice (measured: 8 ms per op instead of 0.1 ms)."""


def resolve_device(device="auto") -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"``
    are taken as given (CUDA only where it is available); anything else is a ``ValueError``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    accepted = "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{accepted}; got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{accepted}; got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} asks for CUDA, which is not available here; use 'auto' or 'cpu'")
    return dev


CUBLAS_WORKSPACE = ":4096:8"
"""``CUBLAS_WORKSPACE_CONFIG`` that makes cuBLAS deterministic (the CUDA documentation's value)."""


def precision_flags(device="cpu", *, apply: bool = False) -> dict:
    """The numerics flags that change float32 results on ``device`` (``"cpu"``, ``"cuda"``, a
    ``torch.device``), as plain data for a result's manifest and, on CUDA, its key.

    On the CPU: ``{}`` (nothing to set). On CUDA, with ``apply=True`` first sets them: no TF32
    for float32 matmuls and convolutions (``torch.backends.cuda.matmul.allow_tf32``,
    ``torch.backends.cudnn.allow_tf32``), deterministic algorithms where torch has them
    (``torch.use_deterministic_algorithms(True, warn_only=True)``), ``cudnn.benchmark`` off and
    ``CUBLAS_WORKSPACE_CONFIG`` = :data:`CUBLAS_WORKSPACE` (set before the first cuBLAS call).
    Returns the flags in force: ``tf32_matmul``, ``tf32_cudnn``, ``deterministic``,
    ``cudnn_benchmark``, ``cublas_workspace``, ``matmul_precision``."""
    kind = device.type if isinstance(device, torch.device) else str(device).split(":")[0]
    if kind != "cuda":
        return {}
    if apply:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = False
        torch.set_float32_matmul_precision("highest")
        torch.use_deterministic_algorithms(True, warn_only=True)
    return {"tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
            "deterministic": bool(torch.are_deterministic_algorithms_enabled()),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "cublas_workspace": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            "matmul_precision": torch.get_float32_matmul_precision()}


FLUSH_DENORMAL = True
"""Whether training on the CPU flushes subnormal numbers to zero (``torch.set_flush_denormal``,
on the thread that computes each chunk of runs; :class:`flush_denormal`). As training sharpens
softmax attention, the weights of far keys fall below float32's smallest normal number (1.2e-38),
and an x86 core computes on such subnormal numbers many times slower: softmax attention at rate
0.04, 12 runs, 1000 steps on one thread, 7.9 ms per run-iteration without against 6.5 with (the
first 200 steps: 6.5 alike). A subnormal float32 is below 1e-38 of the numbers of order one it
meets, so no result of the book changes beyond rounding; the base model trains at the same speed
either way (Setting 3, 3000 steps: 1.21 against 1.17 ms)."""


def _flushing() -> bool:
    """Whether this thread flushes subnormal numbers to zero now (a probe: torch has no getter)."""
    tiny = torch.full((1,), 1e-30, dtype=torch.float32)
    return bool((tiny * 1e-10 == 0).item())


class flush_denormal:
    """Context manager: subnormal numbers flushed to zero on this thread inside (``on``; where
    the CPU cannot, nothing changes), the previous mode restored after."""

    def __init__(self, on: bool = True):
        self.on = bool(on)

    def __enter__(self):
        self.before = _flushing()
        if self.on != self.before:
            torch.set_flush_denormal(self.on)
        return self

    def __exit__(self, *exc):
        if self.on != self.before:
            torch.set_flush_denormal(self.before)
        return False


class cpu_threads:
    """Context manager: ``torch.set_num_threads(n)`` inside, the previous count restored after."""

    def __init__(self, n: int):
        self.n = check_int("n", n)

    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)
        return False


_MALLOC_TUNED = False


def _keep_freed_memory():
    """Ask glibc to keep freed memory instead of returning it to the system.

    Every step allocates and frees tensors of ~1 MB; by default glibc gives them back
    (mmap/trim) and the next step page-faults them in again, which measured as half the
    time of the hand-written path. Process-wide and harmless (the heap keeps its peak
    size, tens of MB); a no-op where glibc is not the allocator.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
        libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)                     # glibc's maximum
    except (OSError, AttributeError):
        pass


def _stream(seed: int, i: int) -> int:
    """The ``i``-th (0-3) of a run seed's four independent 63-bit stream seeds."""
    return int(np.random.SeedSequence(seed).generate_state(4, dtype=np.uint64)[i] >> np.uint64(1))


def seed_streams(seed: int) -> tuple[int, int]:
    """The two independent 63-bit seeds of a run seed: (initialisation, batches)."""
    return _stream(seed, 0), _stream(seed, 1)


def probe_stream(seed: int) -> int:
    """A third 63-bit seed of a run seed, independent of both :func:`seed_streams`: the probe
    batches on which the gradient norm is measured beside the directional smoothness
    (``grad_norm_probe``), so that the two come from different batches."""
    return _stream(seed, 2)


def seed_eval_batch(prompts: Prompts, seeds, batch_size: int, *, device=None, dtype=torch.float32):
    """Each seed's own evaluation batch, ``(S, B, d+1, n+1), (S, B)``: drawn (float32, on the CPU,
    then cast) from a fourth stream of the seed, independent of its initialisation, its training
    batches and its probe batches, so that the seeds' final losses are independent units
    (``seed_eval_loss``; the shared batch of :func:`eval_batch` gives ``eval_loss``)."""
    draws = []
    for s in seeds:
        gen = torch.Generator(device="cpu").manual_seed(_stream(s, 3))
        draws.append(prompts.sample(batch_size, generator=gen, dtype=torch.float32))
    return tuple(torch.stack([d[i] for d in draws]).to(device=device, dtype=dtype) for i in (0, 1))


DTYPES = (torch.float32, torch.float64)
"""The arithmetic a program trains in (:attr:`lintf.compute.settings.Setting.precision`). Whatever the
dtype, a run's random numbers (initialisation, batches, evaluation batch) are drawn in float32
and then cast, so that a seed is the same run in either precision and only the arithmetic
differs (:func:`lintf.compute.experiments.precision_pair` compares the two)."""


def check_dtype(dtype) -> torch.dtype:
    """``dtype`` if it is one of :data:`DTYPES`, else a ``ValueError`` naming the accepted ones."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype


def initial_params(model: Model, seeds, *, device=None, dtype=torch.float32) -> dict:
    """Initial parameters of each seed, stacked: tensors ``(S, *shape)``, drawn in float32 and
    cast to ``dtype`` (:data:`DTYPES`)."""
    dtype = check_dtype(dtype)
    per_seed = []
    for seed in seeds:
        gen = torch.Generator(device="cpu").manual_seed(seed_streams(seed)[0])
        per_seed.append(model.init(gen, dtype=torch.float32))
    return {k: torch.stack([p[k] for p in per_seed]).to(device=device, dtype=dtype) for k in per_seed[0]}


def eval_batch(prompts: Prompts, batch_size: int = 1000, *, seed: int = EVAL_SEED, device=None,
               dtype=torch.float32):
    """The fixed evaluation batch ``(Z, y)`` of a prompt distribution (drawn on the CPU)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    Z, y = prompts.sample(batch_size, generator=gen, dtype=dtype)
    return Z.to(device), y.to(device)


class BatchStream:
    """One stream of training batches per seed; ``next()`` gives ``(S, B, d+1, n+1), (S, B)``.

    Batches are drawn on the CPU in float32 with one generator per seed (so a seed's stream
    does not depend on the other seeds), then cast to ``dtype`` (:data:`DTYPES`) and moved to
    the device.
    """

    def __init__(self, prompts: Prompts, seeds, batch_size: int, device, dtype, probe: bool = False):
        self.prompts, self.batch_size, self.device, self.dtype = prompts, batch_size, device, check_dtype(dtype)
        self.seeds = tuple(seeds)
        streams = [probe_stream(s) if probe else seed_streams(s)[1] for s in seeds]   # probe: :func:`probe_stream`
        self.generators = [torch.Generator(device="cpu").manual_seed(x) for x in streams]

    def next(self):
        draws = [self.prompts.sample(self.batch_size, generator=g, dtype=torch.float32) for g in self.generators]
        Z = torch.stack([z for z, _ in draws]).to(self.dtype).to(self.device, non_blocking=True)
        y = torch.stack([y for _, y in draws]).to(self.dtype).to(self.device, non_blocking=True)
        return Z, y


@dataclass
class TrainResult:
    """What a training program produced.

    runs : one row per run: ``run, optimizer, lr, seed, diverged, diverged_step`` (-1 if not),
        ``skipped`` (non-finite steps skipped, ``skip_nonfinite``; 0 without).
    history : tidy, one row per ``(run, step, quantity)``: columns ``optimizer, lr, seed,
        step, quantity, value``; quantities ``loss`` (training minibatch loss of ``x_t``),
        ``grad_norm`` (before clipping), ``smoothness`` (directional smoothness, if
        recorded) at every step, with it ``grad_norm_probe`` (the gradient norm at the same
        point on an independent probe batch of the same size, :func:`probe_stream`),
        ``eval_loss`` (fixed evaluation batch) every ``eval_every`` steps and after the last, and with it ``seed_eval_loss`` (each seed's
        own evaluation batch, :func:`seed_eval_batch`: what the claims' final losses use). Values are NaN from a run's divergence on.
    checkpoints : ``{step: {name: tensor (R, *shape)}}``, the parameters ``x_step`` of every
        run (row order of ``runs``), on the CPU.
    seconds : wall time of the training loop.
    """

    runs: pd.DataFrame
    history: pd.DataFrame
    checkpoints: dict = field(default_factory=dict)
    seconds: float = float("nan")

    def params_at(self, step: int) -> dict:
        """The checkpointed parameters at ``step`` (tensors ``(R, *shape)``)."""
        if step not in self.checkpoints:
            raise ValueError(f"step must be one of the checkpoints {sorted(self.checkpoints)}; got {step!r}")
        return self.checkpoints[step]

    def __repr__(self) -> str:
        """One line: the runs, what the history holds, the checkpoints (never the tensors)."""
        runs, h = self.runs, self.history
        pairs = runs[["optimizer", "lr"]].drop_duplicates().itertuples(index=False)
        configs = ", ".join(f"{o} {lr:g}" for o, lr in pairs)
        seeds = [int(s) for s in pd.unique(runs["seed"])]
        diverged = int(runs["diverged"].sum())
        quantities = [str(q) for q in pd.unique(h["quantity"])]
        last = int(h["step"].max()) if len(h) else 0
        return (f"TrainResult({len(runs)} runs ({configs} x seeds {seeds}), {diverged} diverged; history: "
                f"{len(h)} rows of {quantities} up to step {last}; checkpoints at steps {sorted(self.checkpoints)}; "
                f"{self.seconds:.3g} s)")

    @classmethod
    def from_result(cls, result) -> "TrainResult":
        """A stored training result (:class:`lintf.compute.store.Result` with frames ``runs``,
        ``history`` and the checkpoints as tensors, as :func:`lintf.compute.experiments.training`
        returns) as a :class:`TrainResult`."""
        frames = getattr(result, "frames", None)
        if not isinstance(frames, dict) or not {"runs", "history"} <= set(frames):
            raise TypeError(f"result must be a lintf.compute.store.Result with frames 'runs' and 'history', got {result!r}")
        return cls(runs=frames["runs"], history=frames["history"],
                   checkpoints=cls.checkpoints_from_tensors(result.tensors))

    def run_index(self, optimizer: str, seed: int, lr: float | None = None) -> int:
        """Row of ``runs`` (and index of the run axis of every checkpoint tensor) of the run
        trained by ``optimizer`` from ``seed`` (at ``lr``: needed only when the optimizer was
        trained at several rates); ``ValueError`` naming the runs there are."""
        runs = self.runs.reset_index(drop=True)
        match = (runs["optimizer"] == optimizer) & (runs["seed"] == seed)
        if lr is not None:
            match &= runs["lr"] == lr
        rows = list(runs.index[match])
        if len(rows) != 1:
            have = sorted({(o, float(r), int(s)) for o, r, s in runs[["optimizer", "lr", "seed"]].itertuples(index=False)})
            what = "no run" if not rows else f"{len(rows)} runs (pass lr=)"
            raise ValueError(f"(optimizer, lr, seed) = ({optimizer!r}, {lr!r}, {seed!r}) matches {what}; "
                             f"the runs are {have}")
        return int(rows[0])

    def run_params(self, step: int, optimizer: str, seed: int, lr: float | None = None) -> dict:
        """The parameters ``{name: tensor (*shape)}`` of one run (:meth:`run_index`) at the
        checkpoint ``step``, ready for :func:`lintf.compute.measure.hessian`."""
        i = self.run_index(optimizer, seed, lr)
        return {k: v[i] for k, v in self.params_at(step).items()}

    def per_run(self, values, name: str = "value") -> pd.DataFrame:
        """``runs`` with one more column ``name`` holding ``values`` (one per run, in row
        order, e.g. :func:`lintf.compute.measure.robust_condition` of the Hessians of
        ``params_at(step)``, shape ``(R,)``): a per-run tensor labelled by its runs."""
        values = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values)
        if values.shape != (len(self.runs),):
            raise ValueError(f"values must hold one value per run, shape ({len(self.runs)},); got {values.shape}")
        return self.runs.assign(**{name: values})

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Checkpoints flattened to ``{"<step>/<name>": tensor}`` for the results store."""
        return {f"{step}/{k}": v for step, ps in self.checkpoints.items() for k, v in ps.items()}

    @staticmethod
    def checkpoints_from_tensors(tensors: dict[str, torch.Tensor]) -> dict:
        """Inverse of :meth:`to_tensors`."""
        out: dict = {}
        for key, v in tensors.items():
            step, name = key.split("/", 1)
            out.setdefault(int(step), {})[name] = v
        return dict(sorted(out.items()))


def _check_configs(configs):
    if isinstance(configs, (str, bytes)) or not hasattr(configs, "__iter__"):
        raise TypeError(f"configs must be a non-empty list of (optimizer, lr) pairs, got {configs!r}")
    out = []
    for i, c in enumerate(configs):
        if not isinstance(c, (tuple, list)) or len(c) != 2:
            raise ValueError(f"configs[{i}] must be an (optimizer, lr) pair, got {c!r}")
        out.append((check_choice(f"configs[{i}] optimizer", c[0], optim.ALL_OPTIMIZERS),
                    check_positive(f"configs[{i}] lr", c[1])))
    if not out:
        raise ValueError("configs must be a non-empty list of (optimizer, lr) pairs, got an empty one")
    return out


def train(model: Model, prompts: Prompts, configs, seeds, *, steps: int, batch_size: int = 1000,
          optim_config: optim.OptimConfig = optim.OptimConfig(), eval_every: int = 50,
          eval_size: int = 1000, checkpoint_every: int | None = 250, record_smoothness: bool = False,
          smoothness_every: int = 1, device="auto", dtype=torch.float32, progress: bool | None = None,
          desc: str = "train", backend: str | None = None, skip_nonfinite: int = 0,
          shared_batch=None) -> TrainResult:
    """Train every ``(optimizer, lr)`` in ``configs`` from every seed in ``seeds``, batched.

    Parameters
    ----------
    model, prompts : what is trained, on which data.
    configs : list of ``(optimizer, lr)``, optimizer in :data:`lintf.compute.optim.ALL_OPTIMIZERS`.
    seeds : distinct integers; a seed fixes the initialisation and the batch stream.
    steps : iterations ``T``; ``batch_size``: fresh prompts per step ``B``.
    eval_every, eval_size : cadence and size of the fixed evaluation batch (seed 99).
    checkpoint_every : keep the parameters every this many steps (and at the end); None: never.
    record_smoothness : also record the directional smoothness ``u^T H(x_t) u`` along the
        normalised update ``u``, on the step's own batch (:func:`lintf.compute.fast_variants.curvature`,
        or :func:`lintf.compute.measure.directional_smoothness` under backend ``"autograd"``), at every
        ``smoothness_every``-th step (1: every step, as the paper).
    device : ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``.
    dtype : the arithmetic, ``torch.float32`` or ``torch.float64`` (:data:`DTYPES`); the random
        numbers are float32 draws either way, so a seed is the same run in both.
    backend : how the gradient is computed, :data:`lintf.compute.fast.BACKENDS`: ``"autograd"``
        through :mod:`lintf.compute.model` for every model, ``"fast"`` and ``"auto"`` by hand
        (:mod:`lintf.compute.fast`, :mod:`lintf.compute.fast_variants`: every model); None:
        ``$LINTF_BACKEND``, else ``"auto"``. The same numbers to float32 rounding (tested).
    skip_nonfinite : 0 (default): a run whose minibatch loss or gradient is non-finite is
        diverged at that step and frozen. ``k > 0``: such a step is skipped (parameters and
        optimizer moments unchanged, counted in ``runs.skipped``; Adam's shared step counter
        still advances, which moves its bias correction by less than ``0.9^t``) and the run
        is diverged only after more than ``k`` non-finite steps in a row, at the first of them.
        Skipped steps record NaN loss and gradient norm.
    shared_batch : None, or ``(Z, y)``, ``(B, d+1, n+1)`` and ``(B,)``: one batch shared by every
        run and every step (the book passes the authors' seed-99 batch,
        :func:`lintf.compute.data.authors_prompts`), on which the measurement protocols that the
        claims' declared alternatives compare are recorded inside the same program (no
        training changes): at every evaluation step ``shared_eval_loss`` (mean squared error on
        it), ``shared_eval_median`` and ``seed_eval_median`` (the median over prompts of the
        squared error, on it and on each seed's own evaluation batch); with
        ``record_smoothness``, at every smoothness step, the directional smoothness along the
        same update ``u`` on it (``smoothness_shared``, with the gradient norm there,
        ``grad_norm_shared``), on the step's independent probe batch (``smoothness_probe``: a
        fresh batch per step) and on each seed's own evaluation batch (``smoothness_seed``).
    """
    configs = _check_configs(configs)
    skip_nonfinite = check_int("skip_nonfinite", skip_nonfinite, minimum=0)
    dtype = check_dtype(dtype)
    hand = fast_variants.use(model, backend)
    seeds = check_seeds("seeds", seeds)
    steps = check_int("steps", steps)
    batch_size = check_int("batch_size", batch_size)
    eval_every = check_int("eval_every", eval_every)
    eval_size = check_int("eval_size", eval_size)
    smoothness_every = check_int("smoothness_every", smoothness_every)
    if not isinstance(optim_config, optim.OptimConfig):
        raise TypeError(f"optim_config must be a lintf.compute.optim.OptimConfig, got {type(optim_config).__name__}")
    if checkpoint_every is not None:
        checkpoint_every = check_int("checkpoint_every", checkpoint_every)
    if prompts.d != model.d:
        raise ValueError(f"prompts.d ({prompts.d}) must equal model.d ({model.d})")
    if shared_batch is not None:
        Zs, ys = shared_batch
        want = (prompts.d + 1, prompts.n + 1)
        if Zs.dim() != 3 or tuple(Zs.shape[1:]) != want or tuple(ys.shape) != (Zs.shape[0],):
            raise ValueError(f"shared_batch must be (Z, y) of shapes (B, {want[0]}, {want[1]}) and (B,), got "
                             f"{tuple(Zs.shape)} and {tuple(ys.shape)}")
    device = resolve_device(device)
    args = (model, prompts, configs, seeds, steps, batch_size, optim_config, eval_every, eval_size, checkpoint_every,
            record_smoothness, smoothness_every, device, dtype, progress, desc, hand, skip_nonfinite, shared_batch)
    if device.type == "cpu":
        _keep_freed_memory()
        with cpu_threads(CPU_THREADS), flush_denormal(FLUSH_DENORMAL):
            return _train(*args)
    return _train(*args)


class _Program:
    """Loss, gradient and directional smoothness of every run, ``(K, S)`` runs at a time.

    With ``hand`` (backend ``fast`` or ``auto``) through :mod:`lintf.compute.fast_variants` (the plain
    model: :mod:`lintf.compute.fast`) in chunks of configurations (a batch is prepared once per seed and
    shared by the chunks); otherwise through autograd on the model, one graph per worker
    thread (the configurations split between them).
    """

    def __init__(self, model: Model, n: int, K: int, S: int, device, keep_forward: bool, hand: bool):
        self.model, self.n, self.keep_forward = model, n, keep_forward
        self.hand = hand
        if device.type != "cpu":
            per_chunk = K
        elif self.hand:
            per_chunk = max(1, CHUNK_RUNS // S)
            if not fast.supports(model):  # the variants' ops are large: a chunk for each worker at least
                per_chunk = min(per_chunk, -(-K // WORKERS))
        else:                         # autograd: one graph per worker, its ops large enough to share none
            per_chunk = -(-K // WORKERS)
        self.chunks = [slice(i, min(i + per_chunk, K)) for i in range(0, K, per_chunk)]
        self.forwards = []
        threads = WORKERS if POOL_THREADS is None else POOL_THREADS
        self.pool = ThreadPoolExecutor(threads) if threads > 1 and len(self.chunks) > 1 else None

    def close(self):
        if self.pool is not None:
            self.pool.shutdown()

    def batch(self, Z, y):
        """What the model needs of a batch ``Z (S, B, d+1, n+1)`` or ``(B, d+1, n+1)``, ``y (S, B)``
        or ``(B,)``: its summaries (hand-written path), else views with the run axes in front
        (the MLP front end does not broadcast a batch against runs)."""
        if self.hand:
            return fast_variants.prepare(self.model, Z, y)
        return Z, y

    def _each_chunk(self, fn, *trees):
        """``fn(i, *chunk_i_of_trees)`` for every chunk ``i`` of configurations; a list of results."""
        args = [(i, *({k: v[c] for k, v in t.items()} for t in trees)) for i, c in enumerate(self.chunks)]
        if self.pool is None:
            return [fn(*a) for a in args]
        flush = _flushing()                            # the caller's mode, on every pool thread too

        def run(a):
            with flush_denormal(flush):
                return fn(*a)
        return list(self.pool.map(run, args))

    def loss(self, params, batch):
        """Loss ``(K, S)`` on a prepared batch, no gradient."""
        if self.hand:
            return _cat(self._each_chunk(lambda i, p: fast_variants.loss(self.model, p, batch), params))
        with torch.no_grad():
            return _cat(self._each_chunk(lambda i, p: self.model.loss(p, *self._expand(p, *batch)), params))

    @staticmethod
    def _expand(params, Z, y):
        """A batch ``(S, B, ...)`` or ``(B, ...)`` expanded to the run axes ``(K_chunk, S)`` of
        ``params`` (the MLP front end does not broadcast a batch against runs)."""
        runs = next(iter(params.values())).shape[:2]
        return Z.expand(*runs, *Z.shape[-3:]), y.expand(*runs, y.shape[-1])

    def loss_and_grad(self, params, batch):
        """Loss ``(K, S)`` and gradient (dict shaped like ``params``) on a prepared batch."""
        if self.hand:
            outs = self._each_chunk(lambda i, p: fast_variants.loss_and_grad(self.model, p, batch,
                                                                             keep_forward=self.keep_forward), params)
            # the smoothness of this step reuses each chunk's forward pass
            self.forwards = [o[2] for o in outs] if self.keep_forward else []
            return _cat([o[0] for o in outs]), _cat([o[1] for o in outs])
        def chunk(i, p):
            leaves = {k: v.detach().requires_grad_() for k, v in p.items()}
            with torch.enable_grad():
                losses = self.model.loss(leaves, *self._expand(p, *batch))
                grads = torch.autograd.grad(losses.sum(), list(leaves.values()))
            return losses.detach(), dict(zip(leaves, grads))

        outs = self._each_chunk(chunk, params)
        return _cat([o[0] for o in outs]), _cat([o[1] for o in outs])

    def error_median(self, params, Z, y):
        """The median over prompts of the squared error of every run, ``(K, S)``, on raw prompts
        ``Z (S, B, d+1, n+1)``, ``y (S, B)`` (no gradient; the median of an even count is the
        mean of the middle two)."""
        def chunk(i, p):
            with torch.no_grad():
                err = (self.model.predict(p, self._expand(p, Z, y)[0]) - y).square()
                return torch.quantile(err, 0.5, dim=-1)
        return _cat(self._each_chunk(chunk, params))

    def smoothness(self, params, direction, batch, Z, y):
        """Directional smoothness ``u^T H u``, ``u = direction / ||direction||``, ``(K, S)``,
        at the point and on the batch of the last :meth:`loss_and_grad`."""
        if not self.hand:
            from .measure import directional_smoothness
            return _cat(self._each_chunk(lambda i, p, v: directional_smoothness(self.model, p, v, Z, y),
                                         params, direction))
        forwards = self.forwards or [None] * len(self.chunks)
        curv = _cat(self._each_chunk(lambda i, p, v: fast_variants.curvature(self.model, p, v, batch,
                                                                             forward=forwards[i]), params, direction))
        self.forwards = []
        return curv / optim.global_norm(direction, run_dims=2).square()


class _Prefetch:
    """The next ``count`` results of ``fn()``, each computed in a background thread while the
    caller works on the previous one.

    Drawing and summarising a batch is a third of a step at 6 runs; on a second core it
    overlaps the step. Only that thread calls ``fn``, in order, so the stream of batches
    is what a plain loop would draw.
    """

    def __init__(self, fn, count: int):
        self.fn, self.left = fn, count
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lintf-batches")
        self.future = self.pool.submit(fn)

    def next(self):
        out = self.future.result()
        self.left -= 1
        if self.left > 0:
            self.future = self.pool.submit(self.fn)
        return out

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Synchronous:
    """:class:`_Prefetch`'s interface, computing each result when asked (accelerators)."""

    def __init__(self, fn):
        self.fn = fn

    def next(self):
        return self.fn()

    def close(self):
        pass


def _cat(parts):
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], dict):
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return torch.cat(parts)


def _train(model, prompts, configs, seeds, steps, batch_size, optim_config, eval_every, eval_size,
           checkpoint_every, record_smoothness, smoothness_every, device, dtype, progress,
           desc, hand, skip_nonfinite=0, shared_batch=None) -> TrainResult:
    K, S = len(configs), len(seeds)
    program = _Program(model, prompts.n, K, S, device, keep_forward=record_smoothness, hand=hand)
    lr = torch.tensor([c[1] for c in configs], device=device, dtype=dtype).unsqueeze(1).expand(K, S)
    kind = torch.tensor([optim.ALL_OPTIMIZERS.index(c[0]) for c in configs], device=device).unsqueeze(1).expand(K, S)
    params = {k: v.unsqueeze(0).expand(K, *v.shape).clone()
              for k, v in initial_params(model, seeds, device=device, dtype=dtype).items()}
    names = list(params)
    state = optim.init_state(params)
    stream = BatchStream(prompts, seeds, batch_size, device, dtype)
    eval_data = program.batch(*(t.to(dtype) for t in eval_batch(prompts, eval_size, device=device)))

    active = torch.ones(K, S, dtype=torch.bool, device=device)
    diverged_step = torch.full((K, S), -1, dtype=torch.long, device=device)
    skipped = torch.zeros(K, S, dtype=torch.long, device=device)
    streak = torch.zeros(K, S, dtype=torch.long, device=device)      # non-finite steps in a row
    rec = {q: torch.full((steps, K, S), float("nan"), device=device, dtype=dtype)
           for q in ["loss", "grad_norm"]}
    smooth_steps = np.arange(0, steps, smoothness_every) if record_smoothness else np.arange(0)
    smooth_rec = torch.full((len(smooth_steps), K, S), float("nan"), device=device, dtype=dtype)
    probe_rec = torch.full_like(smooth_rec, float("nan"))
    probes = BatchStream(prompts, seeds, batch_size, device, dtype, probe=True) if record_smoothness else None
    eval_steps = sorted(set(range(0, steps, eval_every)) | {steps})
    eval_rec = torch.full((len(eval_steps), K, S), float("nan"), device=device, dtype=dtype)
    seed_eval_rec = torch.full_like(eval_rec, float("nan"))
    seed_Z, seed_y = seed_eval_batch(prompts, seeds, eval_size, device=device, dtype=dtype)
    seed_eval = program.batch(seed_Z, seed_y)
    # the declared alternatives' protocols (``shared_batch``): recorded in this same program
    shared = None
    extra_eval, extra_smooth = {}, {}
    if shared_batch is not None:
        Zs, ys = (t.to(device=device, dtype=dtype) for t in shared_batch)
        Zs, ys = Zs.expand(S, *Zs.shape), ys.expand(S, *ys.shape)       # the seeds' layout, as a training batch
        shared = (Zs, ys, program.batch(Zs, ys))
        extra_eval = {q: torch.full_like(eval_rec, float("nan"))
                      for q in ("shared_eval_loss", "shared_eval_median", "seed_eval_median")}
        if record_smoothness:
            extra_smooth = {q: torch.full_like(smooth_rec, float("nan"))
                            for q in ("smoothness_shared", "grad_norm_shared", "smoothness_probe", "smoothness_seed")}
    ckpt_steps = set() if checkpoint_every is None else set(range(0, steps + 1, checkpoint_every)) | {steps}
    checkpoints = {}

    def evaluate(i):
        with torch.no_grad():
            eval_rec[i] = torch.where(active, program.loss(params, eval_data), float("nan"))
            seed_eval_rec[i] = torch.where(active, program.loss(params, seed_eval), float("nan"))
            if shared is not None:
                for q, value in (("shared_eval_loss", lambda: program.loss(params, shared[2])),
                                 ("shared_eval_median", lambda: program.error_median(params, shared[0], shared[1])),
                                 ("seed_eval_median", lambda: program.error_median(params, seed_Z, seed_y))):
                    extra_eval[q][i] = torch.where(active, value(), float("nan"))

    def as_runs(x):
        return x.detach().reshape(K * S, *x.shape[2:]).to("cpu", copy=True)

    def next_batch():
        Z, y = stream.next()
        return Z, y, program.batch(Z, y)

    start = time.perf_counter()
    batches = _Prefetch(next_batch, steps) if device.type == "cpu" else _Synchronous(next_batch)
    eval_i = 0
    bar = progress_bar(range(steps), desc=f"{desc}: {K * S} runs", progress=progress, unit="step")
    try:
        for t in bar:
            if t == eval_steps[eval_i]:
                evaluate(eval_i)
                eval_i += 1
            if t in ckpt_steps:
                checkpoints[t] = {k: as_runs(v) for k, v in params.items()}
            Z, y, batch = batches.next()
            losses, grads = program.loss_and_grad(params, batch)      # (K, S), dict
            with torch.no_grad():
                clipped, norms = optim.clip_by_global_norm(grads, optim_config.clip, run_dims=2)
                finite = torch.isfinite(losses) & torch.isfinite(norms)
                moments = (dict(state["m"]), dict(state["v"]))         # update() replaces, never mutates
                new, delta = optim.update(params, clipped, state, lr, kind, optim_config, run_dims=2)
                if skip_nonfinite:
                    streak = torch.where(finite, 0, streak + 1)
                    lost = active & (streak > skip_nonfinite)
                    diverged_step.masked_fill_(lost, t - skip_nonfinite)
                    active &= ~lost
                    skipped += (active & ~finite).long()
                    for store_, old in zip((state["m"], state["v"]), moments):
                        for k in names:
                            keep = finite.reshape(K, S, *([1] * (old[k].dim() - 2)))
                            store_[k] = torch.where(keep, store_[k], old[k])
                    step_ok = active & finite
                else:
                    diverged_step.masked_fill_(active & ~finite, t)
                    active &= finite
                    step_ok = active
                rec["loss"][t] = torch.where(step_ok, losses, float("nan"))
                rec["grad_norm"][t] = torch.where(step_ok, norms, float("nan"))
                if record_smoothness and t % smoothness_every == 0:
                    smooth = program.smoothness(params, delta, batch, Z, y)
                    smooth_rec[t // smoothness_every] = torch.where(step_ok, smooth, float("nan"))
                    Zp, yp = probes.next()
                    probe_batch = program.batch(Zp, yp)
                    _, probe_grads = program.loss_and_grad(params, probe_batch)
                    j = t // smoothness_every
                    probe_rec[j] = torch.where(step_ok, optim.global_norm(probe_grads, run_dims=2), float("nan"))
                    if shared is not None:
                        # the same update u on other batches: the probe's (its forward pass reused),
                        # the shared one (with its gradient norm) and each seed's evaluation batch
                        got = {"smoothness_probe": program.smoothness(params, delta, probe_batch, Zp, yp)}
                        _, shared_grads = program.loss_and_grad(params, shared[2])
                        got["grad_norm_shared"] = optim.global_norm(shared_grads, run_dims=2)
                        got["smoothness_shared"] = program.smoothness(params, delta, shared[2], shared[0], shared[1])
                        program.forwards = []
                        got["smoothness_seed"] = program.smoothness(params, delta, seed_eval, seed_Z, seed_y)
                        for q, value in got.items():
                            extra_smooth[q][j] = torch.where(step_ok, value, float("nan"))
                    program.forwards = []
                params = {k: torch.where(step_ok.reshape(K, S, *([1] * (new[k].dim() - 2))), new[k], params[k])
                          for k in names}
        if eval_steps[eval_i] == steps:
            evaluate(eval_i)
        if steps in ckpt_steps:
            checkpoints[steps] = {k: as_runs(v) for k, v in params.items()}
    finally:
        batches.close()
        program.close()
        bar.close()
    seconds = time.perf_counter() - start

    runs = pd.DataFrame({
        "run": np.arange(K * S),
        "optimizer": np.repeat([c[0] for c in configs], S),
        "lr": np.repeat([c[1] for c in configs], S),
        "seed": np.tile(seeds, K),
        "diverged": (diverged_step >= 0).reshape(-1).cpu().numpy(),
        "diverged_step": diverged_step.reshape(-1).cpu().numpy(),
        "skipped": skipped.reshape(-1).cpu().numpy(),
    })
    frames = [_tidy(runs, np.arange(steps), q, v) for q, v in rec.items()]
    if record_smoothness:
        frames.append(_tidy(runs, smooth_steps, "smoothness", smooth_rec))
        frames.append(_tidy(runs, smooth_steps, "grad_norm_probe", probe_rec))
    frames.append(_tidy(runs, np.array(eval_steps), "eval_loss", eval_rec))
    frames.append(_tidy(runs, np.array(eval_steps), "seed_eval_loss", seed_eval_rec))
    frames += [_tidy(runs, np.array(eval_steps), q, v) for q, v in extra_eval.items()]
    frames += [_tidy(runs, smooth_steps, q, v) for q, v in extra_smooth.items()]
    history = pd.concat(frames, ignore_index=True)
    return TrainResult(runs=runs, history=history, checkpoints=checkpoints, seconds=seconds)


def _tidy(runs: pd.DataFrame, steps: np.ndarray, quantity: str, values: torch.Tensor) -> pd.DataFrame:
    """``values (T, K, S)`` to tidy rows ordered by run, then step."""
    v = values.reshape(len(steps), -1).T.cpu().double().numpy()          # (R, T)
    R, T = v.shape
    idx = np.repeat(np.arange(R), T)
    return pd.DataFrame({
        "optimizer": runs["optimizer"].to_numpy()[idx],
        "lr": runs["lr"].to_numpy()[idx],
        "seed": runs["seed"].to_numpy()[idx],
        "step": np.tile(steps, R),
        "quantity": quantity,
        "value": v.reshape(-1),
    })
