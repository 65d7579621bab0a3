"""What every chapter of the book does the same way: check its parameters, draw and caption
its figures, show its verdicts and glue their numbers into its prose.

A chapter's first code cell after the ``parameters`` cell is::

    p = lintf.book.chapter.parameters(scale=scale, device=device, seeds=seeds, steps=steps,
                                 settings=settings, allowed=("setting1", "setting2", "setting3"))

which raises a ``ValueError`` naming the bad parameter before any compute. Every number a
chapter's prose states is glued (:func:`glue`, :func:`show_verdict`) and pasted with
myst-nb's ``{glue:text}`` role and a format spec, so that text and numbers cannot drift apart.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

from ..compute.checks import check_choice, check_int, check_seeds
from ..compute.engine import resolve_device
from .stats import VERDICTS
from ..compute.store import provenance_sentence
from ..compute.settings import SETTINGS, Scale, Setting, default_scale, get_scale, get_setting


@dataclass(frozen=True)
class Parameters:
    """A chapter's checked parameters."""

    scale: Scale
    device: str
    seeds: tuple | None
    steps: int | None
    settings: tuple

    def seeds_for(self, setting) -> tuple:
        """The seeds ``setting``'s runs train (a setting name or a :class:`~lintf.compute.settings.Setting`):
        the chapter's ``seeds`` when given, else the scale's for the setting's role
        (:meth:`lintf.compute.settings.Scale.seeds_for`: the depth and covariate settings can have more)."""
        if self.seeds is not None:
            return self.seeds
        return self.scale.seeds_for(setting if isinstance(setting, Setting) else get_setting(setting))

    @property
    def seed_list(self) -> tuple:
        """The seeds the chapter trains: the given ones, else those of its ``settings``
        (:meth:`seeds_for`; sorted, all of them when the settings' roles differ), else, for a
        chapter without settings, the scale's ``seeds``. :func:`seeds_text` says which setting
        trains which."""
        if self.seeds is not None:
            return self.seeds
        if not self.settings:
            return self.scale.seeds
        return tuple(sorted(set().union(*(self.seeds_for(s) for s in self.settings))))


def seeds_text(p: Parameters, settings=None) -> str:
    """Which seeds the runs of ``settings`` train, as one line of plain text.

    settings : setting names (a name alone is one); None: the chapter's ``p.settings``, or
    every known setting when it has none. Returns ``"seeds [0, 1, 2]"`` when they all train
    the same seeds (:meth:`Parameters.seeds_for`), else one group per set of seeds, in the
    order the settings come: ``"seeds [0, 1, 2] for setting1, gamma; [0, 1, 2, 3] for sphere,
    depth2"``. ``ValueError`` for an empty list or an unknown name.
    """
    names = _names(settings) if settings is not None else list(p.settings or SETTINGS)
    if not names:
        raise ValueError("settings must name at least one setting, got an empty list")
    groups: dict[tuple, list[str]] = {}
    for name in names:
        groups.setdefault(tuple(p.seeds_for(get_setting(name))), []).append(name)
    if len(groups) == 1:
        return f"seeds {list(next(iter(groups)))}"
    return "seeds " + "; ".join(f"{list(seeds)} for {', '.join(group)}" for seeds, group in groups.items())


def one_line(err: BaseException) -> BaseException:
    """``err``, shown by IPython (a chapter run by papermill or Jupyter) as its one line
    ``ValueError: scale must be one of ...`` instead of a traceback through lintf: a bad
    parameter is the reader's to fix, not lintf's (IPython calls an exception's
    ``_render_traceback_`` when it has one). Its type, message and Python traceback are
    unchanged."""
    line = f"{type(err).__name__}: {err}"
    err._render_traceback_ = lambda: [line]
    return err


def parameters(*, scale=None, device="auto", seeds=None, steps=None, settings=(), allowed=None,
               chapter: str | None = None, namespace: dict | None = None) -> Parameters:
    """Check a chapter's papermill parameters; ``ValueError``/``TypeError`` naming the bad one,
    which a notebook shows as that one line (:func:`one_line`).

    scale : ``"ci"``, ``"cpu"`` or ``"paper"`` (None: :func:`lintf.compute.settings.default_scale`).
    device : ``"auto"``, ``"cpu"``, ``"cuda"``. seeds : None or distinct integers >= 0.
    steps : None (the scale's) or an integer >= 1. settings : names among ``allowed``
        (default: every known setting).
    chapter, namespace : a chapter's setup cell passes its name and ``globals()``: a name
        papermill injected that the chapter's ``parameters`` cell does not declare (a typo
        such as ``-p lr paper``) then stops the chapter (:func:`check_injected`), and a page
        at scale ``ci`` says that it is a smoke test (:func:`banner`).
    """
    try:
        if chapter is not None:
            check_injected(chapter, namespace)
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
    except (ValueError, TypeError) as err:
        raise one_line(err)
    if steps is not None:
        too_late = [s for s in scale.table_steps if s >= steps]
        if too_late:
            warnings.warn(f"steps={steps} ends before the table's iterations {too_late}", stacklevel=2)
    p = Parameters(scale=scale, device=str(device), seeds=seeds, steps=steps, settings=settings)
    if chapter is not None:
        banner(p)
        glue_statements(chapter)
    return p


def glue_statements(chapter: str) -> list[str]:
    """Glue ``claimN_statement``, the registry's statement of every claim that ``chapter``
    decides (:data:`lintf.book.registry.REGISTRY`), so that its prose states each claim in the
    registry's words, never typed again. Returns the keys."""
    from .registry import REGISTRY
    keys = []
    for k, c in REGISTRY.items():
        if c.chapter == chapter:
            glue(f"claim{k}_statement", c.statement)
            keys.append(f"claim{k}_statement")
    return keys


SMOKE_TEST = ("**Smoke test.** This page was computed at scale `ci`: {steps} iterations on batches of {batch} "
              "prompts, enough to check that every cell runs, not to decide anything about the paper. Its "
              "figures, numbers and verdicts are not findings; scales `cpu` and `paper` compute those.")


NOT_DECIDED = "not decided at ci (smoke test)"
"""What a verdict reads on a page computed at scale ``ci`` (:func:`show_verdict`, :func:`glue_verdict`,
:func:`show_alternatives`, the scorecard's card): the rule still runs, and says what it found, but a
smoke test's few iterations decide nothing."""

_PAGE = {"smoke": False}   # the page being built: set by its setup cell (:func:`banner`)


def smoke_page() -> bool:
    """Whether the chapter being run is at scale ``ci`` (its setup cell's :func:`parameters`)."""
    return _PAGE["smoke"]


def banner(p: Parameters) -> None:
    """Display, at scale ``ci`` only, the note that the page is a smoke test (:data:`SMOKE_TEST`);
    from then on the page's verdicts read :data:`NOT_DECIDED`."""
    _PAGE["smoke"] = p.scale.name == "ci"
    if p.scale.name == "ci":
        from IPython.display import Markdown, display
        display(Markdown(SMOKE_TEST.format(steps=p.scale.steps, batch=p.scale.batch_size)))


# Names IPython itself puts in a kernel's namespace that are not callables or modules.
_IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})
# The types papermill's Python translator injects (-p, -y, -r, -f).
_INJECTABLE = (str, int, float, bool, type(None), list, dict)


def chapter_notebook(chapter: str):
    """The notebook of ``chapter`` (a name such as ``"intro"``): ``<cwd>/<chapter>.ipynb``
    (papermill ``--cwd book``, the book build), else ``<cwd>/book/``, else the repository's
    ``book/``; None when none exists (``lintf`` installed without its book)."""
    from pathlib import Path

    if not isinstance(chapter, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", chapter):
        raise ValueError(f"chapter must be a chapter's name such as 'intro', got {chapter!r}")
    for folder in (Path.cwd(), Path.cwd() / "book", Path(__file__).resolve().parents[1] / "book"):
        if (folder / f"{chapter}.ipynb").is_file():
            return folder / f"{chapter}.ipynb"
    return None


def declared_parameters(chapter: str) -> list[str]:
    """The names the chapter's ``parameters`` cell declares, as papermill reads them
    (``papermill.inspect_notebook``, which ``papermill --help-notebook`` prints; without
    papermill, the names the cell assigns); ``[]`` when the notebook is not found."""
    import ast
    import json

    path = chapter_notebook(chapter)
    if path is None:
        return []
    try:
        import papermill
    except ImportError:                  # lintf alone: the book's requirements bring papermill
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        cell = next((c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
        body = ast.parse("".join(cell["source"])).body if cell else []
        return [t.id for node in body if isinstance(node, ast.Assign) for t in node.targets
                if isinstance(t, ast.Name)]
    return list(papermill.inspect_notebook(str(path)))


def _bound_names(path) -> set:
    """Every name a code cell of the notebook at ``path`` assigns, imports or defines."""
    import ast
    import json

    names = set()
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse("".join(cell["source"]))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def check_injected(chapter: str, namespace: dict | None) -> None:
    """``ValueError`` if ``namespace`` (the kernel's ``globals()``) holds a name papermill
    could have injected (a str, number, bool, None, list or dict) that the chapter's
    ``parameters`` cell does not declare, naming it and the chapter's parameters.

    Ignored: IPython's own names, ``_``-names, modules, callables, values of other types, and
    names some cell of the chapter assigns (so that re-running the setup cell by hand after
    later cells is no error). Nothing is checked when the notebook is not found.
    """
    if not isinstance(namespace, dict):
        raise TypeError(f"namespace must be the chapter's globals() (a dict), got {type(namespace).__name__}")
    path = chapter_notebook(chapter)
    if path is None:
        return
    declared = declared_parameters(chapter)
    known = set(declared) | _bound_names(path) | _IPYTHON_NAMES
    unknown = sorted(k for k, v in namespace.items()
                     if not k.startswith("_") and k not in known and type(v) in _INJECTABLE)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for chapter {chapter!r}: its parameters are "
                         f"{declared} (papermill --help-notebook book/{chapter}.ipynb describes them)")


NO_RATE_NOTES = ("noise_histogram", "lr_grid")
"""Plots whose :func:`figure` caption carries no setting's rate notes by default: the noise at
initialisation trains nothing, and a learning-rate grid shows every rate."""

BAND = "geometric mean over seeds, band from the lowest to the highest seed"
"""What a curve figure does with the seeds (:func:`lintf.book.plots.loss_curves`, ``smoothness_curves``,
``rmed_curves``): the default ``summary`` of :func:`caption`."""


def caption(figure: str, settings, p: Parameters, *, what: str = "", steps: int | None = None,
            summary: str | None = BAND, seeds=None, notes: bool = True, provenance=None) -> str:
    """A figure caption naming the paper's figure, the settings, the scale, the seeds and
    the parametrization (and what differs from the paper), as Markdown. ``summary`` says
    what the figure does with the seeds (None: nothing to say beyond ``what``). ``seeds``: the
    seeds the figure shows when they are not the chapter's training seeds (e.g. the
    condition-number table's). ``notes``: append the settings' notes on their learning rates
    and clipping (:attr:`lintf.compute.settings.Setting.note`), each after its setting's title when the
    figure shows several settings; False for a figure that trains nothing
    (noise at initialisation) or trains at other rates than the settings' defaults.
    ``provenance``: the frame the figure plots (its ``attrs["provenance"]``) or those records
    (:func:`lintf.compute.store.provenance`): the caption ends with where its numbers come from
    (:func:`lintf.compute.store.provenance_sentence`)."""
    objs = [get_setting(s) for s in _names(settings)]
    params = sorted({s.model.parametrization for s in objs})
    # the settings' own seeds (seeds_text: one group per set of seeds when their roles differ)
    seed_text = seeds_text(p, [s.name for s in objs]) if seeds is None else f"seeds {list(seeds)}"
    horizon = f", {steps} iterations" if steps else ""
    summary = f" ({summary})" if summary else ""
    # a figure of several settings says which setting each note is about
    noted = list({s.name: s for s in objs if s.note}.values()) if notes else []
    notes = " ".join(f"{s.title} — {s.note}" if len(objs) > 1 else s.note for s in noted)
    if provenance is not None and hasattr(provenance, "attrs"):
        provenance = provenance.attrs.get("provenance")
    source = provenance_sentence(provenance) if provenance else ""
    text = (f"**{figure}** {what} Settings: {', '.join(s.title for s in objs)}. Scale `{p.scale.name}`"
            f"{horizon}, {seed_text}{summary}, parametrization "
            f"`{'/'.join(params)}`. {notes}").strip()
    return f"{text} {source}" if source else text


def show(table, index: bool = False, formatter=None, digits: int = 4) -> None:
    """Display a DataFrame (or a pandas Styler) in the theme's table look: floats to
    ``digits`` significant digits ("—" for NaN) unless ``formatter`` is given; the index is
    hidden unless ``index``."""
    from IPython.display import display

    def fmt(v):
        return number(v, digits) if isinstance(v, float) else v

    styler = getattr(table, "style", table).set_table_attributes('class="dataframe table"')
    styler = styler.format(formatter or fmt)
    display(styler if index else styler.hide(axis="index"))


def number(v: float, digits: int = 4) -> str:
    """``v`` as :func:`show` writes it: ``digits`` significant digits (as the prose's
    ``{glue:text}`key:.4g``` for the default 4), "—" for NaN, and a number with more integer
    digits than ``digits`` (below a million) whole rather than in exponent form (``1028``, not
    ``1.03e+03``)."""
    if v != v:
        return "—"
    if 10 ** digits <= abs(v) < 1e6:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


def rerun(chapter: str, example: str = "-p scale cpu") -> str:
    """The line that tells a reader how to re-run ``chapter`` with papermill, as Markdown."""
    return (f"Re-run this chapter (from the repository root): "
            f"`papermill book/{chapter}.ipynb out.ipynb --cwd book {example}`")


def ablation_options(optimizers=None, clip=True) -> tuple[tuple[str, ...], bool]:
    """Check the ablation chapter's ``optimizers`` (None: every one of
    :data:`lintf.compute.optim.ALL_OPTIMIZERS`; else distinct names among them, SGDM and Adam
    included: they are the gap's two ends) and ``clip`` (True: the paper's global clipping,
    False: none); ``ValueError``/``TypeError`` naming the bad one."""
    from ..compute.optim import ALL_OPTIMIZERS
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



def _names(values) -> list:
    """One name, or a list of names, as a list."""
    return [values] if isinstance(values, str) else list(values)


def choices(name: str, values, allowed) -> list:
    """Check a list parameter: one name or a list of names among ``allowed`` (``ValueError``
    naming ``name[i]`` and the accepted values)."""
    return [check_choice(f"{name}[{i}]", v, tuple(allowed)) for i, v in enumerate(_names(values))]


def figure(plot, frame, settings, p: Parameters, label: str, what: str = "", *, titles=None,
           steps: int | None = None, summary: str | None = BAND, seeds=None, notes: bool | None = None,
           **kwargs) -> None:
    """Draw ``plot`` once per setting (:func:`lintf.book.plots.grid_of_settings`, ``kwargs`` passed
    on), show the figure, then its :func:`caption` (``seeds``, ``notes``: see there; ``notes``
    None: False for :func:`lintf.book.plots.noise_histogram`, which trains nothing, and for
    :func:`lintf.book.plots.lr_grid`, which shows every rate, else True).
    ``titles`` overrides the settings' titles."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    from .plots import grid_of_settings

    settings = _names(settings)
    titles = {**{s: get_setting(s).title for s in settings}, **(titles or {})}
    grid_of_settings(plot, frame, settings=settings, titles=titles, **kwargs)
    plt.show()
    if notes is None:
        notes = getattr(plot, "__name__", "") not in NO_RATE_NOTES
    records = [r for r in getattr(frame, "attrs", {}).get("provenance", []) if r.get("setting") in settings + [None]]
    display(Markdown(caption(label, settings, p, what=what, steps=steps, summary=summary, seeds=seeds,
                             notes=notes, provenance=records)))


def horizon(p: Parameters, settings) -> int:
    """The longest horizon of ``settings`` in the chapter: ``steps`` if given, else the scale's."""
    return max(p.steps or p.scale.steps_for(get_setting(s)) for s in _names(settings))


def rates_used(runs, optimizers=("sgdm", "adam")) -> str:
    """The learning rates stored runs were trained with, per setting, for a caption."""
    from .plots import LABELS

    r = runs.groupby(["setting", "optimizer"], sort=False)["lr"].first()
    return "; ".join(f"{get_setting(s).title}: " + ", ".join(f"{LABELS.get(o, o)} {r[s, o]:g}"
                                                               for o in optimizers if (s, o) in r)
                     for s in dict.fromkeys(r.index.get_level_values(0)))


def key(*parts) -> str:
    """A glue key from ``parts``: lower case, every run of other characters than letters and
    digits one underscore (``key("claim2", "heavy-tailed: setting1")`` is
    ``"claim2_heavy_tailed_setting1"``)."""
    return "_".join(re.sub(r"[^a-z0-9]+", "_", str(p).lower()).strip("_") for p in parts)


def glue(name: str, value) -> None:
    """Glue ``value`` under ``name`` for the page's prose, without showing it in the cell.

    Numbers are glued as plain Python ``int`` or ``float`` (numpy and torch scalars converted:
    their reprs would defeat the role's format spec), so that ``{glue:text}`name:.2f``` works;
    anything else as its ``str``. ``name`` must be a :func:`key`-like identifier.
    """
    from myst_nb import glue as myst_glue

    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"name must be lower-case letters, digits and underscores (see lintf.book.chapter.key), "
                         f"got {name!r}")
    if hasattr(value, "item") and callable(value.item):  # numpy or torch scalar
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        value = str(value)
    myst_glue(name, int(value) if isinstance(value, int) else value, display=False)


def glue_all(values: dict) -> None:
    """:func:`glue` every ``{name: value}`` of ``values``."""
    for name, value in values.items():
        glue(name, value)


def records(horizon: int, every: int, window: int | None = None) -> int:
    """A smoothness plot's rolling window in recorded values (one every ``every`` steps):
    ``window`` steps, None: 50, or a twentieth of a run shorter than 1000 steps."""
    window = max(1, min(50, horizon // 20)) if window is None else check_int("window", window)
    return max(1, round(window / check_int("every", every)))


def verdict_name(v) -> str:
    """The glue prefix of a verdict: ``claim1`` ... ``claim8``, ``a1`` ... for hypotheses."""
    return key(f"claim{v.claim}" if isinstance(v.claim, int) else v.claim)


def glue_verdict(v, name: str | None = None) -> list[str]:
    """Glue a :class:`lintf.book.claims.Verdict`'s numbers for the prose; return the keys.

    ``name`` (default :func:`verdict_name`) is the verdict (``holds``, ``does not hold``,
    ``inconclusive``); ``name_stat``, ``name_low``, ``name_high`` its deciding statistic and
    bounds; ``name_parts`` the number of parts and ``name_parts_holds``,
    ``name_parts_does_not_hold``, ``name_parts_inconclusive`` how many have each verdict. Per
    part, with ``part = name + "_" + id`` (the part's stable id, its ``id`` column, which
    :func:`lintf.book.design` states in advance: ``claim6_gap_widens``; a parts frame without
    ids: ``key(part)``): ``part`` (statistic), ``part_low``, ``part_high`` (one-sided 95%
    bounds), ``part_n`` (seeds), ``part_verdict``, ``part_text`` (:func:`part_text`: the
    statistic, bounds and verdict, or ``"untested: <reason>"``, for prose where a part may be
    untested) and, for log ratios, ``part_exp`` (the factor e^statistic); ``part_verdict``
    can also be ``untested``. In words: ``name_headline`` (the verdict and its deciding part,
    :attr:`lintf.book.claims.Verdict.headline`), ``name_part`` (the deciding part), ``name_sentence``
    (what was found, :attr:`lintf.book.claims.Verdict.sentence`), ``name_counts`` (the parts' verdicts
    in English, e.g. "1 holds, 1 does not hold and 1 is untested"), ``name_parts_untested``.
    """
    name = name or verdict_name(v)
    keys = {name: f"{NOT_DECIDED}; the rule said: {v.verdict}" if smoke_page() else v.verdict,
            f"{name}_stat": float(v.statistic), f"{name}_low": float(v.interval[0]),
            f"{name}_high": float(v.interval[1])}
    parts = v.details.get("parts") if isinstance(v.details, dict) else None
    verdicts = [] if parts is None else list(parts["verdict"])
    keys[f"{name}_parts"] = len(verdicts)
    for verdict in (*VERDICTS, "untested"):
        keys[key(name, "parts", verdict)] = verdicts.count(verdict)
    from .claims import count_words
    keys.update({f"{name}_headline": getattr(v, "headline", v.verdict), f"{name}_part": getattr(v, "part", ""),
                 f"{name}_sentence": getattr(v, "sentence", ""),
                 f"{name}_counts": count_words({k: verdicts.count(k) for k in (*VERDICTS, "untested")})})
    for row in ([] if parts is None else parts.itertuples()):
        k = key(name, getattr(row, "id", None) or row.part)
        keys.update({k: float(row.statistic), f"{k}_low": float(row.low), f"{k}_high": float(row.high),
                     f"{k}_n": int(row.n), f"{k}_verdict": row.verdict, f"{k}_text": part_text(row)})
        if "log" in str(getattr(row, "what", "")):
            keys[f"{k}_exp"] = _exp(float(row.statistic))
    for k, value in keys.items():
        glue(k, value)
    return list(keys)


def part_text(row, digits: int = 2) -> str:
    """A verdict's part in words for the prose: ``"0.13 [0.02, inf] (holds)"`` (its statistic,
    one-sided bounds with ``digits`` decimals, and verdict) when tested, ``"untested: <reason>"``
    when not, never "nan" (``row``: a row of ``details["parts"]``, a namedtuple or a Series with
    ``statistic``, ``low``, ``high``, ``verdict`` and ``extra``)."""
    digits = check_int("digits", digits, minimum=0)
    if row.verdict == "untested":
        return f"untested: {getattr(row, 'extra', '') or 'no data'}"
    low, stat, high = (fixed(x, digits) for x in (row.low, row.statistic, row.high))
    return f"{stat} [{low}, {high}] ({row.verdict})"


def fixed(x: float, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals, never a negative zero (``-0.001`` is ``"0.00"``, not
    ``"-0.00"``); ``"inf"``, ``"-inf"`` and ``"nan"`` as Python writes them."""
    digits = check_int("digits", digits, minimum=0)
    text = f"{float(x):.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _exp(x: float) -> float:
    if math.isnan(x):
        return math.nan
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def show_verdict(v, name: str | None = None) -> None:
    """Display a verdict (its badge, statistic, bounds and evidence) and :func:`glue_verdict` it."""
    from IPython.display import HTML, display

    if smoke_page():
        display(HTML(f"<p><span style='background:#BBBBBB;color:white;padding:1px 6px;border-radius:3px'>"
                     f"{NOT_DECIDED}</span></p>"))
    display(v)
    glue_verdict(v, name)


def show_parts(v, columns: dict | None = None) -> None:
    """Show a verdict's parts as a table (part, statistic, bounds, seeds, verdict; renamed by
    ``columns``) and print its notes: parts left untested, runs diverged or excluded."""
    from IPython.display import Markdown, display

    parts = v.details["parts"][["part", "statistic", "low", "high", "n", "verdict"]]
    show(parts.rename(columns={"n": "seeds", **(columns or {})}))
    notes = [line for line in v.evidence.splitlines()
             if line.startswith(("untested", "no part")) or "diverged" in line or "excluded" in line]
    if notes:
        display(Markdown(notes_markdown(notes)))


def _seed_words(seeds) -> str:
    """``["1"]``: ``"seed 1"``; ``["1", "3", "4"]``: ``"seeds 1, 3 and 4"``."""
    seeds = [str(x) for x in seeds]
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return f"seeds {', '.join(seeds[:-1])} and {seeds[-1]}"


def notes_markdown(lines) -> str:
    """A verdict's notes (parts untested, runs diverged or excluded: lines of its evidence) as
    a short Markdown list under the heading "Notes", with plurals and the optimizers' names
    written out (``"large: 2 diverged run(s) excluded (sgdm seed 1)"`` reads
    ``"large: 2 diverged runs excluded (SGDM seed 1)"``, ``"seed(s) [1, 3]"`` reads
    ``"seeds 1 and 3"``)."""
    def tidy(line: str) -> str:
        line = re.sub(r"\b(\d+) (\w+) run\(s\)", lambda m: f"{m[1]} {m[2]} run{'s' * (m[1] != '1')}", line)
        line = re.sub(r"\b(\d+) run\(s\)", lambda m: f"{m[1]} run{'s' * (m[1] != '1')}", line)
        line = re.sub(r"\bseed\(s\) \[([\d, ]+)\]", lambda m: _seed_words(m[1].split(", ")), line)
        return re.sub(r"\bsgdm\b", "SGDM", re.sub(r"\badam\b", "Adam", line))
    return "**Notes.**\n\n" + "\n".join(f"- {tidy(line)}" for line in lines)


def show_alternatives(claim: int, ctx, p: Parameters, settings) -> dict:
    """How far claim ``claim``'s verdict carries, on its chapter: one line (the paper's protocol,
    its verdict, the alternatives' counts, robust or fragile and why) and the specification
    curve (:func:`lintf.book.plots.specification_curve`) with its caption; glues
    ``claimN_alternatives`` (``"of 9 alternatives: 6 hold, 1 does not hold, 2 inconclusive"``),
    ``claimN_carries`` (``"robust"`` or ``"fragile"``) and ``claimN_protocol`` (the paper's
    protocol in words). Returns :func:`lintf.book.verdicts.robustness`'s dict."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    from .plots import specification_curve
    from .registry import get
    from .verdicts import alternatives, robustness

    c = get(claim)
    frame = alternatives(claim, ctx)
    spread = robustness(frame, c.margin)
    primary = frame[frame["paper"]].iloc[0]
    carries = "fragile" if spread["fragile"] else "robust"
    glue(f"claim{claim}_alternatives", spread["text"])
    glue(f"claim{claim}_carries", carries)
    glue(f"claim{claim}_protocol", primary["label"])
    smoke = f" ({NOT_DECIDED})" if p.scale.name == "ci" else ""
    why = f": {'; '.join(spread['why'])}" if spread["why"] else ""
    display(Markdown(f"**Claim {claim} under the paper's protocol** ({primary['label']}): "
                     f"**{primary['verdict']}**{smoke}. {c.protocol} Under the declared alternatives, "
                     f"{spread['text']}: the verdict is **{carries}**{why}."))
    measured = frame[frame["verdict"] != "not measured"]
    if len(measured):
        _, ax = plt.subplots(figsize=(9.5, max(2.0, 0.28 * len(measured) + 1.2)))
        specification_curve(frame, ax=ax)
        plt.show()
        missing = len(frame) - len(measured)
        what = (f"Claim {claim} decided by the same rule on the same seeds under each of its "
                f"{len(frame)} declared measurements: the deciding part's statistic minus its threshold, "
                "with the one-sided 95% bounds, coloured by verdict; the star marks the paper's protocol."
                + (f" {missing} not measured here (their quantity was not recorded)." if missing else ""))
        display(Markdown(caption(f"Claim {claim}, alternatives.", settings, p, what=what, summary=None,
                                 notes=False, provenance=frame)))
    return spread
