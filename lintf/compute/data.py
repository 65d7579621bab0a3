"""Random linear-regression prompts (the paper's Sec. 2 setup; the intro chapter shows the layout).

A prompt holds ``n`` context pairs and one query, laid out column-wise::

    Z0 = [[x(1) ... x(n)  x(n+1)],
          [y(1) ... y(n)  0     ]]        shape (d+1, n+1)

with ``w* ~ N(0, I_d)`` drawn per prompt and ``y(i) = <w*, x(i)>``; the target is
``y(n+1)``. The covariate distribution is chosen by name from :data:`COVARIATES`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .checks import check_choice, check_int, check_positive

COVARIATES = ("gaussian", "sphere", "gamma", "mlp")
"""Known covariate distributions (parameter ``covariates``)."""

_OPTIONS = {"gaussian": {}, "sphere": {}, "gamma": {"k": 0.1, "theta": 10.0}, "mlp": {"mlp_seed": 0}}


def _batch_shape(batch_size) -> tuple[int, ...]:
    if isinstance(batch_size, Sequence) and not isinstance(batch_size, (str, bytes)):
        shape = tuple(check_int(f"batch_size[{i}]", b) for i, b in enumerate(batch_size))
        if not shape:
            raise ValueError("batch_size must be an integer >= 1 or a non-empty tuple of them, got ()")
        return shape
    return (check_int("batch_size", batch_size),)


def covariate_options(covariates: str, **options) -> dict:
    """Return the full option dict of a covariate distribution (defaults filled in).

    Raises ``ValueError`` for an unknown distribution or an option it does not take.
    """
    check_choice("covariates", covariates, COVARIATES)
    known = _OPTIONS[covariates]
    unknown = set(options) - set(known)
    if unknown:
        accepted = ", ".join(known) or "none"
        raise ValueError(f"covariates={covariates!r} takes options {accepted}; got {sorted(unknown)}")
    out = {**known, **options}
    if covariates == "gamma":
        out["k"] = check_positive("k", out["k"])
        out["theta"] = check_positive("theta", out["theta"])
    if covariates == "mlp":
        out["mlp_seed"] = check_int("mlp_seed", out["mlp_seed"], minimum=0)
    return out


@functools.lru_cache(maxsize=16)
def target_mlp(d: int, mlp_seed: int = 0) -> torch.nn.Sequential:
    """The fixed random ``MLP* = Linear(d,d) -> ReLU -> Linear(d,d)`` of paper App. B.

    PyTorch's default initialisation, drawn from its own seed ``mlp_seed`` without
    touching the global random state, frozen (no gradients). Float64 on the CPU; callers
    cast.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(mlp_seed)
        mlp = torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.ReLU(), torch.nn.Linear(d, d))
    mlp = mlp.double().requires_grad_(False)
    return mlp


def sample_covariates(shape: tuple[int, ...], d: int, covariates: str = "gaussian", *,
                      generator=None, device=None, dtype=torch.float32, **options) -> torch.Tensor:
    """Draw i.i.d. covariate vectors ``x`` of shape ``(*shape, d)``.

    ``gaussian``: ``N(0, I_d)``. ``sphere``: uniform on ``S^{d-1}``. ``gamma``:
    ``sqrt(s) u`` with ``u`` uniform on ``S^{d-1}`` and ``s ~ Gamma(k, theta)``
    (``k=d/2, theta=2`` gives ``N(0, I_d)`` exactly). ``mlp``: ``N(0, I_d)`` (the
    nonlinearity acts on the labels, see :func:`sample_prompts`).
    """
    options = covariate_options(covariates, **options)
    x = torch.randn(*shape, d, generator=generator, device=device, dtype=dtype)
    if covariates in ("sphere", "gamma"):
        x = x / x.norm(dim=-1, keepdim=True)
    if covariates == "gamma":
        s = _standard_gamma(shape, options["k"], generator) * options["theta"]
        x = x * s.sqrt().to(device=x.device, dtype=dtype).unsqueeze(-1)
    return x


def _standard_gamma(shape, k: float, generator) -> torch.Tensor:
    """``Gamma(k, 1)`` draws, float64 on the CPU, by numpy's sampler (Marsaglia-Tsang; about
    twice torch's speed, and a training batch of Setting 3 needs 21000 per prompt set) seeded
    from ``generator`` (None: torch's global one), so the draw stays a function of it."""
    seed = int(torch.randint(0, 2 ** 62, (), generator=generator,
                             device=None if generator is None else generator.device))
    return torch.from_numpy(np.random.default_rng(seed).standard_gamma(k, size=tuple(shape)))


def sample_prompts(batch_size, n: int, d: int, covariates: str = "gaussian", *,
                   generator=None, device=None, dtype=torch.float32, **options):
    """Draw a batch of regression prompts and their query targets.

    Parameters
    ----------
    batch_size : int or tuple of int
        Number of prompts ``B``, or a shape ``(..., B)`` of leading dimensions.
    n, d : int
        Context length and covariate dimension.
    covariates : str
        One of :data:`COVARIATES`. Options: ``gamma`` takes ``k`` (shape, default 0.1)
        and ``theta`` (scale, default 10); ``mlp`` takes ``mlp_seed`` (default 0).
    generator : torch.Generator, optional
        Source of randomness; the same generator state gives the same prompts.

    Returns
    -------
    Z : Tensor ``(*batch, d+1, n+1)``, tokens as columns, the query's label set to 0.
    y : Tensor ``(*batch,)``, the query's target ``y(n+1)``.
    """
    shape = _batch_shape(batch_size)
    n = check_int("n", n)
    d = check_int("d", d)
    options = covariate_options(covariates, **options)
    x = sample_covariates((*shape, n + 1), d, covariates, generator=generator, device=device,
                          dtype=dtype, **options)                       # (*batch, n+1, d)
    w = torch.randn(*shape, d, 1, generator=generator, device=device, dtype=dtype)  # (*batch, d, 1)
    features = x
    if covariates == "mlp":
        mlp = target_mlp(d, options["mlp_seed"]).to(device=x.device)
        features = mlp(x.double()).to(dtype)
    labels = (features @ w).squeeze(-1)                                 # (*batch, n+1)
    y = labels[..., -1].clone()
    labels[..., -1] = 0.0
    Z = torch.cat([x, labels.unsqueeze(-1)], dim=-1).transpose(-1, -2)  # (*batch, d+1, n+1)
    return Z.contiguous(), y


@dataclass(frozen=True)
class Prompts:
    """A prompt distribution: context length ``n``, dimension ``d``, covariates by name.

    ``options`` holds the covariate options (see :func:`sample_prompts`) as a dict; they are
    validated, with defaults filled in, when the object is made.
    """

    n: int
    d: int
    covariates: str = "gaussian"
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        check_int("n", self.n)
        check_int("d", self.d)
        object.__setattr__(self, "options", covariate_options(self.covariates, **self.options))

    def sample(self, batch_size, *, generator=None, device=None, dtype=torch.float32):
        """``(Z, y)`` as :func:`sample_prompts` draws them from this distribution."""
        return sample_prompts(batch_size, self.n, self.d, self.covariates, generator=generator,
                              device=device, dtype=dtype, **self.options)


AUTHORS_COVARIATES = ("gaussian", "sphere", "gamma")
"""Covariate distributions :func:`authors_prompts` reproduces (the authors' ``'normal'``,
``'sphere'``, ``'gamma'``)."""


def authors_prompts(batch_size: int, n: int, d: int, covariates: str = "gaussian", seed: int = 99):
    """The batch the authors' sampler draws right after ``np.random.seed(seed); torch.manual_seed(seed)``.

    This is the evaluation batch of the authors' condition-number code
    (``plot_condition_number.ipynb`` seeds both generators with 99, calls
    ``generate_data(mode, N, d, B, shape_k=0.1)`` once, and computes the Hessian of every
    saved checkpoint, of every seed and optimizer, on that one batch). It is reproduced
    bit for bit on the CPU, in this package's layout, from a private
    ``torch.Generator().manual_seed(seed)`` and ``np.random.RandomState(seed)``: the global
    torch and numpy random states are left untouched. (The authors draw on the CPU, as here,
    but then move the tensors to a GPU for the normalisation and the labels; there the last
    bits of ``sphere``/``gamma`` covariates and of the labels may differ from these.)

    The draw order is the authors' (``generate_data`` in their ``linear_transformer.py``),
    from torch's CPU generator, float32: ``w`` ``(B, d)``, then ``X`` ``(B, n, d)``, then the
    query ``(B, 1, d)``, each ``N(0, 1)``. ``sphere`` divides every ``x`` by its norm.
    ``gamma`` draws ``g = np.random.gamma(shape=k, scale=sqrt(10/k), size=(B, n))`` then the
    same with ``size=(B, 1)`` for the query (numpy's generator, ``k = 0.1``), casts them to
    float32, and multiplies each normalised ``x`` by ``sqrt(g)``. Labels are
    ``y(i) = <w, x(i)>``.

    The gamma scale ``sqrt(10/k)`` is the authors' code; this package's ``gamma`` option
    (:func:`sample_prompts`) uses a fixed scale ``theta`` (default 10) instead. At the
    authors' ``k = 0.1`` the two coincide (``sqrt(10/0.1) = 10``, so ``E[g] = k * scale = 1``
    in both), and the two distributions are the same; for any other ``k`` they differ
    (``E[g] = sqrt(10 k)`` in the authors' code, ``10 k`` here with the default ``theta``).
    The two samplers' draws differ all the same (other generators, another draw order).

    Parameters
    ----------
    batch_size, n, d : int
        Number of prompts ``B``, context length ``n`` and covariate dimension ``d``, each >= 1.
    covariates : str
        One of :data:`AUTHORS_COVARIATES`: ``"gaussian"`` (the authors' ``'normal'``),
        ``"sphere"`` or ``"gamma"``.
    seed : int
        The seed given to both generators (the authors' evaluation batch uses 99).

    Returns
    -------
    Z : float32 Tensor ``(B, d+1, n+1)``, the ``x``'s as columns, the labels in the last
        row, the query's label 0 (the authors' ``Z``, ``(B, n+1, d+1)``, transposed).
    y : float32 Tensor ``(B,)``, the query targets ``<w, x(n+1)>``.
    """
    B = check_int("batch_size", batch_size)
    n = check_int("n", n)
    d = check_int("d", d)
    check_choice("covariates", covariates, AUTHORS_COVARIATES)
    seed = check_int("seed", seed, minimum=0)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.RandomState(seed)
    w = torch.empty(B, d, dtype=torch.float32).normal_(0, 1, generator=g)
    X = torch.empty(B, n, d, dtype=torch.float32).normal_(0, 1, generator=g)
    X_query = torch.empty(B, 1, d, dtype=torch.float32).normal_(0, 1, generator=g)
    if covariates in ("sphere", "gamma"):
        X = X / X.norm(p=2, dim=2)[:, :, None]
        X_query = X_query / X_query.norm(p=2, dim=2)[:, :, None]
    if covariates == "gamma":                # numpy's draws: the context's, then the query's
        k = 0.1
        scales = torch.from_numpy(rng.gamma(shape=k, scale=(10 / k) ** 0.5, size=[B, n])).float().sqrt()
        query_scales = torch.from_numpy(rng.gamma(shape=k, scale=(10 / k) ** 0.5, size=[B, 1])).float().sqrt()
        X = X * scales[:, :, None]
        X_query = X_query * query_scales[:, :, None]
    labels = torch.einsum("bi,bni->bn", w, X)                            # (B, n)
    y = torch.einsum("bi,bni->bn", w, X_query).squeeze(1)                # (B,)
    tokens = torch.cat([X, X_query], dim=1)                              # (B, n+1, d)
    last_row = torch.cat([labels, torch.zeros(B, 1, dtype=torch.float32)], dim=1)  # (B, n+1)
    Z = torch.cat([tokens, last_row[:, :, None]], dim=2).transpose(1, 2)  # (B, d+1, n+1)
    return Z.contiguous(), y
