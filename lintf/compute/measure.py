"""The measurements of the paper's Secs. 2-3 (the book's chapters on noise, conditioning and smoothness), on the parameters of :class:`lintf.compute.model.Model`.

- **Directional smoothness** ``u^T H u`` along ``u = direction / ||direction||``, every
  training step: the second derivative of ``loss(params + e u)`` at ``e = 0``.
- **Exact Hessian** ``H`` of the batch loss over the flat parameter vector, in float64, and
  the **robust condition number** ``R_med`` from its eigenvalues (the paper's text) or from
  its diagonal (the paper's footnote and the authors' code).
- **Stochastic gradient noise** ``||g_B - g||`` of many minibatch gradients ``g_B`` against
  one big-batch gradient ``g``, and **tail measures** of that sample (excess kurtosis, Hill).
- **Gradient norm** per run (generalised smoothness, Fig. 16).

Shapes: ``params`` is a dict of tensors ``(..., *shape)`` with the shapes of
``model.param_shapes()`` and optional leading run dimensions ``...``; prompts ``Z`` are
``(..., B, d+1, n+1)`` and targets ``y`` ``(..., B)``, whose leading dimensions broadcast
against the runs' (a batch without run dimensions is shared by every run). A function that
returns one value per run returns the shape of ``model.loss(params, Z, y)``.

Every function detaches its inputs and builds its graphs inside itself, so ``params`` need
not require grad and nothing is left attached to them. Autograd must be available: the
functions work under ``torch.no_grad()`` but not under ``torch.inference_mode()``.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.stats
import torch

from . import fast, fast_variants
from .checks import broadcast_shapes, check_choice, check_int
from .model import Model

CONDITION_METHODS = ("eig", "diag")
"""Definitions of ``R_med`` accepted by :func:`robust_condition`."""


# -- argument checks ------------------------------------------------------------------
def _run_dims(model, params, name="params") -> tuple[int, ...]:
    """Check ``params`` against ``model.param_shapes()``; return its leading run dims."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a lintf.Model, got {type(model).__name__}")
    return model.check_params(params, name)


def _batch_run_dims(model, Z, y, lead) -> tuple[int, ...]:
    """Check prompts against the model and the runs; return the broadcast run dims."""
    if not isinstance(Z, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("Z and y must be tensors")
    D = model.d + 1
    if Z.dim() < 3 or Z.shape[-2] != D or Z.shape[-1] < 2:
        raise ValueError(f"Z must have shape (..., B, {D}, n+1) with n >= 1, got {tuple(Z.shape)}")
    if tuple(y.shape) != tuple(Z.shape[:-2]):
        raise ValueError(f"y must have shape {tuple(Z.shape[:-2])} (the batch of Z), got {tuple(y.shape)}")
    try:
        return tuple(broadcast_shapes(lead, Z.shape[:-3]))
    except RuntimeError:
        raise ValueError(f"leading run dims of Z {tuple(Z.shape[:-3])} do not broadcast against "
                         f"those of params {lead}") from None


def _expand_batch(Z, y, runs):
    """View ``Z, y`` with the run dims ``runs`` in front (``Model.embed`` of the MLP front end
    does not broadcast a batch without run dims against params with them)."""
    return Z.expand(*runs, *Z.shape[-3:]), y.expand(*runs, y.shape[-1])


def _detached(params, dtype=None):
    return {k: v.detach().to(dtype) if dtype else v.detach() for k, v in params.items()}


def _per_run_sum(tensors, lead_ndim):
    """Sum over every non-run axis of every tensor of a dict, shape ``lead``."""
    return sum(t.reshape(*t.shape[:lead_ndim], -1).sum(-1) for t in tensors.values())


# -- gradient norm ------------------------------------------------------------------
def gradient_norm(model, params, Z, y) -> torch.Tensor:
    """Global gradient norm ``||grad_W loss(W)||`` of each run, over all its tensors together.

    params : dict of ``(..., *shape)``; Z : ``(..., B, d+1, n+1)``; y : ``(..., B)``.
    Returns ``(...)`` (the shape of ``model.loss(params, Z, y)``), in units of loss per
    parameter unit.
    """
    lead = _batch_run_dims(model, Z, y, _run_dims(model, params))
    shapes = model.param_shapes()
    with torch.enable_grad():
        # A run axis that only Z carries must be materialised on the params, else the
        # summed loss would add the runs' gradients together.
        leaf = {k: v.detach().expand(*lead, *shapes[k]).clone().requires_grad_(True)
                for k, v in params.items()}
        grads = torch.autograd.grad(model.loss(leaf, *_expand_batch(Z, y, lead)).sum(),
                                    list(leaf.values()))
    squares = {k: g.square() for k, g in zip(leaf, grads)}
    return _per_run_sum(squares, len(lead)).sqrt()


# -- directional smoothness -----------------------------------------------------------
def directional_smoothness(model, params, direction, Z, y) -> torch.Tensor:
    """Directional smoothness ``u^T H u`` of each run, ``u = direction / ||direction||``.

    ``H`` is the Hessian of ``model.loss`` at ``params`` on the batch ``(Z, y)`` and the norm
    runs over all of a run's tensors together. Paper Sec. 2.4 uses
    ``direction = x_{t+1} - x_t``. A zero direction gives NaN.

    params, direction : dicts of ``(..., *shape)``, the same shapes; Z : ``(..., B, d+1, n+1)``;
    y : ``(..., B)``. Returns ``(...)`` in units of loss per squared parameter unit.

    Computed as the exact second derivative ``d^2/de^2 loss(params + e u)`` at ``e = 0`` with
    one scalar ``e`` per run (runs are independent, so the summed loss separates them), by
    double backward. Cost (base model, 8 runs of B=1000, one CPU thread): about 3.2 gradient
    evaluations; forward-over-reverse (``torch.autograd.forward_ad``) measured 3.7 and
    nested ``torch.func.jvp`` 5-6, so no cheaper exact route was found with this model.
    """
    lead = _run_dims(model, params)
    if _run_dims(model, direction, "direction") != lead:
        got = {k: tuple(v.shape) for k, v in direction.items()}
        raise ValueError(f"direction must have the shapes of params (run dims {lead}), got {got}")
    runs = _batch_run_dims(model, Z, y, lead)
    direction = _detached(direction)
    norm = _per_run_sum({k: v.square() for k, v in direction.items()}, len(lead)).sqrt()
    shapes = model.param_shapes()
    with torch.enable_grad():
        e = torch.zeros(runs, dtype=norm.dtype, device=norm.device, requires_grad=True)
        u = {k: v / norm.reshape(*lead, *[1] * len(shapes[k])) for k, v in direction.items()}
        line = {k: v.detach() + e.reshape(*runs, *[1] * len(shapes[k])) * u[k]
                for k, v in params.items()}
        loss = model.loss(line, *_expand_batch(Z, y, runs)).sum()
        slope, = torch.autograd.grad(loss, e, create_graph=True)
        if not slope.requires_grad:                          # loss linear along u
            return torch.zeros_like(slope)
        curvature, = torch.autograd.grad(slope.sum(), e)
    return curvature


# -- exact Hessian and R_med --------------------------------------------------------------
def _hessian_one_run(model, theta, Z, y, chunk):
    """Exact Hessian ``(p, p)`` of one run at the flat vector ``theta`` ``(p,)``.

    Hessian-vector products ``H e_i`` for ``chunk`` basis vectors at a time, the basis index
    riding the model's leading run axis (the batch broadcasts): one double backward gives
    ``chunk`` rows. Measured for the base model (L=3, d=5, n=20, B=1000, float64) on the
    project's 2-core CPU, shared with other jobs, so only the ranking is firm: this route
    about 10 s on one thread on a quiet machine (chunk 8-27 alike; 18-40 s on two threads
    under load, chunk 16 best); ``torch.func.jacrev(jacrev)`` 11-16 s; forward-over-reverse
    (``forward_ad``) with the basis as runs 9-14 s; ``torch.func.hessian`` (jacfwd over
    jacrev) 14 s; ``torch.autograd.functional.hessian(vectorize=True)`` 17-23 s; one
    Hessian-vector product at a time about 40 s. Target was 0.5 s. Every route does
    ``p`` Hessian-vector products of per-prompt ``6 x 6`` and ``6 x 21`` matrix products,
    which CPU ``bmm`` runs at well under its peak rate; the 0.5 s target would need a
    model written for large matrix products, not a different differentiation order.
    """
    p = theta.shape[-1]
    basis = torch.eye(p, dtype=theta.dtype, device=theta.device)
    rows = []
    for start in range(0, p, chunk):
        E = basis[start:start + chunk]                                       # (k, p)
        t = theta.expand(E.shape[0], p).clone().requires_grad_(True)
        loss = model.loss(model.unflatten(t), *_expand_batch(Z, y, E.shape[:1])).sum()
        g, = torch.autograd.grad(loss, t, create_graph=True)
        rows.append(torch.autograd.grad((g * E).sum(), t)[0] if g.requires_grad else torch.zeros_like(E))
    return torch.cat(rows)


def hessian(model, params, Z, y, *, dtype=torch.float64, chunk: int = 16, prompt_chunk: int | None = None,
            backend: str | None = None) -> torch.Tensor:
    """Exact Hessian of the batch loss over the flat parameter vector ``model.flatten``.

    params : dict of ``(..., *shape)``; Z : ``(..., B, d+1, n+1)``; y : ``(..., B)``.
    dtype : every input is cast to it (float64 by default, so that small eigenvalues
        survive). chunk : basis vectors per double backward (memory grows with it).
    Returns ``(..., p, p)`` with ``p = model.num_params`` (150 for the book's base model, 216 in
    the full parametrization), in units
    of loss per squared parameter unit; runs are done one after another. The plain linear
    model goes through :func:`lintf.compute.fast.hessian` (the hand-written second-order adjoint,
    ``prompt_chunk`` prompts at a time, default :data:`lintf.compute.fast.PROMPT_CHUNK`: memory
    bounded, time linear in ``B``), the variants through :func:`lintf.compute.fast_variants.hessian`
    (forward mode over their hand-written gradient; the nonlinear setting's Hessian, 320
    parameters on 1000 prompts: 3.5 s against 8.9 s by double backward on 2 threads);
    ``_hessian_one_run`` (double backward through autograd) is the reference the tests compare
    both with. ``backend`` (:data:`lintf.compute.fast.BACKENDS`; None: ``$LINTF_BACKEND``, else
    ``"auto"``): ``"autograd"`` sends every model through double backward.

    Measured (book's base model, block, 150 parameters, one run, float64, 2 threads on the
    project's 2-core machine shared with other jobs, load average 1.2-1.6, medians of 3):
    B=1000 0.14 s, B=20000 2.8 s (the previous forward-mode route: 1.07 s and 38 s).
    """
    lead = _run_dims(model, params)
    runs = _batch_run_dims(model, Z, y, lead)
    chunk = check_int("chunk", chunk)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    hand = fast.use(model, backend)
    variant = not hand and fast_variants.use(model, backend)
    p = model.num_params
    theta = model.flatten(_detached(params, dtype)).expand(*runs, p).reshape(-1, p)
    Z, y = _expand_batch(Z.detach().to(dtype), y.detach().to(dtype), runs)
    Z, y = Z.reshape(-1, *Z.shape[-3:]), y.reshape(-1, y.shape[-1])
    if hand:                                        # the hand-written second-order adjoint
        A0, z0 = fast.summarize(Z)
        H = fast.hessian(model, model.unflatten(theta), A0, z0, y, Z.shape[-1] - 1, prompt_chunk=prompt_chunk)
        return H.reshape(*runs, p, p)
    if variant:                                     # forward mode over the hand-written gradient
        H = [fast_variants.hessian(model, theta[r], Z[r], y[r]) for r in range(theta.shape[0])]
        return torch.stack(H).reshape(*runs, p, p)
    with torch.enable_grad():
        H = [_hessian_one_run(model, theta[r], Z[r], y[r], chunk) for r in range(theta.shape[0])]
    return torch.stack(H).reshape(*runs, p, p)


def _check_square(H):
    if not isinstance(H, torch.Tensor) or H.dim() < 2 or H.shape[-1] != H.shape[-2] or H.shape[-1] < 1:
        raise ValueError(f"H must be a tensor of square matrices (..., p, p), got "
                         f"{tuple(H.shape) if isinstance(H, torch.Tensor) else type(H).__name__}")


def robust_condition(H, method: str = "eig") -> torch.Tensor:
    """Robust condition number ``R_med`` of Hessians ``H`` ``(..., p, p)``; returns ``(...)``.

    - ``method="eig"`` (the paper's text, after Jiang et al. 2022):
      ``R_med = lambda_max(H) / median_i |lambda_i(H)|``, from the eigenvalues of the
      symmetric part of ``H``. The median is of the eigenvalues' magnitudes: these Hessians
      are indefinite and have an exactly flat subspace (30 zero eigenvalues for the base
      model), so the median of the signed eigenvalues sits on a zero and the ratio would be
      ``lambda_max`` over rounding error (~1e18).
    - ``method="diag"`` (the paper's footnote and the authors' code):
      ``R_med = max_i |H_ii| / median_i |H_ii|``.

    Both medians follow ``torch.median``: for an even count ``p`` (216 for the base model)
    the lower of the two middle values, as in the authors' code. Dimensionless.
    """
    _check_square(H)
    check_choice("method", method, CONDITION_METHODS)
    if method == "eig":
        values = torch.linalg.eigvalsh((H + H.transpose(-1, -2)) / 2)     # ascending
        return values[..., -1] / values.abs().median(dim=-1).values
    values = H.diagonal(dim1=-2, dim2=-1).abs()
    return values.max(dim=-1).values / values.median(dim=-1).values


def hessian_summary(H) -> dict:
    """Eigenvalues, diagonal and both ``R_med`` of Hessians ``H`` ``(..., p, p)``.

    Returns a dict of tensors: ``eigenvalues`` ``(..., p)`` ascending, ``diagonal``
    ``(..., p)``, ``lambda_max``, ``lambda_median`` (lower middle), ``R_med_eig``,
    ``R_med_diag`` ``(...)``.
    """
    _check_square(H)
    values = torch.linalg.eigvalsh((H + H.transpose(-1, -2)) / 2)
    return {
        "eigenvalues": values,
        "diagonal": H.diagonal(dim1=-2, dim2=-1).clone(),
        "lambda_max": values[..., -1],
        "lambda_median": values.abs().median(dim=-1).values,
        "R_med_eig": robust_condition(H, "eig"),
        "R_med_diag": robust_condition(H, "diag"),
    }


# -- stochastic gradient noise -------------------------------------------------------------
def gradient_noise(model, params, sample, *, num_batches: int, batch_size: int, big_batch: int,
                   generator, chunk: int = 50, deviations: bool = False, backend: str | None = None):
    """Norms ``||g_B - g||`` of ``num_batches`` independent minibatch gradients (paper Fig 3).

    ``g_B`` is the gradient of the loss on ``batch_size`` fresh prompts, ``g`` the gradient
    on one batch of ``big_batch`` prompts, both at the single run ``params`` (no run dims);
    the norm is over all tensors together. Paper scale: ``num_batches=10000,
    batch_size=1000, big_batch=100000``.

    sample : callable ``sample(batch_shape, generator=g) -> (Z, y)``, e.g.
        ``functools.partial(lintf.sample_prompts, n=20, d=5, covariates="gaussian")``.
    generator : ``torch.Generator`` (or None for the global one). Draws, in this order: the
        big batch ``sample((big_batch,), generator=generator)``; then one seed per minibatch,
        ``torch.randint(2**62, (num_batches,), generator=generator)``; minibatch ``i`` is
        ``sample((batch_size,), generator=torch.Generator(device).manual_seed(seed_i))``.
        So the result does not depend on ``chunk``.
    chunk : minibatch gradients computed at once, as ``chunk`` copies of the run along a
        leading axis (one backward); the big batch goes through in slices of
        ``chunk * batch_size`` prompts. Memory grows with it.

    deviations : also return the deviations ``g_B - g`` themselves, flat in
        :meth:`Model.flatten` order, ``(num_batches, p)``: what a Gaussian null of the same
        covariance needs (claim 2).

    backend : :data:`lintf.compute.fast.BACKENDS` (None: ``$LINTF_BACKEND``, else ``"auto"``).

    Returns ``(num_batches,)`` in the dtype of ``params`` (prompts are cast to it), or the
    pair ``(norms, deviations)``.
    """
    hand = fast.use(model, backend)
    lead = _run_dims(model, params)
    if lead:
        raise ValueError(f"params must be a single run (no leading run dims), got run dims {lead}")
    if not callable(sample):
        raise TypeError(f"sample must be callable as sample(batch_shape, generator=g), got {sample!r}")
    num_batches = check_int("num_batches", num_batches)
    batch_size = check_int("batch_size", batch_size)
    big_batch = check_int("big_batch", big_batch)
    chunk = check_int("chunk", chunk)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")

    params = _detached(params)
    ref = next(iter(params.values()))
    cast = dict(dtype=ref.dtype, device=ref.device)
    shapes = model.param_shapes()

    def summed_gradient(Z, y, copies):
        """Gradients ``(copies, *shape)`` of ``sum`` of per-copy losses on ``Z (copies, b, ...)``."""
        if hand:                                    # the hand-written gradient, same numbers
            A0, z0 = fast.summarize(Z.to(**cast))
            runs = {k: v.expand(copies, *shapes[k]) for k, v in params.items()}
            return fast.loss_and_grad(model, runs, A0, z0, y.to(**cast), Z.shape[-1] - 1)[1]
        with torch.enable_grad():
            leaf = {k: v.expand(copies, *shapes[k]).clone().requires_grad_(True) for k, v in params.items()}
            loss = model.loss(leaf, Z.to(**cast), y.to(**cast)).sum()
            return dict(zip(leaf, torch.autograd.grad(loss, list(leaf.values()))))

    # g: one batch of big_batch prompts, in slices; each slice's mean loss is weighted by
    # its share of the prompts so that the sum is the gradient of the big batch's mean.
    Zbig, ybig = sample((big_batch,), generator=generator)
    g = {k: torch.zeros(s, **cast) for k, s in shapes.items()}
    step = chunk * batch_size
    for start in range(0, big_batch, step):
        Zs, ys = Zbig[start:start + step], ybig[start:start + step]
        part = summed_gradient(Zs.unsqueeze(0), ys.unsqueeze(0), 1)
        for k in g:
            g[k] += part[k][0] * (ys.shape[0] / big_batch)
    del Zbig, ybig

    seeds = torch.randint(2 ** 62, (num_batches,), generator=generator).tolist()
    device = generator.device if generator is not None else "cpu"
    norms, kept = [], []
    for start in range(0, num_batches, chunk):
        batches = [sample((batch_size,), generator=torch.Generator(device).manual_seed(s))
                   for s in seeds[start:start + chunk]]
        Z = torch.stack([b[0] for b in batches])                            # (k, B, d+1, n+1)
        y = torch.stack([b[1] for b in batches])                            # (k, B)
        gB = summed_gradient(Z, y, len(batches))
        dev = {k: gB[k] - g[k] for k in g}
        norms.append(_per_run_sum({k: v.square() for k, v in dev.items()}, 1).sqrt())
        if deviations:
            kept.append(model.flatten(dev))
    if deviations:
        return torch.cat(norms), torch.cat(kept)
    return torch.cat(norms)


# -- tail measures ---------------------------------------------------------------------
def hill_index(x, k: int | None = None) -> float:
    """Hill estimate of the tail index ``alpha`` of a 1-D sample ``x`` of positive tail values.

    ``alpha = 1 / mean_{i<=k} log(X_(i) / X_(k+1))`` over the ``k`` largest order statistics
    ``X_(1) >= ... >= X_(k)``; ``k = ceil(sqrt(N))`` by default. A smaller ``alpha`` is a
    heavier tail (``P(X > t) ~ t^-alpha``); Gaussian-like tails give large values.
    """
    x = _sample_1d(x)
    n = x.size
    k = math.ceil(math.sqrt(n)) if k is None else check_int("k", k)
    if k >= n:
        raise ValueError(f"k must be below the sample size {n}, got {k}")
    top = np.sort(x)[::-1][: k + 1]
    if top[k] <= 0:
        raise ValueError(f"x must have {k + 1} positive largest values for the Hill estimator")
    return float(1.0 / np.mean(np.log(top[:k] / top[k])))


def _sample_1d(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"x must be a 1-D sample of at least 2 values, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x must hold finite values only")
    return x


def tail_measures(x, k: int | None = None) -> dict:
    """Summary of a 1-D sample (e.g. the gradient-noise norms), as plain floats.

    Returns ``n``, ``mean``, ``std`` (``n-1``), ``excess_kurtosis`` (Fisher, biased,
    ``scipy.stats.kurtosis``; 0 for a Gaussian, larger for heavier tails), ``hill_index``
    (:func:`hill_index` on the top ``k = ceil(sqrt(n))`` values unless ``k`` is given;
    smaller for heavier tails) and ``hill_k``.
    """
    x = _sample_1d(x)
    k = math.ceil(math.sqrt(x.size)) if k is None else check_int("k", k)
    return {
        "n": int(x.size),
        "mean": float(x.mean()),
        "std": float(x.std(ddof=1)),
        "excess_kurtosis": float(scipy.stats.kurtosis(x, fisher=True, bias=True)),
        "hill_index": hill_index(x, k),
        "hill_k": k,
    }
