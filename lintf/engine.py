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
the others go on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from . import optim
from .checks import check_choice, check_int, check_positive, check_seeds
from .data import Prompts
from .model import Model
from .progress import bar as progress_bar

EVAL_SEED = 99
"""Seed of the fixed evaluation batch (the authors' choice), shared by every run."""


def resolve_device(device="auto") -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; anything else goes to ``torch.device``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}") from None


def seed_streams(seed: int) -> tuple[int, int]:
    """The two independent 63-bit seeds of a run seed: (initialisation, batches)."""
    init, data = np.random.SeedSequence(seed).generate_state(4, dtype=np.uint64)[:2]
    return int(init >> np.uint64(1)), int(data >> np.uint64(1))


def initial_params(model: Model, seeds, *, device=None, dtype=torch.float32) -> dict:
    """Initial parameters of each seed, stacked: tensors ``(S, *shape)``."""
    per_seed = []
    for seed in seeds:
        gen = torch.Generator(device="cpu").manual_seed(seed_streams(seed)[0])
        per_seed.append(model.init(gen, dtype=dtype))
    return {k: torch.stack([p[k] for p in per_seed]).to(device) for k in per_seed[0]}


def eval_batch(prompts: Prompts, batch_size: int = 1000, *, seed: int = EVAL_SEED, device=None,
               dtype=torch.float32):
    """The fixed evaluation batch ``(Z, y)`` of a prompt distribution (drawn on the CPU)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    Z, y = prompts.sample(batch_size, generator=gen, dtype=dtype)
    return Z.to(device), y.to(device)


class BatchStream:
    """One stream of training batches per seed; ``next()`` gives ``(S, B, d+1, n+1), (S, B)``.

    Batches are drawn on the CPU with one generator per seed (so a seed's stream does not
    depend on the other seeds) and moved to the device.
    """

    def __init__(self, prompts: Prompts, seeds, batch_size: int, device, dtype):
        self.prompts, self.batch_size, self.device, self.dtype = prompts, batch_size, device, dtype
        self.generators = [torch.Generator(device="cpu").manual_seed(seed_streams(s)[1]) for s in seeds]

    def next(self):
        draws = [self.prompts.sample(self.batch_size, generator=g, dtype=self.dtype) for g in self.generators]
        Z = torch.stack([z for z, _ in draws]).to(self.device, non_blocking=True)
        y = torch.stack([y for _, y in draws]).to(self.device, non_blocking=True)
        return Z, y


@dataclass
class TrainResult:
    """What a training program produced.

    runs : one row per run: ``run, optimizer, lr, seed, diverged, diverged_step`` (-1 if not).
    history : tidy, one row per ``(run, step, quantity)``: columns ``optimizer, lr, seed,
        step, quantity, value``; quantities ``loss`` (training minibatch loss of ``x_t``),
        ``grad_norm`` (before clipping), ``smoothness`` (directional smoothness, if
        recorded) at every step, ``eval_loss`` (fixed evaluation batch) every
        ``eval_every`` steps and after the last. Values are NaN from a run's divergence on.
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
        out.append((check_choice(f"configs[{i}] optimizer", c[0], optim.OPTIMIZERS),
                    check_positive(f"configs[{i}] lr", c[1])))
    if not out:
        raise ValueError("configs must be a non-empty list of (optimizer, lr) pairs, got an empty one")
    return out


def train(model: Model, prompts: Prompts, configs, seeds, *, steps: int, batch_size: int = 1000,
          optim_config: optim.OptimConfig = optim.OptimConfig(), eval_every: int = 50,
          eval_size: int = 1000, checkpoint_every: int | None = 250, record_smoothness: bool = False,
          device="auto", dtype=torch.float32, progress: bool | None = None, desc: str = "train") -> TrainResult:
    """Train every ``(optimizer, lr)`` in ``configs`` from every seed in ``seeds``, batched.

    Parameters
    ----------
    model, prompts : what is trained, on which data.
    configs : list of ``(optimizer, lr)``, optimizer in :data:`lintf.optim.OPTIMIZERS`.
    seeds : distinct integers; a seed fixes the initialisation and the batch stream.
    steps : iterations ``T``; ``batch_size``: fresh prompts per step ``B``.
    eval_every, eval_size : cadence and size of the fixed evaluation batch (seed 99).
    checkpoint_every : keep the parameters every this many steps (and at the end); None: never.
    record_smoothness : also record the directional smoothness ``u^T H(x_t) u`` along the
        normalised update ``u``, on the step's own batch (:func:`lintf.measure.directional_smoothness`).
    device : ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``.
    """
    configs = _check_configs(configs)
    seeds = check_seeds("seeds", seeds)
    steps = check_int("steps", steps)
    batch_size = check_int("batch_size", batch_size)
    eval_every = check_int("eval_every", eval_every)
    eval_size = check_int("eval_size", eval_size)
    if checkpoint_every is not None:
        checkpoint_every = check_int("checkpoint_every", checkpoint_every)
    if prompts.d != model.d:
        raise ValueError(f"prompts.d ({prompts.d}) must equal model.d ({model.d})")
    device = resolve_device(device)
    if record_smoothness:
        from .measure import directional_smoothness

    K, S = len(configs), len(seeds)
    lr = torch.tensor([c[1] for c in configs], device=device, dtype=dtype).unsqueeze(1).expand(K, S)
    is_adam = torch.tensor([c[0] == "adam" for c in configs], device=device).unsqueeze(1).expand(K, S)
    params = {k: v.unsqueeze(0).expand(K, *v.shape).clone()
              for k, v in initial_params(model, seeds, device=device, dtype=dtype).items()}
    names = list(params)
    state = optim.init_state(params)
    stream = BatchStream(prompts, seeds, batch_size, device, dtype)
    Z_eval, y_eval = eval_batch(prompts, eval_size, device=device, dtype=dtype)

    active = torch.ones(K, S, dtype=torch.bool, device=device)
    diverged_step = torch.full((K, S), -1, dtype=torch.long, device=device)
    rec = {q: torch.full((steps, K, S), float("nan"), device=device, dtype=dtype)
           for q in ["loss", "grad_norm"] + (["smoothness"] if record_smoothness else [])}
    eval_steps = sorted(set(range(0, steps, eval_every)) | {steps})
    eval_rec = torch.full((len(eval_steps), K, S), float("nan"), device=device, dtype=dtype)
    ckpt_steps = set() if checkpoint_every is None else set(range(0, steps + 1, checkpoint_every)) | {steps}
    checkpoints = {}

    def evaluate(i):
        with torch.no_grad():
            eval_rec[i] = torch.where(active, model.loss(params, Z_eval, y_eval), float("nan"))

    def as_runs(x):
        return x.detach().reshape(K * S, *x.shape[2:]).to("cpu", copy=True)

    start = time.perf_counter()
    eval_i = 0
    bar = progress_bar(range(steps), desc=f"{desc}: {K * S} runs", progress=progress, unit="step")
    for t in bar:
        if t == eval_steps[eval_i]:
            evaluate(eval_i)
            eval_i += 1
        if t in ckpt_steps:
            checkpoints[t] = {k: as_runs(v) for k, v in params.items()}
        Z, y = stream.next()
        leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
        with torch.enable_grad():
            losses = model.loss(leaves, Z, y)                          # (K, S)
            grads = torch.autograd.grad(losses.sum(), [leaves[k] for k in names])
        with torch.no_grad():
            grads = dict(zip(names, grads))
            clipped, norms = optim.clip_by_global_norm(grads, optim_config.clip, run_dims=2)
            new, delta = optim.update(params, clipped, state, lr, is_adam, optim_config, run_dims=2)
            finite = torch.isfinite(losses.detach()) & torch.isfinite(norms)
            diverged_step.masked_fill_(active & ~finite, t)
            active &= finite
            rec["loss"][t] = torch.where(active, losses.detach(), float("nan"))
            rec["grad_norm"][t] = torch.where(active, norms, float("nan"))
            if record_smoothness:
                smooth = directional_smoothness(model, params, delta, Z, y)
                rec["smoothness"][t] = torch.where(active, smooth, float("nan"))
            params = {k: torch.where(active.reshape(K, S, *([1] * (new[k].dim() - 2))), new[k], params[k])
                      for k in names}
    if eval_steps[eval_i] == steps:
        evaluate(eval_i)
    if steps in ckpt_steps:
        checkpoints[steps] = {k: as_runs(v) for k, v in params.items()}
    bar.close()
    seconds = time.perf_counter() - start

    runs = pd.DataFrame({
        "run": np.arange(K * S),
        "optimizer": np.repeat([c[0] for c in configs], S),
        "lr": np.repeat([c[1] for c in configs], S),
        "seed": np.tile(seeds, K),
        "diverged": (diverged_step >= 0).reshape(-1).cpu().numpy(),
        "diverged_step": diverged_step.reshape(-1).cpu().numpy(),
    })
    frames = [_tidy(runs, np.arange(steps), q, v) for q, v in rec.items()]
    frames.append(_tidy(runs, np.array(eval_steps), "eval_loss", eval_rec))
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
