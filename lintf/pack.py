"""Carry stored results between machines: a tar of a scale's store entries with a manifest.

:func:`pack` writes every store entry that the plan of a scale reads (:func:`lintf.plan.entries`:
the experiments and what they read first, such as the sweep behind ``lrs="grid"``) into one tar
file, or into numbered parts ``PATH.000``, ``PATH.001``... of at most ``part_size`` bytes. The
tar's first member, ``lintf-pack.json``, records per entry: its key, the experiments that read
it, setting, scale, the sha256 of every file, and where it was computed (host, time, torch and
CUDA versions, device, precision flags), plus the compute side's source hash (which every
key holds) and the whole package's. :func:`unpack` checks every
file against it before it writes anything, refuses a damaged or foreign pack whole (one
:class:`PackError` naming the entry), then writes each entry atomically (a temporary folder
renamed into place).
"""
from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import re
import socket
import tarfile
import tempfile
from pathlib import Path

from .compute import store as S
from .plan import _scale, entries, plan, stored

FORMAT = "lintf-pack"
VERSION = 1
MANIFEST = "lintf-pack.json"
_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "M": 1024 ** 2, "MB": 1024 ** 2, "G": 1024 ** 3, "GB": 1024 ** 3}
MIN_PART = 1024
"""The smallest part size accepted (bytes)."""


class PackError(ValueError):
    """A pack that cannot be written or read: missing, damaged, foreign; one line."""


def parse_size(text) -> int:
    """Bytes of a size such as ``"4096"``, ``"100K"``, ``"50M"``, ``"2G"`` (powers of 1024);
    ``ValueError`` naming ``--part-size`` otherwise or below :data:`MIN_PART`."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = m and m.group(2).upper()
    if not m or unit not in _UNITS:
        raise ValueError(f"--part-size must be a number of bytes with an optional K, M or G suffix (e.g. 50M), "
                         f"got {text!r}")
    size = int(m.group(1)) * _UNITS[unit]
    if size < MIN_PART:
        raise ValueError(f"--part-size must be at least {MIN_PART} bytes, got {text!r}")
    return size


class _Parts(io.RawIOBase):
    """A write-only stream cut into files ``PATH.000``, ``PATH.001``... of at most ``size`` bytes."""

    def __init__(self, path: Path, size: int):
        self.path, self.size, self.index, self.used, self.file, self.paths = path, size, -1, size, None, []

    def writable(self):
        return True

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        done = 0
        while done < len(data):
            if self.used >= self.size:
                self._next()
            n = min(self.size - self.used, len(data) - done)
            self.file.write(data[done:done + n])
            self.used += n
            done += n
        return done

    def _next(self):
        if self.file:
            self.file.close()
        self.index += 1
        part = self.path.with_name(f"{self.path.name}.{self.index:03d}")
        self.paths.append(part)
        self.file, self.used = open(part, "wb"), 0

    def close(self):
        if self.file:
            self.file.close()
            self.file = None
        super().close()


class _Joined(io.RawIOBase):
    """The parts ``paths`` read back as one stream."""

    def __init__(self, paths):
        self.paths, self.i, self.file = list(paths), 0, None

    def readable(self):
        return True

    def readinto(self, buffer) -> int:
        while self.i < len(self.paths):
            if self.file is None:
                self.file = open(self.paths[self.i], "rb")
            n = self.file.readinto(buffer)
            if n:
                return n
            self.file.close()
            self.file, self.i = None, self.i + 1
        return 0

    def close(self):
        if self.file:
            self.file.close()
        super().close()


def _parts_of(path: Path) -> list[Path]:
    """The files of the pack at ``path``: itself, else ``path.000``, ``path.001``... in order."""
    if path.is_file():
        return [path]
    parts, i = [], 0
    while (p := path.with_name(f"{path.name}.{i:03d}")).is_file():
        parts.append(p)
        i += 1
    if not parts:
        raise PackError(f"{path}: no such pack (neither the file nor its parts {path.name}.000, ...)")
    return parts


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def pack(path, scale=None, *, only=None, part_size: int | None = None, device="auto", store=None) -> dict:
    """Write the stored entries of the plan at ``scale`` (``only``: those chapters') to the tar
    ``path`` (``part_size``: numbered parts of at most that many bytes). Returns ``{"entries":
    n, "experiments": n, "missing": [names], "paths": [written files]}``; experiments not stored
    are left out (listed in ``missing``). :class:`PackError`, and no file written, when none of
    them is stored: an empty pack carries nothing and would look like a good one."""
    sc = _scale(scale)
    store = store or S.ResultStore()
    path = Path(path)
    found, missing = {}, []
    for exp in plan(sc, only=only):
        if not stored(exp, sc, device=device, store=store):
            missing.append(exp.name)
            continue
        for kind, key in entries(exp, sc, device=device, store=store):
            e = found.setdefault((kind, key), {"experiments": [], "settings": []})
            e["experiments"].append(exp.name)
            if exp.setting not in e["settings"]:
                e["settings"].append(exp.setting)
    if not found:
        chapters = f" (chapters {', '.join(only if isinstance(only, (list, tuple)) else [only])})" if only else ""
        raise PackError(f"nothing to pack: none of the {len(missing)} experiments of scale {sc.name}{chapters} is "
                        f"stored in {store.root}; compute them first: python -m lintf compute --scale {sc.name}")
    records, blobs = [], {}
    for (kind, key), e in found.items():
        folder = store._folder(kind, key)
        inner = json.loads((folder / S.MANIFEST).read_bytes())
        files = {}
        for f in sorted(p.name for p in folder.iterdir() if p.is_file()):
            data = (folder / f).read_bytes()
            files[f] = hashlib.sha256(data).hexdigest()
            blobs[f"entries/{folder.name}/{f}"] = data
        records.append({"folder": folder.name, "kind": kind, "key": key, "experiments": e["experiments"],
                        "settings": e["settings"], "scale": sc.name, "files": files,
                        **{k: inner.get(k) for k in ("created", "host", "torch", "cuda", "device", "device_name",
                                                     "precision", "compute_hash", "source_hash")}})
    manifest = {"format": FORMAT, "version": VERSION, "compute_hash": S.compute_hash(),
                "source_hash": S.source_hash(), "scale": sc.name,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(), "host": socket.gethostname(),
                "entries": records}
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = _Parts(path, part_size) if part_size else open(path, "wb")
    with stream, tarfile.open(fileobj=stream, mode="w|") as tar:
        _add(tar, MANIFEST, json.dumps(manifest, indent=1).encode())
        for name, data in blobs.items():
            _add(tar, name, data)
    paths = stream.paths if part_size else [path]
    return {"entries": len(records), "experiments": len({n for r in records for n in r["experiments"]}),
            "missing": missing, "paths": [str(p) for p in paths]}


def _members(path: Path):
    """``(manifest, iterator of (name, bytes))`` of the pack at ``path``; PackError if it is
    not a lintf pack."""
    parts = _parts_of(path)
    stream = _Joined(parts)
    try:
        tar = tarfile.open(fileobj=io.BufferedReader(stream), mode="r|")
        first = tar.next()
        if first is None or first.name != MANIFEST or not first.isfile():
            raise PackError(f"{path}: not a lintf pack (its first member is not {MANIFEST})")
        manifest = json.loads(tar.extractfile(first).read())
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise PackError(f"{path}: not a lintf pack ({MANIFEST} does not say format {FORMAT!r})")
    except (tarfile.TarError, OSError, ValueError, EOFError) as err:
        stream.close()
        if isinstance(err, PackError):
            raise
        raise PackError(f"{path}: not a readable lintf pack ({type(err).__name__}: {' '.join(str(err).split())})") \
            from None

    def members():
        try:
            for info in tar:                  # the manifest, read above, comes first again: skipped
                if info.isfile() and info is not first:
                    yield info.name, tar.extractfile(info).read()
        except (tarfile.TarError, OSError, EOFError) as err:
            raise PackError(f"{path}: damaged pack, cut short or corrupted after the entries read so far "
                            f"({type(err).__name__}: {' '.join(str(err).split())})") from None
        finally:
            stream.close()

    return manifest, members()


def verify(path) -> dict:
    """Check the pack at ``path`` whole without writing anything: a lintf pack made by this
    compute source (:func:`lintf.compute.store.compute_hash`: an edit to the book side since it
    was made does not matter), every listed file present once with its sha256, nothing
    unlisted. Returns its manifest; :class:`PackError` naming the entry, or the compute hash it
    expected, otherwise."""
    path = Path(path)
    manifest, members = _members(path)
    try:
        records = {r["folder"]: r for r in manifest["entries"]}
        source = manifest["compute_hash"]
    except (KeyError, TypeError):
        raise PackError(f"{path}: damaged pack, or made by a lintf older than the compute hash "
                        f"({MANIFEST} lacks its entries or compute_hash)") from None
    if source != S.compute_hash():
        raise PackError(f"{path}: made by another lintf compute source (the pack's compute hash {source[:12]}, "
                        f"expected {S.compute_hash()[:12]}); its entries (first: {next(iter(records), 'none')}) "
                        "would never be read: refused whole")
    seen = set()
    for name, data in members:
        m = re.fullmatch(r"entries/([^/]+)/([^/]+)", name)
        if not m or m.group(1) not in records or m.group(2) not in records[m.group(1)]["files"]:
            raise PackError(f"{path}: damaged pack: member {name!r} is not in its manifest")
        folder, file = m.groups()
        if hashlib.sha256(data).hexdigest() != records[folder]["files"][file] or (folder, file) in seen:
            raise PackError(f"{path}: damaged pack: entry {folder}, file {file} fails its sha256 check")
        seen.add((folder, file))
    for folder, r in records.items():
        for file in r["files"]:
            if (folder, file) not in seen:
                raise PackError(f"{path}: damaged pack: entry {folder} lacks its file {file}")
    return manifest


def unpack(path, *, store=None) -> dict:
    """Verify the pack at ``path`` (:func:`verify`: nothing is written unless every file checks
    out), then write its entries into the store, each atomically (a temporary folder renamed
    into place, under the entry's lock). Returns ``{"entries": n, "written": n, "kept": n}``
    (``kept``: already stored, identical)."""
    path = Path(path)
    manifest = verify(path)
    store = store or S.ResultStore()
    records = {r["folder"]: r for r in manifest["entries"]}
    store.root.mkdir(parents=True, exist_ok=True)
    written = kept = 0
    current, files = None, {}

    def commit(folder, files):
        nonlocal written, kept
        target = store.root / folder
        with store._lock(target):
            if target.is_dir() and all((target / f).is_file() and hashlib.sha256((target / f).read_bytes())
                                       .hexdigest() == sha for f, sha in records[folder]["files"].items()):
                kept += 1
                return
            store._sweep_tmp(target)
            tmp = Path(tempfile.mkdtemp(prefix=f"{S._TMP}{folder}-", dir=store.root))
            try:
                for f, data in files.items():
                    S._write_file(tmp / f, data)
                S._fsync_dir(tmp)
                if target.exists():
                    os.replace(target, store.root / f"{S._TMP}{folder}-old{os.getpid()}")
                os.replace(tmp, target)
                S._fsync_dir(store.root)
            finally:
                store._sweep_tmp(target)
            written += 1

    _, members = _members(path)
    for name, data in members:
        folder, file = name.split("/")[1:]
        if folder != current:
            if current is not None:
                commit(current, files)
            current, files = folder, {}
        files[file] = data
    if current is not None:
        commit(current, files)
    return {"entries": len(records), "written": written, "kept": kept}


__all__ = ["PackError", "pack", "unpack", "verify", "parse_size"]
