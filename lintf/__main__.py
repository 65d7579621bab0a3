"""``python -m lintf SUBCOMMAND``: the book's experiments, planned, computed, packed.

- ``plan [--scale S] [--only CHAPTER[,CHAPTER...]] [--device D]``: one line per experiment
  (name, setting, iterations, stored or missing, estimated seconds here), totals per chapter,
  last line ``missing: N of M experiments``.
- ``compute [--scale S] [--only ...] [--workers N | --scheduler ADDRESS] [--device D]``: computes
  what the store lacks, in this process, on a local Dask cluster of N worker processes, or on
  an existing Dask cluster whose workers share ``$LINTF_RESULTS``.
- ``pack [--scale S] [--only ...] [--part-size SIZE] PATH``, ``unpack PATH``: the store's entries
  of a scale as one tar (or numbered parts) with a manifest, and back.

Bad input exits with status 2 and one line on standard error naming the option or path and
what is accepted; nothing is written to the store.
"""
from __future__ import annotations

import argparse
import os
import sys

SLOWEST = 12
"""How many of the computed experiments ``compute`` lists with their seconds, slowest first."""

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
    from .compute.settings import default_scale
    try:
        here = default_scale()
    except ValueError:                       # a bad $LINTF_SCALE: reported by _args
        here = "?"
    p = _Parser(prog="python -m lintf", description="The book's experiments: plan, compute, pack, unpack.",
                epilog=EPILOG)
    sub = p.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    def common(q, only=True, device=True):
        q.add_argument("--scale", default=None, help=f"ci, cpu or paper (default: $LINTF_SCALE, else {here} "
                                                     "here: paper with CUDA, else cpu)")
        if only:
            q.add_argument("--only", default=None, help="chapters, comma-separated (and the experiments they need)")
        if device:
            q.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")

    q = sub.add_parser("plan", help="list the experiments, stored or missing, with estimated seconds",
                       description="One line per experiment of the plan: name, setting, iterations (run-iterations "
                                   "of training; Hessians of one run on scale.eval_size prompts; gradients on "
                                   "scale.noise_batch_size prompts), stored or missing, and the seconds it would take "
                                   "on this machine. The estimate comes from a short calibration run here (a few "
                                   "training steps of each model at the scale's batch, one exact Hessian) times the "
                                   "experiment's iterations, on one process and --device; it leaves out the learning "
                                   "rates a stable search tries below the largest one, divergence, and other jobs "
                                   "on the machine. Then totals per chapter (an experiment counts for each chapter "
                                   "that reads it) and the line 'missing: N of M experiments'.", epilog=EPILOG)
    common(q)
    q.add_argument("--no-estimate", action="store_true", help="skip the calibration (estimates show as -)")

    q = sub.add_parser("compute", help="compute the experiments the store lacks",
                       description="Compute what the store lacks: in this process (the default), on a local Dask "
                                   "cluster of --workers processes (one torch thread each), or on the Dask cluster at "
                                   "--scheduler, whose workers must see the same $LINTF_RESULTS folder. One task per "
                                   "experiment (one batched program); a task whose worker dies is retried; run again "
                                   "after an interruption, it computes only what is missing.", epilog=EPILOG)
    common(q)
    how = q.add_mutually_exclusive_group()
    how.add_argument("--workers", default=None, help="worker processes of a local Dask cluster (>= 1)")
    how.add_argument("--scheduler", default=None, help="address of a running Dask scheduler, e.g. tcp://host:8786")
    q.add_argument("--retries", type=int, default=2, help="retries of a failed task on a Dask cluster (default 2)")
    q.add_argument("--connect-timeout", type=float, default=30.0, help="seconds to reach --scheduler (default 30)")

    q = sub.add_parser("pack", help="write the scale's stored entries to a tar with a manifest",
                       description="Write every stored entry the plan of the scale reads (dependencies included) "
                                   "to one tar file PATH, or to parts PATH.000, PATH.001, ... of at most --part-size "
                                   "bytes, with a manifest (key, experiment, setting, scale, sha256 of every file, "
                                   "lintf compute and source hashes, torch and CUDA versions, device, precision flags, host and time "
                                   "of computation).", epilog=EPILOG)
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
    store = _store()
    exps = P.plan(sc, only=args.only)
    rates = {} if args.no_estimate else P.calibrate(exps, sc, device=resolve_device(args.device))
    rows, totals = [], {}
    width = max(len(e.name) for e in exps)
    for e in exps:
        have = P.stored(e, sc, device=args.device, store=store)
        est = None if args.no_estimate else P.estimate(e, rates)
        rows.append(f"{e.name:<{width}}  {e.setting:<11}  {e.iterations:>12,d} {e.unit:<8}  "
                    f"{'stored ' if have else 'missing'}  {_secs(est):>10}")
        for c in e.chapters:
            t = totals.setdefault(c, [0, 0, 0.0])
            t[0] += 1
            t[1] += 0 if have else 1
            t[2] += est or 0.0
    print(f"{'experiment':<{width}}  {'setting':<11}  {'iterations':>12} {'unit':<8}  {'store  '}  {'est. s':>10}")
    print("\n".join(rows))
    print(f"\nper chapter (scale {sc.name}, device {resolve_device(args.device).type}; an experiment counts for every "
          f"chapter that reads it):")
    for c in P.CHAPTERS:
        if c in totals:
            n, miss, secs = totals[c]
            print(f"  {c:<16} {n:>3} experiments, {miss:>3} missing, estimated {_secs(secs if rates else None)} s")
    if rates:
        print(f"  {'all':<16} {len(exps):>3} experiments, estimated "
              f"{_secs(sum(P.estimate(e, rates) for e in exps))} s")
    missing = sum(1 for r in rows if "missing" in r)
    print(f"missing: {missing} of {len(exps)} experiments")
    return 0


def _secs(x) -> str:
    return "-" if x is None else f"{x:,.0f}" if x >= 10 else f"{x:.1f}"


def _client(args):
    """A Dask client: a LocalCluster of ``--workers`` processes, or the cluster at ``--scheduler``."""
    import logging
    logging.getLogger("distributed").setLevel(logging.ERROR)
    from dask.distributed import Client, LocalCluster
    if args.workers is not None:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster), cluster
    try:
        return Client(args.scheduler, timeout=f"{args.connect_timeout}s"), None
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        raise UsageError(f"--scheduler {args.scheduler!r} could not be reached within {args.connect_timeout:g} s "
                         f"(expected the address of a running Dask scheduler, e.g. tcp://host:8786): "
                         f"{' '.join(str(err).split())[:200]}") from None


def cmd_compute(args) -> int:
    from . import plan as P
    from .compute.settings import default_scale, get_scale
    sc = get_scale(args.scale or default_scale())
    store = _store()
    client = cluster = None
    if args.workers is not None or args.scheduler is not None:
        client, cluster = _client(args)
    try:
        out = P.compute(sc, only=args.only, device=args.device, store=store, client=client, retries=args.retries)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    for name, err in out["failed"]:
        print(f"failed: {name}: {err}", file=sys.stderr)
    slowest = sorted(out["times"].items(), key=lambda kv: -kv[1])
    if slowest:
        print(f"seconds per experiment (the {min(len(slowest), SLOWEST)} slowest of {len(slowest)} computed; "
              f"{sum(out['times'].values()):.0f} s in all):")
        for name, seconds in slowest[:SLOWEST]:
            print(f"  {seconds:8.1f}  {name}")
    print(f"computed {out['computed']}, reused {out['reused']}, failed {len(out['failed'])}, "
          f"wall time {out['seconds']:.1f} s")
    return 1 if out["failed"] else 0


def cmd_pack(args) -> int:
    from . import pack as K
    from .compute.settings import default_scale, get_scale
    sc = get_scale(args.scale or default_scale())
    out = K.pack(args.path, sc, only=args.only, part_size=args.part_size, device=args.device, store=_store())
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
