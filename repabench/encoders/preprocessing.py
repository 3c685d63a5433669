"""Preprocessing descriptions (torch-free, so the registry imports cheaply); applied in `base.py`."""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Preprocessing:
    """How a family turns uint8-valued images into network input (recorded in feature provenance).

    order "norm_then_resize" or "resize_then_norm"; mode is an F.interpolate mode or "none"; `size_per_token`
    is the input side in pixels per token of the grid (the patch size, or 32 for SAM2's stride).
    The network input is ((x / scale) - mean) / std.
    """

    mode: str
    antialias: bool
    size_per_token: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    order: str = "norm_then_resize"
    scale: float = 255.0

    def size(self, grid: int) -> int:
        return self.size_per_token * grid

    def describe(self) -> dict:
        return {"mode": self.mode, "antialias": self.antialias, "size_per_token": self.size_per_token,
                "mean": list(self.mean), "std": list(self.std), "order": self.order, "scale": self.scale}
