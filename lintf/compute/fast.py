"""Hand-written loss, gradient and curvature of the plain linear transformer.

For ``Model(attention="linear", qk="joint", frontend="none")`` (full or block
parametrization) one layer of eq. (8) multiplies the whole prompt from the left:

    Z_{l+1} = Z_l + (1/n) P_l (Z_l M Z_l^T) Q_l Z_l = T_l Z_l,
    T_l     = I + (1/n) P_l A_l Q_l,          A_l = Z_l M Z_l^T                (F1)

so two small quantities carry a prompt through the layers: its context moment ``A_l``
(``D x D``, ``D = d+1``, symmetric) and its query column ``z_l`` (``D``):

    A_{l+1} = T_l A_l T_l^T                                                    (F2)
    z_{l+1} = T_l z_l                                                          (F3)
    TF_L    = -e_D^T z_L                                                       (F4)

The tokens are read once, to form ``A_0`` and ``z_0`` (:func:`summarize`), which depend
on the data only and so are shared by every run of a seed. The last layer needs only the
last coordinate of the query:

    e_D^T z_L = e_D^T z_{L-1} + (1/n) p^T A_{L-1} Q_{L-1} z_{L-1},  p^T = e_D^T P_{L-1}   (F5)

Layout: the batch axis is *last*. ``A`` is ``(..., D, D, B)``, ``z`` is ``(..., D, B)``,
with the run dimensions ``...`` first. A product of two per-prompt matrices is ``D``
broadcast multiply-adds over rows of ``B`` numbers (on a CPU, about 7x faster than ``B``
tiny ``bmm`` products); a product with a parameter matrix, shared by the prompts of a run,
is one matrix product over all of them.

``tests/test_fast.py`` checks every function here against autograd through
:func:`lintf.compute.model.loss` in float64.
"""
from __future__ import annotations

import contextvars
import dataclasses
import os
import warnings

import torch

from .checks import broadcast_shapes, check_choice, check_int
from .model import Model


def supports(model: Model) -> bool:
    """Whether this module computes ``model`` (plain linear attention, joint ``Q``, no front end)."""
    return model.attention == "linear" and model.qk == "joint" and model.frontend == "none"


BACKENDS = ("auto", "fast", "autograd")
"""How training and the measurements differentiate the model: ``"autograd"``, through
:mod:`lintf.compute.model` (eqs. 7-8 as written) for every model; ``"fast"``, this module's
hand-written derivatives (the plain linear model only; in training every model, the variants
by :mod:`lintf.compute.fast_variants`); ``"auto"``, the hand-written derivatives where they apply and
autograd elsewhere. The default is ``$LINTF_BACKEND``, else ``"auto"``."""
BACKEND_ENV = "LINTF_BACKEND"


def backend(choice: str | None = None) -> str:
    """The backend ``choice`` (:data:`BACKENDS`; None: ``$LINTF_BACKEND``, else ``"auto"``),
    checked: a ``ValueError`` names the parameter and the accepted values."""
    if choice is None:
        return check_choice(BACKEND_ENV, os.environ.get(BACKEND_ENV) or "auto", BACKENDS)
    return check_choice("backend", choice, BACKENDS)


def use(model: Model, choice: str | None = None) -> bool:
    """Whether ``model`` goes through this module under backend ``choice`` (see :func:`backend`);
    ``"fast"`` on a model this module does not compute is a ``ValueError``."""
    choice = backend(choice)
    if choice == "fast" and not supports(model):
        raise ValueError("backend='fast' computes attention='linear', qk='joint', frontend='none' only; got "
                         f"attention={model.attention!r}, qk={model.qk!r}, frontend={model.frontend!r}: "
                         "use 'auto' or 'autograd'")
    return choice != "autograd" and supports(model)


def _check(model: Model, params: dict, A0, z0, y, n, name="params") -> tuple:
    """Check the arguments of the public functions; return ``(P, Q)`` of eq. (7).
    ``y=None``: no targets (prediction)."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a lintf.compute.model.Model, got {type(model).__name__}")
    if not supports(model):
        raise ValueError("lintf.compute.fast computes attention='linear', qk='joint', frontend='none' only; "
                         f"got attention={model.attention!r}, qk={model.qk!r}, frontend={model.frontend!r}")
    model.check_params(params, name)
    check_int("n", n)
    D = model.d + 1
    y = A0.new_zeros(A0.shape[-1]) if y is None and isinstance(A0, torch.Tensor) else y
    if not all(isinstance(t, torch.Tensor) for t in (A0, z0, y)):
        raise TypeError("A0, z0 and y must be tensors")
    if A0.dim() < 3 or A0.shape[-3:-1] != (D, D):
        raise ValueError(f"A0 must have shape (..., {D}, {D}, B), got {tuple(A0.shape)}")
    B = A0.shape[-1]
    if z0.shape[-2:] != (D, B) or y.shape[-1:] != (B,):
        raise ValueError(f"z0 must have shape (..., {D}, {B}) and y (..., {B}); got {tuple(z0.shape)}, "
                         f"{tuple(y.shape)}")
    P, Q = model.to_PQ(params)
    try:
        broadcast_shapes(P.shape[:-3], A0.shape[:-3], z0.shape[:-2], y.shape[:-1])
    except RuntimeError:
        raise ValueError(f"run dimensions of params {tuple(P.shape[:-3])}, A0 {tuple(A0.shape[:-3])}, "
                         f"z0 {tuple(z0.shape[:-2])} and y {tuple(y.shape[:-1])} do not broadcast") from None
    return P, Q


# -- per-prompt algebra in the batch-last layout ------------------------------------------
_IN_PLACE = contextvars.ContextVar("lintf_fast_in_place", default=True)
"""Whether per-prompt products accumulate in place. In place is faster on plain tensors
(R=6 engine step: 1.05 vs 1.23 ms per run-iteration); under ``torch.func``'s forward mode
every in-place update costs an extra copy, so :func:`hessian` accumulates out of place
(0.42 vs 0.50 s for the base model's Hessian)."""


def _acc(out, x, y):
    """``out + x * y``, in place where :data:`_IN_PLACE` says so."""
    return out.addcmul_(x, y) if _IN_PLACE.get() else torch.addcmul(out, x, y)


def _pp(X, Y, out=None):
    """Per-prompt ``X_b @ Y_b`` (plus ``out``): ``(..., D, K, B) x (..., K, E, B) -> (..., D, E, B)``.

    ``K`` broadcast multiply-adds over whole tensors: each pass streams rows of ``B``
    numbers, which a CPU vectorises, instead of ``B`` tiny matrix products.
    """
    xs, ys = X.split(1, dim=-2), Y.split(1, dim=-3)                    # columns of X, rows of Y
    out = xs[0] * ys[0] if out is None else _acc(out, xs[0], ys[0])
    for x, y in zip(xs[1:], ys[1:]):
        out = _acc(out, x, y)
    return out


def _pv(X, v):
    """Per-prompt ``X_b @ v_b``: ``(..., D, K, B) x (..., K, B) -> (..., D, B)``."""
    xs, vs = X.unbind(-2), v.split(1, dim=-2)
    out = xs[0] * vs[0]
    for x, u in zip(xs[1:], vs[1:]):
        out = _acc(out, x, u)
    return out


def _t(X):
    """Per-prompt transpose (a view)."""
    return X.transpose(-3, -2)


def _b(P):
    """A parameter matrix ``(..., D, K)`` as a per-prompt one shared by the batch, ``(..., D, K, 1)``."""
    return P.unsqueeze(-1)


def _left(P, X):
    """Shared ``P`` times every prompt's ``X_b``: ``(..., D, K) x (..., K, E, B) -> (..., D, E, B)``.

    One matrix product per run over all prompts at once (about 1.8x faster than :func:`_pp`).
    """
    out = torch.matmul(P, X.reshape(*X.shape[:-2], -1))
    return out.reshape(*out.shape[:-1], *X.shape[-2:])


def _right(X, Q):
    """Every prompt's ``X_b`` times shared ``Q``: ``(..., D, K, B) x (..., K, E) -> (..., D, E, B)``.

    One matrix product per run and row of ``X`` (about 1.4x faster than :func:`_pp`).
    """
    return torch.matmul(Q.transpose(-1, -2).unsqueeze(-3), X)


def _sum_outer(X, Y):
    """``sum_b X_b Y_b^T``: ``(..., D, K, B) x (..., E, K, B) -> (..., D, E)`` (one matrix product)."""
    return torch.matmul(X.reshape(*X.shape[:-2], -1), Y.reshape(*Y.shape[:-2], -1).transpose(-1, -2))


def _outer(u, v, out=None):
    """Per-prompt ``u_b v_b^T`` (plus ``out``): ``(..., D, B) x (..., E, B) -> (..., D, E, B)``."""
    if out is None:
        return u.unsqueeze(-2) * v.unsqueeze(-3)
    return _acc(out, u.unsqueeze(-2), v.unsqueeze(-3))


def _sym(X):
    return X + _t(X)


def _plus_identity(G):
    """``T = I + G`` per prompt (in place), eq. (F1) with the ``1/n`` already in ``G``."""
    G.diagonal(0, -3, -2).add_(1.0)
    return G


# -- data --------------------------------------------------------------------------------
def summarize(Z: torch.Tensor):
    """Context moment and query column of prompts ``Z`` ``(..., B, D, n+1)``.

    Returns ``A0 = Z M Z^T`` ``(..., D, D, B)`` and ``z0`` (the query column) ``(..., D, B)``,
    batch last.
    """
    if Z.dim() < 3 or Z.shape[-1] < 2:
        raise ValueError(f"Z must have shape (..., B, d+1, n+1) with n >= 1, got {tuple(Z.shape)}")
    keys = Z[..., :-1]
    A0 = keys @ keys.transpose(-1, -2)                                  # (..., B, D, D)
    return A0.movedim(-3, -1).contiguous(), Z[..., -1].movedim(-2, -1).contiguous()


# -- parameters ---------------------------------------------------------------------------
def _trained(model: Model, gP, gQ) -> dict:
    """Gradients with respect to the full ``P, Q`` to those of the trained tensors."""
    if model.parametrization == "block":
        d = model.d
        return {"P": gP[..., :d, :d], "Q": gQ[..., :d, :d]}
    return {"P": gP, "Q": gQ}


def _full_direction(model: Model, direction: dict):
    """A direction in the trained tensors as a direction in the full ``P, Q`` (fixed entries: 0)."""
    dP, dQ = direction["P"], direction["Q"]
    if model.parametrization == "block":
        pad = (0, 1, 0, 1)
        dP, dQ = torch.nn.functional.pad(dP, pad), torch.nn.functional.pad(dQ, pad)
    return dP, dQ


# -- forward and backward -----------------------------------------------------------------
def _forward(P, Qn, A0, z0):
    """Eqs. (F1)-(F5) with ``Qn = Q/n``. Returns ``h = e_D^T z_L`` ``(..., B)`` and what the
    backward pass needs."""
    L = P.shape[-3]
    A, z = A0, z0
    layers = []
    for l in range(L - 1):
        W = _left(P[..., l, :, :], A)                                  # P_l A_l
        T = _plus_identity(_right(W, Qn[..., l, :, :]))                # (F1)
        TA = _pp(T, A)
        layers.append((A, z, W, T, TA))
        A, z = _pp(TA, _t(T)), _pv(T, z)                               # (F2), (F3)
    p = P[..., L - 1, -1, :]                                           # last row of P_{L-1}
    r = _pv(A, p.unsqueeze(-1))                                        # A p (A symmetric)
    s = _pv(_b(Qn[..., L - 1, :, :]), z)                               # Q z / n
    h = z[..., -1, :] + (r * s).sum(-2)                                # (F5)
    return h, (layers, A, z, p, r, s)


def predict(model: Model, params: dict, A0, z0, n: int) -> torch.Tensor:
    """``TF_L`` of eq. (F4), ``(..., B)``; arguments as :func:`loss_and_grad`."""
    P, Q = _check(model, params, A0, z0, None, n)
    return -_forward(P, Q / n, A0, z0)[0]


def loss(model: Model, params: dict, A0, z0, y, n: int) -> torch.Tensor:
    """Mean squared error ``(...)`` (forward only); arguments as :func:`loss_and_grad`."""
    P, Q = _check(model, params, A0, z0, y, n)
    h = _forward(P, Q / n, A0, z0)[0]
    return (h + y).square().mean(-1)


def loss_and_grad(model: Model, params: dict, A0, z0, y, n: int, *, keep_forward: bool = False,
                  inputs: bool = False):
    """Mean squared error and its gradient, by hand (reverse mode through (F1)-(F5)).

    model : a model :func:`supports`; params : its tensors with run dimensions ``...``.
    A0, z0 : :func:`summarize` of the batch, ``(..., D, D, B)`` and ``(..., D, B)`` (run
        dimensions broadcast against those of ``params``); y : targets ``(..., B)``.
    n : context length of the prompts (the ``1/n`` of eq. 8).
    Returns ``loss`` ``(...)`` and ``grads``, a dict shaped like ``params``; with
    ``keep_forward`` also the forward pass, which :func:`curvature` at the same point and
    batch can reuse (``forward=``); with ``inputs`` (after it) also the adjoints of the
    summaries, ``(bar_A0, bar_z0)`` shaped like ``A0, z0`` with the run dimensions of the
    loss (``bar_A0``'s symmetric part is the gradient over symmetric ``A0``): what a front end
    before the attention layers needs (:mod:`lintf.compute.fast_variants`).
    """
    P, Q = _check(model, params, A0, z0, y, n)
    Qn = Q / n
    L, B = P.shape[-3], A0.shape[-1]
    h, saved = _forward(P, Qn, A0, z0)
    layers, A, z, p, r, s = saved
    err = h + y                                                        # -(TF_L - y)
    loss = err.square().mean(-1)
    c = (2.0 / B) * err                                                # d loss / d h

    lead = broadcast_shapes(P.shape[:-3], A0.shape[:-3])
    gP = P.new_zeros(*lead, *P.shape[-3:])
    gQn = Q.new_zeros(*lead, *Q.shape[-3:])                            # gradient in Q/n
    # last layer (F5): h = e^T z + p^T A (Q/n) z = e^T z + r.s
    cs, cr = s * c.unsqueeze(-2), r * c.unsqueeze(-2)
    gP[..., L - 1, -1, :] = _pv(A, cs).sum(-1)
    gQn[..., L - 1, :, :] = torch.matmul(cr, z.transpose(-1, -2))
    bar_z = _pv(_b(Qn[..., L - 1, :, :].transpose(-1, -2)), cr)
    bar_z[..., -1, :] += c
    # The adjoint of A_{L-1} is rank one, bar_A = a b^T with a = p, b = c s       (B1)
    # and stays so through T^T bar_A T in layer L-2: kept as the pair (a, b), that layer's
    # per-prompt products become matrix-vector products.
    bar_A, ab = None, (p.unsqueeze(-1), cs)
    for l in range(L - 2, -1, -1):
        A, z, W, T, TA = layers[l]
        # adjoint of T_l: from z_{l+1} = T z (F3) and A_{l+1} = T A T^T (F2), A symmetric:
        # bar_T = bar_z z^T + (bar_A + bar_A^T) T A
        bar_T = _outer(bar_z, z)
        if ab is not None:
            a, b = ab
            bar_T = _outer(a, _pv(_t(TA), b), out=bar_T)               # a (A T^T b)^T
            bar_T = _outer(b, _pv(_t(TA), a), out=bar_T)               # b (A T^T a)^T
        else:
            bar_T = _pp(_sym(bar_A), TA, out=bar_T)
        # T = I + P A (Q/n) (F1)
        X = _right(bar_T, Qn[..., l, :, :].transpose(-1, -2))          # bar_T (Q/n)^T
        gP[..., l, :, :] = _sum_outer(X, A)                            # sum_b bar_T (Q/n)^T A
        gQn[..., l, :, :] = torch.matmul(W, bar_T.transpose(-1, -2)).sum(-3)  # sum_b (P A)^T bar_T
        if l > 0 or inputs:
            # adjoint of A_l: T^T bar_A T + P^T bar_T (Q/n)^T
            new = _left(P[..., l, :, :].transpose(-1, -2), X)
            if ab is not None:
                bar_A = _outer(_pv(_t(T), a), _pv(_t(T), b), out=new)
            else:
                bar_A = _pp(_pp(_t(T), bar_A), T, out=new)
            ab = None
        bar_z = _pv(_t(T), bar_z)
    grads = _trained(model, gP, gQn / n)
    out = (loss, grads, (h, saved)) if keep_forward else (loss, grads)
    if inputs:
        if ab is not None:                                             # L = 1: bar_A0 still rank one
            bar_A = _outer(ab[0].expand_as(ab[1]), ab[1])
        out = (*out, (bar_A, bar_z))
    return out


def curvature(model: Model, params: dict, direction: dict, A0, z0, y, n: int, *, forward=None,
              inputs=None) -> torch.Tensor:
    """Second derivative of the loss along ``direction``: ``v^T H v`` ``(...)``, not normalised.

    Forward-mode Taylor arithmetic to second order: every quantity ``X`` of eqs. (F1)-(F5)
    is carried with its first and second derivatives ``X1, X2`` along ``v`` (``P, Q`` are
    linear in the step, so theirs vanish). ``direction``: dict shaped like ``params``;
    ``forward``: what :func:`loss_and_grad` kept at the same params and batch (saves
    recomputing the primal quantities); ``inputs``: ``(A1, A2, z1, z2)``, the first and second
    derivatives of ``A0, z0`` along the same step where a front end before the attention layers
    moves them (None: data, zero); other arguments as :func:`loss_and_grad`.
    """
    P, Q = _check(model, params, A0, z0, y, n)
    _check(model, direction, A0, z0, y, n, name="direction")
    dP, dQ = _full_direction(model, direction)
    Qn, dQn = Q / n, dQ / n
    L = P.shape[-3]
    h0, (layers, A_last, z_last, _, r0, s0) = _forward(P, Qn, A0, z0) if forward is None else forward
    A1, A2, z1, z2 = (None,) * 4 if inputs is None else inputs        # None: zero (data)
    for l in range(L - 1):
        A, z, V0, T0, M0 = layers[l]                                   # V0 = P A, M0 = T0 A
        new_A, new_z = (layers[l + 1][:2] if l + 1 < L - 1 else (A_last, z_last))
        Pl, dPl = P[..., l, :, :], dP[..., l, :, :]
        Ql, dQl = Qn[..., l, :, :], dQn[..., l, :, :]
        # V = P A, then T = I + V Q/n (F1), to second order
        V1 = _left(dPl, A)
        if A1 is not None:
            V1 += _left(Pl, A1)
            V2 = _left(Pl, A2).add_(_left(dPl, A1), alpha=2)
        T1 = _right(V1, Ql).add_(_right(V0, dQl))
        T2 = 2 * _right(V1, dQl)
        if A1 is not None:
            T2 += _right(V2, Ql)
        # A+ = T A T^T (F2); A and its derivatives are symmetric
        new_A1 = _sym(_pp(T1, _t(M0)))                                 # T1 A T0^T + transpose
        new_A2 = _sym(_pp(T2, _t(M0))).add_(_pp(T1, _pp(A, _t(T1))), alpha=2)
        if A1 is not None:
            X1 = _pp(T0, A1)                                           # T0 A1
            new_A1 = _pp(X1, _t(T0), out=new_A1)
            new_A2 = _pp(_pp(T0, A2), _t(T0), out=new_A2).add_(_sym(_pp(T1, _t(X1))), alpha=2)
        # z+ = T z (F3)
        new_z1, new_z2 = _pv(T1, z), _pv(T2, z)
        if z1 is not None:
            new_z1 += _pv(T0, z1)
            new_z2 += 2 * _pv(T1, z1) + _pv(T0, z2)
        A1, A2, z1, z2 = new_A1, new_A2, new_z1, new_z2
    # last layer (F5): h = e^T z + r.s, r = A p, s = (Q/n) z
    A, z = A_last, z_last
    p, dp = P[..., L - 1, -1, :].unsqueeze(-1), dP[..., L - 1, -1, :].unsqueeze(-1)
    Ql, dQl = _b(Qn[..., L - 1, :, :]), _b(dQn[..., L - 1, :, :])
    r1, s1 = _pv(A, dp), _pv(dQl, z)
    if A1 is not None:
        r1 += _pv(A1, p)
        r2 = _pv(A2, p) + 2 * _pv(A1, dp)
        s1 += _pv(Ql, z1)
        s2 = _pv(Ql, z2) + 2 * _pv(dQl, z1)
        h1 = z1[..., -1, :] + (r1 * s0 + r0 * s1).sum(-2)
        h2 = z2[..., -1, :] + (r2 * s0 + 2 * r1 * s1 + r0 * s2).sum(-2)
    else:                                                              # one layer: A, z are data
        h1 = (r1 * s0 + r0 * s1).sum(-2)
        h2 = 2 * (r1 * s1).sum(-2)
    # loss = mean (h + y)^2
    return 2 * (h1.square() + (h0 + y) * h2).mean(-1)


def _layer_entries(position: dict, l: int) -> torch.Tensor:
    """Flat positions of layer ``l``'s entries, from ``position`` (a params-shaped dict holding
    each entry's position in :meth:`Model.flatten` order)."""
    return torch.cat([index[l].reshape(-1) for index in position.values()])


PROMPT_CHUNK = 128
"""Prompts per pass of :func:`hessian` (``method="direct"``). A pass's biggest tensors are the
tangent stacks ``(k, D, D, chunk)``, ``k`` up to the parameters of two layers (100 for the
base model): 3.7 MB of float64 at 128 prompts, so a pass stays in the caches (2 MB L2 per
core) and memory is bounded whatever ``B``; the ~70 operators of a pass cost little against its
arithmetic from about 64 prompts on. Measured, book's base model, one run, 2 threads on the
project's 2-core machine (shared with other jobs; load average 1.2-1.6 for these, medians of 3):
B=20000: 64 -> 3.36 s, 128 -> 2.76 s, 256 -> 3.28 s, 512 -> 3.47 s, 1024 -> 4.00 s;
B=1000: 128 -> 0.136 s, 256 -> 0.178 s, 1000 at once -> 0.17 s."""


def _layer_basis(model: Model, l: int, dtype, device):
    """Basis directions of layer ``l``'s trained entries in the full ``P, Q`` (``(k, D, D)``
    each, ``k`` = that layer's trained entries, ``P``'s first), in :meth:`Model.flatten`'s order
    within the layer."""
    shapes = model.param_shapes()
    D, side = model.d + 1, shapes["P"][-1]
    kP, kQ = side * side, shapes["Q"][-1] ** 2
    dP = torch.zeros(kP + kQ, D, D, dtype=dtype, device=device)
    dQ = torch.zeros(kP + kQ, D, D, dtype=dtype, device=device)
    r, c = torch.meshgrid(torch.arange(side, device=device), torch.arange(side, device=device), indexing="ij")
    r, c = r.reshape(-1), c.reshape(-1)
    dP[torch.arange(kP, device=device), r, c] = 1
    dQ[kP + torch.arange(kQ, device=device), r, c] = 1
    return dP, dQ


def _flat(X):
    """``(k, ...)`` as ``(k, -1)`` (a tangent stack as rows of a matrix product)."""
    return X.reshape(X.shape[0], -1)


def _direct_plan(model: Model, dtype, device):
    """Per layer: the basis directions ``(dP, dQ)`` that can move the loss and their flat
    positions. The last layer reads only the last row of its ``P`` (eq. F5), so its other
    ``P`` entries (all of them in the block parametrization) have zero rows and are left out."""
    position = model.unflatten(torch.arange(model.num_params, device=device))
    plan = []
    for l in range(model.L):
        dP, dQ = _layer_basis(model, l, dtype, device)
        at = _layer_entries(position, l)
        if l == model.L - 1:
            keep = (dP[:, -1, :].abs().sum(-1) + dQ.abs().sum((-1, -2))) > 0
            dP, dQ, at = dP[keep], dQ[keep], at[keep]
        plan.append((dP, dQ, at))
    return plan


def _hessian_direct_chunk(P, Qn, plan, A0, z0, y, B_total, n):
    """Contributions of one chunk of prompts to the Hessian of the mean loss over ``B_total``
    prompts, in the layer-by-layer order of ``plan``: returns ``(GN, C)`` with
    ``H = GN + C + C^T`` summed over chunks.

    Second-order adjoint, node by node: every product ``u = X Y`` of the forward pass adds
    ``sum_b <bar u_b, dX_i dY_j>`` (``bar u`` its per-prompt adjoint, ``dX_i`` the first
    derivative along direction ``i``) to ``C_ij``; the loss adds ``(2/B) sum_b dh_i dh_j``
    (``GN``). First derivatives are carried forward along all directions of the earlier
    layers and the current one (a tangent axis in front, batch last), adjoints backward
    per prompt; every contraction over the prompts is one matrix product."""
    L = P.shape[-3]
    A, z, dA, dz = A0, z0, None, None
    saved = []
    for l in range(L - 1):
        dPl, dQl = plan[l][0], plan[l][1] / n
        Pl, Ql = P[l], Qn[l]
        W = _left(Pl, A)                                               # P A
        T = _plus_identity(_right(W, Ql))                              # (F1)
        M = _pp(T, A)                                                  # T A
        dW = _left(dPl, A)
        if dA is not None:
            dW = torch.cat([_left(Pl, dA), dW])
        k_in = 0 if dA is None else dA.shape[0]
        dT = _right(dW, Ql)
        dT[k_in:] += _right(W, dQl)
        X = _pp(dT, _t(M))                                             # dT A T^T
        new_dA = X + _t(X)
        new_dz = _pv(dT, z)
        if dA is not None:
            new_dA[:k_in] += _pp(_pp(T, dA), _t(T))
            new_dz[:k_in] += _pv(T, dz)
        saved.append((A, z, dA, dz, W, T, M, dW, dT, k_in, dPl, dQl))
        A, z, dA, dz = _pp(M, _t(T)), _pv(T, z), new_dA, new_dz         # (F2), (F3)
    # last layer (F5): h = e^T z + r.s, r = A p, s = (Q/n) z
    dPl, dQl = plan[L - 1][0], plan[L - 1][1] / n
    k_in = 0 if dA is None else dA.shape[0]
    p, dp = P[L - 1, -1, :], dPl[:, -1, :]
    Ql = Qn[L - 1]
    r, s = _pv(A, p.unsqueeze(-1)), _pv(_b(Ql), z)
    h = z[-1] + (r * s).sum(-2)
    dr, ds = _pv(A, dp.unsqueeze(-1)), _pv(_b(dQl), z)                 # own directions
    if dA is not None:
        dr = torch.cat([_pv(dA, p.unsqueeze(-1)), dr])
        ds = torch.cat([_pv(_b(Ql), dz), ds])
    dh = (dr * s + r * ds).sum(-2)
    if dz is not None:
        dh[:k_in] += dz[:, -1, :]
    K = dh.shape[0]
    c = (2.0 / B_total) * (h + y)                                      # d loss / d h per prompt
    GN = (2.0 / B_total) * (dh @ dh.T)
    C = dh.new_zeros(K, K)
    C += _flat(dr * c) @ _flat(ds).T                                   # h = r.s
    bar_r, bar_s = s * c, r * c
    if dA is not None:
        C[:k_in, k_in:] += _pv(dA, bar_r).sum(-1) @ dp.T               # r = A p
        C[k_in:, :k_in] += _flat(dQl) @ _flat(torch.einsum("ab,jeb->jae", bar_s, dz)).T    # s = Q z / n
    bar_A = _outer(bar_r, p.unsqueeze(-1))                            # r = A p
    bar_z = _pv(_b(Ql.T), bar_s)
    bar_z[-1] += c
    for l in range(L - 2, -1, -1):
        A, z, dA, dz, W, T, M, dW, dT, k_in, dPl, dQl = saved[l]
        kT = dT.shape[0]
        S = 0.5 * _sym(bar_A)                                          # A+ = T A T^T: symmetric part
        C[:kT, :kT] += _flat(dT) @ _flat(_pp(_pp(S, dT), A)).T         # <S, dT_i A dT_j^T>
        if dA is not None:
            C[:kT, :k_in] += 2 * (_flat(dT) @ _flat(_pp(_pp(S, T), dA)).T)   # <S, dT_i dA_j T^T>
            C[:kT, :k_in] += _flat(_pv(_t(dT), bar_z)) @ _flat(dz).T   # z+ = T z
        bar_T = _outer(bar_z, z, out=2 * _pp(S, M))                    # 2 S T A + bar_z z^T
        # T = I + W Q/n
        C[:kT, k_in:kT] += _flat(torch.einsum("iakb,aeb->ike", dW, bar_T)) @ _flat(dQl).T
        bar_W = _right(bar_T, Qn[l].T)
        if dA is not None:                                             # W = P A
            C[k_in:kT, :k_in] += _flat(dPl) @ _flat(torch.einsum("aeb,jekb->jak", bar_W, dA)).T
        if l > 0:
            bar_A = _pp(_pp(_t(T), bar_A), T, out=_left(P[l].T, bar_W))
            bar_z = _pv(_t(T), bar_z)
    return GN, C


HESSIAN_WORKERS = max(1, min(4, os.cpu_count() or 1))
"""Threads that compute the prompt chunks of :func:`hessian` (``method="direct"``) at once on
the CPU, each operator on one thread. The chunks' terms are added in chunk order whatever the
thread that computed them, so the numbers do not depend on this (tested). Measured, 12 runs
of the base model at B=1000, 2 cores: 1.62 s on two workers against 2.17 s with every
operator on two threads."""

HESSIAN_POOL: int | None = None
"""Threads of :func:`hessian`'s pool, which take the prompt chunks in turn (None:
:data:`HESSIAN_WORKERS`); ``python -m lintf compute`` sets 1 inside each task. The same numbers
either way."""


def _hessian_direct(model, P, Q, A0, z0, y, n, plan, prompt_chunk, pool=None):
    """:func:`hessian` of runs ``P, Q`` (full, ``(R, L, D, D)``) by
    :func:`_hessian_direct_chunk`, ``prompt_chunk`` prompts at a time; ``pool`` (an executor
    or None) computes the (run, chunk) pairs; returns ``(R, k, k)`` in the plan's order."""
    R, B = P.shape[0], A0.shape[-1]
    Qn = Q / n
    starts = range(0, B, prompt_chunk)

    def one(job):
        r, start = job
        stop = min(B, start + prompt_chunk)
        return _hessian_direct_chunk(P[r], Qn[r], plan, A0[r][..., start:stop], z0[r][..., start:stop],
                                     y[r][start:stop], B, n)

    jobs = [(r, start) for r in range(R) for start in starts]
    parts = list(pool.map(one, jobs)) if pool is not None else [one(j) for j in jobs]
    out = []
    for r in range(R):
        GN = C = 0
        for g, c in parts[r * len(starts):(r + 1) * len(starts)]:      # chunk order, always
            GN, C = GN + g, C + c
        out.append(0.5 * (GN + GN.T) + (C + C.T))                      # symmetric bit for bit
    return torch.stack(out)


def hessian(model: Model, params: dict, A0, z0, y, n: int, *, chunk: int | None = None,
            prompt_chunk: int | None = None, method: str = "direct") -> torch.Tensor:
    """Exact Hessian of the loss over the flat parameter vector (:meth:`Model.flatten` order).

    Layer ``l``'s parameters act from ``A_l, z_l`` on, so the Hessian's rows for them, in the
    columns of layers ``l..L-1``, are the Hessian of the same loss computed by those layers
    alone, started from ``A_l, z_l``; the blocks below the diagonal follow by symmetry.
    Each block row is forward-mode differentiation (``torch.func.jvp``) of the hand-written
    gradient :func:`loss_and_grad` of the truncated model along the basis vectors of layer
    ``l``, batched with ``torch.func.vmap`` (``chunk`` at a time, ``None``: all at once), so
    the primal pass is computed once per block, not once per basis vector. Compared with
    ``p`` Hessian-vector products through all ``L`` layers this does about half the work
    at ``L=3``.

    That is ``method="jvp"`` (``chunk``: basis vectors per ``vmap`` pass). The default,
    ``method="direct"``, is a hand-written second-order adjoint
    (:func:`_hessian_direct_chunk`): first derivatives carried forward along every direction
    at once, adjoints backward per prompt, every sum over prompts one matrix product, no
    ``torch.func``; it reads ``prompt_chunk`` prompts at a time (default
    :data:`PROMPT_CHUNK`) and adds the chunks' terms, each already weighted ``1/B`` (the
    Hessian of the mean is the prompt-weighted mean of the chunks' Hessians), so memory is
    bounded and time linear in ``B``. The same numbers to rounding (tests: ~1e-15 relative).

    Measured, book's base model (block, 150 parameters), one run, float64, project's 2-core
    machine shared with other jobs, medians of 3: direct, 2 threads, load average 1.2-1.6:
    B=1000 0.14 s, B=20000 2.8 s; on one thread at load 7 (so both slowed alike), B=1000
    0.41 s direct vs 2.05 s jvp. The jvp route measured 1.07 s at B=1000 and 38 s at
    B=20000 on 2 threads (load about 2). Under heavy load (5-7) two threads can be several
    times slower than one (each operator waits for the other, descheduled thread).

    params : tensors with run dimensions ``...``; A0, z0, y, n : as :func:`loss_and_grad`
    (their run dimensions broadcast against those of ``params``; runs are done one after
    another). Use float64 for small eigenvalues. Returns ``(..., p, p)``,
    ``p = model.num_params``, in units of loss per squared parameter unit, symmetric bit for bit.
    """
    P, Q = _check(model, params, A0, z0, y, n)
    if chunk is not None:
        check_int("chunk", chunk)
    prompt_chunk = PROMPT_CHUNK if prompt_chunk is None else check_int("prompt_chunk", prompt_chunk)
    if method not in ("direct", "jvp"):
        raise ValueError(f"method must be 'direct' or 'jvp', got {method!r}")
    if method == "direct":
        p, device = model.num_params, A0.device
        lead = broadcast_shapes(P.shape[:-3], A0.shape[:-3], z0.shape[:-2], y.shape[:-1])
        P, Q = P.expand(*lead, *P.shape[-3:]).reshape(-1, *P.shape[-3:]), Q.expand(*lead, *Q.shape[-3:])
        Q = Q.reshape(-1, *Q.shape[-3:])
        A0, z0 = A0.expand(*lead, *A0.shape[-3:]).reshape(-1, *A0.shape[-3:]), z0.expand(*lead, *z0.shape[-2:])
        z0, y = z0.reshape(-1, *z0.shape[-2:]), y.expand(*lead, y.shape[-1]).reshape(-1, y.shape[-1])
        plan = _direct_plan(model, P.dtype, device)
        at = torch.cat([entries for *_, entries in plan])
        H = P.new_zeros(P.shape[0], p, p)
        if device.type == "cpu":                   # one thread per operator, chunks on the workers
            from concurrent.futures import ThreadPoolExecutor
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(HESSIAN_WORKERS if HESSIAN_POOL is None else HESSIAN_POOL) as pool:
                    block = _hessian_direct(model, P, Q, A0, z0, y, n, plan, prompt_chunk, pool)
            finally:
                torch.set_num_threads(threads)
        else:
            block = _hessian_direct(model, P, Q, A0, z0, y, n, plan, prompt_chunk)
        H[:, at.unsqueeze(-1), at.unsqueeze(0)] = block
        return H.reshape(*lead, p, p)
    theta = model.flatten(params)
    p, L, device = theta.shape[-1], model.L, theta.device
    lead = broadcast_shapes(theta.shape[:-1], A0.shape[:-3])
    theta = theta.expand(*lead, p).reshape(-1, p)
    A0, z0 = A0.expand(*lead, *A0.shape[-3:]).reshape(-1, *A0.shape[-3:]), z0.expand(*lead, *z0.shape[-2:])
    z0, y = z0.reshape(-1, *z0.shape[-2:]), y.expand(*lead, y.shape[-1]).reshape(-1, y.shape[-1])
    position = model.unflatten(torch.arange(p, device=device))         # flat position of every entry
    # block row l: the model truncated to layers l..L-1, where its entries sit in ours
    # (columns), and the basis vectors of its first layer (layer l); the same for every run
    blocks = []
    for l in range(L):
        sub = dataclasses.replace(model, L=L - l)
        columns = sub.flatten({k: v[l:] for k, v in position.items()})
        first = _layer_entries(sub.unflatten(torch.arange(sub.num_params, device=device)), 0)
        basis = theta.new_zeros(first.numel(), sub.num_params)
        basis[torch.arange(first.numel(), device=device), first] = 1
        blocks.append((sub, columns[first], columns, basis))
    # H[i, j] is computed where layer(i) <= layer(j); the rest is its transpose
    upper = torch.zeros(p, p, dtype=torch.bool, device=device)
    for _, rows_at, columns, _ in blocks:
        upper[rows_at.unsqueeze(-1), columns.unsqueeze(0)] = True
    H = []
    in_place = _IN_PLACE.set(False)
    try:
        for r in range(theta.shape[0]):
            H.append(_hessian_one_run(model, model.unflatten(theta[r]), A0[r], z0[r], y[r], n, chunk, blocks, upper))
    finally:
        _IN_PLACE.reset(in_place)
    return torch.stack(H).reshape(*lead, p, p)


def _hessian_one_run(model, run, A0, z0, y, n, chunk, blocks, upper):
    """:func:`hessian` of one run: ``run`` a params dict without run dimensions; ``blocks``
    per layer ``l``: the truncated model, the flat positions of its rows and of its columns,
    and its basis vectors; ``upper`` the ``(p, p)`` mask of the entries the blocks compute."""
    from torch.func import jvp, vmap

    P, Q = model.to_PQ(run)
    _, (layers, A_last, z_last, *_) = _forward(P, Q / n, A0, z0)
    states = [layer[:2] for layer in layers] + [(A_last, z_last)]
    H = A0.new_zeros(upper.shape)
    for l, (sub, rows_at, columns, basis) in enumerate(blocks):
        sub_theta = sub.flatten({k: v[l:] for k, v in run.items()})
        A, z = states[l]

        def grad(t, sub=sub, A=A, z=z):
            return sub.flatten(loss_and_grad(sub, sub.unflatten(t), A, z, y, n)[1])

        with warnings.catch_warnings():
            # forward mode loads torch's own decompositions through the deprecated
            # torch.jit.script: torch's warning, not ours
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
            rows = vmap(lambda e: jvp(grad, (sub_theta,), (e,))[1], chunk_size=chunk)(basis)
        H[rows_at.unsqueeze(-1), columns.unsqueeze(0)] = rows
    return torch.where(upper, H, H.transpose(0, 1))
