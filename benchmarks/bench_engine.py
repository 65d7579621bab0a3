"""How fast is the training engine? One process times, on the book's base setting (L=3, d=5,
n=20, B=1000, gaussian prompts, the authors' block parametrization: Setting 1's model):

- ``reference``: the authors' style, one run at a time: an ``nn.Module`` whose attention is
  computed in the literal order ``P Z M (Z^T Q Z)``, ``torch.optim.Adam`` and
  ``clip_grad_norm_``, a fresh batch drawn every step;
- ``associative``: the same loop on :func:`lintf.model.loss` (attention as ``P (Z M Z^T) Q Z``);
- ``engine R=..``: :func:`lintf.engine.train` with ``R`` runs in one program (configurations
  x seeds), with and without the per-step directional smoothness;
- the exact float64 Hessian of one run at one checkpoint (:func:`lintf.measure.hessian`), on
  the B=1000 evaluation batch (``hessian_seconds``) and on 20000 prompts
  (``hessian_20k_seconds``, median of 3; with ``--profile`` and above 2 s, its cProfile);
- a large float32 matrix product, to say how fast this machine was while the rest ran;
- the model variants (softmax attention, separate ``W_K, W_Q``, the nonlinear setting's MLP front
  end, each its book setting's model, smoothness recorded where the setting records it) and the
  large model of Fig 8: :func:`lintf.engine.train` of 6 runs at B=1000 with ``backend="fast"``
  (:mod:`lintf.fast_variants`) against ``backend="autograd"``, in the same process, round-robin
  (``--variants``: this part alone).

Every number is a median over ``--repeats`` repetitions, taken round-robin so that a burst
of load from another process hits every row alike. Times are wall clock (what a reader
waits for) with the process's CPU time beside them (less sensitive to other processes).
The machine's load average is printed at the start and the end.

    python benchmarks/bench_engine.py --quick     # about a minute
    python benchmarks/bench_engine.py             # more steps, repeats and run counts
    python benchmarks/bench_engine.py --profile   # also: where the engine's time goes

The last line is ``speedup_vs_sequential: <x>``: time per run-iteration of the reference
over that of the engine at its best run count. Before it, ``<variant>_speedup_vs_autograd: <x>``
for ``softmax``, ``separate_qk`` and ``nonlinear``: the engine's time per run-iteration with
``backend="autograd"`` over that with ``backend="fast"``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import torch

from lintf import engine, measure, settings
from lintf.compute.data import Prompts

MODEL, PROMPTS, B = settings.get_setting("setting1").model, Prompts(n=20, d=5), 1000
FULL = dataclasses.replace(MODEL, parametrization="full")
"""The paper's text's parametrization, for the Hessian's second row."""
MFLOP_PER_ITER = 35.0
"""Nominal work of one run-iteration (forward and backward of the associative order at
B=1000), the yardstick of the GFLOP/s column."""
LR = 0.02


class AuthorsTransformer(torch.nn.Module):
    """One run as the authors' code writes it: per-layer trained blocks, the full ``P, Q``
    assembled from them, attention in the literal order of eq. (7) over the batch."""

    def __init__(self, params):
        super().__init__()
        self.P = torch.nn.ParameterList([torch.nn.Parameter(p.clone()) for p in params["P"]])
        self.Q = torch.nn.ParameterList([torch.nn.Parameter(q.clone()) for q in params["Q"]])

    def forward(self, Z):                                          # Z (B, d+1, n+1)
        n = Z.shape[-1] - 1
        M = torch.diag(torch.tensor([1.0] * n + [0.0], dtype=Z.dtype))
        P_all, Q_all = MODEL.to_PQ({"P": torch.stack(list(self.P)), "Q": torch.stack(list(self.Q))})
        for P, Q in zip(P_all, Q_all):
            Z = Z + P @ Z @ M @ (Z.transpose(-1, -2) @ Q @ Z) / n
        return -Z[:, -1, -1]


class Associative(torch.nn.Module):
    """One run on :func:`lintf.model.loss` (the associative order) as an ``nn.Module``."""

    def __init__(self, params):
        super().__init__()
        self.params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.clone()) for k, v in params.items()})

    def forward(self, Z):
        return MODEL.predict(dict(self.params), Z)


def sequential(module_cls, steps):
    """``steps`` iterations of one Adam run with clipping; returns seconds (wall, CPU)."""
    params = {k: v[0] for k, v in engine.initial_params(MODEL, [0]).items()}
    net = module_cls(params)
    opt = torch.optim.Adam(net.parameters(), lr=LR, betas=(0.9, 0.9), eps=1e-8)
    gen = torch.Generator().manual_seed(0)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        Z, y = PROMPTS.sample(B, generator=gen)
        loss = (net(Z) - y).square().mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
    return time.perf_counter() - wall, time.process_time() - cpu


def programme(R):
    """``(configs, seeds)`` of ``R`` runs as the book makes them: both optimizers, then rates."""
    shapes = {1: (1, 1), 6: (2, 3), 12: (4, 3), 40: (20, 2), 120: (20, 6)}
    K, S = shapes[R]
    configs = [(("sgdm", "adam")[i % 2], LR * (1 + i // 2)) for i in range(K)]
    return configs, list(range(S))


def engine_run(R, steps, smoothness=False):
    """``steps`` iterations of ``R`` runs in one program; returns seconds of the loop (wall, CPU)."""
    configs, seeds = programme(R)
    cpu = time.process_time()
    res = engine.train(MODEL, PROMPTS, configs, seeds, steps=steps, batch_size=B, eval_every=50,
                       checkpoint_every=250, record_smoothness=smoothness, device="cpu", progress=False)
    return res.seconds, time.process_time() - cpu


def matmul_gflops(size=2048):
    """GFLOP/s of one float32 ``size x size`` matrix product on the engine's thread count."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    with engine.cpu_threads(engine.CPU_THREADS):
        a @ b
        start = time.perf_counter()
        a @ b
        seconds = time.perf_counter() - start
    return 2 * size ** 3 / seconds / 1e9, 0.0


def hessian_seconds(model, how="measure"):
    """Exact float64 Hessian of one run of ``model`` at one checkpoint on the B=1000 evaluation
    batch, on torch's default threads: by :func:`lintf.measure.hessian` (``how="measure"``,
    the book's path: lintf.fast's second-order adjoint for the plain model, forward mode over the
    hand-written gradient for the variants) or by the
    autograd reference it is tested against (``how="autograd"``: double backward through
    :func:`lintf.model.loss`, 16 basis vectors at a time). Returns seconds (wall, CPU)."""
    params = {k: v[0].double() for k, v in engine.initial_params(model, [0]).items()}
    Z, y = engine.eval_batch(PROMPTS, B, dtype=torch.float64)
    wall, cpu = time.perf_counter(), time.process_time()
    if how == "measure":
        measure.hessian(model, params, Z, y)
    else:
        with torch.enable_grad():
            measure._hessian_one_run(model, model.flatten(params), Z, y, 16)
    return time.perf_counter() - wall, time.process_time() - cpu


def hessians(quick):
    """The models whose Hessian is timed, by name, and ``{(name, how): [(wall, CPU), ...]}``
    from :func:`hessian_seconds` (3 repetitions of the book's path, 1 of the reference)."""
    nonlinear = settings.get_setting("nonlinear").model
    models = {f"book's base model ({MODEL.parametrization}, {MODEL.num_params} parameters)": MODEL,
              f"full parametrization ({FULL.num_params} parameters)": FULL,
              f"nonlinear setting (MLP front end, {nonlinear.num_params} parameters)": nonlinear}
    return models, {(name, how): [hessian_seconds(m, how) for _ in range(1 if quick or how == "autograd" else 3)]
                    for name, m in models.items() for how in ("measure", "autograd")}


def print_hessians(models, times):
    print(f"\nexact float64 Hessian, one run at one checkpoint, B={B}, {torch.get_num_threads()} threads "
          f"(wall s, CPU s in brackets):")
    for name in models:
        fast_s, ref_s = ([statistics.median(h[i] for h in times[name, how]) for i in (0, 1)]
                         for how in ("measure", "autograd"))
        print(f"  {name:44s} lintf.measure.hessian {fast_s[0]:6.2f} ({fast_s[1]:.2f})   autograd reference "
              f"{ref_s[0]:6.2f} ({ref_s[1]:.2f})   {ref_s[0] / fast_s[0]:5.1f}x")
    last = list(models)[-1]
    print(f"nonlinear_hessian_speedup_vs_autograd: "
          f"{statistics.median(h[0] for h in times[last, 'autograd']) / statistics.median(h[0] for h in times[last, 'measure']):.2f}")


def hessian_20k_seconds(repeats=3, B_big=20000):
    """One run's exact float64 Hessian of the book's base model on ``B_big`` Setting-1 prompts
    (n=20, gaussian), by :func:`lintf.measure.hessian` on torch's default threads; wall
    seconds of each of ``repeats`` repetitions."""
    params = {k: v[0].double() for k, v in engine.initial_params(MODEL, [0]).items()}
    Z, y = engine.eval_batch(PROMPTS, B_big, dtype=torch.float64)
    times = []
    for _ in range(repeats):
        wall = time.perf_counter()
        measure.hessian(MODEL, params, Z, y)
        times.append(time.perf_counter() - wall)
    return times


def profile_hessian_20k(B_big=20000):
    """cProfile's top entries (by own time) of one 20k-prompt Hessian: what limits it."""
    import cProfile
    import pstats
    prof = cProfile.Profile()
    prof.enable()
    hessian_20k_seconds(1, B_big)
    prof.disable()
    print(f"\nprofile of one Hessian at B={B_big} (cProfile, own time):")
    pstats.Stats(prof).sort_stats("tottime").print_stats(12)


def profile_engine(R, steps):
    """Where the engine's main thread spends its time at ``R`` runs (torch.profiler, CPU self
    time by kind of operator). One worker thread, so that the profiler sees every chunk; the
    batches are drawn in the background thread, which the profiler does not see."""
    from collections import Counter

    from torch.profiler import ProfilerActivity, profile
    kinds = {"aten::addcmul_": "elementwise passes", "aten::mul": "elementwise passes",
             "aten::add": "elementwise passes", "aten::add_": "elementwise passes",
             "aten::sum": "elementwise passes", "aten::bmm": "matrix products (MKL)",
             "aten::mm": "matrix products (MKL)", "aten::copy_": "copies", "aten::clone": "copies"}
    workers = engine.WORKERS
    engine.WORKERS = 1
    try:
        engine_run(R, 3)
        for smoothness in (False, True):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                wall, _ = engine_run(R, steps, smoothness)
            by_kind = Counter()
            for e in prof.key_averages():
                by_kind[kinds.get(e.key, "other operators")] += e.self_cpu_time_total / 1e6
            ops = sum(by_kind.values())
            print(f"\nprofile, R={R}, smoothness={smoothness}: operators {ops:.2f} s of {wall:.2f} s in the loop "
                  f"({1 - ops / wall:.0%} Python, dispatch and waiting for batches)")
            for kind, seconds in by_kind.most_common():
                print(f"  {kind:24s} {seconds / ops:6.1%}")
    finally:
        engine.WORKERS = workers


VARIANTS = ("softmax", "separate_qk", "nonlinear")
"""The book's settings of the model variants (B=1000, L=3, d=5, n=20)."""


def variant_run(name, backend, steps, R=6):
    """``steps`` iterations of ``R`` runs (the setting's two optimizers at its rates, ``R // 2``
    seeds) of setting ``name`` on ``backend``; returns seconds of the loop (wall, CPU)."""
    s = settings.get_setting(name)
    configs = [("sgdm", s.lrs["sgdm"]), ("adam", s.lrs["adam"])]
    cpu = time.process_time()
    res = engine.train(s.model, s.prompts, configs, list(range(R // 2)), steps=steps, batch_size=B, eval_every=50,
                       checkpoint_every=250, record_smoothness=s.record_smoothness, device="cpu", progress=False,
                       backend=backend)
    return res.seconds, time.process_time() - cpu


def variant_speedups(repeats, steps, large_steps):
    """Time per run-iteration (ms, wall and CPU) of every variant on both backends, and of the
    large model of Fig 8 (its own path: the plain model's, :mod:`lintf.fast`); medians over
    ``repeats`` round-robin repetitions. Returns ``{(name, backend): (wall ms, CPU ms)}``."""
    rows = {(name, b): (lambda name=name, b=b: variant_run(name, b, steps)) for name in VARIANTS
            for b in ("fast", "autograd")}
    rows["large", "auto"] = lambda: variant_run("large", "auto", large_steps)
    iters = {key: (large_steps if key[0] == "large" else steps) * 6 for key in rows}
    with engine.cpu_threads(engine.CPU_THREADS):
        for key, fn in rows.items():                               # warm-up
            if key[1] != "autograd":
                fn()
        samples = {key: [] for key in rows}
        for _ in range(repeats):
            for key, fn in rows.items():
                samples[key].append(fn())
    return {key: tuple(statistics.median(x[i] for x in samples[key]) / iters[key] * 1e3 for i in (0, 1))
            for key in rows}


def print_variants(times):
    """The variants' table and their ``<name>_speedup_vs_autograd`` lines."""
    print(f"\nmodel variants, engine, 6 runs, B={B} (ms per run-iteration, wall (CPU)):")
    for name in VARIANTS:
        (fw, fc), (aw, ac) = times[name, "fast"], times[name, "autograd"]
        print(f"  {name:12s} fast {fw:7.2f} ({fc:6.2f})   autograd {aw:7.2f} ({ac:6.2f})   {aw / fw:5.1f}x "
              f"(CPU {ac / fc:.1f}x)")
    lw, lc = times["large", "auto"]
    large = settings.get_setting("large").model
    print(f"  large (L={large.L}, d={large.d}, n={settings.get_setting('large').prompts.n}, {large.parametrization}): "
          f"{lw:.2f} ({lc:.2f}) ms per run-iteration")
    for name in VARIANTS:
        print(f"{name}_speedup_vs_autograd: {times[name, 'autograd'][0] / times[name, 'fast'][0]:.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (about a minute)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="also profile the engine at 12 runs")
    parser.add_argument("--variants", action="store_true", help="only the model variants against autograd")
    parser.add_argument("--hessian", action="store_true", help="only the exact Hessians against autograd")
    args = parser.parse_args(argv)
    if args.hessian:
        print(f"torch {torch.__version__}, {os.cpu_count()} CPUs; load average at start {os.getloadavg()}")
        print_hessians(*hessians(args.quick))
        print(f"load average at end {os.getloadavg()}")
        return
    if args.variants:
        print(f"torch {torch.__version__}, {os.cpu_count()} CPUs; load average at start {os.getloadavg()}")
        print_variants(variant_speedups(args.repeats or 3, 5 if args.quick else 10, 3 if args.quick else 5))
        print(f"load average at end {os.getloadavg()}")
        return
    quick = args.quick
    repeats = args.repeats or (3 if quick else 5)
    seq_steps = 15 if quick else 40
    run_counts = (1, 12, 120) if quick else (1, 6, 12, 40, 120)
    # steps per timing: about the same work for every run count, never fewer than 3
    steps_for = {R: max(6 if quick else 12, (240 if quick else 800) // R) if R > 12 else (30 if quick else 80)
                 for R in run_counts}
    smooth_R = 12

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, engine threads {engine.CPU_THREADS}, "
          f"chunk {engine.CHUNK_RUNS} runs; load average at start {os.getloadavg()}")
    rows = {"reference (authors' style)": lambda: sequential(AuthorsTransformer, seq_steps),
            "associative single run": lambda: sequential(Associative, seq_steps)}
    iters = {"reference (authors' style)": seq_steps, "associative single run": seq_steps}
    for R in run_counts:
        rows[f"engine R={R}"] = (lambda R=R: engine_run(R, steps_for[R]))
        iters[f"engine R={R}"] = steps_for[R] * R
    rows[f"engine R={smooth_R} + smoothness"] = lambda: engine_run(smooth_R, steps_for[smooth_R], True)
    iters[f"engine R={smooth_R} + smoothness"] = steps_for[smooth_R] * smooth_R

    with engine.cpu_threads(engine.CPU_THREADS):                   # the reference on the engine's threads
        for fn in rows.values():                                   # warm-up: allocator, first-call costs
            fn()
        samples = {name: [] for name in rows}
        gflops = []
        for _ in range(repeats):
            for name, fn in rows.items():
                samples[name].append(fn())
            gflops.append(matmul_gflops()[0])
        if not quick:                                              # torch's default thread count
            default = torch.get_num_threads()
            torch.set_num_threads(os.cpu_count() or 1)
            name = f"reference, {torch.get_num_threads()} threads"
            samples[name] = [sequential(AuthorsTransformer, seq_steps) for _ in range(repeats)]
            iters[name] = seq_steps
            torch.set_num_threads(default)
    hess_models, hess = hessians(quick)

    def per_iter(name, k):
        return statistics.median(s[k] for s in samples[name]) / iters[name] * 1e3

    ref = per_iter("reference (authors' style)", 0)
    print(f"\n{'':34s} {'ms/run-iter':>11s} {'(CPU ms)':>9s} {'GFLOP/s':>8s} {'vs reference':>12s}")
    for name in samples:
        wall, cpu = per_iter(name, 0), per_iter(name, 1)
        print(f"{name:34s} {wall:11.3f} {cpu:9.3f} {MFLOP_PER_ITER / wall:8.1f} {ref / wall:11.1f}x")
    plain = per_iter(f"engine R={smooth_R}", 0)
    smooth = per_iter(f"engine R={smooth_R} + smoothness", 0)
    print(f"\nsmoothness overhead at R={smooth_R}: {smooth - plain:.3f} ms/run-iter "
          f"({(smooth - plain) / plain:.2f} of a plain step)")
    print(f"float32 {2048}^3 matmul: {statistics.median(gflops):.1f} GFLOP/s "
          f"(median of {repeats}, {engine.CPU_THREADS} thread(s))")
    print(f"load average at end {os.getloadavg()}")
    if args.profile:
        profile_engine(12, steps_for.get(12, 30))
    print_hessians(hess_models, hess)
    first = next(iter(hess_models))
    print(f"hessian_seconds: {statistics.median(h[0] for h in hess[first, 'measure']):.2f}  ({first})")
    big = hessian_20k_seconds(3)
    print(f"hessian_20k_seconds: {statistics.median(big):.2f}  (B=20000, median of 3: "
          f"{', '.join(f'{t:.2f}' for t in big)}; load average {os.getloadavg()[0]:.1f})")
    if args.profile and statistics.median(big) > 2.0:
        profile_hessian_20k()
    print_variants(variant_speedups(repeats, 5 if quick else 10, 3 if quick else 5))
    best = min((per_iter(f"engine R={R}", 0), R) for R in run_counts)
    print(f"best engine run count: R={best[1]}")
    print(f"speedup_vs_sequential: {ref / best[0]:.2f}")


if __name__ == "__main__":
    main()
