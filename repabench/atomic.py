"""Atomic outputs: a result file or directory is either complete or absent."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds.

    For `directory=True` the temporary path is an empty directory. On error the temporary
    path is removed and `path` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        _reraise(exc, path)
    target = tmp if directory else tmp / path.name
    try:
        yield target
        if directory:
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        else:
            os.replace(target, path)
    except OSError as exc:
        _reraise(exc, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _reraise(exc: OSError, path: Path) -> None:
    wrapped = storage_error(exc, path)
    if wrapped is exc:
        raise exc
    raise wrapped from exc


_FULL = {errno.ENOSPC: "the file system is full", errno.EDQUOT: "the disk quota is exceeded",
         errno.EFBIG: "the file is too large for the file system"}


def storage_error(exc: OSError, path: str | os.PathLike) -> OSError:
    """An OSError that names the output `path` and the fix (a bare ENOSPC from write() names no file)."""
    if exc.filename and exc.errno not in _FULL:
        return exc
    if exc.errno in _FULL:
        message = (f"writing {path} failed: {_FULL[exc.errno]} ({exc.strerror}); free space there (or move "
                   "results/ to a larger file system) and rerun: the old file, if any, is untouched")
    else:
        message = f"writing {path} failed: {exc.strerror or exc}; fix that and rerun"
    return OSError(exc.errno, message, str(path))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` atomically; a result (a dict with a provenance block) is sealed with its own hash."""
    from repabench.integrity import jsonable as _jsonable, seal

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(seal(obj), indent=2, sort_keys=False, default=_jsonable) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run the stage that produces it first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); delete it and rerun the stage that writes it") from exc
