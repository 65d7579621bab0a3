"""The L-layer linear transformer of the paper, eqs. (7)-(8), and its variants.

    Attn_{P,Q}(Z) = P Z M (Z^T Q Z),        M = diag(1, ..., 1, 0)
    Z_{l+1}       = Z_l + (1/n) Attn_{P_l,Q_l}(Z_l),   l = 0 .. L-1
    TF_L(Z_0)     = -[Z_L]_{d+1, n+1}

Shapes: parameters ``P, Q`` are ``(..., L, d+1, d+1)``; prompts ``Z`` are
``(..., B, d+1, n+1)`` with the same leading run dimensions ``...`` (broadcast).

Linear attention is computed in the associative order ``P (Z M Z^T) Q Z``: the
``(d+1) x (d+1)`` matrix ``A = Z M Z^T`` costs ``O(n d^2)`` where the literal order's
``(n+1) x (n+1)`` matrix ``Z^T Q Z`` costs ``O(n^2 d)``. Both are the same number in exact
arithmetic; ``tests/test_model.py`` compares them in float64.

The variants the paper uses (Figs 7, 8, 15) live in :class:`Model`: softmax attention, a ``Q`` made
of separate key and query matrices, a trainable MLP front end, and the authors'
block parametrization.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .checks import broadcast_shapes, check_choice, check_int, check_positive

ATTENTIONS = ("linear", "softmax")
QK = ("joint", "separate")
FRONTENDS = ("none", "mlp")
PARAMETRIZATIONS = ("full", "block")


def _check_shapes(P, Q, Z):
    if P.dim() < 3 or P.shape[-1] != P.shape[-2]:
        raise ValueError(f"P must have shape (..., L, d+1, d+1), got {tuple(P.shape)}")
    if Q.shape != P.shape:
        raise ValueError(f"Q must have the shape of P {tuple(P.shape)}, got {tuple(Q.shape)}")
    if Z.dim() < 3 or Z.shape[-2] != P.shape[-1]:
        raise ValueError(f"Z must have shape (..., B, d+1, n+1) with d+1 = {P.shape[-1]} "
                         f"matching P, got {tuple(Z.shape)}")
    if Z.shape[-1] < 2:
        raise ValueError(f"Z must hold n >= 1 context columns and a query, got {tuple(Z.shape)}")
    try:
        broadcast_shapes(P.shape[:-3], Z.shape[:-3])
    except RuntimeError:
        raise ValueError(f"leading run dimensions of P {tuple(P.shape[:-3])} and Z "
                         f"{tuple(Z.shape[:-3])} do not broadcast") from None


def _left(W, X):
    """``W @ X`` for a per-run matrix ``W (..., 1, a, b)`` and per-prompt ``X (..., B, b, m)``.

    Broadcast over the batch axis, ``@`` would multiply ``B`` tiny matrices one by one; as
    one ``(a, b) @ (b, B m)`` product per run it is one large matmul (the same sums in
    another association, equal in exact arithmetic).
    """
    if W.dim() < 3 or W.shape[-3] != 1:
        return W @ X
    W = W.squeeze(-3)
    lead = torch.broadcast_shapes(W.shape[:-2], X.shape[:-3])
    (a, b), (B, _, m) = W.shape[-2:], X.shape[-3:]
    flat = X.expand(*lead, B, b, m).movedim(-3, -2).reshape(*lead, b, B * m)
    return (W.expand(*lead, a, b) @ flat).reshape(*lead, a, B, m).movedim(-2, -3)


def attention_update(P, Q, Z, attention: str = "linear"):
    """One layer's ``(1/n) Attn_{P,Q}(Z)``.

    P, Q : ``(..., 1, d+1, d+1)`` (one matrix per run, broadcast over the batch axis of
    ``Z``) or ``(..., B, d+1, d+1)``. Z : ``(..., B, d+1, n+1)``. Returns a tensor shaped
    like ``Z``. Linear attention is computed as ``P ((Z M Z^T) (Q Z))``.
    """
    n = Z.shape[-1] - 1
    keys = Z[..., :n]                                            # Z M without the zero column
    QZ = _left(Q, Z)                                             # (..., B, d+1, n+1)
    if attention == "linear":
        A = keys @ keys.transpose(-1, -2)                        # Z M Z^T    (..., B, d+1, d+1)
        return _left(P, A @ QZ) / n                              # P (Z M Z^T) Q Z
    scores = Z.transpose(-1, -2) @ QZ                            # Z^T Q Z    (..., B, n+1, n+1)
    weights = torch.softmax(scores, dim=-2)[..., :n, :]          # over keys, then M drops the query
    return _left(P, keys) @ weights / n


def forward(P, Q, Z, attention: str = "linear"):
    """Run the ``L`` layers of eq. (8) and return ``Z_L`` of the shape of ``Z``."""
    for l in range(P.shape[-3]):
        P_l = P[..., l, :, :].unsqueeze(-3)                      # (..., 1, d+1, d+1)
        Q_l = Q[..., l, :, :].unsqueeze(-3)
        Z = Z + attention_update(P_l, Q_l, Z, attention)
    return Z


def predict(P, Q, Z, attention: str = "linear"):
    """The transformer's prediction ``TF_L(Z) = -[Z_L]_{d+1, n+1}``, shape ``(..., B)``.

    P, Q : ``(..., L, d+1, d+1)``; Z : ``(..., B, d+1, n+1)``.
    """
    check_choice("attention", attention, ATTENTIONS)
    _check_shapes(P, Q, Z)
    return -forward(P, Q, Z, attention)[..., -1, -1]


def loss(P, Q, Z, y, attention: str = "linear"):
    """Mean squared error over the batch, ``mean_b (TF_L(Z_b) - y_b)^2``, shape ``(...)``."""
    if y.shape != Z.shape[:-2]:
        raise ValueError(f"y must have shape {tuple(Z.shape[:-2])} (the batch of Z), got {tuple(y.shape)}")
    return (predict(P, Q, Z, attention) - y).square().mean(-1)


@dataclass(frozen=True)
class Model:
    """A linear transformer and its variants, with parameters held as a dict of tensors.

    Parameters (paper eqs. 7-8 and Figs 7, 8, 15)
    ---------------------------
    L, d : layers and covariate dimension.
    attention : ``"linear"`` (eq. 7) or ``"softmax"`` (softmax over keys before the mask).
    qk : ``"joint"`` (one ``Q`` per layer) or ``"separate"`` (``Q = W_K^T W_Q``).
    frontend : ``"none"`` or ``"mlp"`` (trainable ``Linear(d,h) -> ReLU -> Linear(h,d)``
        on every token's x-part before the attention layers; ``h = hidden``).
    parametrization : ``"full"`` (all of ``P, Q`` trained; the default, as in the paper's
        text) or ``"block"`` (the authors': only the top-left ``d x d`` blocks, ``P[d,d] = 1``,
        the rest zero), which the book trains in every setting but separate ``W_K, W_Q``
        (``lintf.get_setting(name).model`` says which). The authors write
        attention with ``Q`` transposed; their block ``Q_b`` is our ``Q_b^T``
        (:func:`from_authors_block`).
    init_std : standard deviation of the i.i.d. normal initialisation of attention weights.
    """

    L: int = 3
    d: int = 5
    attention: str = "linear"
    qk: str = "joint"
    frontend: str = "none"
    parametrization: str = "full"
    init_std: float = 0.05
    hidden: int = 15

    def __post_init__(self):
        check_int("L", self.L)
        check_int("d", self.d)
        check_int("hidden", self.hidden)
        check_choice("attention", self.attention, ATTENTIONS)
        check_choice("qk", self.qk, QK)
        check_choice("frontend", self.frontend, FRONTENDS)
        check_choice("parametrization", self.parametrization, PARAMETRIZATIONS)
        check_positive("init_std", self.init_std)
        if self.qk == "separate" and self.parametrization == "block":
            raise ValueError("qk='separate' takes parametrization='full' only")

    # -- parameters ---------------------------------------------------------------
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of one run's trained tensors, in a fixed order."""
        D, d, L, h = self.d + 1, self.d, self.L, self.hidden
        side = d if self.parametrization == "block" else D
        shapes = {}
        if self.frontend == "mlp":
            shapes.update(W1=(h, d), b1=(h,), W2=(d, h), b2=(d,))
        shapes["P"] = (L, side, side)
        if self.qk == "separate":
            shapes.update(W_K=(L, D, D), W_Q=(L, D, D))
        else:
            shapes["Q"] = (L, side, side)
        return shapes

    @property
    def num_params(self) -> int:
        """Number of trained scalars of one run (216 for the base model, 150 for block)."""
        return sum(math.prod(s) for s in self.param_shapes().values())

    def init(self, generator=None, *, device=None, dtype=torch.float32) -> dict[str, torch.Tensor]:
        """One run's initial parameters: attention weights ``N(0, init_std^2)``; the front
        end with PyTorch's default ``Linear`` init (uniform, bound ``1/sqrt(fan_in)``)."""
        params = {}
        for name, shape in self.param_shapes().items():
            if name in ("W1", "b1", "W2", "b2"):
                fan_in = self.d if name in ("W1", "b1") else self.hidden
                bound = 1.0 / math.sqrt(fan_in)
                u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
                params[name] = (2 * u - 1) * bound
            else:
                params[name] = self.init_std * torch.randn(shape, generator=generator, device=device,
                                                           dtype=dtype)
        return params

    def check_params(self, params, name: str = "params") -> tuple[int, ...]:
        """Check ``params`` against :meth:`param_shapes` (keys, trailing shapes, one common
        set of leading run dims); return those run dims. ``ValueError``/``TypeError`` naming
        the offending tensor otherwise."""
        shapes = self.param_shapes()
        if not isinstance(params, dict) or set(params) != set(shapes):
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(f"{name} must be a dict with keys {sorted(shapes)}, got {got}")
        lead = None
        for key, shape in shapes.items():
            t = params[key]
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name}[{key!r}] must be a tensor, got {type(t).__name__}")
            k = t.dim() - len(shape)
            if k < 0 or tuple(t.shape[k:]) != shape:
                raise ValueError(f"{name}[{key!r}] must have shape (..., {', '.join(map(str, shape))}), "
                                 f"got {tuple(t.shape)}")
            if lead is None:
                lead = tuple(t.shape[:k])
            elif tuple(t.shape[:k]) != lead:
                raise ValueError(f"{name}[{key!r}] has leading run dims {tuple(t.shape[:k])}, "
                                 f"other tensors have {lead}")
        return lead

    def to_PQ(self, params):
        """Map any parametrization to the full ``(P, Q)`` of eq. (7), ``(..., L, d+1, d+1)``."""
        self.check_params(params)
        P = params["P"]
        Q = params["W_K"].transpose(-1, -2) @ params["W_Q"] if self.qk == "separate" else params["Q"]
        if self.parametrization == "block":
            d = self.d
            pad = (0, 1, 0, 1)
            P = torch.nn.functional.pad(P, pad)
            Q = torch.nn.functional.pad(Q, pad)
            corner = torch.zeros_like(P)
            corner[..., d, d] = 1.0
            P = P + corner
        return P, Q

    def embed(self, params, Z):
        """Apply the MLP front end (if any) to the x-part of every token of ``Z``."""
        if self.frontend == "none":
            return Z
        X, Y = Z[..., :-1, :], Z[..., -1:, :]                    # (..., B, d, n+1), (..., B, 1, n+1)
        W1, b1 = params["W1"].unsqueeze(-3), params["b1"].unsqueeze(-2).unsqueeze(-1)
        W2, b2 = params["W2"].unsqueeze(-3), params["b2"].unsqueeze(-2).unsqueeze(-1)
        X = _left(W2, torch.relu(_left(W1, X) + b1)) + b2      # now with the runs' leading dims
        return torch.cat([X, Y.expand(*X.shape[:-2], 1, Y.shape[-1])], dim=-2)

    def predict(self, params, Z):
        """Predictions ``(..., B)`` for prompts ``Z`` ``(..., B, d+1, n+1)``."""
        P, Q = self.to_PQ(params)
        return predict(P, Q, self.embed(params, Z), self.attention)

    def loss(self, params, Z, y):
        """Mean squared error over the batch, shape ``(...)`` (one value per run)."""
        P, Q = self.to_PQ(params)
        return loss(P, Q, self.embed(params, Z), y, self.attention)

    # -- flat vectors (Hessians, smoothness) ----------------------------------------
    def flatten(self, params) -> torch.Tensor:
        """Concatenate a run's tensors into a vector ``(..., num_params)``."""
        shapes = self.param_shapes()
        lead = params["P"].shape[: params["P"].dim() - len(shapes["P"])]
        return torch.cat([params[k].reshape(*lead, -1) for k in shapes], dim=-1)

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inverse of :meth:`flatten`: ``(..., num_params)`` to a dict of tensors."""
        out, start = {}, 0
        for name, shape in self.param_shapes().items():
            size = math.prod(shape)
            out[name] = theta[..., start:start + size].reshape(*theta.shape[:-1], *shape)
            start += size
        return out


def from_authors_block(P_b, Q_b):
    """Map the authors' block parameters to ours: their ``Q_b`` is our ``Q_b^T``.

    Their attention is ``sum_M (z_N^T Q z_M) P z_M`` (``Q`` on the other side of eq. 7).
    Returns the ``params`` dict of ``Model(parametrization="block")``.
    """
    return {"P": P_b, "Q": Q_b.transpose(-1, -2)}
