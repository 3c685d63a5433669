"""Content integrity: self-hashes of result JSONs, content identities of inputs, finite-value checks.

* A result JSON (a dict with a `provenance` block) is sealed when written: `provenance.self_sha256` is the
  SHA-256 of its canonical JSON without that field. Readers of results check the seal, so a file edited by hand
  is refused with a message naming it and the command that regenerates it.
* The content identity of an input (what provenance records) leaves out what changes between identical runs:
  timestamps, timings, the seal itself. Two identical runs record identical input hashes.
* Arrays where a NaN or inf means a broken input (latents, features, losses, sampled latents) are checked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SEAL_KEY = "self_sha256"
# keys whose values differ between two identical runs: left out of content identities
VOLATILE_KEYS = frozenset({"created", SEAL_KEY, "timing", "wall_s", "train_wall_s", "images_per_second",
                           "images_per_s", "peak_memory_mb", "seconds"})


class IntegrityError(ValueError):
    pass


def jsonable(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def canonical(obj: Any) -> Any:
    """The value as it reads back from its JSON file (tuples become lists, keys strings, numpy scalars floats)."""
    return json.loads(json.dumps(obj, default=jsonable))


def _without(obj: Any, keys: frozenset[str]) -> Any:
    if isinstance(obj, dict):
        return {k: _without(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [_without(v, keys) for v in obj]
    return obj


def json_hash(obj: Any, drop: frozenset[str] = frozenset()) -> str:
    text = json.dumps(_without(canonical(obj), drop), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# seals of result files


def _is_result(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("provenance"), dict)


def seal(obj: Any) -> Any:
    """`obj` with provenance.self_sha256 set (unchanged when it has no provenance block)."""
    if not _is_result(obj):
        return obj
    body = canonical(obj)
    body["provenance"].pop(SEAL_KEY, None)
    body["provenance"][SEAL_KEY] = json_hash(body, frozenset({SEAL_KEY}))
    return body


def check_seal(obj: Any, path: str | os.PathLike) -> Any:
    """Refuse a result whose content no longer matches its seal; returns `obj`.

    Files without a provenance block (hand-made inputs) pass; results of versions before the seal pass with a
    warning."""
    if not _is_result(obj):
        return obj
    recorded = obj["provenance"].get(SEAL_KEY)
    if recorded is None:
        log.warning("%s carries no provenance.%s (written before results were sealed); not checked", path, SEAL_KEY)
        return obj
    if json_hash(obj, frozenset({SEAL_KEY})) != recorded:
        stage = obj["provenance"].get("stage") or "the stage that writes it"
        raise IntegrityError(
            f"{path} was changed after stage `{stage}` wrote it (its content does not match provenance.{SEAL_KEY}); "
            f"results are never edited by hand. Regenerate it with `snakemake --force {path}` (same --configfile), "
            f"or rerun `python -m repabench {stage}` with its original arguments")
    return obj


def read_result(path: str | os.PathLike) -> Any:
    """A result JSON, its seal checked."""
    from repabench.atomic import read_json

    return check_seal(read_json(path), path)


# ----------------------------------------------------------------------------------------------------------------
# content identities of inputs


def content_identity(path: str | os.PathLike, max_bytes: int = 64 << 20) -> dict[str, Any]:
    """How provenance records an input: a store or result JSON by the hash of its content without volatile keys,
    an .npz by the hash of its members (`content_sha256`), another small file by its SHA-256, a large one by path
    only."""
    from repabench.provenance import sha256_file

    p = Path(path)
    entry: dict[str, Any] = {"path": str(p)}
    target = p / "manifest.json" if p.is_dir() else p
    if not target.is_file() or target.stat().st_size >= max_bytes:
        return entry
    if target.suffix == ".json":
        try:
            entry["content_sha256"] = json_hash(json.loads(target.read_text()), VOLATILE_KEYS)
            return entry
        except ValueError:
            pass
    if target.suffix == ".npz":  # a zip stamps its members with the time they were written: hash the arrays
        try:
            entry["content_sha256"] = npz_content_hash(target)
            return entry
        except (ValueError, OSError, zipfile.BadZipFile):  # not a plain npz: its bytes, below
            pass
    entry["sha256"] = sha256_file(target)
    return entry


def npz_content_hash(path: Path) -> str:
    """Hash of an .npz's arrays; a JSON text array (a `meta` block) without its volatile keys."""
    digest = hashlib.sha256()
    with np.load(path, allow_pickle=False) as data:
        for name in sorted(data.files):
            array = data[name]
            body = array.tobytes()
            if array.dtype.kind == "U" and array.ndim == 0:
                try:
                    body = json_hash(json.loads(str(array)), VOLATILE_KEYS).encode()
                except ValueError:
                    pass
            digest.update(f"{name}:{array.dtype.str}:{array.shape}:".encode() + body)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# finite values


def first_nonfinite_row(array: np.ndarray, chunk_bytes: int = 64 << 20) -> int | None:
    """Index of the first row holding a NaN or inf (None when all are finite or the dtype is not float)."""
    if not np.issubdtype(array.dtype, np.floating) or array.size == 0:
        return None
    flat = array.reshape(len(array), -1) if array.ndim > 1 else array.reshape(-1, 1)
    rows = max(1, chunk_bytes // max(1, flat.shape[1] * array.dtype.itemsize))
    for start in range(0, len(flat), rows):
        ok = np.isfinite(flat[start:start + rows]).all(axis=1)
        if not ok.all():
            return start + int(np.argmin(ok))
    return None
