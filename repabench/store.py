"""Array stores: a directory of memory-mapped `.npy` arrays plus a `manifest.json`.

A store holds N rows per array (images, moments, labels, masks, features...). It is written into a
temporary directory and renamed into place, so a store on disk is complete or absent. The manifest
records, per array, its shape, dtype, byte size and SHA-256, plus the store's provenance. The writer refuses
float arrays holding NaN or inf (they mean a broken stage). Readers check sizes on open (a truncated file is
caught at once); stages open their inputs with `verify=True`, which also checks every array's SHA-256 and, for
float arrays, that all values are finite. A verification is remembered in a sidecar file beside the store
(`.<name>.verified.json`, keyed by each file's size, mtime and inode), so a store is read in full once after
each change, not by every job; the sidecar lives outside the store directory so that Snakemake does not see the
store change.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from repabench.atomic import read_json, storage_error, write_json
from repabench.integrity import IntegrityError, check_seal, first_nonfinite_row
from repabench.provenance import sha256_file

MANIFEST = "manifest.json"
FORMAT = "repabench-store-v1"


class StoreError(RuntimeError):
    pass


class StoreWriter:
    """Allocate arrays of known shape as memmaps in a temp dir, fill them, then `commit()`."""

    def __init__(self, path: str | os.PathLike, array_shapes: Mapping[str, tuple[tuple[int, ...], Any]]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.parent / f".{self.path.name}.partial"
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()
        self.arrays: dict[str, np.memmap] = {}
        for name, (shape, dtype) in array_shapes.items():
            file = self.tmp / f"{name}.npy"
            try:
                self.arrays[name] = np.lib.format.open_memmap(file, mode="w+", dtype=dtype, shape=tuple(shape))
                _reserve(file)
            except OSError as exc:
                self.abort()
                raise storage_error(exc, self.path) from exc

    def __getitem__(self, name: str) -> np.memmap:
        return self.arrays[name]

    def commit(self, meta: Mapping[str, Any] | None = None) -> Path:
        entries = {}
        counts = set()
        for name, arr in self.arrays.items():
            arr.flush()
            file = self.tmp / f"{name}.npy"
            row = first_nonfinite_row(arr)
            if row is not None:
                self.abort()
                raise StoreError(f"{self.path}: array {name!r} holds NaN/inf values (first at row {row}); the stage "
                                 "writing it got a broken input or diverged. Nothing was written; fix the input "
                                 "and rerun that stage")
            entries[name] = {
                "file": file.name,
                "shape": list(arr.shape),
                "dtype": str(arr.dtype),
                "bytes": file.stat().st_size,
                "sha256": sha256_file(file),
            }
            counts.add(arr.shape[0] if arr.ndim else 0)
        self.arrays.clear()
        manifest = {"format": FORMAT, "count": counts.pop() if len(counts) == 1 else None, "arrays": entries}
        manifest.update(dict(meta or {}))
        write_json(self.tmp / MANIFEST, manifest)
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self.arrays.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def _reserve(file: Path) -> None:
    """Allocate the memmap's blocks now: a full disk then fails here with ENOSPC, not with SIGBUS mid-write."""
    size = file.stat().st_size
    if size and hasattr(os, "posix_fallocate"):
        with open(file, "r+b") as handle:
            try:
                os.posix_fallocate(handle.fileno(), 0, size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise


def write_store(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> Path:
    with StoreWriter(path, {k: (np.shape(v), np.asarray(v).dtype) for k, v in arrays.items()}) as writer:
        for name, value in arrays.items():
            writer[name][...] = value
        return writer.commit(meta)


class Store:
    """A read-only view of a store; arrays are memory-mapped lazily."""

    def __init__(self, path: str | os.PathLike, verify: bool = False):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise StoreError(f"{self.path} is not a complete store (no {MANIFEST}); rerun the stage that writes it")
        self.manifest = read_json(manifest_path)
        if self.manifest.get("format") != FORMAT:
            raise StoreError(f"{manifest_path}: unknown format {self.manifest.get('format')!r}, expected {FORMAT}")
        try:
            check_seal(self.manifest, manifest_path)
        except IntegrityError as exc:
            raise StoreError(f"{exc}. Or delete {self.path} and rerun the stage that writes it") from None
        for name, entry in self.manifest["arrays"].items():
            file = self.path / entry["file"]
            if not file.is_file():
                raise StoreError(f"{file} is missing from the store; delete {self.path} and rerun the stage that writes it")
            size = file.stat().st_size
            if size != entry["bytes"]:
                raise StoreError(
                    f"{file} has {size} bytes but the manifest says {entry['bytes']} (truncated or overwritten); "
                    f"delete {self.path} and rerun the stage that writes it"
                )
        if verify:
            self.verify()
        self._cache: dict[str, np.ndarray] = {}

    @property
    def sidecar(self) -> Path:
        return self.path.parent / f".{self.path.name}.verified.json"

    def verify(self) -> None:
        """Check every array's SHA-256 and that float arrays are finite (skipped for files unchanged since their
        last verification)."""
        try:
            known = read_json(self.sidecar) if self.sidecar.is_file() else {}
        except ValueError:
            known = {}
        if known.get("manifest_sha256") != sha256_file(self.path / MANIFEST):
            known = {}
        verified = dict(known.get("arrays") or {})
        changed = False
        for name, entry in self.manifest["arrays"].items():
            file = self.path / entry["file"]
            stat = file.stat()
            stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ino, entry["sha256"]]
            if verified.get(name) == stamp:
                continue
            if sha256_file(file) != entry["sha256"]:
                raise StoreError(f"{file} does not match its SHA-256 in the manifest (overwritten or corrupted); "
                                 f"delete {self.path} and rerun the stage that writes it")
            row = first_nonfinite_row(np.load(file, mmap_mode="r"))
            if row is not None:
                raise StoreError(f"{file} holds NaN/inf values (first at row {row}); the stage that wrote it got "
                                 f"a broken input or diverged. Delete {self.path}, fix the cause and rerun that stage")
            verified[name] = stamp
            changed = True
        if changed:
            try:
                write_json(self.sidecar, {"manifest_sha256": sha256_file(self.path / MANIFEST), "arrays": verified})
            except OSError:  # a read-only results tree: verify again next time
                pass

    @property
    def count(self) -> int:
        return int(self.manifest["count"])

    @property
    def names(self) -> list[str]:
        return list(self.manifest["arrays"])

    def __contains__(self, name: str) -> bool:
        return name in self.manifest["arrays"]

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.manifest["arrays"]:
            raise KeyError(f"store {self.path} has no array {name!r} (it has {', '.join(self.names)})")
        if name not in self._cache:
            self._cache[name] = np.load(self.path / self.manifest["arrays"][name]["file"], mmap_mode="r")
        return self._cache[name]

    def meta(self, key: str, default: Any = None) -> Any:
        return self.manifest.get(key, default)
