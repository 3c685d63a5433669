"""Upstream's `sam2logit-vit-<s|b|l><n>` baseline (docs/upstream-facts.md §4.2): SAM2 mask logits as token features.

A fixed n x n grid of single-point foreground prompts (x, y = linspace(0, 1023, n), row-major) is given to the
transformers `Sam2Processor` + `Sam2Model` (the full model: Hiera trunk, prompt encoder, mask decoder), one object
per point, `multimask_output=False`; each point's low-resolution mask logits are resized bilinearly to the token
grid, so token (r, c) has one channel per prompt (D = n^2). As upstream, the images go to the processor as they
come (uint8, 256 px) with the point coordinates above, which the processor reads as pixel positions of that image
and rescales to its 1024-px input (x 4): most prompts fall outside the image. That is upstream's computation and is
kept. Weights: the Hugging Face snapshot (`hfrepo:`) of facebook/sam2-hiera-{small,base-plus,large}.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from repabench.encoders.base import Encoder
from repabench.weights import WeightError, verified_path

PROMPT_CANVAS = 1024  # upstream's make_grids(H=1024, W=1024)
POINTS_PER_CALL = 64  # prompts per model call (memory only: every prompt is its own object)

# Hiera trunks of the random-init architecture (SAM2's sam2_hiera_{s,b+,l} configs)
HIERA = {
    "s": dict(hidden_size=96, num_attention_heads=1, blocks_per_stage=[1, 2, 11, 2],
              embed_dim_per_stage=[96, 192, 384, 768], global_attention_blocks=[7, 10, 13]),
    "b": dict(hidden_size=112, num_attention_heads=2, blocks_per_stage=[2, 3, 16, 3],
              embed_dim_per_stage=[112, 224, 448, 896], global_attention_blocks=[12, 16, 20],
              window_positional_embedding_background_size=[14, 14]),
    "l": dict(hidden_size=144, num_attention_heads=2, blocks_per_stage=[2, 6, 36, 4],
              embed_dim_per_stage=[144, 288, 576, 1152], global_attention_blocks=[23, 33, 43],
              window_size_per_stage=[8, 4, 16, 8]),
}


def prompt_points(side: int) -> list[list[float]]:
    """The side x side prompt grid as (x, y), row-major (y outer), on upstream's 1024-px canvas."""
    coords = torch.linspace(0, PROMPT_CANVAS - 1, side, device="cpu")  # float32, as upstream; never meta
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1).tolist()


def load_sam2(size: str, snapshot: Path | None):
    """(Sam2Model, Sam2Processor) from a fetched snapshot, or a random-init model of the size's architecture."""
    from transformers import Sam2Config, Sam2ImageProcessorFast, Sam2Model, Sam2Processor
    from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig, Sam2VisionConfig

    if snapshot is not None:
        snapshot = verified_path(snapshot)
        if not (snapshot / "config.json").is_file():
            raise WeightError(f"{snapshot} is not a Hugging Face snapshot (no config.json); delete it and rerun "
                              "fetch_weights")
        return (Sam2Model.from_pretrained(str(snapshot), local_files_only=True),
                Sam2Processor.from_pretrained(str(snapshot), local_files_only=True))
    trunk = Sam2HieraDetConfig(**HIERA[size])
    vision = Sam2VisionConfig(backbone_config=trunk, backbone_channel_list=trunk.embed_dim_per_stage[::-1])
    return Sam2Model(Sam2Config(vision_config=vision)), Sam2Processor(image_processor=Sam2ImageProcessorFast())


class Sam2LogitEncoder(Encoder):
    def __init__(self, name: str, points_side: int, network: torch.nn.Module, processor, pretrained: bool):
        super().__init__(name, points_side * points_side, pretrained=pretrained)
        self.network, self.processor = network, processor
        self.points = prompt_points(points_side)

    def preprocess(self, images: Tensor, grid: int = 16) -> Tensor:
        return images  # the SAM2 processor resizes and normalises (as upstream)

    def tokens(self, x: Tensor, grid: int) -> Tensor:
        images = [image for image in x.detach().cpu()]
        logits = []
        for start in range(0, len(self.points), POINTS_PER_CALL):
            chunk = self.points[start:start + POINTS_PER_CALL]
            inputs = self.processor(images=images, input_points=[[[p] for p in chunk]] * len(images),
                                    input_labels=[[[1]] * len(chunk)] * len(images), return_tensors="pt")
            inputs = {k: v.to(x.device) if isinstance(v, Tensor) else v for k, v in inputs.items()}
            logits.append(self.network(**inputs, multimask_output=False).pred_masks[:, :, 0])
        maps = F.interpolate(torch.cat(logits, dim=1).float(), size=(grid, grid), mode="bilinear",
                             align_corners=False)
        return maps.flatten(2).transpose(1, 2)
