"""Argument checks shared by every public function.

Each check raises before any compute, with a message that names the parameter and
what it accepts, so that a bad papermill parameter fails in the first cell.
"""
from __future__ import annotations

import math
import numbers
from typing import Iterable


def check_int(name: str, value, *, minimum: int = 1) -> int:
    """Return ``value`` as an ``int`` if it is a whole number ``>= minimum``.

    Raises ``TypeError`` for non-integers (``bool`` and floats included) and
    ``ValueError`` for integers below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive(name: str, value) -> float:
    """Return ``value`` as a ``float`` if it is a finite number ``> 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite number > 0, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; else list them in the error."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_seeds(name: str, seeds) -> tuple[int, ...]:
    """Return ``seeds`` as a non-empty tuple of distinct non-negative integers."""
    if isinstance(seeds, (str, bytes)):
        raise TypeError(f"{name} must be a non-empty sequence of integers >= 0, got the string {seeds!r} "
                        f"(papermill's -p passes a string: write -y \"{name}: [0, 1, 2, 3, 4, 5]\")")
    if not isinstance(seeds, Iterable):
        raise TypeError(f"{name} must be a non-empty sequence of integers >= 0, got {seeds!r}")
    out = tuple(check_int(f"{name}[{i}]", s, minimum=0) for i, s in enumerate(seeds))
    if not out:
        raise ValueError(f"{name} must be a non-empty sequence of integers >= 0, got an empty one")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must hold distinct integers, got {list(out)}")
    return out


def check_lrs(name: str, lrs) -> tuple[float, ...]:
    """Return ``lrs`` as a non-empty tuple of finite positive learning rates."""
    if isinstance(lrs, (str, bytes)) or not isinstance(lrs, Iterable):
        raise TypeError(f"{name} must be a non-empty sequence of finite numbers > 0, got {lrs!r}")
    out = tuple(check_positive(f"{name}[{i}]", v) for i, v in enumerate(lrs))
    if not out:
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers > 0, got an empty one")
    return out


def check_frame(name: str, frame, columns: Iterable[str]):
    """Return ``frame`` if it is a pandas DataFrame holding ``columns``."""
    import pandas as pd
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; it has {list(frame.columns)}")
    return frame


def broadcast_shapes(*shapes) -> tuple[int, ...]:
    """``torch.broadcast_shapes`` in plain Python, for the hot paths: torch's builds tensors
    and takes about 50 microseconds a call. Raises ``RuntimeError`` as torch's does."""
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for shape in shapes:
        for i, size in enumerate(shape, ndim - len(shape)):
            if size != 1:
                if out[i] not in (1, size):
                    raise RuntimeError(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
                out[i] = size
    return tuple(out)
