"""The spatial-normalisation figure (upstream `scripts/viz_spatialnorm.py`): for one image, the cosine similarity
of every patch token to the centre token, on the raw encoder tokens and on iREPA's z-scored targets.

Global components shared by all tokens make the raw map flat; the normalisation removes (alpha times) the mean
token and shows the local structure that iREPA aligns to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from repabench.align import spatial_normalize


def cosine_maps(tokens: np.ndarray, alpha: float, anchor: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """tokens [T, D] of one image (T a square) -> (raw, normalised) [side, side] maps of cos(token_anchor, token_j)."""
    t = tokens.shape[0]
    side = int(round(t ** 0.5))
    if side * side != t:
        raise ValueError(f"{t} tokens are not a square grid")
    anchor = (side // 2) * side + side // 2 if anchor is None else anchor
    raw = torch.as_tensor(np.asarray(tokens, dtype=np.float32))[None]
    maps = []
    for x in (raw, spatial_normalize(raw, "zscore", alpha)):
        unit = torch.nn.functional.normalize(x[0].double(), dim=-1)
        maps.append((unit @ unit[anchor]).reshape(side, side).numpy())
    return maps[0], maps[1]


def first_image_tokens(features_dir: str | Path, index: int = 0) -> np.ndarray:
    from repabench.store import Store

    store = Store(features_dir)
    if "tokens" not in store:
        raise SystemExit(f"{features_dir} holds no tokens (pooled only); rerun extract_features")
    return np.asarray(store["tokens"][index], dtype=np.float32)


def spatialnorm_figure(maps: Mapping[str, tuple[np.ndarray, np.ndarray]], alpha: float) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names: Sequence[str] = list(maps)
    fig, axes = plt.subplots(len(names), 2, figsize=(5.2, 2.5 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        for col, (title, grid) in enumerate(zip(("raw tokens", f"z-scored (alpha {alpha:g})"), maps[name])):
            ax = axes[row][col]
            image = ax.imshow(grid, cmap="viridis", vmin=-1, vmax=1)
            side = grid.shape[0]
            ax.plot(side // 2, side // 2, marker="x", color="red")
            ax.set_title(f"{name}\n{title}" if col == 0 else title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.colorbar(image, ax=axes, shrink=0.6, label="cosine to the centre token")
    return fig
