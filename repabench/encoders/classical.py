"""Parameter-free baselines: HOG descriptors per token cell, and raw pixel patches.

* `hog-classic-cells`: scikit-image HOG (as upstream's `hog-*` baselines) on the image resized to 16 px per token:
  4x4-pixel cells, 8 orientations, blocks of 4x4 cells normalised with L2-Hys; the block that covers exactly one
  16x16 token is its descriptor (128-d), L2-normalised.
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


class PixelEncoder(Encoder):
    def __init__(self, name: str, embed_dim: int, preprocessing: Preprocessing):
        super().__init__(name, embed_dim, pretrained=False)
        self.preprocessing = preprocessing

    def tokens(self, x: Tensor, grid: int) -> Tensor:
        # channel-major within a token: (c, dy, dx)
        return F.pixel_unshuffle(x, TOKEN_PIXELS).flatten(2).transpose(1, 2)
