"""Transformer encoders built from timm model definitions (docs/upstream-facts.md §4.2).

One wrapper serves the ViT and EVA families (DINO, DINOv2, DINOv3, CLIP, MoCo v3, MAE, I-JEPA, PE, SigLIP,
C-RADIO) and one the SAM2 Hiera trunk. Each registry entry fixes the timm architecture, the preprocessing, whether
the final norm is applied to the returned patch tokens, and how the absolute position embedding is resampled to
the token grid (once, when the network is built for a grid, as upstream does).
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from repabench.encoders.base import Encoder, load_checkpoint, resample_tokens_grid, seeded_init
from repabench.encoders.preprocessing import Preprocessing
from repabench.weights import WeightError, verified_path

IGNORED_CHECKPOINT_PREFIXES = ("head", "attn_pool", "fc_norm", "fc.", "mask_token", "predictor", "momentum_encoder")
# RADIO's feature normaliser ((f - mean) @ tx.T on the spatial features): torch.hub checkpoint / HF layout
FEATURE_NORMALIZER_PREFIXES = ("_feature_normalizer.", "radio_model.feature_normalizer.")


@dataclass(frozen=True)
class TimmArchitecture:
    arch: str
    patch: int
    preprocessing: Preprocessing
    final_norm: bool = True
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    filter_kwargs: dict[str, Any] = field(default_factory=dict)  # pos-embed resampling of timm's checkpoint filter
    strip_prefix: str = ""  # removed from checkpoint keys before timm's filter (MoCo v3)
    key_renames: tuple[tuple[str, str], ...] = ()  # (old, new) substrings of keys, after strip_prefix
    cls_mix_alpha: float | None = None  # DINOv2-mixed: alpha * CLS + (1 - alpha) * patch
    feature_normalizer: bool = False  # apply a RADIO `_feature_normalizer` when the checkpoint carries one


def _filter_fn(model: torch.nn.Module):
    module = importlib.import_module(type(model).__module__)
    return getattr(module, "checkpoint_filter_fn", None)


def _rename(key: str, renames: tuple[tuple[str, str], ...]) -> str:
    for old, new in renames:
        if old in key:
            key = key.replace(old, new)
    return key


def feature_normalizer_of(state: dict, path: Path) -> tuple[Tensor, Tensor] | None:
    """RADIO's (mean [D], tx [D, D]) when the checkpoint carries a feature normaliser, else None."""
    for prefix in FEATURE_NORMALIZER_PREFIXES:
        if f"{prefix}mean" in state or f"{prefix}tx" in state:
            try:
                mean, tx = state[f"{prefix}mean"], state[f"{prefix}tx"]
            except KeyError as missing:
                raise WeightError(f"{path}: feature normaliser without {missing}; delete the file and rerun "
                                  "fetch_weights") from None
            if mean.ndim != 1 or tx.shape != (mean.shape[0], mean.shape[0]):
                raise WeightError(f"{path}: feature normaliser of shapes {tuple(mean.shape)}, {tuple(tx.shape)}; "
                                  "expected [D] and [D, D]")
            return mean.float(), tx.float()
    return None


def load_timm_checkpoint(model: torch.nn.Module, path: Path, spec: TimmArchitecture) -> tuple[Tensor, Tensor] | None:
    """Load `path` into `model`; returns the RADIO feature normaliser (mean, tx) when `spec` asks and it exists."""
    state = load_checkpoint(path)
    if spec.strip_prefix:
        state = state.get("state_dict", state)
        state = {k[len(spec.strip_prefix):]: v for k, v in state.items() if k.startswith(spec.strip_prefix)}
        if not state:
            raise WeightError(f"{path}: no tensor starts with {spec.strip_prefix!r}; wrong file for this encoder?")
    if spec.key_renames:
        state = {_rename(k, spec.key_renames): v for k, v in state.items()}
    normalizer = feature_normalizer_of(state, path) if spec.feature_normalizer else None
    filter_fn = _filter_fn(model)
    if filter_fn is not None:
        state = filter_fn(state, model, **spec.filter_kwargs)
    missing, unexpected = model.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.startswith(IGNORED_CHECKPOINT_PREFIXES)]
    if missing or unexpected:
        raise WeightError(f"{path} does not fit timm {spec.arch}: missing {missing[:6]}, unexpected "
                          f"{unexpected[:6]}; is it the file this encoder expects? delete it and rerun fetch_weights")
    return normalizer


class TimmViTEncoder(Encoder):
    """Patch tokens of a timm ViT/EVA: the last block's output, CLS/registers dropped, final norm per spec."""

    def __init__(self, name: str, embed_dim: int, spec: TimmArchitecture, weight_file: Path | None, grid: int = 16):
        super().__init__(name, embed_dim, pretrained=weight_file is not None)
        self.spec = spec
        self.preprocessing = spec.preprocessing
        self.weight_file = weight_file
        self.network: torch.nn.Module | None = None
        self.register_buffer("feature_mean", None)
        self.register_buffer("feature_tx", None)
        self.configure(grid)

    def configure(self, grid: int) -> None:
        import timm

        device = next(self.network.parameters()).device if self.network is not None else None
        on_meta = device is not None and device.type == "meta"
        kwargs = {**self.create_kwargs(grid), **self.spec.model_kwargs}
        with seeded_init(), (torch.device("meta") if on_meta else contextlib.nullcontext()):
            network = timm.create_model(self.spec.arch, **kwargs)
        if self.weight_file is not None:
            normalizer = load_timm_checkpoint(network, verified_path(self.weight_file), self.spec)
            if normalizer is not None:
                self.feature_mean, self.feature_tx = (t.to(device) if device is not None else t for t in normalizer)
        network.eval().requires_grad_(False)
        self.network = network.to(device) if device is not None and not on_meta else network
        self.grid = grid

    def create_kwargs(self, grid: int) -> dict[str, Any]:
        return {"pretrained": False, "num_classes": 0, "global_pool": "", "img_size": self.spec.patch * grid,
                "dynamic_img_size": False}

    def tokens(self, x: Tensor, grid: int) -> Tensor:
        net = self.network
        if self.spec.cls_mix_alpha is None:
            (out,) = net.forward_intermediates(x, indices=1, norm=self.spec.final_norm, output_fmt="NLC",
                                               intermediates_only=True)
            if self.feature_tx is not None:  # as RADIO's own model does with a checkpoint that carries one
                out = (out - self.feature_mean.to(out.dtype)) @ self.feature_tx.to(out.dtype).T
            return out
        (pair,) = net.forward_intermediates(x, indices=1, norm=self.spec.final_norm, output_fmt="NLC",
                                            intermediates_only=True, return_prefix_tokens=True)
        patch, prefix = pair
        alpha = self.spec.cls_mix_alpha
        return alpha * prefix[:, :1] + (1 - alpha) * patch


    def describe(self) -> dict:
        return {**super().describe(), "feature_normalizer": self.feature_tx is not None}


class SamViTEncoder(TimmViTEncoder):
    """SAM (v1) image encoder: the neck output [B,256,64,64] at 1024 px, bilinearly resized to the token grid
    (upstream's HF `SamModel.vision_encoder`; here timm's `samvit_*` with the same weights)."""

    def create_kwargs(self, grid: int) -> dict[str, Any]:
        return {"pretrained": False, "num_classes": 0, "img_size": self.spec.patch * grid}

    def tokens(self, x: Tensor, grid: int) -> Tensor:
        return resample_tokens_grid(self.network.forward_features(x), grid, mode="bilinear")


class Sam2HieraEncoder(Encoder):
    """SAM2 image-encoder trunk (Hiera): the last stage at stride 32, flattened row-major (HF `last_hidden_state`)."""

    def __init__(self, name: str, embed_dim: int, spec: TimmArchitecture, weight_file: Path | None):
        super().__init__(name, embed_dim, pretrained=weight_file is not None)
        import timm

        self.spec = spec
        self.preprocessing = spec.preprocessing
        self.network = timm.create_model(spec.arch, pretrained=False, num_classes=0, **spec.model_kwargs)
        if weight_file is not None:
            load_timm_checkpoint(self.network, verified_path(weight_file), spec)

    def tokens(self, x: Tensor, grid: int) -> Tensor:
        (out,) = self.network.forward_intermediates(x, indices=1, norm=False, output_fmt="NCHW",
                                                    intermediates_only=True)
        return out.flatten(2).transpose(1, 2)
