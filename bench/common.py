"""Helpers shared by the bench scripts: device choice and header, commit, timing with CUDA synchronisation,
precision switches and out-of-memory handling. Imported as `common` (the scripts run as `python bench/x.py`).
"""

from __future__ import annotations

import contextlib
import gc
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent


def commit() -> str:
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu x{torch.get_num_threads()} threads"


def header(device: torch.device, **fields: Any) -> str:
    """One line: commit, device, torch version, then the given fields (dtype, batch, ...)."""
    extra = "  ".join(f"{key} {value}" for key, value in fields.items())
    return f"commit {commit()}  device {device} ({device_name(device)})  torch {torch.__version__}  {extra}".rstrip()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int = 1) -> float:
    """Best wall time of `repeats` calls of fn, synchronising the GPU around each."""
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def autocast(device: torch.device, precision: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of autocast contexts (as accelerate's): bf16 autocast, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext
    if precision != "bf16":
        raise ValueError(f"precision {precision!r} is not fp32 or bf16")
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def set_tf32(enabled: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float:
    """Peak allocated GPU memory since the last free_memory(); on CPU the process's maximum RSS."""
    from repabench.train import peak_memory_mb

    return peak_memory_mb(device) / 1024.0


def random_images(n: int, resolution: int, seed: int = 0) -> torch.Tensor:
    """uint8 images [n, H, W, 3] on the host (the layout of an image store); speed does not depend on content."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, resolution, resolution, 3), dtype=np.uint8))


def to_nchw(images_nhwc: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """[B,H,W,3] -> [B,3,H,W]: the permuted view is already channels-last; otherwise a contiguous NCHW copy."""
    view = images_nhwc.permute(0, 3, 1, 2)
    return view if channels_last else view.contiguous()
