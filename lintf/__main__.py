"""``python -m lintf SUBCOMMAND``: the book's experiments, planned, computed, packed.

- ``plan [--scale S] [--only CHAPTER[,CHAPTER...]] [--device D] [--recalibrate]``: one line per
  experiment (name, setting, iterations, stored or missing, estimated time here), totals per
  chapter asked for, last line ``missing: N of M experiments``. The estimate's calibration is
  measured once per machine and cached (:func:`lintf.plan.calibration`).
- ``compute [--scale S] [--only ...] [--workers N | --scheduler ADDRESS] [--device D]``: computes
  what the store lacks, in this process, on a local Dask cluster of N worker processes, or on
  an existing Dask cluster whose workers share ``$LINTF_RESULTS``; a progress bar on a
  terminal, else one line per finished experiment on standard error (time so far, time left).
- ``pack [--scale S] [--only ...] [--part-size SIZE] PATH``, ``unpack PATH``: the store's entries
  of a scale as one tar (or numbered parts) with a manifest, and back.

Bad input exits with status 2 and one line on standard error naming the option or path and
what is accepted; nothing is written to the store. The parser imports neither torch nor the
plan (``--help`` answers at once); each subcommand imports what it needs.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import time

SLOWEST = 12
"""How many of the computed experiments ``compute`` lists with their seconds, slowest first."""
STARTUP_SHARE = 0.25
"""A run on local Dask workers whose workers' start-up (the cluster, then torch and lintf
imported in every worker) took at least this share of its wall time gets a one-line hint: on
so small a plan the start-up outweighs the parallel gain (the smoothness chapter at ``ci`` on
2 cores: 14.6 s on 2 workers, 9.4 s in one process)."""
CLOSE_TIMEOUT = 30.0
"""Seconds each local Dask worker gets to leave when compute is done (Dask's own close kills a
worker still alive after 4 s, with a warning: one freeing a large program's memory on a busy
machine can take longer)."""
SCALE_NAMES = ("ci", "cpu", "paper")
"""The scales, for the help text (:data:`lintf.compute.settings.SCALES` is checked on use)."""

EPILOG = "The store is $LINTF_RESULTS (default ~/.cache/lintf/results)."


class UsageError(Exception):
    """Bad command-line input: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def _scale_name(text):
    from .compute.settings import SCALES
    if text not in SCALES:
        raise UsageError(f"--scale must be one of {', '.join(SCALES)}; got {text!r}")
    return text


def _only(text):
    from .plan import CHAPTERS
    names = [c.strip() for c in str(text).split(",") if c.strip()]
    bad = [c for c in names if c not in CHAPTERS]
    if bad or not names:
        raise UsageError(f"--only must be chapter names among {', '.join(CHAPTERS)} (comma-separated); "
                         f"got {text!r}")
    return names


def _workers(text):
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"--workers must be an integer >= 1; got {text!r}")
    return n


def _device(text):
    from .compute.engine import resolve_device
    try:
        resolve_device(text)
    except ValueError as err:
        raise UsageError(f"--device: {err}") from None
    return text


def _part_size(text):
    from .pack import parse_size
    try:
        return parse_size(text)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _parser() -> argparse.ArgumentParser:
    # no torch here (it takes seconds to import): the default scale is described, not computed
    env = os.environ.get("LINTF_SCALE")
    default = f"$LINTF_SCALE, {env} here" if env else "$LINTF_SCALE, else paper with CUDA, else cpu"
    p = _Parser(prog="python -m lintf", description="The book's experiments: plan, compute, pack, unpack.",
                epilog=EPILOG)
    sub = p.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    def common(q, only=True, device=True):
        q.add_argument("--scale", default=None, help=f"{', '.join(SCALE_NAMES[:-1])} or {SCALE_NAMES[-1]} "
                                                     f"(default: {default})")
        if only:
            q.add_argument("--only", default=None, help="chapters, comma-separated (and the experiments they need)")
        if device:
            q.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")

    q = sub.add_parser("plan", help="list the experiments, stored or missing, with estimated times",
                       description="One line per experiment of the plan: name, setting, iterations (run-iterations "
                                   "of training; Hessians of one run on scale.eval_size prompts; gradients on "
                                   "scale.noise_batch_size prompts), stored or missing, and the time it would take "
                                   "on this machine (e.g. '2 h 05 min'). An experiment of 0 iterations computes "
                                   "nothing of its own and says why (e.g. 'counted in stable/depth2': its runs are "
                                   "the stable search's). The estimate comes from a calibration here (training "
                                   "steps of each model at the scale's batch, one exact Hessian of each "
                                   "architecture; the fastest of repeated timings of one torch thread's CPU time, in "
                                   "under 10 s) times the experiment's iterations, on one process and --device; it "
                                   "leaves out the learning rates a stable search tries below the largest one, "
                                   "divergence, and other jobs on the machine. The calibration is measured once "
                                   "per host, device, torch version, lintf compute source and scale, and cached "
                                   "in $XDG_CACHE_HOME/lintf/calibration.json (default ~/.cache/lintf/). Then "
                                   "totals per chapter asked for (an experiment counts for each chapter that "
                                   "reads it) and the line 'missing: N of M experiments'.", epilog=EPILOG)
    common(q)
    q.add_argument("--no-estimate", action="store_true", help="skip the calibration (estimates show as -)")
    q.add_argument("--recalibrate", action="store_true", help="measure the calibration again, replacing the cached one")

    q = sub.add_parser("compute", help="compute the experiments the store lacks",
                       description="Compute what the store lacks: in this process (the default), on a local Dask "
                                   "cluster of --workers processes (one torch thread each), or on the Dask cluster at "
                                   "--scheduler, whose workers must see the same $LINTF_RESULTS folder. One task per "
                                   "experiment (one batched program); a task whose worker dies is retried; run again "
                                   "after an interruption, it computes only what is missing. Progress: a bar on a "
                                   "terminal, else one line per finished experiment on standard error with the time "
                                   "so far and an estimate of the time left ($LINTF_PROGRESS=1: the bar, 0: the "
                                   "lines). Each local worker takes a few seconds to start (it imports torch and "
                                   "lintf) before its first task, so a small plan is faster in one process: when "
                                   f"the start-up took {STARTUP_SHARE:.0%} or more of a run on --workers, compute "
                                   "says so in a one-line hint.", epilog=EPILOG)
    common(q)
    how = q.add_mutually_exclusive_group()
    how.add_argument("--workers", default=None, help="worker processes of a local Dask cluster (>= 1; each takes a "
                                                     "few seconds to start: worth it for plans of minutes)")
    how.add_argument("--scheduler", default=None, help="address of a running Dask scheduler, e.g. tcp://host:8786 "
                                                       "(an address where nothing listens fails at once)")
    q.add_argument("--retries", type=int, default=2, help="retries of a failed task on a Dask cluster (default 2)")
    q.add_argument("--connect-timeout", type=float, default=30.0,
                   help="seconds to reach a --scheduler that does not answer (default 30)")

    q = sub.add_parser("pack", help="write the scale's stored entries to a tar with a manifest",
                       description="Write every stored entry the plan of the scale reads (dependencies included) "
                                   "to one tar file PATH, or to parts PATH.000, PATH.001, ... of at most --part-size "
                                   "bytes, with a manifest (key, experiment, setting, scale, sha256 of every file, "
                                   "lintf compute and source hashes, torch and CUDA versions, device, precision flags, host and time "
                                   "of computation). A scale with nothing stored is an error (no file is written).",
                       epilog=EPILOG)
    common(q)
    q.add_argument("--part-size", default=None, help="largest part in bytes, with an optional K, M or G suffix")
    q.add_argument("path", metavar="PATH")

    q = sub.add_parser("unpack", help="check a pack whole, then write its entries into the store",
                       description="Verify every checksum of the pack at PATH (or its parts PATH.000, ...) before "
                                   "writing anything; a damaged pack, or one made by another lintf compute source, is refused "
                                   "whole. Then write each entry atomically into the store.", epilog=EPILOG)
    q.add_argument("path", metavar="PATH")
    return p


def _args(argv):
    args = _parser().parse_args(argv)
    if getattr(args, "scheduler", None) is not None:    # before any import of torch: a refusal is told at once
        _listening(args.scheduler, args.connect_timeout)
    if getattr(args, "scale", None) is not None:
        _scale_name(args.scale)
    elif args.command != "unpack":
        from .compute.settings import default_scale
        try:
            args.scale = default_scale()
        except ValueError as err:
            raise UsageError(" ".join(str(err).split())) from None
    if getattr(args, "only", None) is not None:
        args.only = _only(args.only)
    if getattr(args, "device", None) is not None:
        _device(args.device)
    if getattr(args, "workers", None) is not None:
        args.workers = _workers(args.workers)
    if getattr(args, "part_size", None) is not None:
        args.part_size = _part_size(args.part_size)
    if getattr(args, "retries", 0) < 0:
        raise UsageError(f"--retries must be an integer >= 0; got {args.retries}")
    return args


def _store():
    from .compute.store import ResultStore
    try:
        return ResultStore()
    except ValueError as err:
        raise UsageError(str(err)) from None


def cmd_plan(args) -> int:
    from . import plan as P
    from .compute.engine import resolve_device
    from .compute.settings import get_scale, default_scale
    sc = get_scale(args.scale or default_scale())
    dev = resolve_device(args.device)
    store = _store()
    exps = P.plan(sc, only=args.only)
    rates, measured = ({}, None) if args.no_estimate else P.calibration(exps, sc, device=dev,
                                                                        recalibrate=args.recalibrate)
    rows, totals = [], {}
    width = max(len(e.name) for e in exps)
    held = {e.name: P.stored(e, sc, device=args.device, store=store) for e in exps}
    missing = sum(not h for h in held.values())
    for e in exps:
        have = held[e.name]
        est = None if args.no_estimate else P.estimate(e, rates)
        why = P.counted_in(e, sc)
        rows.append(f"{e.name:<{width}}  {e.setting:<11}  {e.iterations:>12,d} {e.unit:<8}  "
                    f"{'stored ' if have else 'missing'}  " + (f"({why})" if why else f"{P.duration(est):>12}"))
        for c in e.chapters:
            t = totals.setdefault(c, [0, 0, 0.0, 0.0])
            t[0] += 1
            t[1] += 0 if have else 1
            t[2] += est or 0.0
            t[3] += 0.0 if have else est or 0.0
    print(f"{'experiment':<{width}}  {'setting':<11}  {'iterations':>12} {'unit':<8}  {'store  '}  {'estimate':>12}")
    print("\n".join(rows))
    shown = [c for c in P.CHAPTERS if c in totals and (args.only is None or c in args.only)]
    print(f"\nper chapter{' asked for' if args.only else ''} (scale {sc.name}, device {dev.type}, one process; an "
          f"experiment counts for every chapter that reads it):")

    def total(secs, left):
        if not rates:
            return ""
        return f", estimated {P.duration(secs)}" + ("" if left == secs else f" ({P.duration(left)} of it missing)")
    for c in shown:
        n, miss, secs, left = totals[c]
        print(f"  {c:<16} {n:>3} experiments, {miss:>3} missing{total(secs, left)}")
    every = [P.estimate(e, rates) for e in exps]
    left = sum(x for e, x in zip(exps, every) if not held[e.name])
    print(f"  {'all listed':<16} {len(exps):>3} experiments, {missing:>3} missing{total(sum(every), left)}")
    if rates:
        how = (f"calibrated here in {P.duration(measured)}" if measured is not None
               else "calibration cached (--recalibrate measures it again)")
        print(f"estimates: {how}, {P.calibration_path()}")
    print(f"missing: {missing} of {len(exps)} experiments")
    return 0


def _client(args):
    """A Dask client: a LocalCluster of ``--workers`` processes, or the cluster at ``--scheduler``."""
    import logging
    from dask.distributed import Client, LocalCluster
    # after the import: importing distributed sets its loggers' levels from its config
    logging.getLogger("distributed").setLevel(logging.ERROR)
    if args.workers is not None:
        from .plan import warm_worker
        # no dashboard, and the scheduler's HTTP server on a free port (by default it takes 8787 and
        # warns when another cluster holds it)
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": ":0"})
        client = Client(cluster)
        client.run(warm_worker)                         # every worker's imports now: the start-up, measured whole
        return client, cluster
    try:
        return Client(args.scheduler, timeout=f"{args.connect_timeout}s"), None
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        raise UsageError(f"--scheduler {args.scheduler!r} could not be reached within {args.connect_timeout:g} s "
                         f"(expected the address of a running Dask scheduler, e.g. tcp://host:8786): "
                         f"{' '.join(str(err).split())[:200]}") from None


def _listening(address: str, timeout: float) -> None:
    """``UsageError`` at once when nothing listens at the TCP address of ``--scheduler``
    (connection refused, unknown host), and within ``timeout`` seconds when the address does
    not answer as a Dask scheduler does: a scheduler speaks first, its handshake, as soon as a
    connection opens (Dask's own client waits for that handshake without a time limit, so a
    silent address would hang it). An address of another protocol (tls://, ucx://...) is left
    to Dask."""
    scheme, sep, location = str(address).rpartition("://")
    if (scheme if sep else "tcp") != "tcp":
        return
    if location.startswith("["):                        # [IPv6]:port
        host, _, port = location[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = location.rpartition(":") if ":" in location else (location, "", "")
    try:
        port = int(port or 8786)
    except ValueError:
        return                                          # Dask names what is wrong with it
    expected = "expected the address of a running Dask scheduler, e.g. tcp://host:8786"
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(max(0.1, timeout - (time.monotonic() - start)))
            if not sock.recv(1):
                raise UsageError(f"--scheduler {address!r}: {host}:{port} closed the connection without a Dask "
                                 f"handshake ({expected})")
    except TimeoutError:
        raise UsageError(f"--scheduler {address!r} could not be reached within {timeout:g} s: no Dask scheduler "
                         f"answered at {host}:{port} ({expected})") from None
    except ConnectionRefusedError:
        raise UsageError(f"--scheduler {address!r}: connection refused, nothing listens at {host}:{port} "
                         f"({expected})") from None
    except OSError as err:                              # unknown host, no route, reset, ...
        raise UsageError(f"--scheduler {address!r} could not be reached: {err.strerror or err} ({expected})") from None


def _close(client, cluster, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close the client, then the local cluster: its workers first, each given ``timeout``
    seconds to leave (:data:`CLOSE_TIMEOUT`), then the scheduler."""
    import asyncio
    client.close()
    if cluster is None:
        return

    async def leave():
        await asyncio.gather(*(w.close(timeout=timeout) for w in list(cluster.workers.values())),
                             return_exceptions=True)
    try:
        cluster.sync(leave)
    except Exception:                                   # whatever is left, the cluster's own close ends
        pass
    cluster.close(timeout=timeout)


def cmd_compute(args) -> int:
    from . import plan as P
    from .compute.progress import enabled
    from .compute.settings import default_scale, get_scale
    sc = get_scale(args.scale or default_scale())
    store = _store()
    client = cluster = None
    start = time.perf_counter()
    if args.workers is not None or args.scheduler is not None:
        client, cluster = _client(args)
    startup = time.perf_counter() - start

    def report(line):                                   # a log's lines where no bar is drawn
        print(line, file=sys.stderr, flush=True)
    try:
        out = P.compute(sc, only=args.only, device=args.device, store=store, client=client, retries=args.retries,
                        report=None if enabled() else report)
        wall = time.perf_counter() - start
    finally:
        if client is not None:
            _close(client, cluster)
    for name, err in out["failed"]:
        print(f"failed: {name}: {err}", file=sys.stderr)
    slowest = sorted(out["times"].items(), key=lambda kv: -kv[1])
    if slowest:
        print(f"seconds per experiment (the {min(len(slowest), SLOWEST)} slowest of {len(slowest)} computed; "
              f"{sum(out['times'].values()):.0f} s in all):")
        for name, seconds in slowest[:SLOWEST]:
            print(f"  {seconds:8.1f}  {name}")
    if cluster is not None and args.workers > 1 and out["computed"] and startup >= STARTUP_SHARE * wall:
        print(f"hint: the {args.workers} Dask workers took {startup:.1f} s of this run's {wall:.1f} s to start (each "
              f"imports torch and lintf); a plan this small is about as fast in one process: leave out --workers",
              file=sys.stderr)
    print(f"computed {out['computed']}, reused {out['reused']}, failed {len(out['failed'])}, "
          f"wall time {out['seconds']:.1f} s")
    return 1 if out["failed"] else 0


def cmd_pack(args) -> int:
    from . import pack as K
    from .compute.settings import default_scale, get_scale
    sc = get_scale(args.scale or default_scale())
    try:
        out = K.pack(args.path, sc, only=args.only, part_size=args.part_size, device=args.device, store=_store())
    except K.PackError as err:
        raise UsageError(str(err)) from None
    for name in out["missing"]:
        print(f"not stored, left out: {name}", file=sys.stderr)
    print(f"packed {out['entries']} store entries of {out['experiments']} experiments (scale {sc.name}) into "
          f"{', '.join(out['paths'])}; {len(out['missing'])} experiments not stored")
    return 0


def cmd_unpack(args) -> int:
    from . import pack as K
    try:
        out = K.unpack(args.path, store=_store())
    except K.PackError as err:
        raise UsageError(str(err)) from None
    print(f"unpacked {args.path}: {out['entries']} entries, {out['written']} written, {out['kept']} already stored")
    return 0


def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); the exit status."""
    try:
        args = _args(sys.argv[1:] if argv is None else argv)
        return {"plan": cmd_plan, "compute": cmd_compute, "pack": cmd_pack, "unpack": cmd_unpack}[args.command](args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to compute only what is missing", file=sys.stderr)
        return 130


if __name__ == "__main__":
    os.environ.setdefault("LINTF_PROGRESS", "1" if sys.stderr.isatty() else "0")
    sys.exit(main())
