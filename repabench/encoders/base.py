"""The encoder interface and the preprocessing steps the families are built from.

Every encoder takes uint8-valued images [B,3,H,W] and returns fp32 patch tokens [B, grid*grid, D] on the
SiT token grid. Preprocessing is spelled out per family (docs/upstream-facts.md §4.2): resize mode and size, the
normalisation constants and the order of the two.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repabench.encoders.preprocessing import Preprocessing



def as_float_images(images: Tensor) -> Tensor:
    """uint8 or float 0..255 [B,3,H,W] -> float32 0..255, checked."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"encoder input must be [B,3,H,W] uint8-valued images, got shape {tuple(images.shape)} "
                         "(NHWC stores need .permute(0, 3, 1, 2))")
    return images.float()


def resize(x: Tensor, size: int, mode: str, antialias: bool) -> Tensor:
    if mode == "none" or (x.shape[-2] == size and x.shape[-1] == size):
        return x
    kwargs = {} if mode in ("nearest", "area") else {"align_corners": False}
    return F.interpolate(x, size=(size, size), mode=mode, antialias=antialias, **kwargs)


def normalize(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def apply_preprocessing(images: Tensor, prep: Preprocessing, size: int) -> Tensor:
    x = as_float_images(images) / prep.scale
    if prep.order == "norm_then_resize":
        return resize(normalize(x, prep.mean, prep.std), size, prep.mode, prep.antialias)
    if prep.order == "resize_then_norm":
        return normalize(resize(x, size, prep.mode, prep.antialias), prep.mean, prep.std)
    raise ValueError(f"unknown preprocessing order {prep.order!r}")


class Encoder(nn.Module):
    """A frozen vision encoder returning patch tokens on the SiT token grid.

    Subclasses set `preprocessing` and implement `tokens(x, grid)`; those whose network depends on the grid
    (absolute position embeddings resampled once, as upstream does) implement `configure(grid)`.
    """

    name: str
    embed_dim: int
    pretrained: bool
    preprocessing: Preprocessing | None = None

    def __init__(self, name: str, embed_dim: int, pretrained: bool):
        super().__init__()
        self.name = name
        self.embed_dim = embed_dim
        self.pretrained = pretrained
        self.grid: int | None = None

    def input_size(self, grid: int) -> int:
        """Side in pixels of the network input for a token grid."""
        assert self.preprocessing is not None
        return self.preprocessing.size(grid)

    def preprocess(self, images: Tensor, grid: int = 16) -> Tensor:
        assert self.preprocessing is not None
        return apply_preprocessing(images, self.preprocessing, self.input_size(grid))

    def configure(self, grid: int) -> None:
        """(Re)build what depends on the token grid; the default encoder is grid-independent."""
        self.grid = grid

    def tokens(self, x: Tensor, grid: int) -> Tensor:
        raise NotImplementedError

    def forward(self, images: Tensor, grid: int = 16) -> Tensor:
        if grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        if self.grid != grid:
            self.configure(grid)
        out = self.tokens(self.preprocess(images, grid), grid)
        expected = (images.shape[0], grid * grid, self.embed_dim)
        if tuple(out.shape) != expected:
            raise RuntimeError(f"{self.name}: produced tokens of shape {tuple(out.shape)}, expected {expected}")
        return out.float()

    def freeze(self) -> "Encoder":
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def describe(self) -> dict:
        return {"name": self.name, "embed_dim": self.embed_dim, "pretrained": self.pretrained,
                "preprocessing": self.preprocessing.describe() if self.preprocessing else None}


RANDOM_INIT_SEED = 0


@contextlib.contextmanager
def seeded_init(seed: int = RANDOM_INIT_SEED):
    """Random init that depends only on `seed` (the same name always gives the same random weights)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def pool_tokens(tokens: Tensor) -> Tensor:
    """Mean over the grid [B,T,D] -> [B,D], summed in sorted order so that any permutation of the tokens
    (the `_shuffled` control) pools to the same bits."""
    return torch.sort(tokens.float(), dim=1).values.mean(dim=1)


def resample_tokens_grid(fmap: Tensor, grid: int, mode: str = "bilinear") -> Tensor:
    """[B,C,h,w] feature map -> [B, grid*grid, C] tokens (resampled only when h, w differ from grid)."""
    if fmap.shape[-2:] != (grid, grid):
        kwargs = {} if mode in ("nearest", "area") else {"align_corners": False}
        fmap = F.interpolate(fmap, size=(grid, grid), mode=mode, **kwargs)
    return fmap.flatten(2).transpose(1, 2)


def load_checkpoint(path: Path) -> dict:
    """A state dict from .safetensors or a torch pickle (weights_only)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)
