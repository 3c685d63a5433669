"""Streaming Inception features of an image set: pool, spatial and (when available) unbiased logits."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from repabench.adm.images import prefetch
from repabench.adm.inception import ADMInception

log = logging.getLogger(__name__)


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """IEEE fp32 convolutions and matmuls on CUDA (cuDNN defaults to TF32, ~1e-3 feature noise)."""
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = (conv.fp32_precision, matmul.fp32_precision)
    conv.fp32_precision, matmul.fp32_precision = "ieee", "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved


@dataclass
class Features:
    pool: np.ndarray
    spatial: np.ndarray
    logits: np.ndarray | None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return len(self.pool) / self.seconds if self.seconds else float("nan")


def _to_device(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(np.array(batch)).permute(0, 3, 1, 2)  # a writable copy; NHWC -> NCHW view
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.contiguous()


def extract(model: ADMInception, source, batch_size: int, device: torch.device | str,
            desc: str = "inception", want_spatial: bool = True, want_logits: bool = True,
            prefetch_depth: int = 3) -> Features:
    """Inception features of every image of `source` (an object with `count` and `batches(n)`)."""
    device = torch.device(device)
    n = source.count
    pool = np.empty((n, 2048), dtype=np.float32)
    spatial = np.empty((n, 2023), dtype=np.float32) if want_spatial else np.empty((n, 0), np.float32)
    logits = np.empty((n, 1008), dtype=np.float32) if (want_logits and model.has_logits) else None
    start = 0
    began = time.perf_counter()
    strict = strict_fp32() if device.type == "cuda" else contextlib.nullcontext()
    batches = (_to_device(b, device) for b in source.batches(batch_size))
    if prefetch_depth:
        batches = prefetch(batches, depth=prefetch_depth)
    with strict, torch.inference_mode(), tqdm(total=n, desc=desc, unit="img", mininterval=5) as bar:
        for images in batches:
            out = model(images)
            end = start + len(images)
            pool[start:end] = out["pool"].cpu().numpy()
            if want_spatial:
                spatial[start:end] = out["spatial"].cpu().numpy()
            if logits is not None:
                logits[start:end] = out["logits_unbiased"].cpu().numpy()
            start = end
            bar.update(len(images))
    if start != n:
        raise RuntimeError(f"{desc}: read {start} images, expected {n}")
    seconds = time.perf_counter() - began
    log.info("%s: %d images in %.1f s (%.1f img/s, batch %d, %s)", desc, n, seconds, n / max(seconds, 1e-9),
             batch_size, device)
    return Features(pool, spatial, logits, seconds)
