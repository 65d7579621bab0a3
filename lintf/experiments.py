"""The book's experiments: a setting and a scale in, tidy results out, computed once.

Each function returns a :class:`lintf.store.Result` whose ``frames`` are tidy pandas
tables (with a ``setting`` column), served from the results store when its key (the whole
configuration and the source of ``lintf``) matches, computed otherwise. Settings 1-3 feed
four chapters; whichever chapter asks first computes them, the others read them. With
``cached_only=True`` a function only reads (the scorecard), and a missing result is a
``LookupError``.

- :func:`training`: SGDM and Adam from every seed; loss, gradient norm, directional
  smoothness, evaluation loss; parameter checkpoints.
- :func:`conditioning`: exact float64 Hessians at the checkpoints and ``R_med`` both ways.
- :func:`gradient_noise`: ``||g_B - g||`` at initialisation.
- :func:`lr_sweep`: the learning-rate grid search.
"""
from __future__ import annotations

import dataclasses

import pandas as pd
import torch

from . import measure
from .checks import check_choice, check_int, check_lrs, check_seeds
from .progress import bar
from .engine import eval_batch, initial_params, resolve_device, train
from .optim import OPTIMIZERS, OptimConfig
from .settings import Scale, Setting, default_scale, get_scale, get_setting
from .store import ResultStore

LR_CHOICES = ("default", "paper", "grid")
"""Which learning rates the main runs use: the defaults (SPEC section 3), the paper's
Table 2, or the best of the book's own grid search."""


def _resolve(setting, scale) -> tuple[Setting, Scale]:
    setting = setting if isinstance(setting, Setting) else get_setting(setting)
    scale = get_scale(default_scale() if scale is None else scale)
    return setting, scale


def _describe(setting: Setting) -> dict:
    """What is trained, as plain data for the cache key (names excluded: Setting 3 and
    Sec. 4.1's gamma setting are the same experiment and share results)."""
    return {"model": dataclasses.asdict(setting.model), "prompts": dataclasses.asdict(setting.prompts)}


def _with_setting(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    return frame.assign(setting=name)[["setting", *[c for c in frame.columns if c != "setting"]]]


def _get(kind: str, config: dict, compute, setting: Setting, scale: Scale, store, cached_only: bool):
    """Serve ``kind`` from the store, computing it unless ``cached_only`` (then a missing
    result is a ``LookupError``: the scorecard reads, it never recomputes)."""
    store = store or ResultStore()
    if cached_only:
        result = store.load(kind, config)
        if result is None:
            raise LookupError(f"no stored {kind} results for {setting.name} at scale {scale.name!r} with this "
                              f"lintf source: build the chapter that computes them first")
    else:
        result = store.cached(kind, config, compute)
    frames = {k: _with_setting(v, setting.name) if k != "meta" else v for k, v in result.frames.items()}
    return dataclasses.replace(result, frames=frames)


def learning_rates(setting, scale=None, *, lrs="default", device="auto", store=None, progress=None, cached_only=False) -> dict:
    """The rate per optimizer for ``lrs`` in :data:`LR_CHOICES`, or a dict given as is."""
    setting, scale = _resolve(setting, scale)
    if isinstance(lrs, dict):
        if sorted(lrs) != sorted(OPTIMIZERS):
            raise ValueError(f"lrs must give one rate for each of {list(OPTIMIZERS)}, got keys {sorted(lrs)}")
        return dict(zip(lrs, check_lrs("lrs", list(lrs.values()))))
    check_choice("lrs", lrs, LR_CHOICES)
    if lrs == "default":
        return dict(setting.lrs)
    if lrs == "paper":
        return dict(setting.paper_lrs)
    from .claims import best_lr
    sweep = lr_sweep(setting, scale.name, device=device, store=store, progress=progress,
                     cached_only=cached_only).frames["sweep"]
    best = best_lr(sweep)
    rates = {row.optimizer: float(row.best_lr) for row in best.itertuples()}
    failed = [o for o, lr in rates.items() if lr != lr]
    if failed:
        raise ValueError(f"lrs='grid': every rate of the grid diverged for {failed} on {setting.name}; "
                         "pass lrs='default', 'paper' or a dict")
    return rates


def _train_config(setting, scale, lrs, seeds, steps, device) -> dict:
    return {**_describe(setting), "lrs": lrs, "seeds": list(seeds), "steps": steps,
            "batch_size": scale.batch_size, "eval_every": scale.eval_every,
            "checkpoint_every": scale.checkpoint_every, "clip": setting.clip,
            "smoothness": setting.record_smoothness, "smoothness_every": scale.smoothness_every,
            "device": device.type}


def training(setting, scale=None, *, lrs="default", seeds=None, steps=None, device="auto", store=None,
             progress=None, cached_only=False):
    """Train SGDM and Adam on ``setting`` from every seed (one batched program).

    Returns a Result with frames ``runs`` and ``history`` (see
    :class:`lintf.engine.TrainResult`, plus a ``setting`` column) and the checkpoints as
    tensors (:meth:`lintf.engine.TrainResult.checkpoints_from_tensors`).
    """
    setting, scale = _resolve(setting, scale)
    seeds = check_seeds("seeds", scale.seeds if seeds is None else seeds)
    steps = check_int("steps", scale.steps_for(setting) if steps is None else steps)
    dev = resolve_device(device)
    rates = learning_rates(setting, scale.name, lrs=lrs, device=device, store=store, progress=progress,
                           cached_only=cached_only)
    config = _train_config(setting, scale, rates, seeds, steps, dev)

    def compute():
        res = train(setting.model, setting.prompts, [(o, rates[o]) for o in OPTIMIZERS], seeds, steps=steps,
                    batch_size=scale.batch_size, optim_config=OptimConfig(clip=setting.clip),
                    eval_every=scale.eval_every, checkpoint_every=scale.checkpoint_every,
                    record_smoothness=setting.record_smoothness, smoothness_every=scale.smoothness_every,
                    device=dev, progress=progress,
                    desc=setting.name)
        meta = pd.DataFrame({"seconds": [res.seconds], "steps": [steps], "runs": [len(res.runs)]})
        return {"runs": res.runs, "history": res.history, "meta": meta}, res.to_tensors()

    return _get("training", config, compute, setting, scale, store, cached_only)


def conditioning(setting, scale=None, *, lrs="default", seeds=None, steps=None, device="auto", store=None,
                 progress=None, cached_only=False):
    """``R_med`` of the exact float64 Hessian (on the fixed evaluation batch) at the
    checkpoints :meth:`lintf.settings.Scale.hessian_steps_for` chooses, by eigenvalues and
    by the diagonal. Empty (no rows) for a model above the scale's ``hessian_max_params``.

    Frame ``conditioning``: ``setting, optimizer, lr, seed, step, method, value`` plus
    ``lambda_max``, ``lambda_median`` (eigenvalues) for ``method == "eig"``.
    """
    setting, scale = _resolve(setting, scale)
    trained = training(setting, scale.name, lrs=lrs, seeds=seeds, steps=steps, device=device, store=store,
                       progress=progress, cached_only=cached_only)
    from .engine import TrainResult
    checkpoints = TrainResult.checkpoints_from_tensors(trained.tensors)
    todo = scale.hessian_steps_for(setting, checkpoints)
    config = {"training": trained.key, "hessian_steps": todo, "eval_size": scale.batch_size}

    def compute():
        runs = trained.frames["runs"]
        Z, y = eval_batch(setting.prompts, scale.batch_size, dtype=torch.float64)
        rows = []
        for step in bar(todo, desc=f"{setting.name}: exact Hessians of {len(runs)} runs", progress=progress,
                        unit="checkpoint"):
            H = _unique_hessians(setting.model, checkpoints[step], Z, y)             # (R, p, p)
            eig = torch.linalg.eigvalsh(H)
            for method in ("eig", "diag"):
                values = measure.robust_condition(H, method)
                for r, run in runs.iterrows():
                    alive = not run.diverged or step <= run.diverged_step
                    rows.append({"optimizer": run.optimizer, "lr": run.lr, "seed": run.seed, "step": step,
                                 "method": method, "value": float(values[r]) if alive else float("nan"),
                                 "lambda_max": float(eig[r, -1]) if method == "eig" else float("nan"),
                                 "lambda_median": float(eig[r].abs().median()) if method == "eig" else float("nan")})
        dtypes = {"optimizer": str, "lr": float, "seed": int, "step": int, "method": str, "value": float,
                  "lambda_max": float, "lambda_median": float}
        return {"conditioning": pd.DataFrame(rows, columns=list(dtypes)).astype(dtypes)}

    return _get("conditioning", config, compute, setting, scale, store, cached_only)


def _unique_hessians(model, params: dict, Z, y) -> torch.Tensor:
    """Float64 Hessians ``(R, p, p)`` of runs ``params`` (tensors ``(R, ...)``), each distinct
    parameter vector computed once (at step 0, SGDM and Adam of a seed share theirs)."""
    theta = model.flatten({k: v.double() for k, v in params.items()})
    unique, inverse = torch.unique(theta, dim=0, return_inverse=True)
    H = measure.hessian(model, model.unflatten(unique), Z, y)
    return H[inverse]


def gradient_noise(setting, scale=None, *, seed: int = 0, device="auto", store=None, progress=None, cached_only=False):
    """``||g_B - g||`` at initialisation for ``scale.noise_batches`` minibatches of
    ``scale.noise_batch_size`` prompts against one batch of ``scale.noise_big_batch``.

    Frame ``noise``: ``setting, seed, sample, value``.
    """
    setting, scale = _resolve(setting, scale)
    seed = check_int("seed", seed, minimum=0)
    dev = resolve_device(device)
    config = {**_describe(setting), "seed": seed, "batches": scale.noise_batches,
              "batch_size": scale.noise_batch_size, "big_batch": scale.noise_big_batch, "device": dev.type}

    def compute():
        params = {k: v[0] for k, v in initial_params(setting.model, [seed], device=dev).items()}
        gen = torch.Generator(device="cpu").manual_seed(10_000 + seed)

        def sample(shape, generator):
            Z, y = setting.prompts.sample(shape, generator=generator)
            return Z.to(dev), y.to(dev)

        norms = measure.gradient_noise(setting.model, params, sample, num_batches=scale.noise_batches,
                                       batch_size=scale.noise_batch_size, big_batch=scale.noise_big_batch,
                                       generator=gen)
        return {"noise": pd.DataFrame({"seed": seed, "sample": range(len(norms)),
                                       "value": norms.double().cpu().numpy()})}

    return _get("noise", config, compute, setting, scale, store, cached_only)


def lr_sweep(setting, scale=None, *, device="auto", store=None, progress=None, cached_only=False):
    """The grid search: every rate of ``setting.grid(optimizer, scale.grid_points)`` for both
    optimizers, ``scale.sweep_seeds``, ``scale.sweep_steps`` iterations, one batched program.

    Frame ``sweep``: ``setting, optimizer, lr, seed, final_loss, diverged`` with
    ``final_loss`` the mean training loss over the last 10% of steps (NaN if diverged).
    """
    setting, scale = _resolve(setting, scale)
    dev = resolve_device(device)
    configs = [(o, lr) for o in OPTIMIZERS for lr in setting.grid(o, scale.grid_points)]
    config = {**_describe(setting), "configs": configs, "seeds": list(scale.sweep_seeds),
              "steps": scale.sweep_steps, "batch_size": scale.batch_size, "clip": setting.clip,
              "device": dev.type}

    def compute():
        res = train(setting.model, setting.prompts, configs, scale.sweep_seeds, steps=scale.sweep_steps,
                    batch_size=scale.batch_size, optim_config=OptimConfig(clip=setting.clip),
                    eval_every=scale.sweep_steps, checkpoint_every=None, device=dev, progress=progress,
                    desc=f"{setting.name} lr grid")
        h = res.history[res.history.quantity == "loss"]
        tail = h[h.step >= scale.sweep_steps - max(1, scale.sweep_steps // 10)]
        final = tail.groupby(["optimizer", "lr", "seed"], sort=False).value.mean().rename("final_loss")
        sweep = res.runs[["optimizer", "lr", "seed", "diverged"]].merge(
            final.reset_index(), on=["optimizer", "lr", "seed"])
        sweep.loc[sweep.diverged, "final_loss"] = float("nan")
        return {"sweep": sweep}

    return _get("sweep", config, compute, setting, scale, store, cached_only)
