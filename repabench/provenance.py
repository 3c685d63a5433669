"""Provenance attached to every result: code version, parameter hash, inputs, device."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

from repabench import __version__

_REPO = Path(__file__).resolve().parent.parent


def params_hash(params: Mapping[str, Any], length: int = 16) -> str:
    """Stable hash of a JSON-able parameter mapping (key order does not matter)."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    info: dict[str, Any] = {"package": "repabench", "version": __version__, "git_sha": None, "git_dirty": None}
    try:
        sha = subprocess.run(["git", "-C", str(_REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if sha.returncode == 0:
            info["git_sha"] = sha.stdout.strip()
            status = subprocess.run(
                ["git", "-C", str(_REPO), "status", "--porcelain", "--untracked-files=no", "--", "repabench"],
                capture_output=True, text=True, timeout=5,
            )
            info["git_dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def device_info(device: Any = None) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "cpu_threads": torch.get_num_threads(),
    }
    dev = str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    info["device"] = dev
    if dev.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
        info["cuda"] = torch.version.cuda
    return info


def provenance(
    stage: str,
    params: Mapping[str, Any] | None = None,
    inputs: Iterable[str | os.PathLike] = (),
    device: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    """The provenance block of a result file.

    `inputs` are recorded by path plus their content identity (`repabench.integrity.content_identity`): stores
    and JSON results by the hash of their content without timestamps and timings (`content_sha256`), so two
    identical runs record identical input hashes; other files under 64 MiB by their SHA-256.
    """
    from repabench.integrity import content_identity

    recorded = [content_identity(item) for item in inputs]
    params = dict(params or {})
    return {
        "stage": stage,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "code": code_version(),
        "params": params,
        "params_hash": params_hash(params),
        "inputs": recorded,
        "device": device_info(device),
        **extra,
    }
