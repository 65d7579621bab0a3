"""First-order optimizers over a leading run axis, with per-run gradient clipping.

Every tensor of ``params`` and ``grads`` carries the run dimensions first (``run_dims``
of them); learning rates and the optimizer choice are per run, and one :func:`update`
steps runs of any mix of :data:`ALL_OPTIMIZERS`. The rules ``"sgdm"`` and the Adam family
are those of ``torch.optim.SGD(momentum=mu)`` and ``torch.optim.Adam(betas, eps)`` (same
operations, same order), and clipping is ``torch.nn.utils.clip_grad_norm_``'s, applied to
each run separately: if ``||g|| > c`` then ``g <- g c / (||g|| + 1e-6)`` (``c = None``: none).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import check_positive

OPTIMIZERS = ("sgdm", "adam")
"""The paper's pair: SGD with momentum (``"sgdm"``) and Adam (``"adam"``)."""

ALL_OPTIMIZERS = ("sgdm", "adam", "signsgd", "normsgd", "rmsprop", "adam_b2_0.99", "adam_b2_0.999",
                  "adam_nobias", "sgdm_coordclip")
"""Every optimizer :func:`update` knows; a run's ``kind`` is its index here (the first two are
:data:`OPTIMIZERS`). With ``mu`` = ``momentum``, ``(b1, b2)`` = ``betas``, ``c`` = ``coord_clip``:

- ``"sgdm"``: ``m <- mu m + g``; ``x <- x - lr m``.
- ``"adam"``: ``m <- b1 m + (1-b1) g``; ``v <- b2 v + (1-b2) g^2``;
  ``x <- x - lr/(1-b1^t) m / (sqrt(v)/sqrt(1-b2^t) + eps)``.
- ``"signsgd"`` (signum): ``m <- mu m + (1-mu) g``; ``x <- x - lr sign(m)``.
- ``"normsgd"``: ``m <- mu m + g / (||g|| + 1e-12)`` (the run's global norm); ``x <- x - lr m``.
- ``"rmsprop"``: ``"adam"`` with ``b1 = 0``.
- ``"adam_b2_0.99"``, ``"adam_b2_0.999"``: ``"adam"`` with ``b2 = 0.99``, ``0.999``.
- ``"adam_nobias"``: ``"adam"`` without bias correction, ``x <- x - lr m / (sqrt(v) + eps)``.
- ``"sgdm_coordclip"``: ``"sgdm"`` on ``clamp(g, -c, c)``, coordinate by coordinate.
"""

# Adam family: name -> (beta1, beta2, bias-corrected); None takes config.betas.
_ADAM = {"adam": (None, None, True), "rmsprop": (0.0, None, True), "adam_b2_0.99": (None, 0.99, True),
         "adam_b2_0.999": (None, 0.999, True), "adam_nobias": (None, None, False)}


@dataclass(frozen=True)
class OptimConfig:
    """Hyper-parameters shared by every run (the paper's Sec. 2 and Table 2; see the intro chapter).

    clip : global-norm clipping of each run's gradient before the update; None: no clipping.
    coord_clip : ``c`` of ``"sgdm_coordclip"`` (after any global clipping).
    """

    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.9)
    eps: float = 1e-8
    clip: float | None = 1.0
    coord_clip: float = 0.01

    def __post_init__(self):
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        check_positive("eps", self.eps)
        if self.clip is not None:
            try:
                check_positive("clip", self.clip)
            except (TypeError, ValueError) as e:
                raise type(e)(f"clip must be None (no clipping) or a finite number > 0, got {self.clip!r}") from None
        check_positive("coord_clip", self.coord_clip)


def _run_view(x: torch.Tensor, run_dims: int) -> torch.Tensor:
    return x.reshape(*x.shape[:run_dims], -1)


def global_norm(tensors: dict[str, torch.Tensor], run_dims: int) -> torch.Tensor:
    """The norm over all of a run's tensors together, shape ``run_shape``."""
    return torch.stack([_run_view(t, run_dims).square().sum(-1) for t in tensors.values()]).sum(0).sqrt()


def _per_run(x: torch.Tensor, like: torch.Tensor, run_dims: int) -> torch.Tensor:
    return x.reshape(*x.shape, *([1] * (like.dim() - run_dims)))


def clip_by_global_norm(grads: dict, max_norm: float | None, run_dims: int):
    """Clip each run's gradient to global norm ``max_norm`` (None: leave it as it is).

    Returns ``(clipped, norms)`` where ``norms`` (shape ``run_shape``) are the norms before
    clipping.
    """
    norms = global_norm(grads, run_dims)
    if max_norm is None:
        return dict(grads), norms
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    return {k: g * _per_run(coef, g, run_dims) for k, g in grads.items()}, norms


def init_state(params: dict) -> dict:
    """Zero first and second moments (momentum buffer = first moment for the SGD family)."""
    return {"m": {k: torch.zeros_like(p) for k, p in params.items()},
            "v": {k: torch.zeros_like(p) for k, p in params.items()},
            "t": 0, "kinds": None}


def _kinds_used(state: dict, kind) -> tuple[int, ...]:
    """The sorted indices present in ``kind``, read (one device sync) once per ``kind`` tensor."""
    cached = state.get("kinds")
    if cached is not None and cached[0] is kind:
        return cached[1]
    if not isinstance(kind, torch.Tensor) or kind.dtype.is_floating_point or kind.dtype.is_complex \
            or kind.dtype == torch.bool:
        raise TypeError(f"kind must be an integer tensor of indices into ALL_OPTIMIZERS, got {kind!r}")
    used = tuple(sorted(int(i) for i in kind.unique().tolist())) or (0,)
    if used[0] < 0 or used[-1] >= len(ALL_OPTIMIZERS):
        raise ValueError(f"kind must hold indices into ALL_OPTIMIZERS (0 to {len(ALL_OPTIMIZERS) - 1}), "
                         f"got {list(used)}")
    state["kinds"] = (kind, used)
    return used


def _rule(name, g, m, v, rate, t, config, norm, memo):
    """``(m_new, v_new, step)`` of optimizer ``name`` on one tensor (``v`` itself if unused);
    ``norm`` is the run's ``||g|| + 1e-12`` (``"normsgd"`` only), ``memo`` shares Adam's moments."""
    mu = config.momentum
    if name == "sgdm":
        m_new = mu * m + g
        return m_new, v, -rate * m_new
    if name == "sgdm_coordclip":
        m_new = mu * m + g.clamp(-config.coord_clip, config.coord_clip)
        return m_new, v, -rate * m_new
    if name == "signsgd":
        m_new = mu * m + (1 - mu) * g
        return m_new, v, -rate * m_new.sign()
    if name == "normsgd":
        m_new = mu * m + g / norm
        return m_new, v, -rate * m_new
    b1, b2, corrected = _ADAM[name]
    b1 = config.betas[0] if b1 is None else b1
    b2 = config.betas[1] if b2 is None else b2
    if (b1, b2) not in memo:
        memo[b1, b2] = (b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g)
    m_new, v_new = memo[b1, b2]
    if corrected:
        bias1, bias2 = 1 - b1 ** t, 1 - b2 ** t
        step = -(rate / bias1) * m_new / (v_new.sqrt() / bias2 ** 0.5 + config.eps)
    else:
        step = -rate * m_new / (v_new.sqrt() + config.eps)
    return m_new, v_new, step


def update(params: dict, grads: dict, state: dict, lr: torch.Tensor, kind: torch.Tensor,
           config: OptimConfig, run_dims: int):
    """One optimizer step for every run; returns ``(new_params, step)`` with ``step`` the
    dict of increments ``x_{t+1} - x_t``. ``state`` is updated in place.

    lr : tensor of shape ``run_shape``, the per-run learning rate.
    kind : integer tensor of shape ``run_shape``, each run's index into :data:`ALL_OPTIMIZERS`
        (whose docstring gives the rules). Only the rules some run uses are computed, and each
        run takes its own rule's values (``torch.where``), so another rule's NaN cannot reach
        it. ``kind`` is read once per tensor: pass a new one rather than change it in place.
    """
    used = _kinds_used(state, kind)
    state["t"] += 1
    t = state["t"]
    masks = {i: kind == i for i in used[1:]}
    norms = global_norm(grads, run_dims) + 1e-12 if ALL_OPTIMIZERS.index("normsgd") in used else None
    new, steps = {}, {}
    for k, g in grads.items():
        m, v = state["m"][k], state["v"][k]
        rate = _per_run(lr, g, run_dims)
        norm = None if norms is None else _per_run(norms, g, run_dims)
        memo = {}
        m_acc, v_acc, s_acc = _rule(ALL_OPTIMIZERS[used[0]], g, m, v, rate, t, config, norm, memo)
        for i in used[1:]:
            m_i, v_i, s_i = _rule(ALL_OPTIMIZERS[i], g, m, v, rate, t, config, norm, memo)
            sel = _per_run(masks[i], g, run_dims)
            m_acc = torch.where(sel, m_i, m_acc)
            v_acc = v_acc if v_i is v_acc else torch.where(sel, v_i, v_acc)
            s_acc = torch.where(sel, s_i, s_acc)
        state["m"][k], state["v"][k], steps[k] = m_acc, v_acc, s_acc
        new[k] = params[k] + s_acc
    return new, steps
