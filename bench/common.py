"""Helpers shared by the bench scripts: device choice and header, commit, timing with CUDA synchronisation,
precision switches, out-of-memory handling, and the result JSON (provenance, atomic rewrites, a time budget).
Imported as `common` (the scripts run as `python bench/x.py`).

Only the standard library, numpy and torch are imported here: the bench runs on a GPU machine whose Python has
torch, accelerate, timm and transformers but none of the project's other pins (bench/README.md).
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import json
import os
import platform
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


def provenance(device: torch.device) -> dict[str, Any]:
    """What every bench JSON carries: commit, device, torch / CUDA / cuDNN versions, host, date (UTC)."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"commit": commit(), "device": device_name(device), "device_type": device.type,
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn,
            "python": platform.python_version(), "host": platform.node(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


# bf16 dense tensor-core peaks (TFLOP/s) by device name, for MFU; None when the device is not listed
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "H20": 148.0, "GH200": 989.0, "A100": 312.0}


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):  # "H100 PCIe" before "H100"
        if key in name:
            return PEAK_BF16_TFLOPS[key]
    return None


class ResultFile:
    """The JSON of one bench: provenance + the arguments + results, rewritten atomically after every measurement
    (so that a run killed by its time cap leaves what it measured) with `complete` false until finish()."""

    def __init__(self, path: Path | None, bench: str, device: torch.device, args: Any) -> None:
        self.path = Path(path) if path else None
        self.data: dict[str, Any] = {"bench": bench, **provenance(device), "complete": False,
                                     "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
        self.save()

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.save()

    def finish(self, **fields: Any) -> None:
        self.update(complete=True, **fields)

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=_plain) + "\n")
        os.replace(tmp, self.path)


def _plain(value: Any) -> Any:
    """numpy / torch scalars as Python numbers, anything else as its text."""
    return value.item() if hasattr(value, "item") else str(value)


class Budget:
    """A wall-clock budget: benches stop starting new measurements when it runs out (None = no limit)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()

    def left(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - (time.perf_counter() - self.start)

    def allows(self, needed_s: float = 0.0) -> bool:
        return self.left() > needed_s


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


def resident_memory_gib(device: torch.device) -> float:
    """Memory held right now: allocated GPU memory, or the process's resident set on the CPU."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**30
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def memory_capacity_gib(device: torch.device) -> float:
    """Total memory of the device (GPU memory, or the host's physical memory)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[1] / 2**30
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
