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
:func:`lintf.model.loss` in float64.
"""
from __future__ import annotations

import contextvars
import dataclasses
import warnings

import torch

from .checks import broadcast_shapes, check_int
from .model import Model


def supports(model: Model) -> bool:
    """Whether this module computes ``model`` (plain linear attention, joint ``Q``, no front end)."""
    return model.attention == "linear" and model.qk == "joint" and model.frontend == "none"


def _check(model: Model, params: dict, A0, z0, y, n, name="params") -> tuple:
    """Check the arguments of the public functions; return ``(P, Q)`` of eq. (7).
    ``y=None``: no targets (prediction)."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a lintf.model.Model, got {type(model).__name__}")
    if not supports(model):
        raise ValueError("lintf.fast computes attention='linear', qk='joint', frontend='none' only; "
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


def loss_and_grad(model: Model, params: dict, A0, z0, y, n: int, *, keep_forward: bool = False):
    """Mean squared error and its gradient, by hand (reverse mode through (F1)-(F5)).

    model : a model :func:`supports`; params : its tensors with run dimensions ``...``.
    A0, z0 : :func:`summarize` of the batch, ``(..., D, D, B)`` and ``(..., D, B)`` (run
        dimensions broadcast against those of ``params``); y : targets ``(..., B)``.
    n : context length of the prompts (the ``1/n`` of eq. 8).
    Returns ``loss`` ``(...)`` and ``grads``, a dict shaped like ``params``; with
    ``keep_forward`` also the forward pass, which :func:`curvature` at the same point and
    batch can reuse (``forward=``).
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
        if l > 0:
            # adjoint of A_l: T^T bar_A T + P^T bar_T (Q/n)^T
            new = _left(P[..., l, :, :].transpose(-1, -2), X)
            if ab is not None:
                bar_A = _outer(_pv(_t(T), a), _pv(_t(T), b), out=new)
            else:
                bar_A = _pp(_pp(_t(T), bar_A), T, out=new)
            ab = None
        bar_z = _pv(_t(T), bar_z)
    grads = _trained(model, gP, gQn / n)
    return (loss, grads, (h, saved)) if keep_forward else (loss, grads)


def curvature(model: Model, params: dict, direction: dict, A0, z0, y, n: int, *, forward=None) -> torch.Tensor:
    """Second derivative of the loss along ``direction``: ``v^T H v`` ``(...)``, not normalised.

    Forward-mode Taylor arithmetic to second order: every quantity ``X`` of eqs. (F1)-(F5)
    is carried with its first and second derivatives ``X1, X2`` along ``v`` (``P, Q`` are
    linear in the step, so theirs vanish). ``direction``: dict shaped like ``params``;
    ``forward``: what :func:`loss_and_grad` kept at the same params and batch (saves
    recomputing the primal quantities); other arguments as :func:`loss_and_grad`.
    """
    P, Q = _check(model, params, A0, z0, y, n)
    _check(model, direction, A0, z0, y, n, name="direction")
    dP, dQ = _full_direction(model, direction)
    Qn, dQn = Q / n, dQ / n
    L = P.shape[-3]
    h0, (layers, A_last, z_last, _, r0, s0) = _forward(P, Qn, A0, z0) if forward is None else forward
    A1 = A2 = z1 = z2 = None                                           # None: zero (data)
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


def hessian(model: Model, params: dict, A0, z0, y, n: int, *, chunk: int | None = None) -> torch.Tensor:
    """Exact Hessian of the loss over the flat parameter vector (:meth:`Model.flatten` order).

    Layer ``l``'s parameters act from ``A_l, z_l`` on, so the Hessian's rows for them, in the
    columns of layers ``l..L-1``, are the Hessian of the same loss computed by those layers
    alone, started from ``A_l, z_l``; the blocks below the diagonal follow by symmetry.
    Each block row is forward-mode differentiation (``torch.func.jvp``) of the hand-written
    gradient :func:`loss_and_grad` of the truncated model along the basis vectors of layer
    ``l``, batched with ``torch.func.vmap`` (``chunk`` at a time, ``None``: all at once), so
    the primal pass is computed once per block, not once per basis vector. Compared with
    ``p`` Hessian-vector products through all ``L`` layers this does about half the work
    at ``L=3``. Runs are done one after another.

    params : tensors with run dimensions ``...``; A0, z0, y, n : as :func:`loss_and_grad`
    (their run dimensions broadcast against those of ``params``). Use float64 for small
    eigenvalues. Returns ``(..., p, p)``, ``p = model.num_params``.
    """
    _check(model, params, A0, z0, y, n)
    if chunk is not None:
        check_int("chunk", chunk)
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
