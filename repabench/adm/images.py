"""Image sets to evaluate, read in batches of uint8 NHWC without loading a whole set into memory.

* sample shards: a directory with `manifest.json` (format `repabench-samples-v1`, written by the sample
  stage) listing `shards/NNNNN.npy` uint8 [n,H,W,3] files with `start`, `count`, `sha256`;
* an image store (`repabench.store`): its `images` array;
* an ADM `.npz` (samples or `VIRTUAL_imagenet256_labeled.npz`): `arr_0`, streamed from the zip member
  (np.load cannot memory-map inside an npz).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from repabench.integrity import check_seal, content_identity
from repabench.provenance import sha256_file

SAMPLES_FORMAT = "repabench-samples-v1"


class ImageSetError(ValueError):
    pass


def _check_images(array_shape: tuple[int, ...], dtype: np.dtype, what: str) -> None:
    if len(array_shape) != 4 or array_shape[-1] != 3 or dtype != np.uint8:
        raise ImageSetError(f"{what}: expected uint8 images [N,H,W,3], got {np.dtype(dtype)} {list(array_shape)}")


class SampleShards:
    """Shards listed in a sample manifest, checked for presence, shape and count on open."""

    def __init__(self, manifest_path: str | os.PathLike, verify: bool = False):
        self.manifest_path = Path(manifest_path)
        self.root = self.manifest_path.parent
        self.manifest = check_seal(json.loads(self.manifest_path.read_text()), self.manifest_path)
        shards = self.manifest.get("shards")
        if not shards:
            raise ImageSetError(f"{self.manifest_path} lists no shards; rerun the sample stage")
        self.arrays: list[np.ndarray] = []
        expected_start = 0
        for entry in shards:
            path = self.root / entry["file"]
            if not path.is_file():
                raise ImageSetError(f"{path} is missing (listed in {self.manifest_path}); rerun the sample stage")
            if entry.get("start", expected_start) != expected_start:
                raise ImageSetError(f"{self.manifest_path}: shard {entry['file']} starts at {entry['start']}, "
                                    f"expected {expected_start}; rerun the sample stage")
            if verify and entry.get("sha256") and sha256_file(path) != entry["sha256"]:
                raise ImageSetError(f"{path} does not match its SHA-256 in {self.manifest_path}; delete it and rerun "
                                    "the sample stage")
            array = np.load(path, mmap_mode="r")
            _check_images(array.shape, array.dtype, str(path))
            if len(array) != entry["count"]:
                raise ImageSetError(f"{path} holds {len(array)} images, the manifest says {entry['count']} "
                                    "(truncated shard?); rerun the sample stage")
            self.arrays.append(array)
            expected_start += len(array)
        if self.arrays and any(a.shape[1:] != self.arrays[0].shape[1:] for a in self.arrays):
            raise ImageSetError(f"{self.manifest_path}: shards have different image sizes")
        self.count = expected_start
        if self.manifest.get("n_samples") not in (None, self.count):
            raise ImageSetError(f"{self.manifest_path}: shards hold {self.count} images but n_samples is "
                                f"{self.manifest['n_samples']}; rerun the sample stage")

    @property
    def run(self) -> dict[str, Any]:
        return dict(self.manifest.get("run") or {})

    def identity(self) -> dict[str, Any]:
        return {"kind": "sample-shards", "path": str(self.manifest_path),
                "content_sha256": content_identity(self.manifest_path)["content_sha256"]}

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        pending: list[np.ndarray] = []
        have = 0
        for array in self.arrays:
            for start in range(0, len(array), batch_size):
                piece = array[start:start + batch_size]
                if not pending and len(piece) == batch_size:
                    yield np.ascontiguousarray(piece)
                    continue
                take = min(len(piece), batch_size - have)
                pending.append(piece[:take])
                have += take
                if have == batch_size:
                    yield np.concatenate(pending)
                    pending, have = [], 0
                if take < len(piece):
                    pending, have = [piece[take:]], len(piece) - take
        if pending:
            yield np.concatenate(pending)


class StoreImages:
    """The `images` array of an image store (results/data/{split})."""

    def __init__(self, path: str | os.PathLike, verify: bool = False):
        from repabench.store import Store

        self.store = Store(path, verify=verify)
        self.images = self.store["images"]
        _check_images(self.images.shape, self.images.dtype, f"{path}/images")
        self.count = len(self.images)
        self.run: dict[str, Any] = {}

    def identity(self) -> dict[str, Any]:
        return {"kind": "image-store", "path": str(self.store.path),
                "content_sha256": content_identity(self.store.path)["content_sha256"]}

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, self.count, batch_size):
            yield np.ascontiguousarray(self.images[start:start + batch_size])


class NpzImages:
    """`arr_0` of an ADM `.npz`, streamed from the zip in batches."""

    def __init__(self, path: str | os.PathLike, key: str = "arr_0"):
        self.path = Path(path)
        self.member = f"{key}.npy"
        with zipfile.ZipFile(self.path) as archive:
            if self.member not in archive.namelist():
                raise ImageSetError(f"{self.path} has no {key!r} array (it has {archive.namelist()})")
            with archive.open(self.member) as handle:
                self.shape, self.dtype = _read_npy_header(handle)
        _check_images(self.shape, self.dtype, f"{self.path}:{key}")
        self.count = self.shape[0]
        self.run: dict[str, Any] = {}

    def identity(self) -> dict[str, Any]:
        return {"kind": "npz", "path": str(self.path), "sha256": sha256_file(self.path)}

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        row_bytes = int(np.prod(self.shape[1:]))
        with zipfile.ZipFile(self.path) as archive, archive.open(self.member) as handle:
            _read_npy_header(handle)
            for start in range(0, self.count, batch_size):
                n = min(batch_size, self.count - start)
                data = handle.read(n * row_bytes)
                if len(data) != n * row_bytes:
                    raise ImageSetError(f"{self.path}: {self.member} ends early (truncated file?)")
                yield np.frombuffer(data, dtype=np.uint8).reshape(n, *self.shape[1:])


def _read_npy_header(handle) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(handle)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = reader(handle)
    if fortran:
        raise ImageSetError("Fortran-ordered arrays are not supported; save the images C-ordered")
    return tuple(shape), dtype


def open_images(path: str | os.PathLike, verify: bool = False) -> SampleShards | StoreImages | NpzImages:
    """Open a sample directory / its manifest.json, an image store, or an ADM .npz."""
    path = Path(path)
    if path.suffix == ".npz":
        if not path.is_file():
            raise ImageSetError(f"{path} does not exist")
        return NpzImages(path)
    manifest = path if path.name == "manifest.json" else path / "manifest.json"
    if not manifest.is_file():
        raise ImageSetError(f"{path} is neither an .npz nor a directory with manifest.json "
                            "(expected sample shards or an image store)")
    fmt = json.loads(manifest.read_text()).get("format")
    if fmt == SAMPLES_FORMAT or "shards" in json.loads(manifest.read_text()):
        return SampleShards(manifest, verify=verify)
    return StoreImages(manifest.parent, verify=verify)


def prefetch(iterator: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run `iterator` in a background thread (disk reads overlap with compute)."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            for item in iterator:
                items.put(item)
        except BaseException as exc:  # re-raised in the consumer
            failure.append(exc)
        finally:
            items.put(done)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    while True:
        item = items.get()
        if item is done:
            break
        yield item
    thread.join()
    if failure:
        raise failure[0]
