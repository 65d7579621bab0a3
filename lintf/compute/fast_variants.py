"""Hand-written loss, gradient and curvature of the model variants: softmax attention, separate
``W_K, W_Q`` and the nonlinear setting's MLP front end, batched over runs (the engine's
backends ``"fast"`` and ``"auto"``, :func:`use`).

Every :class:`lintf.compute.model.Model` is three stages, each differentiated by hand here:

1. the front end (``frontend="mlp"``): every token's x-part through
   ``Linear(d, h) -> ReLU -> Linear(h, d)``, per run, as two matrix products on the token rows
   with a one appended that carry the biases and the y-part (:func:`_front_weights`);
   otherwise the prompts as drawn;
2. the full ``P, Q`` of eq. (7) from the trained tensors (:meth:`Model.to_PQ`): the block
   parametrization pads, separate key and query matrices give ``Q = W_K^T W_Q``, whose
   gradients are ``g_{W_K} = W_Q g_Q^T`` and ``g_{W_Q} = W_K g_Q``;
3. the attention layers: linear attention through :mod:`lintf.compute.fast` (the prompts' context
   moments ``A0 = Z M Z^T`` and query columns, its eqs. F1-F5); softmax attention by
   :func:`_softmax_forward` and :func:`_softmax_backward` below, forward and backward of one
   block of :data:`SOFTMAX_BLOCK` prompts at a time (:func:`_softmax_loss_and_grad`).

Softmax attention, one prompt, tokens as rows (``Z^T``, ``N = n+1`` rows of ``D = d+1``),
per layer:

    Y = Z^T Q^T,   S = Y Z          (S[j, i] = z_i^T Q z_j: query j, key i)
    A = softmax over i of S,        U = A[:, :n] (Z^T P^T)[:n] / n,   Z^T <- Z^T + U      (S1)

and the last layer needs only the query row, ``h = [Z_L]_{D,N} = z_N[D] + (1/n) sum_{i<n}
a_i (P z_i)_D`` with ``a = softmax_i(z_i^T Q z_N)`` (S2). The per-prompt products are batched
matrix products over runs x prompts (one ``bmm`` each); the products with a run's parameter
matrix are one matrix product over all of its prompts' tokens. Each layer's shift of the scores
comes out of the scores' own product (:func:`_softmax_layer`), and the weights are normalised
only through the ``n+1``-vector of their sums: per layer and prompt, two ``N x N`` products
forward and four backward, and two elementwise passes over ``N x N`` (``exp``, and the
Jacobian's product).

``tests/test_fast_variants.py`` checks the loss and the gradient of every variant against
autograd through :func:`lintf.compute.model.Model.loss` in float64, and the engine's hand-written
path against its autograd path.

The exact Hessian (:func:`hessian`, what :func:`lintf.compute.measure.hessian` computes for every
variant) is forward-mode differentiation of the hand-written gradient along basis vectors; a
front end before linear attention needs it for its own rows only, the attention's block being
:func:`lintf.compute.fast.hessian` on the embedded prompts' summaries.

The directional smoothness ``v^T H v`` (:func:`curvature`) of linear attention, any ``Q`` and
front end, is the Taylor arithmetic of :func:`lintf.compute.fast.curvature`, which the front end enters
through the derivatives of the prompts' summaries along ``v``; of softmax attention (which no
setting records), forward-mode differentiation (``torch.func.jvp``) of the hand-written
gradient along ``v``.

Measured (``benchmarks/bench_engine.py --variants``: the engine, 6 runs of each book setting,
B=1000, ms per run-iteration, wall, hand-written vs autograd, medians of 3; the project's 2-core
machine shared with other jobs, load average about 3): softmax 9.1 vs 18.3 (2.0x), separate
``W_K, W_Q`` 1.65 vs 7.5 (4.6x), nonlinear with its per-step smoothness 11.4 vs 52.4 (4.6x);
at load 5-7, 25.0 vs 48.2 (1.9x), 3.7 vs 19.0 (5.1x) and 29.9 vs 117.9 (3.9x).
Softmax attention is bound by its ``N x N`` products and passes, which autograd computes alike:
on the CPU the hand-written path saves autograd's extra passes over them, about half its time.
Of the nonlinear model's time about a third is :mod:`lintf.compute.fast`'s (the attention on the
summaries and its curvature), most of the rest passes over every token's hidden layer
(``B N h`` numbers per run), each memory-bound.
"""
from __future__ import annotations

import threading
import warnings
from typing import NamedTuple

import torch

from . import fast
from .checks import broadcast_shapes, check_int
from .model import Model


def supports(model: Model) -> bool:
    """Whether this module computes ``model``: every :class:`Model` (any attention, ``Q``
    and front end, either parametrization); the plain one through :mod:`lintf.compute.fast`."""
    return isinstance(model, Model)


def use(model: Model, choice: str | None = None) -> bool:
    """Whether training goes through the hand-written path (this module) under backend
    ``choice`` (:data:`lintf.compute.fast.BACKENDS`; None: ``$LINTF_BACKEND``, else ``"auto"``):
    every model except under ``"autograd"``."""
    return fast.backend(choice) != "autograd" and supports(model)


class Batch(NamedTuple):
    """A batch prepared once for every run that shares it (:func:`prepare`).

    tokens : the prompts with tokens as rows, ``(..., B, n+1, d+1)`` (None where the model
        reads only the summaries); A0, z0 : :func:`lintf.compute.fast.summarize` of the prompts,
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
        raise TypeError(f"model must be a lintf.compute.model.Model, got {type(model).__name__}")
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
        raise TypeError(f"batch must be a lintf.compute.fast_variants.Batch (from prepare), got {type(batch).__name__}")
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
def _runs(T, lead, tail):
    """``T`` ``(..., *tail)`` broadcast to the run dims ``lead`` and flattened, ``(R, *tail)``."""
    return T.expand(*lead, *tail).reshape(-1, *tail)


def _layer_weights(Pl, Ql):
    """A layer's ``W = [[Q^T, 0, P^T, 0], [0, 0, 0, 1]]`` ``(R, D+1, 2D+2)`` for ``P, Q``
    ``(R, D, D)``: a token row with its one appended, ``[z^T, 1] W``, is ``[(Q z)^T, 0, (P z)^T, 1]``."""
    R, D = Pl.shape[0], Pl.shape[-1]
    W = Pl.new_zeros(R, D + 1, 2 * D + 2)
    W[:, :D, :D] = Ql.transpose(-1, -2)
    W[:, :D, D + 1:2 * D + 1] = Pl.transpose(-1, -2)
    W[:, D, -1] = 1.0
    return W


def _softmax_layer(X, W, n, B):
    """One layer of (S1) on the stream ``X`` ``(R B, N, D+1)`` (every prompt's tokens as rows,
    a column of ones last) with the runs' :func:`_layer_weights` ``W``. Returns the next stream
    and what :func:`_softmax_backward` needs.

    ``H = X W`` is ``[Y, -c, G, 1]`` per token (``Y = (Q z)^T``; ``G = (P z)^T``, zero on the
    query row: it has no value). The scores come out of one product already shifted,
    ``S^T - 1 c^T = X [Y, -c]^T`` (keys x queries), by ``c_j = mean_i z_i^T Q z_j``: at most
    their maximum, so every query's largest weight is at least 1 and its sum cannot underflow,
    and the softmax does not depend on the shift. Then ``E = exp`` in place, and one product
    ``E^T [G, 1]`` gives the unnormalised update ``U~`` and the softmax sums ``s`` together,
    ``U = U~ / (n s)``. The prompts where that overflows (scores spread over more than about
    80 in float32) are computed again shifted by the maximum over keys: a prompt's numbers
    depend on it alone, never on the other prompts or runs of the batch."""
    M, N, D1 = X.shape
    D = D1 - 1
    H = torch.bmm(X.view(-1, B * N, D1), W).view(M, N, 2 * D1)
    H[:, n, D1:-1] = 0.0                                               # the query key: no value
    Y, Yc, G1 = H[..., :D], H[..., :D1], H[..., D1:]
    xbar = X.mean(-2, keepdim=True)                                    # (M, 1, D+1), last entry 1
    H[..., D] = torch.bmm(Y, xbar[..., :D].transpose(-1, -2)).squeeze(-1).neg_()   # -c
    E = torch.bmm(X, Yc.transpose(-1, -2)).exp_()                     # (M, N, N): key, query
    Us = torch.bmm(G1.transpose(-1, -2), E)                            # (M, D+1, N): [U~^T; s^T]
    bad = ~torch.isfinite(Us.sum((-2, -1)))                            # per prompt: any inf or nan shows
    if bool(bad.any()):                                                # those prompts again, by the maximum
        i = bad.nonzero().squeeze(-1)
        St = torch.bmm(X[i, :, :D], Y[i].transpose(-1, -2))
        E[i] = St.sub_(_key_max(St)).exp_()
        Us[i] = torch.bmm(G1[i].transpose(-1, -2), E[i])
    inv = Us[:, D:, :].mul(n).reciprocal_()                            # 1 / (n s), (M, 1, N)
    Xn = X.clone()
    Xn[..., :D] += (Us[:, :D, :] * inv).transpose(-1, -2)              # (S1)
    return Xn, (X, H, E, Us, inv)


def _softmax_forward(P, Q, tokens, n):
    """Eqs. (S1)-(S2) for full ``P, Q`` ``(..., L, D, D)`` and tokens ``(..., B, N, D)``.
    Returns ``h = [Z_L]_{D,N}`` ``(..., B)`` and what :func:`_softmax_backward` needs.

    The run dims are flattened (``R`` runs); the stream of every prompt is ``(R B, N, D+1)``
    with a column of ones (:func:`_softmax_layer`), its per-prompt products one ``bmm`` over the
    ``R B`` prompts, its products with a run's matrix one ``bmm`` over the runs."""
    L, D = P.shape[-3], P.shape[-1]
    lead = broadcast_shapes(P.shape[:-3], tokens.shape[:-3])
    B, N = tokens.shape[-3:-1]
    Pr, Qr = _runs(P, lead, P.shape[-3:]), _runs(Q, lead, Q.shape[-3:])
    X = _runs(torch.nn.functional.pad(tokens, (0, 1), value=1.0), lead, (B, N, D + 1)).reshape(-1, N, D + 1)
    R, M = Pr.shape[0], X.shape[0]
    layers = []
    for l in range(L - 1):
        X, saved = _softmax_layer(X, _layer_weights(Pr[:, l], Qr[:, l]), n, B)
        layers.append(saved)
    # last layer (S2): the query row only
    Xd = X[..., :D]
    zq = X[:, n, :D]                                                   # (M, D)
    yq = torch.bmm(zq.reshape(R, B, D), Qr[:, L - 1].transpose(-1, -2)).view(M, D)   # (Q z_N)^T
    a = torch.softmax(torch.bmm(Xd, yq.unsqueeze(-1)).squeeze(-1), dim=-1)           # (M, N)
    p = Pr[:, L - 1, -1, :]                                            # last row of P_{L-1}, (R, D)
    g = torch.bmm(Xd.reshape(R, B * N, D), p.unsqueeze(-1)).view(M, N)  # (P z_i)_D
    h = zq[:, -1] + (a[:, :n] * g[:, :n]).sum(-1) / n
    return h.view(*lead, B), (layers, X, zq, yq, a, g, Pr, Qr, lead)


def _softmax_backward(P, Q, saved, c, n, inputs: bool):
    """Reverse mode through :func:`_softmax_forward` from ``c = d loss / d h`` ``(..., B)``.
    Returns the gradients of the full ``P, Q`` ``(..., L, D, D)`` and, with ``inputs``, the
    tokens' adjoint ``(..., B, N, D)``.

    Through a layer, with ``u = bar_X / (n s)`` and ``r = <u, U~> / s`` per query (the
    adjoints of ``U~`` and ``-s``), the scores' adjoint is one product and one pass:
    ``bar_S^T = E * ([G, 1] [u, -r]^T)`` (the softmax's Jacobian, with ``E`` the unnormalised
    weights; the shift leaves ``U`` unchanged, so it has no adjoint). Then ``bar_Y = bar_S X``,
    ``bar_G = E u`` (zero on the query row) and ``bar_X += bar_S^T Y + bar_Y Q + bar_G P``."""
    layers, X, zq, yq, a, g, Pr, Qr, lead = saved
    L, D = P.shape[-3], P.shape[-1]
    M, N = X.shape[:2]
    R = Pr.shape[0]
    B = M // R
    gP = Pr.new_zeros(R, L, D, D)
    gQ = Qr.new_zeros(R, L, D, D)
    Xd = X[..., :D]
    # last layer: h = zq[D] + (1/n) sum_i a_i g_i,  a = softmax(X yq),  g = X p,  yq = Q zq
    c = c.expand(*lead, B).reshape(M)
    cn = (c / n).unsqueeze(-1)
    bar_g = torch.nn.functional.pad(a[:, :n] * cn, (0, 1))              # (M, N), the query's 0
    bar_s = _softmax_adjoint(a, g[:, :n] * cn)
    gP[:, L - 1, -1, :] = torch.bmm(bar_g.view(R, 1, B * N), Xd.reshape(R, B * N, D)).squeeze(-2)
    bar_yq = torch.bmm(bar_s.unsqueeze(-2), Xd).squeeze(-2)             # (M, D)
    gQ[:, L - 1] = torch.bmm(bar_yq.view(R, B, D).transpose(-1, -2), zq.reshape(R, B, D))
    bar_X = bar_s.unsqueeze(-1) * yq.unsqueeze(-2)                      # from s = X yq, (M, N, D)
    bar_X.view(R, B * N, D).baddbmm_(bar_g.view(R, B * N, 1), Pr[:, L - 1, -1:, :])
    bar_X[:, n] += torch.bmm(bar_yq.view(R, B, D), Qr[:, L - 1]).view(M, D)
    bar_X[:, n, -1] += c
    for l in range(L - 2, -1, -1):
        X, H, E, Us, inv = layers[l]
        Xd, Y, G1 = X[..., :D], H[..., :D], H[..., D + 1:]
        ur = torch.empty_like(Us)                                       # [u, -r]^T, (M, D+1, N)
        u_t = ur[:, :D, :]
        u_t.copy_(bar_X.transpose(-1, -2)).mul_(inv)                    # adjoint of U~
        ur[:, D:, :] = (u_t * Us[:, :D, :]).sum(-2, keepdim=True)        # (no out=: forward mode)
        ur[:, D:, :].mul_(inv).mul_(-n)                                 # minus the adjoint of s
        bar_St = torch.bmm(G1, ur).mul_(E)                              # (M, N, N): key, query
        bar_Y = torch.bmm(bar_St.transpose(-1, -2), Xd)                 # (M, N, D)
        bar_G = torch.bmm(E, u_t.transpose(-1, -2))
        bar_G[:, n] = 0.0                                               # G's query row: 0
        Xr = Xd.reshape(R, B * N, D)
        gQ[:, l] = torch.bmm(bar_Y.view(R, B * N, D).transpose(-1, -2), Xr)   # Y = X Q^T
        gP[:, l] = torch.bmm(bar_G.view(R, B * N, D).transpose(-1, -2), Xr)   # G = X P^T
        if l > 0 or inputs:
            back = torch.bmm(bar_Y.view(R, B * N, D), Qr[:, l]).add_(torch.bmm(bar_G.view(R, B * N, D), Pr[:, l]))
            bar_X = torch.bmm(bar_St, Y).add_(bar_X).add_(back.view(M, N, D))   # (baddbmm: twice as slow)
    out = bar_X.view(*lead, B, N, D) if inputs else None
    return gP.view(*lead, L, D, D), gQ.view(*lead, L, D, D), out


SOFTMAX_BLOCK = 256
"""Prompts per block of the softmax path (:func:`_softmax_loss_and_grad`): forward and backward
of a block before the next, so that its ``N x N`` weights stay in the core's cache."""


def _softmax_loss_and_grad(P, Q, tokens, y, n, need_grad: bool, inputs: bool):
    """Mean squared error ``(...)`` of softmax attention with full ``P, Q`` ``(..., L, D, D)`` on
    tokens ``(..., B, N, D)``, targets ``y`` ``(..., B)``, and with ``need_grad`` the gradients of
    ``P, Q`` and (``inputs``) the tokens' adjoint (else None), block by block of
    :data:`SOFTMAX_BLOCK` prompts: the same sums, the gradients summed over blocks in order."""
    B = tokens.shape[-3]
    errs, gP, gQ, bars = [], None, None, []
    for s in range(0, B, SOFTMAX_BLOCK):
        h, saved = _softmax_forward(P, Q, tokens[..., s:s + SOFTMAX_BLOCK, :, :], n)
        err = h + y[..., s:s + SOFTMAX_BLOCK]                          # -(TF_L - y)
        errs.append(err)
        if need_grad:
            g = _softmax_backward(P, Q, saved, (2.0 / B) * err, n, inputs)
            gP, gQ = (g[0], g[1]) if gP is None else (gP.add_(g[0]), gQ.add_(g[1]))
            bars.append(g[2])
    loss = (errs[0] if len(errs) == 1 else torch.cat(errs, dim=-1)).square().mean(-1)
    if not need_grad:
        return loss, None, None, None
    bar = None if not inputs else bars[0] if len(bars) == 1 else torch.cat(bars, dim=-3)
    return loss, gP, gQ, bar


# -- the front end ---------------------------------------------------------------------------------
def _relu_mask(G, R):
    """``G * 1[R > 0]`` (ReLU's derivative from its output ``R``), one pass. Under forward
    mode (:func:`hessian`, where :data:`lintf.compute.fast._IN_PLACE` is off) a ``where`` on the mask:
    forward mode differentiates ``threshold_backward`` through ``R`` too, several times slower."""
    if not fast._IN_PLACE.get():
        return torch.where(R > 0, G, 0.0)
    return torch.ops.aten.threshold_backward(G, R, 0)


def _front_weights(params, d):
    """The front end as two matrices on token rows with a one appended, ``[x, y, 1]``:
    ``W1a = [[W1^T, 0, 0], [0, 1, 0], [b1, 0, 1]]`` ``(..., d+2, h+2)`` gives ``[W1 x + b1, y, 1]``
    and ``W2a = [[W2^T, 0], [0, 1], [b2, 0]]`` ``(..., h+2, d+1)`` gives ``[W2 r + b2, y]`` from
    ``[r, y, 1]``: biases and the y-part (data, carried exactly: times 1 plus zeros) ride in the products."""
    W1, W2 = params["W1"], params["W2"]
    h = W1.shape[-2]
    W1a = W1.new_zeros(*W1.shape[:-2], d + 2, h + 2)
    W1a[..., :d, :h] = W1.transpose(-1, -2)
    W1a[..., d + 1, :h] = params["b1"]
    W1a[..., d, h] = 1.0
    W1a[..., d + 1, h + 1] = 1.0
    W2a = W2.new_zeros(*W2.shape[:-2], h + 2, d + 1)
    W2a[..., :h, :d] = W2.transpose(-1, -2)
    W2a[..., h, d] = 1.0
    W2a[..., h + 1, :d] = params["b2"]
    return W1a, W2a


def _embed(params, tokens, d):
    """The MLP front end on the x-part of every token row: returns the embedded tokens
    ``(..., B, N, D)`` (run dims of ``params``) and what :func:`_embed_backward` needs,
    ``(Xp, Ha)``: the tokens with a one appended, ``[x, y, 1]``, and the hidden layer after the
    ReLU with the y-part and the one, ``[r, y, 1]`` (two products, :func:`_front_weights`)."""
    h = params["W1"].shape[-2]
    Xp = torch.nn.functional.pad(tokens, (0, 1), value=1.0)            # (..., B, N, d+2)
    W1a, W2a = _front_weights(params, d)
    Ha = _tok(Xp, W1a)                                                 # (..., B, N, h+2)
    Ha[..., :h].relu_()
    return _tok(Ha, W2a), (Xp, Ha)


def _embed_backward(params, saved, bar_tokens, d):
    """Gradients of the front end's tensors from the embedded tokens' adjoint ``(..., B, N, D)``
    (its y-part is ignored): one product back through ``W2``, the ReLU's mask, and one sum of
    token outer products per layer (``[W1; b1]`` from ``[x, y, 1]``, ``[W2; b2]`` from ``[r, y, 1]``)."""
    Xp, Ha = saved
    W2 = params["W2"]
    h = W2.shape[-1]
    W2p = torch.nn.functional.pad(W2, (0, 2, 0, 1))                    # [W2, 0; 0, 0]: y and 1 have no adjoint
    bar_H = _relu_mask(_tok(bar_tokens, W2p), Ha)                      # (..., B, N, h+2), whole rows: one fast pass
    g1 = _tok_sum(Xp, bar_H)                                           # (..., d+2, h+2): H = [x, y, 1] W1a
    g2 = _tok_sum(Ha, bar_tokens)                                      # (..., h+2, D): E = [r, y, 1] W2a
    return {"W1": g1[..., :d, :h].transpose(-1, -2), "b1": g1[..., d + 1, :h],
            "W2": g2[..., :h, :d].transpose(-1, -2), "b2": g2[..., h + 1, :d]}


def _summarize_tokens(tokens, n):
    """:func:`lintf.compute.fast.summarize` of prompts given as token rows ``(..., B, N, D)``."""
    keys = tokens[..., :n, :]
    A0 = _bmm(keys.transpose(-1, -2), keys)                            # (..., B, D, D)
    return A0.movedim(-3, -1).contiguous(), tokens[..., n, :].movedim(-2, -1).contiguous()


def _embed_taylor(params, direction, saved, d):
    """First and second derivatives of the embedded tokens along ``direction`` (dict shaped
    like ``params``): ``H' = X W1'^T + b1'``, ``R' = 1[H > 0] H'``, ``R'' = 0`` (ReLU is
    piecewise linear), ``E' = R' W2^T + R W2'^T + b2'``, ``E'' = 2 R' W2'^T``; the y-part is data.
    Returns ``[T1, T2]`` side by side, ``(..., B, N, 2D)`` (:func:`_summaries_taylor` reads both
    in one product)."""
    Xp, Ha = saved
    W2, dW1, dW2 = params["W2"], direction["W1"], direction["W2"]
    h, D = W2.shape[-1], d + 1
    dW1a = dW1.new_zeros(*dW1.shape[:-2], d + 2, h + 2)                # [x, y, 1] -> [W1' x + b1', 0, 0]
    dW1a[..., :d, :h] = dW1.transpose(-1, -2)
    dW1a[..., d + 1, :h] = direction["b1"]
    R1 = _relu_mask(_tok(Xp, dW1a), Ha)                                # [R', 0, 0], whole rows
    Wc = W2.new_zeros(*W2.shape[:-2], h + 2, 2 * D)                    # R' [W2^T, 0, 2 W2'^T, 0]
    Wc[..., :h, :d] = W2.transpose(-1, -2)
    Wc[..., :h, D:D + d] = 2.0 * dW2.transpose(-1, -2)
    T = _tok(R1, Wc)
    dW2a = dW2.new_zeros(*dW2.shape[:-2], h + 2, D)                    # [r, y, 1] -> W2' r + b2'
    dW2a[..., :h, :d] = dW2.transpose(-1, -2)
    dW2a[..., h + 1, :d] = direction["b2"]
    T[..., :D] += _tok(Ha, dW2a)
    return T


def _summaries_taylor(tokens, T, n):
    """First and second derivatives of :func:`_summarize_tokens` along a step that moves the
    tokens by ``T1, T2`` (``T = [T1, T2]``, :func:`_embed_taylor`): ``A' = K'^T K + K^T K'``,
    ``A'' = K''^T K + 2 K'^T K' + K^T K''`` (``K`` the key rows; ``[K', K'']^T K`` in one
    product), ``z', z''`` the query row's. Returns ``(A1, A2, z1, z2)`` batch last."""
    D = tokens.shape[-1]
    K, K12 = tokens[..., :n, :], T[..., :n, :]
    X = _bmm(K12.transpose(-1, -2), K)                                 # (..., B, 2D, D)
    X1, X2 = X[..., :D, :], X[..., D:, :]
    K1 = K12[..., :D]
    A1 = X1 + X1.transpose(-1, -2)
    A2 = (X2 + X2.transpose(-1, -2)).add_(_bmm(K1.transpose(-1, -2), K1), alpha=2.0)
    return tuple(t.contiguous() for t in (A1.movedim(-3, -1), A2.movedim(-3, -1), T[..., n, :D].movedim(-2, -1),
                                          T[..., n, D:].movedim(-2, -1)))


# -- parameters ------------------------------------------------------------------------------------
_CORE = {}


def _core(model: Model) -> Model:
    """The plain linear model of ``model``'s depth and width, full parametrization: what
    :mod:`lintf.compute.fast` differentiates on the full ``P, Q``."""
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
        raise TypeError(f"model must be a lintf.compute.model.Model, got {type(model).__name__}")
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

    front: tuple | None             # the front end's (Xp, Ha): :func:`_embed`
    tokens: torch.Tensor | None     # the embedded tokens
    A0: torch.Tensor | None         # linear attention: the (embedded) prompts' summaries
    z0: torch.Tensor | None
    core: tuple | None              # lintf.compute.fast's forward pass
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
            bar_tokens = _bmm(tokens, sym)                             # keys' rows; the query's row:
            bar_tokens[..., n, :] = bar_z0.movedim(-1, -2)
    else:
        loss, gP, gQ, bar_tokens = _softmax_loss_and_grad(P, Q, tokens, y, n, need_grad, inputs=front is not None)
        if not need_grad:
            return loss, None, None
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


def _forward_mode(model: Model, batch: Batch):
    """``hvp(params, tangent)``: the Hessian-vector products ``H v`` (dicts shaped like
    ``params``) by forward-mode differentiation (``torch.func.jvp``) of the hand-written
    gradient on ``batch``, one level at a time (:data:`_FORWARD_AD`), accumulating out of place."""
    from torch.func import jvp

    def grad(p):
        return _loss_and_grad(model, p, batch, need_grad=True)[1]

    def hvp(params, tangent):
        in_place = fast._IN_PLACE.set(False)
        try:
            with _FORWARD_AD, warnings.catch_warnings():
                # forward mode loads torch's own decompositions through the deprecated
                # torch.jit.script: torch's warning, not ours
                warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
                return jvp(grad, (params,), (tangent,))[1]
        finally:
            fast._IN_PLACE.reset(in_place)
    return hvp


def curvature(model: Model, params: dict, direction: dict, batch: Batch, *, forward=None) -> torch.Tensor:
    """Second derivative of the loss along ``direction``, ``v^T H v`` ``(...)``, not normalised.

    Linear attention (any ``Q``, any front end): Taylor arithmetic to second order through
    :func:`lintf.compute.fast.curvature`, which the front end enters through the first and second
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
            inputs = _summaries_taylor(forward.tokens, _embed_taylor(params, direction, forward.front, model.d), n)
        curv = fast.curvature(_core(model), {"P": P, "Q": Q}, {"P": dP, "Q": dQ}, forward.A0, forward.z0, y, n,
                              forward=forward.core, inputs=inputs)
        if Q2 is not None:
            curv = curv + (forward.gQ * Q2).sum((-3, -2, -1))
        return curv
    hv = _forward_mode(model, batch)(params, direction)
    shapes = model.param_shapes()
    return sum((direction[k] * hv[k]).flatten(-len(s)).sum(-1) for k, s in shapes.items())


def _front_and_core(model: Model):
    """Flat positions (:meth:`Model.flatten` order) of the front end's entries and of the
    attention's ``P, Q``, and the plain linear model (:mod:`lintf.compute.fast`) of the attention alone,
    where ``model`` is a front end before joint-``Q`` linear attention; else None."""
    if not (model.frontend == "mlp" and model.attention == "linear" and model.qk == "joint"):
        return None
    position = model.unflatten(torch.arange(model.num_params))
    core = Model(L=model.L, d=model.d, parametrization=model.parametrization, init_std=model.init_std)
    front = torch.cat([position[k].reshape(-1) for k in model.param_shapes() if k not in ("P", "Q")])
    inner = torch.cat([position[k].reshape(-1) for k in core.param_shapes()])
    return front, inner, core


def hessian(model: Model, theta: torch.Tensor, Z, y, *, chunk: int = 32) -> torch.Tensor:
    """Exact Hessian ``(p, p)`` of one run's loss at the flat vector ``theta`` ``(p,)``
    (:meth:`Model.flatten` order) on prompts ``Z`` ``(B, d+1, n+1)`` and targets ``y`` ``(B,)``.

    Rows by forward-mode differentiation (``torch.func.jvp``) of the hand-written gradient
    (:func:`loss_and_grad`) along basis vectors, ``chunk`` at a time riding the run axis. A front
    end before joint-``Q`` linear attention (the nonlinear setting) needs rows for its own
    entries only: the attention's block is :func:`lintf.compute.fast.hessian` on the embedded prompts'
    summaries (the loss depends on ``P, Q`` only through them), the block between the two
    follows by symmetry. ``tests/test_fast_variants.py`` checks every variant against double
    backward through autograd (:func:`lintf.compute.measure.hessian` with ``backend="autograd"``) in
    float64.

    Measured (``benchmarks/bench_engine.py --hessian``, nonlinear setting, 320 parameters,
    B=1000, float64, 2 threads, the project's 2-core machine at load average 1.2-1.4): 3.50 s
    against 8.93 s for double backward (2.6x); ``chunk`` 16 and 32 alike, 64 slower.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a lintf.compute.model.Model, got {type(model).__name__}")
    chunk = check_int("chunk", chunk)
    p = model.num_params
    if not isinstance(theta, torch.Tensor) or theta.shape != (p,):
        raise ValueError(f"theta must be one run's flat vector of shape ({p},), got "
                         f"{tuple(theta.shape) if isinstance(theta, torch.Tensor) else type(theta).__name__}")
    batch = prepare(model, Z, y)
    split = _front_and_core(model)
    rows = torch.arange(p) if split is None else split[0]
    H = theta.new_zeros(p, p)

    hvp = _forward_mode(model, batch)
    for start in range(0, len(rows), chunk):
        at = rows[start:start + chunk]
        basis = theta.new_zeros(len(at), p)
        basis[torch.arange(len(at)), at] = 1.0
        point = {k: v.contiguous() for k, v in model.unflatten(theta.expand(len(at), p).clone()).items()}
        H[at] = model.flatten(hvp(point, {k: v.contiguous() for k, v in model.unflatten(basis).items()}))
    if split is not None:
        front, inner, core = split
        params = model.unflatten(theta)
        tokens = _embed(params, batch.tokens, model.d)[0]
        A0, z0 = _summarize_tokens(tokens, batch.n)
        H[inner.unsqueeze(-1), inner] = fast.hessian(core, {k: params[k] for k in core.param_shapes()}, A0, z0,
                                                     batch.y, batch.n)
        H[inner.unsqueeze(-1), front] = H[front.unsqueeze(-1), inner].transpose(0, 1)
    return H
