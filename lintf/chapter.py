"""What every chapter of the book does the same way: check its parameters and caption its
figures.

A chapter's first code cell after the ``parameters`` cell is::

    p = lintf.chapter.parameters(scale=scale, device=device, seeds=seeds, steps=steps,
                                 settings=settings, allowed=("setting1", "setting2", "setting3"))

which raises a ``ValueError`` naming the bad parameter before any compute.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

from .checks import check_choice, check_int, check_seeds
from .engine import resolve_device
from .settings import SETTINGS, Scale, default_scale, get_scale, get_setting


@dataclass(frozen=True)
class Parameters:
    """A chapter's checked parameters."""

    scale: Scale
    device: str
    seeds: tuple | None
    steps: int | None
    settings: tuple

    @property
    def seed_list(self) -> tuple:
        """The seeds the chapter trains: the given ones, else the scale's."""
        return self.seeds if self.seeds is not None else self.scale.seeds


def parameters(*, scale=None, device="auto", seeds=None, steps=None, settings=(), allowed=None) -> Parameters:
    """Check a chapter's papermill parameters; ``ValueError``/``TypeError`` naming the bad one.

    scale : ``"ci"``, ``"cpu"`` or ``"paper"`` (None: :func:`lintf.settings.default_scale`).
    device : ``"auto"``, ``"cpu"``, ``"cuda"``. seeds : None or distinct integers >= 0.
    steps : None (the scale's) or an integer >= 1. settings : names among ``allowed``
        (default: every known setting).
    """
    scale = get_scale(default_scale() if scale is None else scale)
    resolve_device(device)
    seeds = None if seeds is None else check_seeds("seeds", seeds)
    steps = None if steps is None else check_int("steps", steps)
    if isinstance(settings, str):
        settings = (settings,)
    if not isinstance(settings, (list, tuple)):
        raise TypeError(f"settings must be a list of setting names, got {settings!r}")
    allowed = tuple(SETTINGS) if allowed is None else tuple(allowed)
    settings = tuple(check_choice("settings", s, allowed) for s in settings)
    if steps is not None:
        too_late = [s for s in scale.table_steps if s >= steps]
        if too_late:
            warnings.warn(f"steps={steps} ends before the table's iterations {too_late}", stacklevel=2)
    return Parameters(scale=scale, device=str(device), seeds=seeds, steps=steps, settings=settings)


def caption(figure: str, settings, p: Parameters, *, what: str = "", steps: int | None = None,
            summary: str | None = "mean and band over seeds") -> str:
    """A figure caption naming the paper's figure, the settings, the scale, the seeds and
    the parametrization (and what differs from the paper), as Markdown. ``summary`` says
    what the figure does with the seeds (None: nothing to say beyond ``what``)."""
    names = [settings] if isinstance(settings, str) else list(settings)
    objs = [get_setting(s) for s in names]
    params = sorted({s.model.parametrization for s in objs})
    seeds = p.seeds if p.seeds is not None else p.scale.seeds_for(objs[0])
    horizon = f", {steps} iterations" if steps else ""
    summary = f" ({summary})" if summary else ""
    notes = " ".join(sorted({s.note for s in objs if s.note}))
    return (f"**{figure}** {what} Settings: {', '.join(s.title for s in objs)}. Scale `{p.scale.name}`"
            f"{horizon}, seeds {list(seeds)}{summary}, parametrization "
            f"`{'/'.join(params)}`. {notes}").strip()


def show(table, index: bool = False, formatter=None, digits: int = 4) -> None:
    """Display a DataFrame (or a pandas Styler) in the theme's table look: floats to
    ``digits`` significant digits ("—" for NaN) unless ``formatter`` is given; the index is
    hidden unless ``index``."""
    from IPython.display import display

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.{digits}g}" if v == v else "—"
        return v

    styler = getattr(table, "style", table).set_table_attributes('class="dataframe table"')
    styler = styler.format(formatter or fmt)
    display(styler if index else styler.hide(axis="index"))


def rerun(chapter: str, example: str = "-p scale cpu") -> str:
    """The line that tells a reader how to re-run ``chapter`` with papermill, as Markdown."""
    return (f"Re-run this chapter (from the repository root): "
            f"`papermill book/{chapter}.ipynb out.ipynb --cwd book {example}`")


def ablation_options(optimizers=None, clip=True) -> tuple[tuple[str, ...], bool]:
    """Check the ablation chapter's ``optimizers`` (None: every one of
    :data:`lintf.optim.ALL_OPTIMIZERS`; else distinct names among them, SGDM and Adam
    included: they are the gap's two ends) and ``clip`` (True: the paper's global clipping,
    False: none); ``ValueError``/``TypeError`` naming the bad one."""
    from .optim import ALL_OPTIMIZERS
    if optimizers is None:
        optimizers = ALL_OPTIMIZERS
    if isinstance(optimizers, str) or not isinstance(optimizers, (list, tuple)):
        raise TypeError(f"optimizers must be a list of names among {list(ALL_OPTIMIZERS)}, got {optimizers!r}")
    chosen = tuple(check_choice("optimizers", o, ALL_OPTIMIZERS) for o in optimizers)
    if len(set(chosen)) != len(chosen) or not {"sgdm", "adam"} <= set(chosen):
        raise ValueError(f"optimizers must be distinct and include 'sgdm' and 'adam' (the gap's ends), got {list(chosen)}")
    if not isinstance(clip, bool):
        raise TypeError(f"clip must be True (the paper's global clipping) or False (none), got {clip!r}")
    return chosen, clip

