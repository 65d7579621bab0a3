"""SGD with momentum and Adam over a leading run axis, with per-run gradient clipping.

Every tensor of ``params`` and ``grads`` carries the run dimensions first (``run_dims``
of them); learning rates and the optimizer choice are per run. The update rules are
those of ``torch.optim.SGD(momentum=mu)`` and ``torch.optim.Adam(betas, eps)`` (same
operations, same order), and clipping is ``torch.nn.utils.clip_grad_norm_``'s, applied to
each run separately: if ``||g|| > c`` then ``g <- g c / (||g|| + 1e-6)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import check_positive

OPTIMIZERS = ("sgdm", "adam")
"""Known optimizers: SGD with momentum (``"sgdm"``) and Adam (``"adam"``)."""


@dataclass(frozen=True)
class OptimConfig:
    """Hyper-parameters shared by every run (the paper's Sec. 2 and Table 2; see the intro chapter)."""

    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.9)
    eps: float = 1e-8
    clip: float = 1.0

    def __post_init__(self):
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        check_positive("eps", self.eps)
        check_positive("clip", self.clip)


def _run_view(x: torch.Tensor, run_dims: int) -> torch.Tensor:
    return x.reshape(*x.shape[:run_dims], -1)


def global_norm(tensors: dict[str, torch.Tensor], run_dims: int) -> torch.Tensor:
    """The norm over all of a run's tensors together, shape ``run_shape``."""
    return torch.stack([_run_view(t, run_dims).square().sum(-1) for t in tensors.values()]).sum(0).sqrt()


def _per_run(x: torch.Tensor, like: torch.Tensor, run_dims: int) -> torch.Tensor:
    return x.reshape(*x.shape, *([1] * (like.dim() - run_dims)))


def clip_by_global_norm(grads: dict, max_norm: float, run_dims: int):
    """Clip each run's gradient to global norm ``max_norm``.

    Returns ``(clipped, norms)`` where ``norms`` (shape ``run_shape``) are the norms before
    clipping.
    """
    norms = global_norm(grads, run_dims)
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    return {k: g * _per_run(coef, g, run_dims) for k, g in grads.items()}, norms


def init_state(params: dict) -> dict:
    """Zero first and second moments (momentum buffer = first moment for SGDM)."""
    return {"m": {k: torch.zeros_like(p) for k, p in params.items()},
            "v": {k: torch.zeros_like(p) for k, p in params.items()},
            "t": 0}


def update(params: dict, grads: dict, state: dict, lr: torch.Tensor, is_adam: torch.Tensor,
           config: OptimConfig, run_dims: int):
    """One optimizer step for every run; returns ``(new_params, step)`` with ``step`` the
    dict of increments ``x_{t+1} - x_t``. ``state`` is updated in place.

    lr, is_adam : tensors of shape ``run_shape`` (per-run learning rate and choice of Adam).
    SGDM: ``m <- mu m + g``; ``x <- x - lr m``.
    Adam: ``m <- b1 m + (1-b1) g``; ``v <- b2 v + (1-b2) g^2``;
    ``x <- x - lr/(1-b1^t) m / (sqrt(v)/sqrt(1-b2^t) + eps)``.
    """
    state["t"] += 1
    t = state["t"]
    b1, b2 = config.betas
    bias1, bias2 = 1 - b1 ** t, 1 - b2 ** t
    new, steps = {}, {}
    for k, g in grads.items():
        m, v = state["m"][k], state["v"][k]
        adam = _per_run(is_adam, g, run_dims)
        rate = _per_run(lr, g, run_dims)
        m_sgd = config.momentum * m + g
        m_adam = b1 * m + (1 - b1) * g
        v_new = b2 * v + (1 - b2) * g * g
        step_sgd = -rate * m_sgd
        step_adam = -(rate / bias1) * m_adam / (v_new.sqrt() / bias2 ** 0.5 + config.eps)
        state["m"][k] = torch.where(adam, m_adam, m_sgd)
        state["v"][k] = torch.where(adam, v_new, v)
        steps[k] = torch.where(adam, step_adam, step_sgd)
        new[k] = params[k] + steps[k]
    return new, steps
