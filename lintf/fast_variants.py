"""Hand-written loss, gradient and curvature of the model variants: softmax attention, separate
``W_K, W_Q`` and the nonlinear setting's MLP front end, batched over runs (the engine's
backends ``"fast"`` and ``"auto"``, :func:`use`).

Every :class:`lintf.model.Model` is three stages, each differentiated by hand here:

1. the front end (``frontend="mlp"``): every token's x-part through
   ``Linear(d, h) -> ReLU -> Linear(h, d)``, per run; otherwise the prompts as drawn;
2. the full ``P, Q`` of eq. (7) from the trained tensors (:meth:`Model.to_PQ`): the block
   parametrization pads, separate key and query matrices give ``Q = W_K^T W_Q``, whose
   gradients are ``g_{W_K} = W_Q g_Q^T`` and ``g_{W_Q} = W_K g_Q``;
3. the attention layers: linear attention through :mod:`lintf.fast` (the prompts' context
   moments ``A0 = Z M Z^T`` and query columns, its eqs. F1-F5); softmax attention by
   :func:`_softmax_forward` and :func:`_softmax_backward` below.

Softmax attention, one prompt, tokens as rows (``Z^T``, ``N = n+1`` rows of ``D = d+1``),
per layer:

    Y = Z^T Q^T,   S = Y Z          (S[j, i] = z_i^T Q z_j: query j, key i)
    A = softmax over i of S,        U = A[:, :n] (Z^T P^T)[:n] / n,   Z^T <- Z^T + U      (S1)

and the last layer needs only the query row, ``h = [Z_L]_{D,N} = z_N[D] + (1/n) sum_{i<n}
a_i (P z_i)_D`` with ``a = softmax_i(z_i^T Q z_N)`` (S2). The per-prompt products are batched
matrix products over runs x prompts (one ``bmm`` each); the products with a run's parameter
matrix are one matrix product over all of its prompts' tokens.

``tests/test_fast_variants.py`` checks the loss and the gradient of every variant against
autograd through :func:`lintf.model.Model.loss` in float64, and the engine's hand-written
path against its autograd path.

The directional smoothness ``v^T H v`` (:func:`curvature`) of linear attention, any ``Q`` and
front end, is the Taylor arithmetic of :func:`lintf.fast.curvature`, which the front end enters
through the derivatives of the prompts' summaries along ``v``; of softmax attention (which no
setting records), forward-mode differentiation (``torch.func.jvp``) of the hand-written
gradient along ``v``.

Measured (``benchmarks/bench_engine.py --variants``: the engine, 6 runs of each book setting,
B=1000, ms per run-iteration, wall, hand-written vs autograd; the project's 2-core machine
shared with other jobs, load average 4-6, medians of 3): softmax 15.8 vs 28.6 (1.8x), separate
``W_K, W_Q`` 2.7 vs 15.1 (5.7x), nonlinear with its per-step smoothness 20.0 vs 83.4 (4.2x).
Softmax attention is bound by its ``N x N`` batched products (about 1-2.5 ms per 6000 prompts
each on this CPU, eleven per step), which autograd computes alike.
"""
from __future__ import annotations

import threading
import warnings
from typing import NamedTuple

import torch

from . import fast
from .checks import broadcast_shapes
from .model import Model


def supports(model: Model) -> bool:
    """Whether this module computes ``model``: every :class:`Model` (any attention, ``Q``
    and front end, either parametrization); the plain one through :mod:`lintf.fast`."""
    return isinstance(model, Model)


def use(model: Model, choice: str | None = None) -> bool:
    """Whether training goes through the hand-written path (this module) under backend
    ``choice`` (:data:`lintf.fast.BACKENDS`; None: ``$LINTF_BACKEND``, else ``"auto"``):
    every model except under ``"autograd"``."""
    return fast.backend(choice) != "autograd" and supports(model)


class Batch(NamedTuple):
    """A batch prepared once for every run that shares it (:func:`prepare`).

    tokens : the prompts with tokens as rows, ``(..., B, n+1, d+1)`` (None where the model
        reads only the summaries); A0, z0 : :func:`lintf.fast.summarize` of the prompts,
        ``(..., D, D, B)``, ``(..., D, B)`` (None where the model needs the tokens);
        y : targets ``(..., B)``; n : context length.
    """

    tokens: torch.Tensor | None
    A0: torch.Tensor | None
    z0: torch.Tensor | None
    y: torch.Tensor
    n: int


def _summaries_only(model: Model) -> bool:
    return model.attention == "linear" and model.frontend == "none"


def prepare(model: Model, Z, y) -> Batch:
    """What ``model`` reads of prompts ``Z`` ``(..., B, d+1, n+1)`` and targets ``y`` ``(..., B)``:
    the summaries (linear attention without front end) or the tokens as rows (otherwise)."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a lintf.model.Model, got {type(model).__name__}")
    if not isinstance(Z, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("Z and y must be tensors")
    D = model.d + 1
    if Z.dim() < 3 or Z.shape[-2] != D or Z.shape[-1] < 2:
        raise ValueError(f"Z must have shape (..., B, {D}, n+1) with n >= 1, got {tuple(Z.shape)}")
    if y.shape != Z.shape[:-2]:
        raise ValueError(f"y must have shape {tuple(Z.shape[:-2])} (the batch of Z), got {tuple(y.shape)}")
    n = Z.shape[-1] - 1
    if _summaries_only(model):
        A0, z0 = fast.summarize(Z)
        return Batch(None, A0, z0, y, n)
    return Batch(Z.transpose(-1, -2).contiguous(), None, None, y, n)


def _check_batch(batch):
    if not isinstance(batch, Batch):
        raise TypeError(f"batch must be a lintf.fast_variants.Batch (from prepare), got {type(batch).__name__}")
    return batch


# -- small batched products ------------------------------------------------------------------
def _bmm(X, Y):
    """Per-prompt ``X_b @ Y_b`` for ``(..., a, b)`` and ``(..., b, c)`` (leading dims broadcast),
    as one batched matrix product."""
    lead = broadcast_shapes(X.shape[:-2], Y.shape[:-2])
    X, Y = X.expand(*lead, *X.shape[-2:]), Y.expand(*lead, *Y.shape[-2:])
    out = torch.bmm(X.reshape(-1, *X.shape[-2:]), Y.reshape(-1, *Y.shape[-2:]))
    return out.reshape(*lead, *out.shape[-2:])


def _tok(X, W):
    """Every token row of ``X`` ``(..., B, N, a)`` times a run's matrix ``W`` ``(..., a, c)``:
    one matrix product over the ``B N`` tokens of each run (run dims broadcast; flattened to
    one ``bmm``, which writes its result in place where a broadcast ``matmul`` copies it).
    Returns ``(..., B, N, c)``."""
    B, N = X.shape[-3:-1]
    return _bmm(X.reshape(*X.shape[:-3], B * N, X.shape[-1]), W).reshape(
        *broadcast_shapes(X.shape[:-3], W.shape[:-2]), B, N, W.shape[-1])


def _tok_sum(X, Y):
    """``sum`` over prompts and tokens of ``X_t^T Y_t``: ``(..., B, N, a) x (..., B, N, c) -> (..., a, c)``
    (one matrix product per run)."""
    X = X.reshape(*X.shape[:-3], -1, X.shape[-1])
    Y = Y.reshape(*Y.shape[:-3], -1, Y.shape[-1])
    return torch.matmul(X.transpose(-1, -2), Y)


def _softmax(S):
    """Softmax over the last axis, shifted by its maximum."""
    E = (S - S.amax(-1, keepdim=True)).exp()
    return E / E.sum(-1, keepdim=True)


def _softmax_adjoint(a, bar_ak):
    """Adjoint of the scores of ``a = softmax(s)`` (last axis, ``n+1`` keys) from that of its
    first ``n`` entries ``bar_ak`` (the query's own key is masked out: its adjoint is zero):
    ``a * (bar_a - sum_i a_i bar_a_i)``."""
    n = bar_ak.shape[-1]
    rs = (a[..., :n] * bar_ak).sum(-1, keepdim=True)
    return a * torch.nn.functional.pad(bar_ak, (0, 1)).sub(rs)


def _key_max(St):
    """Maximum over the keys (axis -2) of scores ``(..., N, N)``, ``(..., 1, N)``: a tree of
    elementwise maxima over halves of the keys, each over whole rows of queries (about twice as
    fast on the CPU as ``amax``, whose reduction over a short axis does not vectorise)."""
    m = St
    while m.shape[-2] > 1:
        half = m.shape[-2] // 2
        top = torch.maximum(m[..., :half, :], m[..., half:2 * half, :])
        if m.shape[-2] % 2:
            top[..., :1, :] = torch.maximum(top[..., :1, :], m[..., -1:, :])
        m = top
    return m


# -- softmax attention ---------------------------------------------------------------------------
def _projections(X, Pl, Ql, n):
    """Every token's ``[(Q z)^T, (P z)^T, 1]`` in one product, ``(..., B, N, 2D+1)``, the query's
    ``P z`` set to zero: views ``Y = [..., :D]`` and ``G1 = [..., D:]`` (``[G, 1; 0, 1]``)."""
    D = X.shape[-1]
    W = torch.cat([Ql.transpose(-1, -2), Pl.transpose(-1, -2)], dim=-1)          # (..., D, 2D)
    W = torch.nn.functional.pad(W, (0, 1))                              # a zero column for the ones
    H = _tok(X, W)
    H[..., -1] = 1.0
    H[..., n, D:2 * D] = 0.0                                           # the query key: no value
    return H


def _softmax_forward(P, Q, tokens, n):
    """Eqs. (S1)-(S2) for full ``P, Q`` ``(..., L, D, D)`` and tokens ``(..., B, N, D)``.
    Returns ``h = [Z_L]_{D,N}`` ``(..., B)`` and what :func:`_softmax_backward` needs.

    A layer keeps the scores keys x queries (``S^T``) and defers the normalisation:
    ``E = exp(S^T - max over keys)``, then one product ``E^T [G, 1]`` gives both the
    unnormalised update ``U~`` and the softmax sums ``s`` (the query's own key contributes a
    row ``[0, 1]``), and ``U = U~ / (n s)``: the ``N x N`` tensors are read and written as few
    times as possible (the CPU is memory-bound on them)."""
    L, D = P.shape[-3], P.shape[-1]
    X = tokens
    layers = []
    for l in range(L - 1):
        H = _projections(X, P[..., l, :, :], Q[..., l, :, :], n)
        Y, G1 = H[..., :D], H[..., D:]
        St = _bmm(X, Y.transpose(-1, -2))                              # (..., B, N, N): key, query
        E = St.sub_(_key_max(St)).exp_()
        Us = _bmm(G1.transpose(-1, -2), E).transpose(-1, -2)           # [U~, s] per query (E^T G1)
        s = Us[..., -1:]
        layers.append((X, H, E, Us))
        X = X + Us[..., :-1] / (n * s)                                 # (S1)
    # last layer (S2): the query row only
    Pl, Ql = P[..., L - 1, :, :], Q[..., L - 1, :, :]
    zq = X[..., n, :]                                                  # (..., B, D)
    yq = torch.matmul(zq, Ql.transpose(-1, -2))                        # (Q z_N)^T
    a = _softmax(_bmm(X, yq.unsqueeze(-1)).squeeze(-1))                # (..., B, N)
    p = Pl[..., -1, :]                                                 # last row of P_{L-1}
    g = _bmm(X[..., :n, :], p.unsqueeze(-1).unsqueeze(-3)).squeeze(-1)  # (P z_i)_D, (..., B, n)
    h = zq[..., -1] + (a[..., :n] * g).sum(-1) / n
    return h, (layers, X, zq, yq, a, p, g)


def _softmax_backward(P, Q, saved, c, n, inputs: bool):
    """Reverse mode through :func:`_softmax_forward` from ``c = d loss / d h`` ``(..., B)``.
    Returns the gradients of the full ``P, Q`` and, with ``inputs``, the tokens' adjoint.

    Through a layer, with ``u = bar_X / (n s)`` and ``r = <u, U~> / s`` per query (the
    adjoints of ``U~`` and ``-s``), the scores' adjoint is one product and one pass:
    ``bar_S^T = E * ([G, 1; 0, 1] [u, -r]^T)`` (the softmax's Jacobian, with ``E`` the
    unnormalised weights; the shift by the maximum leaves ``U`` unchanged, so it has no adjoint)."""
    layers, X, zq, yq, a, p, g = saved
    L, D = P.shape[-3], P.shape[-1]
    lead = broadcast_shapes(P.shape[:-3], c.shape[:-1])
    gP = P.new_zeros(*lead, *P.shape[-3:])
    gQ = Q.new_zeros(*lead, *Q.shape[-3:])
    # last layer: h = zq[D] + (1/n) sum_i a_i g_i,  a = softmax(X yq),  g = X[:n] p,  yq = Q zq
    cn = (c / n).unsqueeze(-1)
    bar_g = a[..., :n] * cn                                            # (..., B, n)
    bar_s = _softmax_adjoint(a, g * cn)
    gP[..., L - 1, -1, :] = _tok_sum(bar_g.unsqueeze(-1), X[..., :n, :]).squeeze(-2)
    bar_yq = _bmm(bar_s.unsqueeze(-2), X).squeeze(-2)                  # (..., B, D)
    gQ[..., L - 1, :, :] = torch.matmul(bar_yq.transpose(-1, -2), zq)  # sum_b bar_yq zq^T
    bar_X = bar_s.unsqueeze(-1) * yq.unsqueeze(-2)                     # from s = X yq
    bar_X[..., :n, :] += bar_g.unsqueeze(-1) * p.unsqueeze(-2).unsqueeze(-2)
    bar_X[..., n, :] += torch.matmul(bar_yq, Q[..., L - 1, :, :])
    bar_X[..., n, -1] += c
    for l in range(L - 2, -1, -1):
        X, H, E, Us = layers[l]
        Y, G1 = H[..., :D], H[..., D:]
        s = Us[..., -1:]
        u = bar_X / (n * s)                                            # adjoint of U~
        r = (u * Us[..., :-1]).sum(-1, keepdim=True) / s               # minus the adjoint of s
        ur_t = torch.cat([u.transpose(-1, -2), -r.transpose(-1, -2)], dim=-2)   # [u, -r]^T, contiguous
        bar_St = _bmm(G1, ur_t).mul_(E)                                # (..., B, N, N): key, query
        # adjoints of Y (S^T = X Y^T) and of G (U~ = E^T G), side by side; G's query row: 0
        bar_H = torch.cat([_bmm(X.transpose(-1, -2), bar_St).transpose(-1, -2), _bmm(E, u)], dim=-1)
        bar_H[..., n, D:] = 0.0
        g_QP = _tok_sum(bar_H, X)                                      # [Y, G] = X [Q^T, P^T]
        gQ[..., l, :, :], gP[..., l, :, :] = g_QP[..., :D, :], g_QP[..., D:, :]
        if l > 0 or inputs:
            QP = torch.cat([Q[..., l, :, :], P[..., l, :, :]], dim=-2)           # (..., 2D, D)
            bar_X = bar_X + _bmm(bar_St, Y) + _tok(bar_H, QP)
    return gP, gQ, (bar_X if inputs else None)


# -- the front end ---------------------------------------------------------------------------------
def _relu_mask(G, R):
    """``G * 1[R > 0]`` (ReLU's derivative from its output ``R``), one pass."""
    return torch.ops.aten.threshold_backward(G, R, 0)


def _embed(params, tokens, d):
    """The MLP front end on the x-part of every token row: returns the embedded tokens
    ``(..., B, N, D)`` (run dims of ``params``) and what :func:`_embed_backward` needs.
    The first layer's bias enters the product through a column of ones (``X1 = [X, 1]``)."""
    X1 = torch.nn.functional.pad(tokens[..., :d], (0, 1), value=1.0)   # (..., B, N, d+1)
    W1 = torch.cat([params["W1"], params["b1"].unsqueeze(-1)], dim=-1)  # (..., h, d+1)
    R = _tok(X1, W1.transpose(-1, -2)).relu_()                         # (..., B, N, h)
    E = _tok(R, params["W2"].transpose(-1, -2)).add_(params["b2"].unsqueeze(-2).unsqueeze(-2))
    Yrow = tokens[..., d:].expand(*E.shape[:-1], 1)
    return torch.cat([E, Yrow], dim=-1), (X1, R)


def _embed_backward(params, saved, bar_tokens, d):
    """Gradients of the front end's tensors from the embedded tokens' adjoint."""
    X1, R = saved
    bar_E = bar_tokens[..., :d]
    bar_H = _relu_mask(_tok(bar_E, params["W2"]), R)
    g1 = _tok_sum(bar_H, X1)                                           # [W1, b1]: H = X W1^T + b1
    return {"W1": g1[..., :d], "b1": g1[..., d],
            "W2": _tok_sum(bar_E, R),                                  # E = R W2^T + b2
            "b2": bar_E.sum((-3, -2))}


def _summarize_tokens(tokens, n):
    """:func:`lintf.fast.summarize` of prompts given as token rows ``(..., B, N, D)``."""
    keys = tokens[..., :n, :]
    A0 = _bmm(keys.transpose(-1, -2), keys)                            # (..., B, D, D)
    return A0.movedim(-3, -1).contiguous(), tokens[..., n, :].movedim(-2, -1).contiguous()


def _embed_taylor(params, direction, saved, d):
    """First and second derivatives of the embedded tokens along ``direction`` (dict shaped
    like ``params``): ``H' = X W1'^T + b1'``, ``R' = 1[H > 0] H'``, ``R'' = 0`` (ReLU is
    piecewise linear), ``E' = R' W2^T + R W2'^T + b2'``, ``E'' = 2 R' W2'^T``; the y-part is data.
    Returns ``(T1, T2)`` ``(..., B, N, D)``."""
    X1, R = saved
    dW1 = torch.cat([direction["W1"], direction["b1"].unsqueeze(-1)], dim=-1)
    R1 = _relu_mask(_tok(X1, dW1.transpose(-1, -2)), R)
    RW = _tok(R1, torch.cat([params["W2"], direction["W2"]], dim=-2).transpose(-1, -2))   # R' [W2, W2']^T
    E1 = RW[..., :d] + _tok(R, direction["W2"].transpose(-1, -2))
    E1.add_(direction["b2"].unsqueeze(-2).unsqueeze(-2))
    E2 = 2 * RW[..., d:]
    pad = (0, 1)
    return torch.nn.functional.pad(E1, pad), torch.nn.functional.pad(E2, pad)


def _summaries_taylor(tokens, T1, T2, n):
    """First and second derivatives of :func:`_summarize_tokens` along a step that moves the
    tokens by ``T1, T2``: ``A' = K'^T K + K^T K'``, ``A'' = K''^T K + 2 K'^T K' + K^T K''``
    (``K`` the key rows), ``z' , z''`` the query row's. Returns ``(A1, A2, z1, z2)`` batch last."""
    K, K1, K2 = tokens[..., :n, :], T1[..., :n, :], T2[..., :n, :]
    X = _bmm(K1.transpose(-1, -2), K)
    A1 = X + X.transpose(-1, -2)
    X = _bmm(K2.transpose(-1, -2), K)
    A2 = X + X.transpose(-1, -2) + 2 * _bmm(K1.transpose(-1, -2), K1)
    return tuple(t.contiguous() for t in (A1.movedim(-3, -1), A2.movedim(-3, -1), T1[..., n, :].movedim(-2, -1),
                                          T2[..., n, :].movedim(-2, -1)))


# -- parameters ------------------------------------------------------------------------------------
_CORE = {}


def _core(model: Model) -> Model:
    """The plain linear model of ``model``'s depth and width, full parametrization: what
    :mod:`lintf.fast` differentiates on the full ``P, Q``."""
    key = (model.L, model.d)
    if key not in _CORE:
        _CORE[key] = Model(L=model.L, d=model.d)
    return _CORE[key]


def _trained_grads(model: Model, params, gP, gQ) -> dict:
    """Gradients with respect to the full ``P, Q`` to those of the trained attention tensors."""
    if model.parametrization == "block":
        d = model.d
        return {"P": gP[..., :d, :d], "Q": gQ[..., :d, :d]}
    if model.qk == "separate":                                         # Q = W_K^T W_Q
        return {"P": gP, "W_K": params["W_Q"] @ gQ.transpose(-1, -2), "W_Q": params["W_K"] @ gQ}
    return {"P": gP, "Q": gQ}


# -- public --------------------------------------------------------------------------------------
def _check(model, params, batch, name="params"):
    if not isinstance(model, Model):
        raise TypeError(f"model must be a lintf.model.Model, got {type(model).__name__}")
    _check_batch(batch)
    if (batch.tokens is None) != _summaries_only(model):
        raise ValueError("batch was prepared for another kind of model: use prepare(model, Z, y)")
    lead = model.check_params(params, name)
    try:
        broadcast_shapes(lead, batch.y.shape[:-1])
    except RuntimeError:
        raise ValueError(f"run dimensions of {name} {lead} and of the batch {tuple(batch.y.shape[:-1])} "
                         "do not broadcast") from None
    return lead


class _Forward(NamedTuple):
    """What :func:`loss_and_grad` keeps for :func:`curvature` at the same point and batch."""

    front: tuple | None             # the front end's (X, H, R)
    tokens: torch.Tensor | None     # the embedded tokens
    A0: torch.Tensor | None         # linear attention: the (embedded) prompts' summaries
    z0: torch.Tensor | None
    core: tuple | None              # lintf.fast's forward pass
    gQ: torch.Tensor | None         # gradient of the full Q (separate W_K, W_Q)


def _loss_and_grad(model: Model, params, batch: Batch, need_grad: bool, keep_forward: bool = False):
    """Loss, gradient (None without ``need_grad``) and, with ``keep_forward``, a :class:`_Forward`."""
    n, y, d = batch.n, batch.y, model.d
    if fast.supports(model):
        if not need_grad:
            return fast.loss(model, params, batch.A0, batch.z0, y, n), None, None
        out = fast.loss_and_grad(model, params, batch.A0, batch.z0, y, n, keep_forward=keep_forward)
        return out[0], out[1], (_Forward(None, None, batch.A0, batch.z0, out[2], None) if keep_forward else None)
    P, Q = model.to_PQ(params)
    tokens, front = batch.tokens, None
    if model.frontend == "mlp":
        tokens, front = _embed(params, tokens, d)
    A0 = z0 = core_forward = None
    if model.attention == "linear":
        core = {"P": P, "Q": Q}
        A0, z0 = (batch.A0, batch.z0) if front is None else _summarize_tokens(tokens, n)
        if not need_grad:
            return fast.loss(_core(model), core, A0, z0, y, n), None, None
        loss, g, *rest = fast.loss_and_grad(_core(model), core, A0, z0, y, n, keep_forward=keep_forward,
                                            inputs=front is not None)
        gP, gQ = g["P"], g["Q"]
        if keep_forward:
            core_forward = rest.pop(0)
        if front is not None:
            bar_A0, bar_z0 = rest.pop(0)
            sym = (bar_A0 + bar_A0.transpose(-3, -2)).movedim(-1, -3)  # (..., B, D, D)
            bar_tokens = torch.cat([_bmm(tokens[..., :n, :], sym), bar_z0.movedim(-1, -2).unsqueeze(-2)], dim=-2)
    else:
        h, saved = _softmax_forward(P, Q, tokens, n)
        err = h + y                                                    # -(TF_L - y)
        loss = err.square().mean(-1)
        if not need_grad:
            return loss, None, None
        c = (2.0 / err.shape[-1]) * err
        gP, gQ, bar_tokens = _softmax_backward(P, Q, saved, c, n, inputs=front is not None)
    grads = _trained_grads(model, params, gP, gQ)
    if front is not None:
        grads.update(_embed_backward(params, front, bar_tokens, d))
    grads = {k: grads[k] for k in model.param_shapes()}
    forward = _Forward(front, tokens, A0, z0, core_forward, gQ) if keep_forward else None
    return loss, grads, forward


def loss(model: Model, params: dict, batch: Batch) -> torch.Tensor:
    """Mean squared error ``(...)`` of every run (forward only); arguments as :func:`loss_and_grad`."""
    _check(model, params, batch)
    return _loss_and_grad(model, params, batch, need_grad=False)[0]


def loss_and_grad(model: Model, params: dict, batch: Batch, *, keep_forward: bool = False):
    """Mean squared error and its gradient for any :class:`Model`, by hand.

    params : the model's tensors with run dimensions ``...``; batch : :func:`prepare` of the
    prompts ``(..., B, d+1, n+1)`` and targets ``(..., B)`` (run dimensions broadcast against
    those of ``params``). Returns ``loss`` ``(...)`` and ``grads``, a dict shaped like ``params``
    with the run dimensions of the loss; with ``keep_forward`` also the forward pass, which
    :func:`curvature` at the same point and batch can reuse (``forward=``).
    """
    _check(model, params, batch)
    loss, grads, forward = _loss_and_grad(model, params, batch, need_grad=True, keep_forward=keep_forward)
    return (loss, grads, forward) if keep_forward else (loss, grads)


def _direction_PQ(model: Model, params, direction):
    """A step in the trained tensors as first and second derivatives of the full ``P, Q``:
    ``(dP, dQ, Q2)``; ``Q2`` is None where ``Q`` is linear in the step, else (``Q = W_K^T W_Q``)
    ``2 W_K'^T W_Q'``."""
    if model.parametrization == "block":
        pad = (0, 1, 0, 1)
        return (torch.nn.functional.pad(direction["P"], pad), torch.nn.functional.pad(direction["Q"], pad), None)
    if model.qk == "separate":
        dK, dQ_ = direction["W_K"], direction["W_Q"]
        Q1 = dK.transpose(-1, -2) @ params["W_Q"] + params["W_K"].transpose(-1, -2) @ dQ_
        return direction["P"], Q1, 2 * dK.transpose(-1, -2) @ dQ_
    return direction["P"], direction["Q"], None


_FORWARD_AD = threading.Lock()
"""Forward-mode levels are process-wide in torch: one ``jvp`` at a time (the engine's worker
threads would otherwise corrupt each other's)."""


def curvature(model: Model, params: dict, direction: dict, batch: Batch, *, forward=None) -> torch.Tensor:
    """Second derivative of the loss along ``direction``, ``v^T H v`` ``(...)``, not normalised.

    Linear attention (any ``Q``, any front end): Taylor arithmetic to second order through
    :func:`lintf.fast.curvature`, which the front end enters through the first and second
    derivatives of the prompts' summaries (:func:`_embed_taylor`, :func:`_summaries_taylor`); with
    ``Q = W_K^T W_Q`` the step's second derivative of ``Q`` adds ``<g_Q, Q''>``. Softmax attention:
    forward-mode differentiation (``torch.func.jvp``) of :func:`loss_and_grad` along ``v``, ``H v``,
    then ``<v, H v>``. ``direction``: dict shaped like ``params``; ``forward``: what
    :func:`loss_and_grad` kept at the same point and batch (linear attention reuses it); other
    arguments as :func:`loss_and_grad`.
    """
    _check(model, params, batch)
    _check(model, direction, batch, name="direction")
    if forward is not None and not isinstance(forward, _Forward):
        raise TypeError(f"forward must be what loss_and_grad(..., keep_forward=True) returned, got "
                        f"{type(forward).__name__}")
    n, y = batch.n, batch.y
    if model.attention == "linear":
        if fast.supports(model):
            return fast.curvature(model, params, direction, batch.A0, batch.z0, y, n,
                                  forward=None if forward is None else forward.core)
        if forward is None or forward.core is None:
            forward = _loss_and_grad(model, params, batch, need_grad=True, keep_forward=True)[2]
        P, Q = model.to_PQ(params)
        dP, dQ, Q2 = _direction_PQ(model, params, direction)
        inputs = None
        if model.frontend == "mlp":
            T1, T2 = _embed_taylor(params, direction, forward.front, model.d)
            inputs = _summaries_taylor(forward.tokens, T1, T2, n)
        curv = fast.curvature(_core(model), {"P": P, "Q": Q}, {"P": dP, "Q": dQ}, forward.A0, forward.z0, y, n,
                              forward=forward.core, inputs=inputs)
        if Q2 is not None:
            curv = curv + (forward.gQ * Q2).sum((-3, -2, -1))
        return curv
    from torch.func import jvp

    def grad(p):
        return _loss_and_grad(model, p, batch, need_grad=True)[1]

    in_place = fast._IN_PLACE.set(False)
    try:
        with _FORWARD_AD, warnings.catch_warnings():
            # forward mode loads torch's own decompositions through the deprecated
            # torch.jit.script: torch's warning, not ours
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
            _, hv = jvp(grad, (params,), (direction,))
    finally:
        fast._IN_PLACE.reset(in_place)
    shapes = model.param_shapes()
    return sum((direction[k] * hv[k]).flatten(-len(s)).sum(-1) for k, s in shapes.items())
