"""Determinism on the CPU: one configuration and one set of seeds give bit-identical numbers,
twice in one process and in two fresh Python processes, for the engine, the measurements
(exact Hessian, gradient noise) and an experiment served through the results store.

Numbers are compared by the sha256 of their bytes (:func:`digest`), so that a difference in
the last bit of one value anywhere fails the test.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lintf import experiments, measure, store
from lintf.compute.data import Prompts
from lintf.compute.engine import eval_batch, initial_params, train
from lintf.compute.model import Model
from lintf.compute.settings import Setting

TESTS = Path(__file__).resolve().parent
MODEL, PROMPTS = Model(L=2, d=3), Prompts(n=6, d=3)
CONFIGS = [("sgdm", 0.05), ("adam", 0.01)]
SEEDS = (0, 1)
STEPS, B = 20, 32
TINY = Setting(name="tiny", title="tiny Setting 1", model=MODEL, prompts=PROMPTS,
               lrs={"sgdm": 0.05, "adam": 0.01}, paper_lrs={"sgdm": 0.05, "adam": 0.01}, record_smoothness=True)


def digest(value) -> str:
    """sha256 of a DataFrame (column names, dtypes and every value's bytes), a tensor, or a dict of them."""
    h = hashlib.sha256()
    if isinstance(value, dict):
        for k in sorted(value):
            h.update(f"{k}={digest(value[k])};".encode())
    elif isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    elif isinstance(value, pd.DataFrame):
        h.update(repr(list(value.columns)).encode())
        for col in value.columns:
            x = value[col]
            h.update(str(x.dtype).encode())
            if pd.api.types.is_numeric_dtype(x.dtype) or pd.api.types.is_bool_dtype(x.dtype):
                h.update(np.ascontiguousarray(x.to_numpy()).tobytes())
            else:
                h.update("\0".join(map(str, x)).encode())
    else:
        raise TypeError(f"cannot digest {type(value).__name__}")
    return h.hexdigest()


def engine_and_measures() -> dict[str, str]:
    """Train, then measure the trained runs (exact Hessian) and the initial point (gradient noise)."""
    res = train(MODEL, PROMPTS, CONFIGS, SEEDS, steps=STEPS, batch_size=B, eval_every=5, checkpoint_every=10,
                record_smoothness=True, device="cpu", progress=False)
    Z, y = eval_batch(PROMPTS, B, dtype=torch.float64)
    # two runs, one per optimizer, whole basis in one double backward: the cheap exact Hessian
    params = {k: v[[0, -1]].double() for k, v in res.params_at(STEPS).items()}
    H = measure.hessian(MODEL, params, Z, y, chunk=MODEL.num_params)

    def sample(shape, generator):
        return PROMPTS.sample(shape, generator=generator)

    init = {k: v[0] for k, v in initial_params(MODEL, [SEEDS[0]]).items()}
    noise = measure.gradient_noise(MODEL, init, sample, num_batches=16, batch_size=B, big_batch=256,
                                   generator=torch.Generator().manual_seed(7))
    return {"runs": digest(res.runs), "history": digest(res.history), "checkpoints": digest(res.to_tensors()),
            "hessian": digest(H), "noise": digest(noise)}


def experiment_through_store() -> dict[str, str]:
    """``experiments.training`` into the store at ``$LINTF_RESULTS`` (fresh): its frames, tensors
    and stored files."""
    res = experiments.training(TINY, "ci", seeds=SEEDS, steps=STEPS, device="cpu", progress=False)
    assert not res.from_cache and res.path.parent == store.results_dir()
    manifest = json.loads((res.path / store.MANIFEST).read_text())
    # "meta" holds the wall time of the run, the one number that must differ
    return {"source": store.source_hash(), "key": res.key, "frames": digest({k: v for k, v in res.frames.items() if k != "meta"}),
            "tensors": digest(res.tensors), "files": json.dumps(
                {f: sha for f, sha in manifest["files"].items() if f != "meta.parquet"}, sort_keys=True)}


def everything() -> dict[str, str]:
    return {**engine_and_measures(), **{f"store/{k}": v for k, v in experiment_through_store().items()}}


CHILD = """
import json, sys
sys.path.insert(0, {tests!r})
import test_determinism
print("DIGESTS" + json.dumps(test_determinism.everything()))
"""


def _in_child(root: Path) -> subprocess.Popen:
    env = {**os.environ, "LINTF_PROGRESS": "0", store.ENV_VAR: str(root)}
    code = CHILD.format(tests=str(TESTS))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=str(TESTS.parent))


def _collect(proc: subprocess.Popen) -> dict[str, str]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    line = [x for x in out.splitlines() if x.startswith("DIGESTS")][-1]
    return json.loads(line[len("DIGESTS"):])


@pytest.fixture(scope="module")
def here(tmp_path_factory):
    """Digests computed twice in this process, each time into a fresh store."""
    out = []
    for _ in range(2):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(store.ENV_VAR, str(tmp_path_factory.mktemp("results")))
            out.append(everything())
    return out


def test_same_process_twice_is_bit_identical(here):
    first, second = here
    assert first == second


def test_two_processes_are_bit_identical(here, tmp_path):
    procs = [_in_child(tmp_path / f"child{i}") for i in range(2)]
    first, second = [_collect(p) for p in procs]
    if len({first["store/source"], second["store/source"], here[0]["store/source"]}) > 1:
        pytest.skip("lintf's source was edited while this test ran (the store keys include its hash)")
    assert first == second
    assert first == here[0], {k: (first[k], here[0][k]) for k in first if first[k] != here[0][k]}


def test_digest_sees_one_bit():
    frame = pd.DataFrame({"optimizer": ["adam", "sgdm"], "value": [1.0, 2.0]})
    flipped = frame.assign(value=[1.0, np.nextafter(2.0, 3.0)])
    assert digest(frame) == digest(frame.copy()) != digest(flipped)
    t = torch.tensor([0.0, 1.0])
    assert digest(t) != digest(torch.tensor([-0.0, 1.0]))
