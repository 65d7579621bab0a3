"""``python -m lintf``: plan, compute (resumable after kill -9), pack/unpack, and bad input."""
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import re

import pandas as pd
import pytest

import lintf.plan as P
from lintf.compute.settings import get_scale
from lintf.compute import store as S
from lintf.compute.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]


def lintf(*args, store, timeout=300, env=None):
    """Run ``python -m lintf ARGS`` with the store at ``store`` (and the calibration cache beside
    it, never the user's); the CompletedProcess."""
    environ = {**os.environ, "LINTF_RESULTS": str(store), "LINTF_PROGRESS": "0",
               "XDG_CACHE_HOME": str(Path(store).parent / "xdg-cache"), **(env or {})}
    environ.pop("LINTF_READ_ONLY", None)
    return subprocess.run([sys.executable, "-m", "lintf", *args], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=timeout)


def one_line_error(proc, *words):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("args, words", [
    (["plan", "--scale", "huge"], ["--scale", "paper, cpu, ci", "'huge'"]),
    (["compute", "--scale", "ci", "--workers", "0"], ["--workers", ">= 1"]),
    (["compute", "--scale", "ci", "--workers", "two"], ["--workers", ">= 1"]),
    (["plan", "--scale", "ci", "--only", "smoothness,nope"], ["--only", "adaptive_vs_sgd", "'smoothness,nope'"]),
    (["compute", "--scale", "ci", "--device", "tpu"], ["--device", "'cpu'", "'tpu'"]),
    (["compute", "--scale", "ci", "--workers", "1", "--scheduler", "tcp://127.0.0.1:9"], ["not allowed"]),
    (["pack", "--scale", "ci", "--part-size", "12Q", "x.tar"], ["--part-size", "K, M or G"]),
    (["unpack", "missing.tar"], ["missing.tar", "no such pack"]),
    (["frobnicate"], ["plan", "compute", "pack", "unpack"]),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, words):
    store = tmp_path / "store"
    one_line_error(lintf(*args, store=store), *words)
    assert not store.exists()


def test_cuda_without_cuda_is_refused(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    one_line_error(lintf("compute", "--scale", "ci", "--device", "cuda", store=tmp_path / "s"), "--device", "CUDA")


def test_refused_scheduler_fails_at_once(tmp_path):
    """Nothing listens: one line within 5 s (no wait for --connect-timeout), before torch loads."""
    start = time.monotonic()
    proc = lintf("compute", "--scale", "ci", "--only", "smoothness", "--scheduler", "tcp://127.0.0.1:1",
                 store=tmp_path / "s", timeout=60)
    one_line_error(proc, "--scheduler", "tcp://127.0.0.1:1", "connection refused")
    assert time.monotonic() - start < 5
    assert not (tmp_path / "s").exists()


def test_silent_scheduler_fails_after_the_connect_timeout(tmp_path):
    """Something accepts the connection but sends no Dask handshake (Dask's client would wait for
    it forever): one line after --connect-timeout."""
    import socket
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        proc = lintf("compute", "--scale", "ci", "--only", "smoothness", "--scheduler", address,
                     "--connect-timeout", "3", store=tmp_path / "s", timeout=60)
    one_line_error(proc, "--scheduler", address, "3 s")
    assert 3 <= time.monotonic() - start < 40
    assert not (tmp_path / "s").exists()


ESTIMATE = re.compile(r"^(?P<name>\S+)\s+(?P<setting>\S+)\s+(?P<iterations>[\d,]+) (?P<unit>\w+)\s+"
                      r"(?P<state>stored|missing)\s+(?P<estimate>.+)$")


def test_plan_lists_experiments_and_totals(tmp_path):
    proc = lintf("plan", "--scale", "ci", "--only", "smoothness", store=tmp_path / "s")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    rows = [ESTIMATE.match(line) for line in lines if line.startswith("training/")]
    assert [r["name"] for r in rows] == ["training/setting1", "training/setting2", "training/setting3"]
    for r in rows:
        assert r["setting"] == r["name"].split("/")[1] and r["iterations"] == "720" and r["unit"] == "train"
        assert r["state"] == "missing" and re.fullmatch(r"(\d+\.\d s|\d+ s|\d+ min \d\d s|\d+ h \d\d min)",
                                                        r["estimate"].strip()), r["estimate"]
    assert any(line.strip().startswith("smoothness") and "3 experiments,   3 missing" in line for line in lines)
    assert lines[-1] == "missing: 3 of 3 experiments"
    assert not (tmp_path / "s").exists()


def test_plan_explains_empty_rows_and_totals_only_the_chapters_asked(tmp_path):
    proc = lintf("plan", "--scale", "ci", "--only", "depth", "--no-estimate", store=tmp_path / "s")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    row = next(line for line in lines if line.startswith("training/depth2/stable "))
    assert row.endswith("(counted in stable/depth2)"), row               # its runs are the stable search's
    assert any(line.startswith("conditioning/depth8/authors/table/stable ") and "hessian_max_params" in line
               for line in lines)
    totals = lines[lines.index(next(line for line in lines if line.startswith("per chapter"))) + 1:-1]
    assert [t.split()[0] for t in totals] == ["depth", "all"], totals    # not heavy_tails, scorecard, ...


def test_plan_calibrates_once_per_machine(tmp_path):
    """The first plan measures (in at most 10 s) and caches; the next reads the cache;
    --recalibrate measures again."""
    store = tmp_path / "s"
    cache = tmp_path / "xdg-cache" / "lintf" / "calibration.json"
    first = lintf("plan", "--scale", "ci", "--only", "smoothness", store=store)
    assert first.returncode == 0, first.stderr
    seconds = float(re.search(r"calibrated here in ([\d.]+) s", first.stdout).group(1))
    assert seconds < 10 and cache.is_file()
    (key,) = json.loads(cache.read_text())["entries"]
    assert set(json.loads(key)) == {"host", "device", "torch", "compute_hash", "scale"} and '"ci"' in key
    again = lintf("plan", "--scale", "ci", "--only", "smoothness", store=store)
    assert "calibration cached" in again.stdout
    assert [ln for ln in again.stdout.splitlines() if ln.startswith("training/")] == \
        [ln for ln in first.stdout.splitlines() if ln.startswith("training/")]
    fresh = lintf("plan", "--scale", "ci", "--only", "smoothness", "--recalibrate", store=store)
    assert "calibrated here in" in fresh.stdout
    assert not store.exists()


def test_help_imports_neither_torch_nor_pandas(tmp_path):
    """``python -m lintf --help`` (and a subcommand's) answers without the seconds torch takes."""
    for args in (["--help"], ["plan", "--help"], ["compute", "--help"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "lintf", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "usage: python -m lintf" in proc.stdout, proc.stderr[-2000:]
        loaded = {ln.split("|")[-1].strip() for ln in proc.stderr.splitlines() if ln.startswith("import time:")}
        assert not loaded & {"torch", "pandas", "lintf.plan", "lintf.compute.settings"}, args


def test_pack_of_nothing_stored_is_an_error(tmp_path):
    pack = tmp_path / "ci.tar"
    line = one_line_error(lintf("pack", "--scale", "ci", str(pack), store=tmp_path / "s"), "nothing to pack",
                          "scale ci", "python -m lintf compute --scale ci")
    assert not pack.exists() and not list(tmp_path.glob("ci.tar*")), line
    assert not (tmp_path / "s").exists()


def _entries(store: Path) -> list:
    return sorted(p.name for p in store.iterdir() if not p.name.startswith(".")) if store.exists() else []


def test_kill_9_then_resume_computes_only_what_is_missing(tmp_path):
    store = tmp_path / "s"
    env = {**os.environ, "LINTF_RESULTS": str(store), "LINTF_PROGRESS": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "lintf", "compute", "--scale", "ci", "--only", "depth"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # the first experiment (the gradient noise of L=2 at 6 seeds) is 6 entries: kill in the next one
    deadline = time.monotonic() + 240
    while len(_entries(store)) < 7 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "compute ended before the kill"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    done = _entries(store)
    assert done, "nothing was stored before the kill"
    before = lintf("plan", "--scale", "ci", "--only", "depth", "--no-estimate", store=store)
    missing, total = map(int, before.stdout.strip().splitlines()[-1].split()[1::2])
    assert 0 < missing < total
    again = lintf("compute", "--scale", "ci", "--only", "depth", store=store)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1].startswith(f"computed {missing}, reused {total - missing}, failed 0")
    assert set(done) <= set(_entries(store))


@pytest.fixture(scope="module")
def computed(tmp_path_factory):
    """A store holding the smoothness chapter's experiments at ci scale."""
    store = tmp_path_factory.mktemp("computed") / "store"
    proc = lintf("compute", "--scale", "ci", "--only", "smoothness", store=store)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("computed 3, reused 0, failed 0, wall time")
    assert lines[0].startswith("seconds per experiment (the 3 slowest of 3 computed;") and len(lines) == 5
    # no terminal: one line per finished experiment on standard error, with the time so far and left
    progress = [ln for ln in proc.stderr.splitlines() if ln.startswith("lintf compute: ")]
    assert progress[0] == "lintf compute: 3 of 3 experiments to compute at scale ci in this process (0 stored)"
    assert [ln.split()[2] for ln in progress[1:]] == ["1/3", "2/3", "3/3"], progress
    assert all(" so far, about " in ln and ln.endswith(" left") for ln in progress[1:3]), progress
    return store


def _frames(store):
    sc = get_scale("ci")
    return {e.name: P.call(e, sc, store=ResultStore(store), progress=False, cached_only=True).frames
            for e in P.plan(sc, only="smoothness")}


def test_pack_unpack_round_trip(computed, tmp_path):
    pack = tmp_path / "ci.tar"
    proc = lintf("pack", "--scale", "ci", "--only", "smoothness", str(pack), store=computed)
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(pack) as tar:
        manifest = json.load(tar.extractfile("lintf-pack.json"))
    assert manifest["format"] == "lintf-pack" and manifest["scale"] == "ci" and len(manifest["entries"]) == 3
    entry = manifest["entries"][0]
    for field in ("key", "experiments", "settings", "scale", "files", "source_hash", "torch", "cuda", "device",
                  "device_name", "precision", "created", "host"):
        assert field in entry
    assert "manifest.json" in entry["files"] and entry["experiments"] == ["training/setting1"]
    other = tmp_path / "other"
    proc = lintf("unpack", str(pack), store=other)
    assert proc.returncode == 0, proc.stderr
    assert _entries(other) == _entries(computed)
    a, b = _frames(computed), _frames(other)
    for name in a:
        for k in a[name]:
            pd.testing.assert_frame_equal(a[name][k], b[name][k], check_exact=True)
    assert "0 written, 3 already stored" in lintf("unpack", str(pack), store=other).stdout


def test_pack_in_parts(computed, tmp_path):
    pack = tmp_path / "ci.tar"
    proc = lintf("pack", "--scale", "ci", "--only", "smoothness", "--part-size", "64K", str(pack), store=computed)
    assert proc.returncode == 0, proc.stderr
    parts = sorted(tmp_path.glob("ci.tar.*"))
    assert len(parts) > 1 and not pack.exists()
    assert [p.name for p in parts] == [f"ci.tar.{i:03d}" for i in range(len(parts))]
    assert all(p.stat().st_size <= 64 * 1024 for p in parts)
    other = tmp_path / "other"
    assert lintf("unpack", str(pack), store=other).returncode == 0
    assert _entries(other) == _entries(computed)


def _rewrite(src: Path, dst: Path, change):
    """Copy the tar ``src`` to ``dst`` with ``change(name, data) -> data`` applied to each member."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for info in tin:
            data = change(info.name, tin.extractfile(info).read())
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))


def test_unpack_refuses_damaged_and_foreign_packs_whole(computed, tmp_path):
    pack = tmp_path / "ci.tar"
    assert lintf("pack", "--scale", "ci", "--only", "smoothness", str(pack), store=computed).returncode == 0
    with tarfile.open(pack) as tar:
        names = [m.name for m in tar if m.name.endswith("history.parquet")]
    last = names[-1]
    folder = last.split("/")[1]

    # a flipped byte in the last entry: nothing is written, not even the entries before it
    flipped = tmp_path / "flipped.tar"
    _rewrite(pack, flipped, lambda n, d: d[:100] + bytes([d[100] ^ 1]) + d[101:] if n == last else d)
    store = tmp_path / "s1"
    line = one_line_error(lintf("unpack", str(flipped), store=store), str(flipped), folder, "sha256")
    assert "history.parquet" in line and not store.exists()

    # the same byte flipped in place in the raw file (the tar's own checks do not see it)
    raw = bytearray(pack.read_bytes())
    with tarfile.open(pack) as tar:
        offset = tar.getmember(last).offset_data
    raw[offset + 100] ^= 1
    (tmp_path / "raw.tar").write_bytes(bytes(raw))
    one_line_error(lintf("unpack", str(tmp_path / "raw.tar"), store=store), folder)
    assert not store.exists()

    def made_by(field):
        """The pack with its manifest's ``field`` (a source hash) made another's."""
        def rewrite(name, data):
            if name != "lintf-pack.json":
                return data
            return json.dumps({**json.loads(data), field: "0" * 64}).encode()
        _rewrite(pack, tmp_path / f"{field}.tar", rewrite)
        return str(tmp_path / f"{field}.tar")

    # a pack of another compute source: refused, naming the compute hash expected
    one_line_error(lintf("unpack", made_by("compute_hash"), store=store), "another lintf compute source",
                   S.compute_hash()[:12])
    assert not store.exists()
    # made before an edit of the book side only (another package hash, the same compute hash): accepted
    assert lintf("unpack", made_by("source_hash"), store=tmp_path / "s2").returncode == 0

    # not a lintf pack; a truncated one
    with tarfile.open(tmp_path / "other.tar", "w") as tar:
        tar.add(__file__, arcname="x.py")
    one_line_error(lintf("unpack", str(tmp_path / "other.tar"), store=store), "not a lintf pack")
    (tmp_path / "cut.tar").write_bytes(pack.read_bytes()[: pack.stat().st_size // 2])
    one_line_error(lintf("unpack", str(tmp_path / "cut.tar"), store=store), "cut.tar")
    assert not store.exists()


def test_small_plan_on_workers_gets_a_hint_and_a_quiet_log(tmp_path):
    """``--workers 2`` on three small experiments: the same results, one line per experiment,
    a one-line hint that one process is as fast, and none of Dask's warnings (the dashboard's
    port 8787 taken, a worker killed at shutdown)."""
    import socket
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 8787))                  # another cluster's dashboard port: no warning
        taken.listen()
    except OSError:
        pass                                             # already taken: the same situation
    try:
        proc = lintf("compute", "--scale", "ci", "--only", "smoothness", "--workers", "2", store=tmp_path / "s")
    finally:
        taken.close()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("computed 3, reused 0, failed 0")
    err = proc.stderr.splitlines()
    assert err[0] == "lintf compute: 3 of 3 experiments to compute at scale ci on 2 Dask workers (0 stored)", err
    assert len([ln for ln in err if re.match(r"lintf compute: \d/3 ", ln)]) == 3, err
    hints = [ln for ln in err if ln.startswith("hint: ")]
    assert len(hints) == 1 and "leave out --workers" in hints[0], err
    others = [ln for ln in err if not ln.startswith(("lintf compute: ", "hint: "))]
    assert not others, others                            # no "Port 8787 is already in use", no "still alive"
