"""Causal controls: an encoder whose patch tokens are transformed after the network, registered as
`<encoder>_shuffled`, `<encoder>_global` or `<encoder>_local` (catalog.VARIANTS says what each keeps).

The shuffle is one permutation of the grid, fixed by (grid, PERMUTATION_SEED), so every image (and every stage:
targets of training, features of the metrics and of the probe) sees the same one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from repabench.encoders.base import Encoder

PERMUTATION_SEED = 20251211


def grid_permutation(grid: int) -> Tensor:
    """The fixed permutation of the grid*grid token positions used by `_shuffled`."""
    generator = torch.Generator().manual_seed(PERMUTATION_SEED + grid)
    return torch.randperm(grid * grid, generator=generator)


def shuffled(tokens: Tensor) -> Tensor:
    side = int(round(tokens.shape[1] ** 0.5))
    return tokens[:, grid_permutation(side).to(tokens.device)]


def global_only(tokens: Tensor) -> Tensor:
    return tokens.mean(dim=1, keepdim=True).expand_as(tokens).contiguous()


def local_only(tokens: Tensor) -> Tensor:
    return tokens - tokens.mean(dim=1, keepdim=True)


TRANSFORMS = {"_shuffled": shuffled, "_global": global_only, "_local": local_only}


class VariantEncoder(Encoder):
    """`inner`'s tokens, transformed; preprocessing, grid handling and weights are the inner encoder's."""

    def __init__(self, name: str, inner: Encoder, variant: str):
        if variant not in TRANSFORMS:
            raise ValueError(f"unknown encoder variant {variant!r}; one of {', '.join(TRANSFORMS)}")
        super().__init__(name, inner.embed_dim, inner.pretrained)
        self.inner = inner
        self.variant = variant
        self.preprocessing = inner.preprocessing

    def input_size(self, grid: int) -> int:
        return self.inner.input_size(grid)

    def forward(self, images: Tensor, grid: int = 16) -> Tensor:
        return TRANSFORMS[self.variant](self.inner(images, grid))

    def describe(self) -> dict:
        return {**self.inner.describe(), "name": self.name, "variant": self.variant.lstrip("_"),
                "base_encoder": self.inner.name}
