"""Save, reload and cache experiment results, keyed by configuration and by the source of the
compute side of lintf (:func:`compute_hash`): an edit to the book side never invalidates a result.

A result is a dict of tidy pandas DataFrames (one row per setting, optimizer, lr, seed, step,
quantity, with a ``value``) plus, optionally, a dict of torch tensors (parameter checkpoints).
It is stored under ``<root>/<name>-<key[:16]>/`` as one ``<frame>.parquet`` per frame, a
``tensors.pt`` and a ``manifest.json`` that lists the sha256 of every other file.

Faults this module is built to survive:

- a writer killed halfway: everything is written into a hidden temporary sibling folder,
  fsynced, and renamed into place, so a result folder is either complete or absent;
- bit rot or truncation: every file is checked against the manifest's sha256 on load, and a
  bad result is reported in one line and treated as missing, so :meth:`ResultStore.cached`
  recomputes it;
- two processes asking for the same result: a file lock per key serialises
  check-compute-save, so the second one waits and then loads what the first one saved.
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import uuid
import warnings
from importlib import metadata
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from filelock import FileLock

ENV_VAR = "LINTF_RESULTS"
MANIFEST = "manifest.json"
TENSORS = "tensors.pt"
_COMPUTE_DIR = Path(__file__).resolve().parent   # lintf/compute: what a result's key holds
_PACKAGE_DIR = _COMPUTE_DIR.parent                # lintf: recorded in each manifest, for provenance
# Names become file and folder names: no separators, no leading dot (hidden entries are ours).
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_TMP = ".tmp-"      # prefix of half-written (or being-replaced) result folders
_LOCKS = ".locks"   # lock files live apart so that a failed compute leaves no visible trace


class StoreWarning(UserWarning):
    """A stored result was unreadable (truncated, corrupted, incomplete) and is treated as missing."""


@dataclasses.dataclass(frozen=True)
class Result:
    """One stored or freshly computed result.

    ``frames``: name -> tidy DataFrame; ``tensors``: name -> CPU tensor (empty if none were
    saved); ``key``: the full config key (64 hex digits); ``path``: its folder in the store;
    ``from_cache``: True when it was loaded rather than computed by this call.
    """
    frames: dict[str, pd.DataFrame]
    tensors: dict[str, torch.Tensor]
    key: str
    path: Path
    from_cache: bool

    def __repr__(self) -> str:
        """One line: the frames' shapes, how many tensors, the key's start (never the data)."""
        frames = ", ".join(f"{k} {v.shape[0]}x{v.shape[1]}" for k, v in self.frames.items())
        return (f"Result(frames: {frames}; {len(self.tensors)} tensors; key {self.key[:12]}...; "
                f"from_cache={self.from_cache}; path {str(self.path)!r})")


def results_dir() -> Path:
    """Default store root: ``$LINTF_RESULTS`` if set, else ``~/.cache/lintf/results``.

    Raises ``ValueError`` if that path exists and is not a directory. It is not created here.
    """
    raw = os.environ.get(ENV_VAR)
    path = Path(raw).expanduser() if raw else Path.home() / ".cache" / "lintf" / "results"
    _check_root(path, f"{ENV_VAR} ({path})" if raw else str(path))
    return path


def _check_root(path: Path, what: str) -> None:
    if path.exists() and not path.is_dir():
        raise ValueError(f"the results directory {what} exists and is not a directory; "
                         f"set {ENV_VAR} (or pass root=) to a directory")


def _hash_tree(package_dir: Path) -> str:
    """sha256 over every ``*.py`` below ``package_dir``: sorted relative paths and contents."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py"), key=lambda p: p.relative_to(package_dir).as_posix()):
        rel, data = path.relative_to(package_dir).as_posix().encode(), path.read_bytes()
        # Length prefixes keep (path, content) boundaries unambiguous.
        digest.update(b"%d:%s%d:" % (len(rel), rel, len(data)))
        digest.update(data)
    return digest.hexdigest()


@functools.cache
def compute_hash() -> str:
    """sha256 (64 hex digits) of the compute side's source (every ``*.py`` of
    :mod:`lintf.compute`), computed once per process.

    Part of every config key, so that an edit to the code that makes the numbers never serves
    numbers from older code, while an edit to the book side (a caption, a verdict's wording, a
    plot) leaves every stored result valid: the book side cannot change a stored number (a test
    holds that no compute-side module imports it)."""
    return _hash_tree(_COMPUTE_DIR)


@functools.cache
def source_hash() -> str:
    """sha256 (64 hex digits) of the whole lintf package's source, computed once per process:
    recorded in each manifest for provenance, never part of a key (:func:`compute_hash` is)."""
    return _hash_tree(_PACKAGE_DIR)


def _canonical(value, where: str):
    """``value`` as plain JSON data; floats keep their exact bits through ``repr``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        # Tagged so that 1 and 1.0 differ, and repr so that every bit (and -0.0, nan, inf) survives.
        return {"float": repr(float(value))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{where} keys must be strings, got {bad[0]!r}")
        return {"dict": {k: _canonical(v, f"{where}[{k!r}]") for k, v in value.items()}}
    raise TypeError(f"{where} holds an unsupported value {value!r} of type {type(value).__name__}; "
                    "accepted: str, int, float, bool, None, and lists, tuples, dicts of them")


def _check_name(what: str, name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a string, got {name!r}")
    if not _NAME.fullmatch(name):
        raise ValueError(f"{what} must match {_NAME.pattern} (it becomes a file name), got {name!r}")
    return name


def config_key(name: str, config: dict) -> str:
    """Stable sha256 key (64 hex digits) of ``name``, ``config`` and :func:`compute_hash`.

    ``config`` maps strings to str, int, float, bool, None or lists / tuples / dicts of them
    (a tuple and a list with the same items give the same key; dict order does not matter).
    Raises ``TypeError`` for anything else.
    """
    _check_name("name", name)
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {config!r}")
    payload = {"name": name, "config": _canonical(config, "config"), "compute_hash": compute_hash()}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _check_frames(frames) -> dict[str, pd.DataFrame]:
    if not isinstance(frames, dict):
        raise TypeError(f"frames must be a dict name -> pandas.DataFrame, got {type(frames).__name__}")
    for k, v in frames.items():
        _check_name("frame name", k)
        if not isinstance(v, pd.DataFrame):
            raise TypeError(f"frames[{k!r}] must be a pandas.DataFrame, got {type(v).__name__}")
    return frames


def _check_tensors(tensors) -> dict[str, torch.Tensor]:
    if tensors is None:
        return {}
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors must be None or a dict name -> torch.Tensor, got {type(tensors).__name__}")
    for k, v in tensors.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise TypeError(f"tensors must map strings to torch.Tensor, got {k!r}: {type(v).__name__}")
    return tensors


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> str:
    """Write ``data`` durably to ``path``; return its sha256."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return hashlib.sha256(data).hexdigest()


def _bare(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without its ``attrs`` (pandas writes them into the parquet file: a frame derived
    from stored ones would carry their provenance, and its bytes the time they were made)."""
    if not frame.attrs:
        return frame
    frame = frame.copy(deep=False)
    frame.attrs = {}
    return frame


def _lintf_version() -> str:
    try:
        return metadata.version("lintf")
    except metadata.PackageNotFoundError:
        return "unknown"


def environment(device: str = "cpu") -> dict:
    """Where a result is computed, for its manifest: ``host``, ``torch`` and ``cuda`` versions,
    ``device`` (``"cpu"`` or ``"cuda"``), ``device_name`` (the GPU's name, else the CPU's) and
    the ``precision`` flags in force (:func:`lintf.compute.engine.precision_flags`)."""
    import platform
    import socket

    from .engine import precision_flags
    device = str(device).split(":")[0]
    if device == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name()
    else:
        name = platform.processor() or platform.machine() or "cpu"
    return {"host": socket.gethostname(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "device": device, "device_name": name, "precision": precision_flags(device)}


def provenance(result: "Result") -> dict:
    """The provenance of a stored ``result`` from its manifest: ``kind``, ``created`` (ISO UTC),
    ``host``, ``device``, ``device_name``, ``compute_hash`` (the compute side's source, part of
    the key), ``source_hash`` (the whole package's), ``torch``, ``cuda``, ``precision`` (absent
    fields of older manifests are ``None``)."""
    try:
        manifest = json.loads((Path(result.path) / MANIFEST).read_bytes())
    except (OSError, ValueError):
        manifest = {}
    keys = ("created", "host", "device", "device_name", "compute_hash", "source_hash", "torch", "cuda", "precision")
    return {"kind": manifest.get("name"), **{k: manifest.get(k) for k in keys}}


FUNCTIONS = {"training": "training", "sweep": "lr_sweep", "conditioning": "conditioning",
             "curve": "batch_size_curve", "noise": "gradient_noise", "precision": "precision_pair"}
"""The :mod:`lintf.compute.experiments` function that makes each kind of stored result."""


def provenance_sentence(records) -> str:
    """One caption sentence from provenance records (:func:`provenance` dicts, with ``scale``),
    e.g. ``"Computed at scale ci on cpu (host, 2026-12-04 16:40 UTC), lintf compute source 1a2b3c4d,
    by lintf.compute.experiments.training."``; several records: their distinct values joined,
    the time span of their creation."""
    records = [r for r in (records or []) if r]
    if not records:
        return ""

    def distinct(field, fmt=str):
        return ", ".join(dict.fromkeys(fmt(r[field]) for r in records if r.get(field)))

    times = sorted(r["created"] for r in records if r.get("created"))
    when = [datetime.datetime.fromisoformat(t).astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            for t in (times[0], times[-1])] if times else []
    span = (when[0] if when[0] == when[1] else f"{when[0]} to {when[1]}") if when else "time unknown"
    funcs = distinct("kind", lambda k: f"lintf.compute.experiments.{FUNCTIONS.get(k, k)}")
    return (f"Computed at scale {distinct('scale') or 'unknown'} on {distinct('device') or 'unknown device'} "
            f"({distinct('host') or 'host unknown'}, {span}), lintf compute source "
            f"{distinct('compute_hash', lambda h: h[:8]) or 'unknown'}"
            f", by {funcs}.")


class ResultStore:
    """Results on disk, one folder per (name, config, compute source) key.

    ``root``: the store's directory (default :func:`results_dir`); created on first save.
    Raises ``ValueError`` if it exists and is not a directory.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        if root is None:
            self.root = results_dir()
        else:
            self.root = Path(root).expanduser()
            _check_root(self.root, str(self.root))

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    def _folder(self, name: str, key: str) -> Path:
        return self.root / f"{name}-{key[:16]}"

    def _lock(self, folder: Path) -> FileLock:
        (self.root / _LOCKS).mkdir(parents=True, exist_ok=True)
        return FileLock(self.root / _LOCKS / f"{folder.name}.lock")

    # -- reading ---------------------------------------------------------------------------
    def load(self, name: str, config: dict) -> Result | None:
        """The stored result for ``(name, config)``, or ``None`` if it is missing or unreadable.

        Every file is checked against its sha256 first; an unreadable result is reported with
        one :class:`StoreWarning` line naming the result and the file. Tensors come back on CPU.
        """
        key = config_key(name, config)
        return self._read(self._folder(name, key), name, key)

    def _read(self, folder: Path, name: str, key: str) -> Result | None:
        if not folder.is_dir():
            return None
        file = MANIFEST  # the file being checked, named in the report
        try:
            manifest = json.loads((folder / file).read_bytes())
            if manifest["key"] != key:
                raise ValueError(f"belongs to another key, {manifest['key']!r}")
            blobs = {}
            for file, sha in manifest["files"].items():
                blobs[file] = (folder / file).read_bytes()
                if hashlib.sha256(blobs[file]).hexdigest() != sha:
                    raise ValueError("fails its sha256 check (truncated or corrupted)")
            frames = {}
            for frame in manifest["frames"]:
                file = f"{frame}.parquet"
                frames[frame] = pd.read_parquet(io.BytesIO(blobs[file]))
            file = TENSORS
            tensors = torch.load(io.BytesIO(blobs[file]), weights_only=True) if file in blobs else {}
        except Exception as error:  # any fault means "not stored"; the caller recomputes
            reason = " ".join(f"{type(error).__name__}: {error}".split())  # one line, always
            warnings.warn(f"stored result {name!r} in {folder} is unreadable and treated as missing: "
                          f"{file}: {reason}", StoreWarning, stacklevel=3)
            return None
        return Result(frames, tensors, key, folder, from_cache=True)

    # -- writing ---------------------------------------------------------------------------
    def save(self, name: str, config: dict, frames: dict[str, pd.DataFrame],
             tensors: dict[str, torch.Tensor] | None = None) -> str:
        """Store ``frames`` (one parquet each) and ``tensors`` (one ``tensors.pt``) atomically.

        Replaces any result already stored under the same key. Returns the key.
        """
        key = config_key(name, config)
        frames, tensors = _check_frames(frames), _check_tensors(tensors)
        folder = self._folder(name, key)
        with self._lock(folder):
            self._write(folder, name, key, config, frames, tensors)
        return key

    def _write(self, folder, name, key, config, frames, tensors) -> None:
        """Write into a temporary sibling, fsync, rename into place. Caller holds the key's lock."""
        self._sweep_tmp(folder)
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP}{folder.name}-", dir=self.root))
        try:
            files = {f"{f}.parquet": _write_file(tmp / f"{f}.parquet", _bare(df).to_parquet(None))
                     for f, df in frames.items()}
            if tensors:
                buffer = io.BytesIO()
                # clone: a view would otherwise drag its whole storage onto disk
                torch.save({k: v.detach().cpu().clone() for k, v in tensors.items()}, buffer)
                files[TENSORS] = _write_file(tmp / TENSORS, buffer.getvalue())
            manifest = {"name": name, "key": key, "config": config, "compute_hash": compute_hash(),
                        "source_hash": source_hash(),
                        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                        "lintf_version": _lintf_version(), "frames": list(frames), "files": files,
                        **environment(config.get("device", "cpu") if isinstance(config, dict) else "cpu")}
            # Written last: a folder with a complete manifest is a complete result.
            _write_file(tmp / MANIFEST, json.dumps(manifest, indent=1, default=repr).encode())
            _fsync_dir(tmp)
            if folder.exists():
                # rename(2) cannot replace a non-empty folder: move the old one aside first.
                os.replace(folder, self.root / f"{_TMP}{folder.name}-old{uuid.uuid4().hex}")
            os.replace(tmp, folder)
            _fsync_dir(self.root)
        finally:
            self._sweep_tmp(folder)

    def _sweep_tmp(self, folder: Path) -> None:
        """Remove leftovers of writers of ``folder``'s key; safe because we hold that key's lock."""
        for leftover in self.root.glob(f"{_TMP}{folder.name}-*"):
            shutil.rmtree(leftover, ignore_errors=True)

    # -- caching ---------------------------------------------------------------------------
    def cached(self, name: str, config: dict, compute: Callable[[], object]) -> Result:
        """The result for ``(name, config)``: loaded if stored and intact, else computed and saved.

        ``compute()`` returns ``frames`` or ``(frames, tensors)`` (see :meth:`save`). A per-key
        file lock around check-compute-save makes a concurrent caller wait, then load. If
        ``compute`` raises, nothing is written and the error propagates. A freshly computed
        result is returned as read back from disk, so cold and warm calls give identical objects.
        """
        key = config_key(name, config)
        if not callable(compute):
            raise TypeError(f"compute must be callable, got {compute!r}")
        folder = self._folder(name, key)
        with self._lock(folder):
            stored = self._read(folder, name, key)
            if stored is not None:
                return stored
            out = compute()
            frames, tensors = out if isinstance(out, tuple) and len(out) == 2 else (out, None)
            frames, tensors = _check_frames(frames), _check_tensors(tensors)
            self._write(folder, name, key, config, frames, tensors)
            fresh = self._read(folder, name, key)
        if fresh is None:
            raise RuntimeError(f"result {name!r} could not be read back right after saving it to {folder}")
        return dataclasses.replace(fresh, from_cache=False)

    def clear(self, name: str | None = None, *, stale_only: bool = False) -> int:
        """Delete stored results; return how many result folders were removed.

        ``name``: only results of that name (default: all). ``stale_only``: only those made by
        another compute source (or unreadable), i.e. those no key of the current code can reach.
        Leftover temporary folders of killed writers are removed too.
        """
        if name is not None:
            _check_name("name", name)
        if not self.root.is_dir():
            return 0
        # Result folders, and the keys of leftover temporary folders ('.tmp-<folder>-<suffix>').
        folders = {p.name[len(_TMP):].rsplit("-", 1)[0] if p.name.startswith(_TMP) else p.name
                   for p in self.root.iterdir()
                   if p.is_dir() and (p.name.startswith(_TMP) or not p.name.startswith("."))}
        removed = 0
        for folder in sorted(self.root / f for f in folders):
            if name is not None and folder.name.rsplit("-", 1)[0] != name:
                continue
            with self._lock(folder):
                self._sweep_tmp(folder)
                if not folder.is_dir() or (stale_only and self._source_of(folder) == compute_hash()):
                    continue
                shutil.rmtree(folder)
                removed += 1
        return removed

    @staticmethod
    def _source_of(folder: Path) -> str | None:
        try:
            return json.loads((folder / MANIFEST).read_bytes())["compute_hash"]
        except Exception:
            return None
