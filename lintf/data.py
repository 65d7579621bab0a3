"""Random linear-regression prompts (SPEC section 1).

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
        alpha = torch.full(shape, options["k"], device=device, dtype=torch.float64)
        s = torch._standard_gamma(alpha, generator=generator) * options["theta"]
        x = x * s.sqrt().to(dtype).unsqueeze(-1)
    return x


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
