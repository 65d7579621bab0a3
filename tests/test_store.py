"""lintf.store: exact round trips, keys, and the faults it must survive (corruption, SIGKILL, races)."""
import hashlib
import math
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lintf import store
from lintf.compute.store import ResultStore, StoreWarning, compute_hash, config_key, results_dir, source_hash

TESTS = Path(__file__).resolve().parent
MARKED = 1.2345678901234567  # a value whose bytes the corruption test looks for in the parquet


def tidy(seed: int = 0) -> pd.DataFrame:
    """A small tidy result with the awkward values a float store must keep bit for bit."""
    rng = np.random.default_rng(seed)
    steps = 6
    special = [np.nan, np.inf, -np.inf, -0.0, 5e-324, MARKED]
    return pd.DataFrame({
        "setting": pd.Series(["s1"] * steps, dtype="str"),
        "optimizer": pd.Categorical(["adam", "sgdm"] * (steps // 2)),
        "lr": np.full(steps, 0.1 + seed),
        "seed": np.full(steps, seed, dtype=np.int64),
        "step": np.arange(steps, dtype=np.int32),
        "quantity": ["loss"] * steps,
        "diverged": np.arange(steps) % 2 == 0,
        "value": np.where(np.arange(steps) < 3, rng.standard_normal(steps), special),
    })


def visible(root: Path) -> list[str]:
    """Everything in the store except its lock files (temporary folders included)."""
    return sorted(p.name for p in root.iterdir() if p.name != ".locks") if root.exists() else []


def store_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, StoreWarning)]


# -- round trip --------------------------------------------------------------------------------

def test_round_trip_keeps_dtypes_float_bits_and_tensors(tmp_path):
    frames = {"loss": tidy(0), "noise": tidy(1).iloc[::2]}
    base = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tensors = {"P": base.float(), "Q": base, "steps": torch.arange(5), "mask": base > 0,
               "half": base.to(torch.bfloat16), "transposed": base.T, "slice": base[1:3]}
    ResultStore(tmp_path).save("tidy", {"seed": 0}, frames, tensors)

    got = ResultStore(tmp_path).load("tidy", {"seed": 0})
    assert got.from_cache and got.key == config_key("tidy", {"seed": 0})
    assert list(got.frames) == list(frames)
    for name, df in frames.items():
        pd.testing.assert_frame_equal(got.frames[name], df, check_exact=True)
        assert (got.frames[name].dtypes == df.dtypes).all()
        bits = lambda d: d["value"].to_numpy().view(np.uint64)  # noqa: E731
        np.testing.assert_array_equal(bits(got.frames[name]), bits(df))  # nan, -0.0, subnormal
    assert set(got.tensors) == set(tensors)
    for name, t in tensors.items():
        assert got.tensors[name].dtype == t.dtype and torch.equal(got.tensors[name], t)


def test_cached_computes_once_then_loads_the_same(tmp_path):
    calls = []
    compute = lambda: calls.append(1) or ({"loss": tidy(0)}, {"P": torch.ones(2)})  # noqa: E731
    first = ResultStore(tmp_path).cached("tidy", {"seed": 0}, compute)
    second = ResultStore(tmp_path).cached("tidy", {"seed": 0}, compute)
    assert len(calls) == 1 and not first.from_cache and second.from_cache
    pd.testing.assert_frame_equal(first.frames["loss"], second.frames["loss"], check_exact=True)
    assert torch.equal(first.tensors["P"], second.tensors["P"])
    # frames alone (no tensors) are accepted too
    only = ResultStore(tmp_path).cached("tidy", {"seed": 1}, lambda: {"loss": tidy(1)})
    assert only.tensors == {} and ResultStore(tmp_path).load("tidy", {"seed": 1}).tensors == {}


# -- keys ---------------------------------------------------------------------------------------

def test_key_follows_config_exactly():
    key = lambda config, name="run": config_key(name, config)  # noqa: E731
    assert key({"lr": 0.1}) == key({"lr": 0.1})
    assert key({"lr": 0.1}) != key({"lr": math.nextafter(0.1, 1.0)})  # one ulp apart
    assert len({key({"x": 1}), key({"x": 1.0}), key({"x": True}), key({"x": "1"}), key({"x": None})}) == 5
    assert key({"x": 0.0}) != key({"x": -0.0})
    assert key({"x": 0.1}) != key({"x": "0.1"})  # a float's repr is not a string
    assert key({"a": 1, "b": {"c": 2, "d": 3}}) == key({"b": {"d": 3, "c": 2}, "a": 1})  # order-free
    assert key({"seeds": (0, 1)}) == key({"seeds": [0, 1]})
    assert key({"seeds": [0, 1]}) != key({"seeds": [1, 0]})
    assert key({"lr": 0.1}) != key({"lr": 0.1}, name="other")
    assert len(key({})) == 64 and int(key({}), 16) >= 0


def test_key_follows_source_and_stale_results_are_not_served(tmp_path, monkeypatch):
    st = ResultStore(tmp_path)
    st.save("tidy", {"seed": 0}, {"loss": tidy(0)})
    before = config_key("tidy", {"seed": 0})
    monkeypatch.setattr(store, "compute_hash", lambda: "0" * 64)  # "the compute side was edited"
    assert config_key("tidy", {"seed": 0}) != before
    assert st.load("tidy", {"seed": 0}) is None
    monkeypatch.undo()
    assert st.load("tidy", {"seed": 0}) is not None


def test_source_hash_covers_py_files_only(tmp_path, monkeypatch):
    copy = tmp_path / "compute"
    shutil.copytree(Path(store.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert store._hash_tree(copy) == compute_hash()  # path independent
    assert store._hash_tree(Path(store.__file__).parent.parent) == source_hash()  # the whole package

    def reference(root: Path) -> str:  # the definition, spelled out
        h = hashlib.sha256()
        for rel in sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py")):
            data = (root / rel).read_bytes()
            h.update(f"{len(rel.encode())}:{rel}{len(data)}:".encode() + data)
        return h.hexdigest()
    assert store._hash_tree(copy) == reference(copy)

    (copy / "notes.txt").write_text("not code")
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "store.cpython-311.pyc").write_bytes(b"\0")
    assert store._hash_tree(copy) == compute_hash()
    (copy / "store.py").write_text((copy / "store.py").read_text() + "\n# edited\n")
    edited = store._hash_tree(copy)
    assert edited != compute_hash()
    (copy / "store.py").rename(copy / "store2.py")
    assert store._hash_tree(copy) not in (edited, compute_hash())

    calls = []
    monkeypatch.setattr(store, "_hash_tree", lambda d: calls.append(d) or "h")
    store.compute_hash.cache_clear()
    try:
        assert compute_hash() == compute_hash() == "h" and len(calls) == 1  # once per process
    finally:
        monkeypatch.undo()
        store.compute_hash.cache_clear()


# -- argument checks ---------------------------------------------------------------------------

def test_results_dir_from_env_or_home_and_not_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv("LINTF_RESULTS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert results_dir() == tmp_path / ".cache" / "lintf" / "results"
    monkeypatch.setenv("LINTF_RESULTS", str(tmp_path / "mine"))
    assert results_dir() == tmp_path / "mine" and ResultStore().root == tmp_path / "mine"
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("LINTF_RESULTS", str(tmp_path / "file"))
    with pytest.raises(ValueError, match="LINTF_RESULTS"):
        results_dir()
    with pytest.raises(ValueError, match="LINTF_RESULTS"):
        ResultStore()
    with pytest.raises(ValueError, match="file"):
        ResultStore(tmp_path / "file")


@pytest.mark.parametrize("config", [
    {"x": {1, 2}}, {"x": object()}, {"x": b"bytes"}, {"x": np.int64(3)}, {"x": [1, {2}]},
    {"x": {1: "int key"}}, [("x", 1)],
])
def test_unsupported_config_raises_type_error_before_anything(tmp_path, config):
    with pytest.raises(TypeError):
        config_key("run", config)
    called = []
    with pytest.raises(TypeError):
        ResultStore(tmp_path).cached("run", config, lambda: called.append(1) or {"loss": tidy()})
    assert not called and visible(tmp_path) == []


@pytest.mark.parametrize("name", ["", "../up", "a/b", ".hidden", "sp ace"])
def test_bad_names_are_rejected(tmp_path, name):
    with pytest.raises(ValueError):
        config_key(name, {})
    with pytest.raises(ValueError):
        ResultStore(tmp_path).save("run", {}, {name: tidy()})


# -- faults --------------------------------------------------------------------------------------

def failing():
    raise RuntimeError("compute failed")


@pytest.mark.parametrize("compute", [
    failing,
    lambda: [tidy()],                                                  # not a dict of frames
    lambda: ({"loss": tidy()}, {"P": [1.0]}),                          # not a tensor
    lambda: {"loss": tidy(), "bad": pd.DataFrame({"x": [1, "a"]})},  # parquet refuses mixed objects
], ids=["raises", "not-frames", "not-tensors", "unwritable"])
def test_failed_compute_or_write_leaves_nothing(tmp_path, compute):
    with pytest.raises(Exception):
        ResultStore(tmp_path).cached("run", {"seed": 0}, compute)
    assert visible(tmp_path) == []  # no result folder, no temporary folder
    assert ResultStore(tmp_path).load("run", {"seed": 0}) is None


def flip_marked_byte(path: Path) -> None:
    """Change one stored float by one ulp: parquet still reads, only the checksum can tell."""
    data = bytearray(path.read_bytes())
    at = data.find(struct.pack("<d", MARKED))
    assert at >= 0
    data[at] ^= 1
    path.write_bytes(data)


@pytest.mark.parametrize("file, damage", [
    ("loss.parquet", "flip"), ("loss.parquet", "truncate"), ("tensors.pt", "truncate"),
    ("tensors.pt", "delete"), ("manifest.json", "truncate"),
])
def test_corrupted_result_is_reported_in_one_line_and_recomputed(tmp_path, file, damage):
    st = ResultStore(tmp_path)
    calls = []
    compute = lambda: calls.append(1) or ({"loss": tidy(0)}, {"P": torch.arange(6.0)})  # noqa: E731
    path = st.cached("tidy", {"seed": 0}, compute).path / file
    if damage == "flip":
        flip_marked_byte(path)
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.unlink()

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        again = st.cached("tidy", {"seed": 0}, compute)
    [message] = store_warnings(record)
    assert "\n" not in message and "'tidy'" in message and file in message
    assert len(calls) == 2 and not again.from_cache
    pd.testing.assert_frame_equal(again.frames["loss"], tidy(0), check_exact=True)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert st.load("tidy", {"seed": 0}) is not None  # repaired in place


def run_child(script: str, *args, **kwargs) -> subprocess.Popen:
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r})\n" + textwrap.dedent(script)
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], **kwargs)


SWEEP = """
    import pathlib, time
    from lintf import store
    from test_store import tidy
    root, marker = sys.argv[1], pathlib.Path(sys.argv[2])
    write = store._write_file
    def stalling_write(path, data):  # stall in the middle of saving seed 1, after its parquet
        sha = write(path, data)
        if seed == 1 and path.name == "loss.parquet":
            marker.touch()
            time.sleep(120)
        return sha
    store._write_file = stalling_write
    for seed in (0, 1, 2):
        store.ResultStore(root).cached("sweep", {"seed": seed}, lambda: {"loss": tidy(seed)})
"""


def test_sigkill_mid_save_leaves_store_readable_and_only_missing_keys_recomputed(tmp_path):
    root, marker = tmp_path / "store", tmp_path / "stalled"
    child = run_child(SWEEP, root, marker)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, "the sweep ended before stalling"
            assert time.monotonic() < deadline, "the sweep never reached seed 1"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert any(n.startswith(".tmp-") for n in visible(root))  # it was killed mid-write

    st = ResultStore(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the half-written seed 1 is simply missing, not "corrupt"
        pd.testing.assert_frame_equal(st.load("sweep", {"seed": 0}).frames["loss"], tidy(0))
        assert st.load("sweep", {"seed": 1}) is None and st.load("sweep", {"seed": 2}) is None
        computed = []
        for seed in (0, 1, 2):
            got = st.cached("sweep", {"seed": seed}, lambda: computed.append(seed) or {"loss": tidy(seed)})
            pd.testing.assert_frame_equal(got.frames["loss"], tidy(seed), check_exact=True)
    assert computed == [1, 2]
    assert not any(n.startswith(".tmp-") for n in visible(root))  # leftovers swept


RACER = """
    import pathlib, time
    from lintf.compute.store import ResultStore
    from test_store import tidy
    root, work, i = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
    def compute():
        with open(work / "calls", "a") as f:
            f.write(i + "\\n")
        time.sleep(1.0)  # long enough for the other process to arrive mid-compute
        return {"loss": tidy(0)}
    (work / f"ready{i}").touch()
    while not (work / "go").exists():
        time.sleep(0.005)
    got = ResultStore(root).cached("race", {"seed": 0}, compute)
    got.frames["loss"].to_pickle(work / f"frames{i}.pkl")
    (work / f"cached{i}").write_text(str(got.from_cache))
    # skip interpreter teardown: torch and pyarrow worker threads occasionally abort it
    # ("terminate called without an active exception", seen once in ~20 runs), which is not
    # what this test is about
    import os
    os._exit(0)
"""


def test_two_processes_on_one_key_compute_once_and_agree(tmp_path):
    root, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    children = [run_child(RACER, root, work, i) for i in (0, 1)]
    try:
        deadline = time.monotonic() + 120
        while not all((work / f"ready{i}").exists() for i in (0, 1)):
            assert all(c.poll() is None for c in children) and time.monotonic() < deadline
            time.sleep(0.01)
        (work / "go").touch()  # start both at once
        assert [c.wait(timeout=120) for c in children] == [0, 0]
    finally:
        for c in children:
            c.kill()
            c.wait()
    assert len((work / "calls").read_text().split()) == 1
    assert sorted((work / f"cached{i}").read_text() for i in (0, 1)) == ["False", "True"]
    a, b = (pd.read_pickle(work / f"frames{i}.pkl") for i in (0, 1))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    pd.testing.assert_frame_equal(a, tidy(0), check_exact=True)


def test_clear_removes_all_or_one_name_or_only_stale(tmp_path, monkeypatch):
    st = ResultStore(tmp_path)
    st.save("a", {"seed": 0}, {"loss": tidy()})
    st.save("a-b", {"seed": 0}, {"loss": tidy()})  # a name that extends another one
    (tmp_path / ".tmp-a-0123456789abcdef-x1").mkdir()  # left by a killed writer
    assert st.clear("a") == 1 and st.load("a", {"seed": 0}) is None
    assert st.load("a-b", {"seed": 0}) is not None
    assert visible(tmp_path) == [f"a-b-{config_key('a-b', {'seed': 0})[:16]}"]  # leftover swept
    assert st.clear(stale_only=True) == 0
    monkeypatch.setattr(store, "compute_hash", lambda: "0" * 64)
    assert st.clear(stale_only=True) == 1 and visible(tmp_path) == []
    assert ResultStore(tmp_path / "absent").clear() == 0
