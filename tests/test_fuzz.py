"""Bad input, fuzzed: every public entry point, and every chapter's papermill parameters,
reject a bad value with a ValueError (TypeError for a wrong type) whose message names the
parameter and what it accepts, before any compute, leaving the results store untouched.

"Before any compute" is checked with a tripwire: while a case runs, drawing random numbers,
initialising parameters, running the model's layers (autograd or hand-written path) and
writing to the store all raise :class:`Computed`, which no ``except Exception`` in lintf
can swallow. "Untouched" is checked by pointing ``LINTF_RESULTS`` at a fresh empty folder
per case and finding it still empty (no ``.locks`` either) afterwards.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nbformat
import pytest
import torch

import lintf
from lintf import chapter, engine, experiments, fast, measure, model, settings, store
from lintf.compute.data import Prompts, sample_prompts
from lintf.compute.model import Model

BOOK = Path(__file__).resolve().parents[1] / "book"
MODEL, PROMPTS = Model(L=2, d=3), Prompts(n=6, d=3)
NO_CUDA = not torch.cuda.is_available()


class Computed(BaseException):
    """Raised by the tripwire: some compute (or a store write) ran before the bad input was
    rejected. A BaseException so that no ``except Exception`` in lintf hides it."""


def _train(**kwargs):
    """``engine.train`` on a tiny model with one bad keyword."""
    args = dict(configs=[("adam", 0.01)], seeds=[0], steps=3, batch_size=8, device="cpu", progress=False)
    args.update(kwargs)
    return engine.train(MODEL, PROMPTS, args.pop("configs"), args.pop("seeds"), **args)


def _training(**kwargs):
    """``experiments.training`` at ci scale with one bad keyword."""
    args = dict(setting="setting1", scale="ci", seeds=[0], steps=3, device="cpu", progress=False)
    args.update(kwargs)
    return experiments.training(args.pop("setting"), args.pop("scale"), **args)


def _chapter(**kwargs):
    """``chapter.parameters`` as a chapter's first cell calls it, with one bad keyword."""
    args = dict(scale="ci", device="cpu", seeds=None, steps=None, settings=("setting1",),
                allowed=("setting1", "setting2", "setting3"))
    args.update(kwargs)
    return chapter.parameters(**args)


def _PQZ(P=(2, 4, 4), Q=(2, 4, 4), Z=(5, 4, 7)):
    return torch.zeros(P), torch.zeros(Q), torch.zeros(Z)


def _params(L=2, D=4, **extra):
    """Zero parameters of an ``L``-layer model of width ``D = d+1`` (zeros: no random draw)."""
    return {"P": torch.zeros(L, D, D), "Q": torch.zeros(L, D, D), **extra}


def _noise(**kwargs):
    """``measure.gradient_noise`` at a zero point of the tiny model, with one bad keyword."""
    args = dict(params=_params(), sample=PROMPTS.sample, num_batches=4, batch_size=8, big_batch=32,
                generator=None)
    args.update(kwargs)
    return measure.gradient_noise(MODEL, args.pop("params"), args.pop("sample"), **args)


@dataclass
class Case:
    """``call()`` must raise ``error`` with every string of ``says`` in its message."""

    id: str
    call: Callable
    error: type
    says: tuple[str, ...]


def case(id, call, error, *says, marks=()):
    return pytest.param(Case(id, call, error, says), id=id, marks=list(marks))


NAN, INF = math.nan, math.inf

CASES = [
    # -- data: sizes, names, options -------------------------------------------------------
    case("sample_prompts n=0", lambda: sample_prompts(32, 0, 3), ValueError, "n must", ">= 1"),
    case("sample_prompts d=-1", lambda: sample_prompts(32, 6, -1), ValueError, "d must", ">= 1"),
    case("sample_prompts batch_size=0", lambda: sample_prompts(0, 6, 3), ValueError, "batch_size must", ">= 1"),
    case("sample_prompts batch_size=(4,0)", lambda: sample_prompts((4, 0), 6, 3), ValueError,
         "batch_size[1] must", ">= 1"),
    case("sample_prompts n=2.5", lambda: sample_prompts(32, 2.5, 3), TypeError, "n must", "integer"),
    case("sample_prompts covariates", lambda: sample_prompts(32, 6, 3, "cauchy"), ValueError,
         "covariates must", "'gaussian'", "'sphere'", "'gamma'", "'mlp'"),
    case("sample_prompts gamma k=nan", lambda: sample_prompts(32, 6, 3, "gamma", k=NAN), ValueError,
         "k must", "> 0"),
    case("sample_prompts gamma unknown option", lambda: sample_prompts(32, 6, 3, "gamma", alpha=1.0),
         ValueError, "covariates='gamma' takes options", "k, theta"),
    case("Prompts n=0", lambda: Prompts(0, 3), ValueError, "n must", ">= 1"),
    case("Prompts covariates", lambda: Prompts(6, 3, "student"), ValueError, "covariates must", "'gaussian'"),
    # -- model: sizes, names, shapes ---------------------------------------------------------
    case("Model L=0", lambda: Model(L=0, d=3), ValueError, "L must", ">= 1"),
    case("Model d=-1", lambda: Model(L=2, d=-1), ValueError, "d must", ">= 1"),
    case("Model L=True", lambda: Model(L=True, d=3), TypeError, "L must", "integer"),
    case("Model attention", lambda: Model(L=2, d=3, attention="cosine"), ValueError,
         "attention must", "'linear'", "'softmax'"),
    case("Model init_std=inf", lambda: Model(L=2, d=3, init_std=INF), ValueError, "init_std must", "> 0"),
    case("predict attention", lambda: lintf.predict(*_PQZ(), attention="cosine"), ValueError,
         "attention must", "'linear'"),
    case("predict Q shape", lambda: lintf.predict(*_PQZ(Q=(2, 5, 5))), ValueError, "Q must", "(2, 4, 4)"),
    case("predict P not square", lambda: lintf.predict(*_PQZ(P=(2, 4, 5))), ValueError,
         "P must", "(..., L, d+1, d+1)"),
    case("predict Z height", lambda: lintf.predict(*_PQZ(Z=(5, 6, 7))), ValueError,
         "Z must", "(..., B, d+1, n+1)", "d+1 = 4"),
    case("predict Z without context", lambda: lintf.predict(*_PQZ(Z=(5, 4, 1))), ValueError,
         "Z must", "n >= 1"),
    case("predict run dims", lambda: lintf.predict(*_PQZ(P=(3, 2, 4, 4), Q=(3, 2, 4, 4), Z=(2, 5, 4, 7))),
         ValueError, "leading run dimensions of P", "broadcast"),
    case("loss y shape", lambda: lintf.loss(*_PQZ(), torch.zeros(4)), ValueError, "y must", "shape (5,)"),
    case("Model.loss Z height", lambda: MODEL.loss({"P": torch.zeros(2, 4, 4), "Q": torch.zeros(2, 4, 4)},
                                                   torch.zeros(5, 5, 7), torch.zeros(5)),
         ValueError, "Z must", "d+1 = 4"),
    case("Model.predict params of another L",
         lambda: MODEL.predict({"P": torch.zeros(3, 4, 4), "Q": torch.zeros(3, 4, 4)}, torch.zeros(5, 4, 7)),
         ValueError, "params", "2, 4, 4"),
    case("Model.loss params without Q",
         lambda: MODEL.loss({"P": torch.zeros(2, 4, 4)}, torch.zeros(5, 4, 7), torch.zeros(5)),
         ValueError, "params", "'Q'"),
    # -- measurements: shapes, sizes, names ----------------------------------------------------
    case("hessian params without Q", lambda: measure.hessian(MODEL, {"P": torch.zeros(2, 4, 4)},
                                                             torch.zeros(5, 4, 7), torch.zeros(5)),
         ValueError, "params must", "['P', 'Q']"),
    case("hessian params of another L", lambda: measure.hessian(MODEL, _params(L=3), torch.zeros(5, 4, 7),
                                                                torch.zeros(5)),
         ValueError, "params['P'] must", "(..., 2, 4, 4)"),
    case("hessian Z height", lambda: measure.hessian(MODEL, _params(), torch.zeros(5, 5, 7), torch.zeros(5)),
         ValueError, "Z must", "(..., B, 4, n+1)"),
    case("hessian y shape", lambda: measure.hessian(MODEL, _params(), torch.zeros(5, 4, 7), torch.zeros(6)),
         ValueError, "y must", "(5,)"),
    case("hessian dtype", lambda: measure.hessian(MODEL, _params(), torch.zeros(5, 4, 7), torch.zeros(5),
                                                  dtype=torch.int64),
         ValueError, "dtype must", "floating"),
    case("hessian chunk=0", lambda: measure.hessian(MODEL, _params(), torch.zeros(5, 4, 7), torch.zeros(5), chunk=0),
         ValueError, "chunk must", ">= 1"),
    case("directional_smoothness direction", lambda: measure.directional_smoothness(
        MODEL, _params(), _params(L=3), torch.zeros(5, 4, 7), torch.zeros(5)),
         ValueError, "direction['P'] must", "(..., 2, 4, 4)"),
    case("robust_condition method", lambda: measure.robust_condition(torch.eye(3), "trace"), ValueError,
         "method must", "'eig'", "'diag'"),
    case("robust_condition not square", lambda: measure.robust_condition(torch.zeros(3, 4)), ValueError,
         "H must", "(..., p, p)"),
    case("gradient_noise num_batches=0", lambda: _noise(num_batches=0), ValueError, "num_batches must", ">= 1"),
    case("gradient_noise batch_size=0", lambda: _noise(batch_size=0), ValueError, "batch_size must", ">= 1"),
    case("gradient_noise big_batch=-1", lambda: _noise(big_batch=-1), ValueError, "big_batch must", ">= 1"),
    case("gradient_noise run dims", lambda: _noise(params={k: v[None] for k, v in _params().items()}),
         ValueError, "params must", "single run"),
    case("gradient_noise generator", lambda: _noise(generator="a"), TypeError, "generator must", "torch.Generator"),
    case("gradient_noise sample", lambda: _noise(sample=None), TypeError, "sample must", "callable"),
    case("tail_measures NaN", lambda: measure.tail_measures([1.0, NAN, 2.0]), ValueError, "x must", "finite"),
    case("hill_index k too big", lambda: measure.hill_index([1.0, 2.0, 3.0], k=3), ValueError,
         "k must", "below the sample size 3"),
    # -- training: optimizers, learning rates, seeds, sizes, devices -------------------------
    case("train optimizer", lambda: _train(configs=[("lion", 0.01)]), ValueError,
         "configs[0] optimizer must", "'sgdm'", "'adam'"),
    case("train lr<0", lambda: _train(configs=[("adam", -0.1)]), ValueError, "lr must", "finite number > 0"),
    case("train lr=0", lambda: _train(configs=[("sgdm", 0.0)]), ValueError, "lr must", "finite number > 0"),
    case("train lr=nan", lambda: _train(configs=[("sgdm", NAN)]), ValueError, "lr must", "finite number > 0"),
    case("train lr=inf", lambda: _train(configs=[("adam", INF)]), ValueError, "lr must", "finite number > 0"),
    case("train lr='0.1'", lambda: _train(configs=[("adam", "0.1")]), TypeError, "lr must", "number"),
    case("train empty grid", lambda: _train(configs=[]), ValueError, "configs must", "(optimizer, lr)"),
    case("train seed 0.5", lambda: _train(seeds=[0.5]), TypeError, "seeds[0] must", "integer"),
    case("train seed 'a'", lambda: _train(seeds=["a"]), TypeError, "seeds[0] must", "integer"),
    case("train seed True", lambda: _train(seeds=[True]), TypeError, "seeds[0] must", "integer"),
    case("train seeds=0.5", lambda: _train(seeds=0.5), TypeError, "seeds must", "integers"),
    case("train seed -1", lambda: _train(seeds=[-1]), ValueError, "seeds[0] must", ">= 0"),
    case("train seeds repeated", lambda: _train(seeds=[1, 1]), ValueError, "seeds must", "distinct"),
    case("train steps=0", lambda: _train(steps=0), ValueError, "steps must", ">= 1"),
    case("train steps=2.0", lambda: _train(steps=2.0), TypeError, "steps must", "integer"),
    case("train batch_size=0", lambda: _train(batch_size=0), ValueError, "batch_size must", ">= 1"),
    case("train eval_every=0", lambda: _train(eval_every=0), ValueError, "eval_every must", ">= 1"),
    case("train device=tpu", lambda: _train(device="tpu"), ValueError, "device must", "'cpu'", "'cuda'"),
    case("train device=mps", lambda: _train(device="mps"), ValueError, "device", "'cpu'", "'cuda'"),
    case("train device=meta", lambda: _train(device="meta"), ValueError, "device", "'cpu'", "'cuda'"),
    case("train device=cuda without CUDA", lambda: _train(device="cuda"), ValueError, "device", "CUDA",
         marks=[pytest.mark.skipif(not NO_CUDA, reason="CUDA is available here")]),
    case("train prompts.d != model.d", lambda: engine.train(MODEL, Prompts(6, 4), [("adam", 0.01)], [0], steps=2),
         ValueError, "prompts.d", "model.d"),
    case("train optim_config=None", lambda: _train(optim_config=None), TypeError, "optim_config", "OptimConfig"),
    case("OptimConfig clip=0", lambda: lintf.OptimConfig(clip=0.0), ValueError, "clip must", "> 0"),
    case("OptimConfig momentum=1", lambda: lintf.OptimConfig(momentum=1.0), ValueError, "momentum must", "[0, 1)"),
    # -- settings and scales by name ---------------------------------------------------------
    case("get_setting", lambda: settings.get_setting("setting9"), ValueError, "setting must", "'setting1'"),
    case("get_scale", lambda: settings.get_scale("huge"), ValueError, "scale must", "'paper'", "'cpu'", "'ci'"),
    case("Setting.grid points=0", lambda: settings.get_setting("setting1").grid("adam", 0), ValueError,
         "points must", ">= 1"),
    case("Setting.grid optimizer", lambda: settings.get_setting("setting1").grid("lion"), ValueError,
         "optimizer must", "'sgdm'"),
    # -- experiments (through the store) ------------------------------------------------------
    case("training setting", lambda: _training(setting="setting9"), ValueError, "setting must", "'setting1'"),
    case("training scale", lambda: _training(scale="huge"), ValueError, "scale must", "'ci'"),
    case("training seed 0.5", lambda: _training(seeds=[0.5]), TypeError, "seeds[0] must", "integer"),
    case("training seed 'a'", lambda: _training(seeds=["a"]), TypeError, "seeds[0] must", "integer"),
    case("training steps=0", lambda: _training(steps=0), ValueError, "steps must", ">= 1"),
    case("training device=tpu", lambda: _training(device="tpu"), ValueError, "device must", "'cpu'"),
    case("training device=mps", lambda: _training(device="mps"), ValueError, "device", "'cpu'"),
    case("training lrs name", lambda: _training(lrs="best"), ValueError, "lrs must", "'default'", "'grid'"),
    case("training lrs empty", lambda: _training(lrs={}), ValueError, "lrs must", "'sgdm'", "'adam'"),
    case("training lrs nan", lambda: _training(lrs={"sgdm": NAN, "adam": 0.01}), ValueError,
         "lrs[0] must", "finite number > 0"),
    case("training lrs negative", lambda: _training(lrs={"sgdm": 0.01, "adam": -1.0}), ValueError,
         "lrs[1] must", "finite number > 0"),
    case("lr_sweep scale", lambda: experiments.lr_sweep("setting1", "huge", device="cpu"), ValueError,
         "scale must", "'ci'"),
    case("lr_sweep setting", lambda: experiments.lr_sweep("nope", "ci", device="cpu"), ValueError,
         "setting must", "'setting1'"),
    case("lr_sweep device", lambda: experiments.lr_sweep("setting1", "ci", device="tpu"), ValueError,
         "device must", "'cpu'"),
    case("conditioning scale", lambda: experiments.conditioning("setting1", "huge", device="cpu"), ValueError,
         "scale must", "'ci'"),
    case("conditioning steps", lambda: experiments.conditioning("setting1", "ci", steps=0, device="cpu"),
         ValueError, "steps must", ">= 1"),
    case("gradient_noise seed 0.5", lambda: experiments.gradient_noise("setting1", "ci", seed=0.5, device="cpu"),
         TypeError, "seed must", "integer"),
    case("gradient_noise seed -1", lambda: experiments.gradient_noise("setting1", "ci", seed=-1, device="cpu"),
         ValueError, "seed must", ">= 0"),
    case("gradient_noise setting", lambda: experiments.gradient_noise("gaussian9", "ci", device="cpu"),
         ValueError, "setting must", "'setting1'"),
    case("learning_rates lrs name", lambda: experiments.learning_rates("setting1", "ci", lrs="table2"),
         ValueError, "lrs must", "'paper'"),
    # -- a chapter's first cell ----------------------------------------------------------------
    case("parameters scale", lambda: _chapter(scale="huge"), ValueError, "scale must", "'paper'", "'cpu'", "'ci'"),
    case("parameters seed 0.5", lambda: _chapter(seeds=[0.5]), TypeError, "seeds[0] must", "integer"),
    case("parameters seed 'a'", lambda: _chapter(seeds=["a"]), TypeError, "seeds[0] must", "integer"),
    case("parameters seed True", lambda: _chapter(seeds=[True]), TypeError, "seeds[0] must", "integer"),
    case("parameters seeds empty", lambda: _chapter(seeds=[]), ValueError, "seeds must", "non-empty"),
    case("parameters steps=0", lambda: _chapter(steps=0), ValueError, "steps must", ">= 1"),
    case("parameters device=tpu", lambda: _chapter(device="tpu"), ValueError, "device must", "'cpu'"),
    case("parameters device=meta", lambda: _chapter(device="meta"), ValueError, "device", "'cpu'"),
    case("parameters settings", lambda: _chapter(settings=("setting9",)), ValueError,
         "settings must", "'setting1'", "'setting3'"),
    case("parameters settings=None", lambda: _chapter(settings=None), TypeError, "settings", "names"),
]


@pytest.fixture
def empty_results(tmp_path, monkeypatch):
    """A fresh, empty LINTF_RESULTS for one case; checked to be still empty afterwards."""
    root = tmp_path / "results"
    root.mkdir()
    monkeypatch.setenv(store.ENV_VAR, str(root))
    yield root
    left = sorted(p.name for p in root.iterdir())
    assert not left, f"the results store was written to: {left}"


@pytest.fixture
def tripwire(monkeypatch):
    """Make every kind of compute (random draws, the model, the fast path, initialisation) and
    every store write raise :class:`Computed`."""
    def trip(what):
        def tripped(*args, **kwargs):
            raise Computed(f"{what} ran before the bad input was rejected")
        return tripped

    for name in ("randn", "rand", "randint", "_standard_gamma"):
        monkeypatch.setattr(torch, name, trip(f"torch.{name}"))
    monkeypatch.setattr(model, "forward", trip("lintf.compute.model.forward"))
    for name in ("summarize", "loss", "loss_and_grad", "curvature"):  # the engine's hand-written path
        monkeypatch.setattr(fast, name, trip(f"lintf.compute.fast.{name}"))
    monkeypatch.setattr(engine, "initial_params", trip("lintf.compute.engine.initial_params"))
    for method in ("cached", "save", "_write"):
        monkeypatch.setattr(store.ResultStore, method, trip(f"ResultStore.{method}"))
    yield


def _missing(error: BaseException, says) -> list[str]:
    """The strings of ``says`` that the error message lacks."""
    return [s for s in says if s not in str(error)]


@pytest.mark.parametrize("c", CASES)
def test_bad_input_is_rejected_before_compute(c: Case, empty_results, tripwire):
    with pytest.raises(c.error) as info:
        c.call()
    assert type(info.value) in (ValueError, TypeError), f"{c.id}: {type(info.value).__name__}: {info.value}"
    missing = _missing(info.value, c.says)
    assert not missing, f"{c.id}: message {str(info.value)!r} lacks {missing}"


# -- a results directory that is a file ----------------------------------------------------
RESULTS_IS_FILE = [
    pytest.param(lambda: store.results_dir(), id="results_dir"),
    pytest.param(lambda: store.ResultStore(), id="ResultStore()"),
    pytest.param(lambda: _training(), id="experiments.training"),
    pytest.param(lambda: _training(lrs="grid"), id="experiments.training lrs=grid"),
    pytest.param(lambda: experiments.gradient_noise("setting1", "ci", device="cpu"),
                 id="experiments.gradient_noise"),
    pytest.param(lambda: experiments.conditioning("setting1", "ci", steps=3, device="cpu"),
                 id="experiments.conditioning"),
]


@pytest.mark.parametrize("call", RESULTS_IS_FILE)
def test_results_directory_that_is_a_file(call, tmp_path, monkeypatch, tripwire):
    path = tmp_path / "results.txt"
    path.write_bytes(b"not a directory\n")
    monkeypatch.setenv(store.ENV_VAR, str(path))
    with pytest.raises(ValueError) as info:
        call()
    assert "LINTF_RESULTS" in str(info.value) and "directory" in str(info.value)
    assert path.read_bytes() == b"not a directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.txt"]


@pytest.mark.parametrize("call", [
    pytest.param(lambda: _train(), id="engine.train"),
    pytest.param(lambda: _training(), id="experiments.training"),
    pytest.param(lambda: sample_prompts(32, 6, 3), id="sample_prompts"),
    pytest.param(lambda: lintf.predict(*_PQZ()), id="predict"),
    pytest.param(lambda: measure.hessian(MODEL, _params(), torch.zeros(5, 4, 7), torch.zeros(5)), id="hessian"),
    pytest.param(lambda: _noise(), id="gradient_noise"),
])
def test_tripwire_catches_good_input(call, empty_results, tripwire):
    """The check above means something: with good input, the same calls do reach compute."""
    with pytest.raises(Computed):
        call()


def test_at_least_thirty_bad_inputs():
    assert len(CASES) + len(RESULTS_IS_FILE) >= 30


# -- papermill: a chapter's bad parameter fails in its first cell ------------------------------
CHAPTERS = sorted(p.stem for p in BOOK.glob("*.ipynb"))
ONE_CHAPTER = "adaptive_vs_sgd"


def _first_cell_after_parameters(path: Path) -> tuple[int, str]:
    """(index, source) of the first code cell after the one tagged ``parameters``."""
    nb = nbformat.read(path, as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected one cell tagged 'parameters', found {len(tagged)}"
    after = [i for i in range(tagged[0] + 1, len(nb.cells)) if nb.cells[i].cell_type == "code"]
    assert after, f"{path.name}: no code cell after the parameters cell"
    return after[0], nb.cells[after[0]].source


def _run_chapter(name: str, tmp_path: Path, parameters: dict):
    import papermill
    src = BOOK / f"{name}.ipynb"
    index, first = _first_cell_after_parameters(src)
    assert re.search(r"\bparameters\(", first), \
        f"{name}: the first code cell after the parameters cell must call lintf.chapter.parameters(...)"
    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(str(src), str(tmp_path / f"{name}.out.ipynb"), parameters=parameters,
                                   cwd=str(BOOK), kernel_name="python3", progress_bar=False)
    err = info.value
    # papermill puts its injected-parameters cell right after the tagged one: one more before ours
    assert err.cell_index == index + 1, f"{name}: failed in cell {err.cell_index}, not the first after parameters"
    assert err.source == first
    return err


@pytest.mark.slow
@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_rejects_unknown_scale(name, tmp_path, empty_results, monkeypatch):
    monkeypatch.setenv("LINTF_PROGRESS", "0")
    err = _run_chapter(name, tmp_path, {"scale": "huge"})
    assert err.ename == "ValueError"
    assert "scale must" in err.evalue and "'ci'" in err.evalue and "'huge'" in err.evalue


@pytest.mark.slow
@pytest.mark.parametrize("parameters, ename, says", [
    ({"seeds": [0.5]}, "TypeError", ("seeds[0] must", "integer")),
    ({"steps": 0}, "ValueError", ("steps must", ">= 1")),
    ({"device": "tpu"}, "ValueError", ("device must", "'cpu'")),
], ids=["seeds=[0.5]", "steps=0", "device=tpu"])
def test_chapter_rejects_bad_parameter(parameters, ename, says, tmp_path, empty_results, monkeypatch):
    monkeypatch.setenv("LINTF_PROGRESS", "0")
    err = _run_chapter(ONE_CHAPTER, tmp_path, {"scale": "ci", **parameters})
    assert err.ename == ename
    assert all(s in err.evalue for s in says), err.evalue
