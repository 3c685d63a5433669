"""Parameter-free baselines: HOG descriptors per token cell, and raw pixel patches.

* `hog-classic-cells`: scikit-image HOG (as upstream's `hog-*` baselines) on the image resized to 16 px per token:
  4x4-pixel cells, 8 orientations, blocks of 4x4 cells normalised with L2-Hys; the block that covers exactly one
  16x16 token is its descriptor (128-d), L2-normalised.
* `hog-upstream-g16_d128`: upstream's HOG baseline: 2-px cells on grey, blocks of 4x4 cells (L2-Hys), each dense
  position L2-normalised, the map resized bilinearly to the token grid.
* `sift-upstream-g16_d128`: upstream's Kornia `sift-*` baseline: dense SIFT on grey at one keypoint per token
  (centres 8, 24, ... px, scale 16), dominant orientation assigned, 41-px patches, 4x4x8 bins clipped at 0.2 (no
  RootSIFT), each descriptor L2-normalised.
* `pixels-classic-raw`: the 16x16x3 pixels under each token (768-d), scaled to [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from repabench.encoders.base import Encoder
from repabench.encoders.preprocessing import Preprocessing

TOKEN_PIXELS = 16
HOG_CELL = 4
HOG_ORIENTATIONS = 8
HOG_CELLS_PER_TOKEN = TOKEN_PIXELS // HOG_CELL


def hog_token_descriptors(image: np.ndarray, grid: int) -> np.ndarray:
    """[S,S,3] float image (S = 16 * grid) -> [grid*grid, 128] HOG descriptors, one block per token."""
    from skimage.feature import hog

    blocks = hog(image, orientations=HOG_ORIENTATIONS, pixels_per_cell=(HOG_CELL, HOG_CELL),
                 cells_per_block=(HOG_CELLS_PER_TOKEN, HOG_CELLS_PER_TOKEN), block_norm="L2-Hys",
                 feature_vector=False, channel_axis=-1)
    # blocks[i, j] starts at cell (i, j); token (r, c) covers cells 4r..4r+3, 4c..4c+3
    tokens = blocks[::HOG_CELLS_PER_TOKEN, ::HOG_CELLS_PER_TOKEN][:grid, :grid]
    tokens = tokens.reshape(grid * grid, -1)
    norms = np.linalg.norm(tokens, axis=1, keepdims=True)
    return tokens / np.maximum(norms, 1e-12)


class HOGEncoder(Encoder):
    def __init__(self, name: str, embed_dim: int, preprocessing: Preprocessing):
        super().__init__(name, embed_dim, pretrained=False)
        self.preprocessing = preprocessing

    def tokens(self, x: Tensor, grid: int) -> Tensor:
        images = x.clamp(0, 255).permute(0, 2, 3, 1).detach().cpu().double().numpy()
        out = np.stack([hog_token_descriptors(image, grid) for image in images])
        return torch.from_numpy(out).to(device=x.device, dtype=torch.float32)


GREY_WEIGHTS = (0.2125, 0.7154, 0.0721)  # scikit-image rgb2gray


def hog_dense_map(grey: np.ndarray, orientations: int, cell: int = 2, cells_per_block: int = 4) -> np.ndarray:
    """[S,S] grey image -> [B,B,D] dense HOG map: one L2-Hys block per cell position, D = 16 * orientations,
    each position's descriptor L2-normalised."""
    from skimage.feature import hog

    blocks = hog(grey, orientations=orientations, pixels_per_cell=(cell, cell),
                 cells_per_block=(cells_per_block, cells_per_block), block_norm="L2-Hys", feature_vector=False)
    dense = blocks.reshape(blocks.shape[0], blocks.shape[1], -1)
    return dense / np.maximum(np.linalg.norm(dense, axis=-1, keepdims=True), 1e-12)


class HOGDenseEncoder(Encoder):
    """Upstream's `hog-*` baseline: HOG with 2-px cells on the grey image, the dense map resized bilinearly to the
    token grid (docs/upstream-facts.md §4.2)."""

    def __init__(self, name: str, embed_dim: int, preprocessing: Preprocessing):
        super().__init__(name, embed_dim, pretrained=False)
        if embed_dim % 16:
            raise ValueError(f"{name}: HOG dimension {embed_dim} is not 16 x orientations")
        self.preprocessing = preprocessing
        self.orientations = embed_dim // 16

    def tokens(self, x: Tensor, grid: int) -> Tensor:
        weights = torch.tensor(GREY_WEIGHTS, dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
        grey = (x.clamp(0, 255).double() * weights).sum(1).cpu().numpy()
        dense = np.stack([hog_dense_map(image, self.orientations) for image in grey])  # [N, B, B, D]
        fmap = torch.from_numpy(dense).permute(0, 3, 1, 2).float()
        fmap = F.interpolate(fmap, size=(grid, grid), mode="bilinear", align_corners=False)
        return fmap.flatten(2).transpose(1, 2).to(x.device)


SIFT_PATCH = 41  # Kornia SIFTDescriptor's default patch, as upstream


class SIFTEncoder(Encoder):
    """Dense Kornia SIFT, one descriptor per token (docs/upstream-facts.md §4.2 `sift-*`); needs the `kornia` package."""

    def __init__(self, name: str, embed_dim: int, preprocessing: Preprocessing):
        super().__init__(name, embed_dim, pretrained=False)
        try:
            import kornia.feature as kf
        except ModuleNotFoundError as exc:
            raise RuntimeError(f"{name} needs the kornia package (requirements/base.txt); run `make install`") from exc
        self.preprocessing = preprocessing
        self.descriptor = kf.SIFTDescriptor(SIFT_PATCH, num_ang_bins=8, num_spatial_bins=4, rootsift=False,
                                            clipval=0.2)
        self.orienter = kf.LAFOrienter(SIFT_PATCH // 2)

    def tokens(self, x: Tensor, grid: int) -> Tensor:
        import kornia
        import kornia.feature as kf

        n, _, side, _ = x.shape
        grey = kornia.color.rgb_to_grayscale(x.float() / 255.0)
        centres = torch.arange(TOKEN_PIXELS // 2, side, TOKEN_PIXELS, dtype=torch.float32, device=x.device)
        ys, xs = torch.meshgrid(centres, centres, indexing="ij")  # row-major token order
        xy = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1).expand(n, -1, -1)
        t = xy.shape[1]
        scale = torch.full((n, t, 1, 1), float(TOKEN_PIXELS), device=x.device)
        lafs = kf.laf_from_center_scale_ori(xy, scale, torch.zeros(n, t, 1, device=x.device))
        self.orienter.to(x.device), self.descriptor.to(x.device)
        lafs = self.orienter(lafs, grey)
        patches = kf.extract_patches_from_pyramid(grey, lafs, PS=SIFT_PATCH)
        desc = self.descriptor(patches.reshape(n * t, 1, SIFT_PATCH, SIFT_PATCH)).reshape(n, t, -1)
        return F.normalize(desc, dim=-1)


class PixelEncoder(Encoder):
    def __init__(self, name: str, embed_dim: int, preprocessing: Preprocessing):
        super().__init__(name, embed_dim, pretrained=False)
        self.preprocessing = preprocessing

    def tokens(self, x: Tensor, grid: int) -> Tensor:
        # channel-major within a token: (c, dy, dx)
        return F.pixel_unshuffle(x, TOKEN_PIXELS).flatten(2).transpose(1, 2)
