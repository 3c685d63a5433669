"""The alignment targets of a run: the frozen encoders' patch tokens of each training image, spatially
normalised as the method says, computed per batch or cached once per run."""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from repabench.align import Method, spatial_normalize

log = logging.getLogger("repabench.train")


def build_target_encoder(name: str, weights_dir: str | os.PathLike) -> torch.nn.Module:
    """The frozen target encoder of the registry (module-level so tests can substitute a stand-in)."""
    from repabench.encoders import build_encoder

    return build_encoder(name, weights_dir)


def training_precision(requested: str, device: torch.device) -> str:
    """The accelerate mixed precision of the model forward and of the encoder targets (the same autocast).

    fp16 (upstream) comes with accelerate's GradScaler; on CPU every choice runs in fp32 ("no")."""
    if requested not in ("no", "fp16", "bf16"):
        raise ValueError(f"train.mixed_precision {requested!r} must be no, fp16 or bf16")
    if device.type == "cpu" and requested != "no":
        log.warning("mixed precision %s is not used on CPU; training in fp32", requested)
        return "no"
    return requested


class AlignmentTargets:
    """Encoder patch tokens for a batch: online from the raw images, or looked up in a per-image cache."""

    def __init__(self, encoders: Sequence[torch.nn.Module], grid: int, method: Method, device: torch.device,
                 autocast: Callable[[], Any]):
        self.encoders = [enc.to(device).eval().requires_grad_(False) for enc in encoders]
        self.grid, self.method, self.device, self.autocast = grid, method, device, autocast
        self.cache: list[torch.Tensor] | None = None

    @torch.no_grad()
    def compute(self, images: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for encoder in self.encoders:
            with self.autocast():
                tokens = encoder(images, self.grid)
            if tokens.shape[1] != self.grid * self.grid:
                raise ValueError(f"encoder returned {tokens.shape[1]} tokens, SiT has {self.grid}x{self.grid}")
            out.append(spatial_normalize(tokens, self.method.spatial_norm, self.method.alpha))
        return out

    def z_dims(self, probe: torch.Tensor) -> list[int]:
        return [int(t.shape[-1]) for t in self.compute(probe.to(self.device))]

    @torch.no_grad()
    def build_cache(self, images: np.ndarray, batch: int = 64, show: bool = True,
                    limit_bytes: int = 16 << 30) -> None:
        from tqdm import tqdm

        n = images.shape[0]
        dims = self.z_dims(torch.from_numpy(np.array(images[:1])).permute(0, 3, 1, 2))
        need = n * self.grid * self.grid * sum(dims) * 4
        if need > limit_bytes:
            raise ValueError(f"caching encoder targets needs {need / 2**30:.1f} GiB for {n} images; "
                             "set train.cache_targets: false (targets are then computed online)")
        self.cache = [torch.empty(n, self.grid * self.grid, d, device=self.device) for d in dims]
        for start in tqdm(range(0, n, batch), desc="encoder targets", disable=not show, mininterval=5):
            chunk = torch.from_numpy(np.array(images[start:start + batch])).permute(0, 3, 1, 2)
            for table, value in zip(self.cache, self.compute(chunk.to(self.device))):
                table[start:start + chunk.shape[0]] = value
        self.encoders = []  # no longer needed: free their memory

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        if self.cache is not None:
            index = batch["index"].to(self.device)
            return [table[index] for table in self.cache]
        return self.compute(batch["image"].to(self.device, non_blocking=True))
