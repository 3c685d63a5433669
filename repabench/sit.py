"""SiT: the class-conditional latent diffusion transformer of REPA/iREPA, plus the alignment projectors.

Re-implemented from the facts in docs/upstream-facts.md §1: adaLN-Zero blocks, fixed 2D sin-cos position
embedding, continuous t in [0, 1] (t = 1 is noise), null class = num_classes, velocity output. The decoder width
equals the hidden width for every size (upstream SiT-S/2 crashes because it does not).

Projectors map the hidden state after block `encoder_depth` (1-based) to an encoder's token dimension:
``mlp`` (REPA: Linear-SiLU-Linear-SiLU-Linear), ``linear`` and ``conv`` (iREPA: Conv2d over the square token grid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from repabench.sizes import MODEL_CONFIGS, model_name, model_slug  # noqa: F401 (re-exported)

PROJECTOR_KINDS = ("mlp", "linear", "conv")
_PROJECTOR_PREFIX = "projectors."


# --------------------------------------------------------------------------------------------------------------
# embeddings


def sincos_pos_embed_2d(dim: int, grid: int) -> np.ndarray:
    """Fixed 2D sin-cos embedding [grid*grid, dim] (MAE recipe): first half encodes the column, second the row."""
    if dim % 4:
        raise ValueError(f"hidden size {dim} must be divisible by 4 for the 2D sin-cos position embedding")
    coords = np.arange(grid, dtype=np.float64)
    cols, rows = np.meshgrid(coords, coords)  # cols varies along the last axis: token index = row * grid + col

    def embed_1d(positions: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))
        angles = positions.reshape(-1)[:, None] * omega[None, :]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return np.concatenate([embed_1d(cols), embed_1d(rows)], axis=1).astype(np.float32)


def timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of continuous t (used as is, no x1000): [cos(t f_k), sin(t f_k)]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = timestep_embedding(t, self.frequency_dim)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class table with one extra row (index num_classes) for the null label; drops labels in train mode."""

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        if self.training and self.dropout_prob > 0:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        return self.embedding_table(labels)


# --------------------------------------------------------------------------------------------------------------
# transformer


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection; fused SDPA kernel unless disabled.

    qk_norm (upstream's `--qk-norm`, off by default): LayerNorm (affine, eps 1e-5) of q and k over each head."""

    def __init__(self, dim: int, num_heads: int, fused: bool = True, qk_norm: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.fused = fused
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.q_norm = nn.LayerNorm(dim // num_heads) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(dim // num_heads) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            weights = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
            out = weights.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SiTBlock(nn.Module):
    """adaLN-Zero block: the conditioning sets shift/scale/gate of the attention and MLP branches."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, fused_attn: bool = True,
                 qk_norm: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads, fused=fused_attn, qk_norm=qk_norm)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate_a.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_a, scale_a))
        return x + gate_m.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class FinalLayer(nn.Module):
    def __init__(self, dim: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


# --------------------------------------------------------------------------------------------------------------
# projectors


@dataclass(frozen=True)
class ProjectorConfig:
    """One projector per target encoder. `hidden` is used by mlp, `kernel` by conv."""

    kind: str
    z_dim: int
    hidden: int = 2048
    kernel: int = 3

    def __post_init__(self) -> None:
        if self.kind not in PROJECTOR_KINDS:
            raise ValueError(f"projector kind {self.kind!r} is not one of {PROJECTOR_KINDS}")
        if self.kind == "conv" and self.kernel % 2 == 0:
            raise ValueError(f"conv projector kernel must be odd (same-size padding), got {self.kernel}")


class ConvProjector(nn.Module):
    """iREPA projector: tokens -> [B, D, g, g] (row-major) -> Conv2d(k, padding k//2) -> tokens."""

    def __init__(self, dim: int, z_dim: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, z_dim, kernel_size=kernel, stride=1, padding=kernel // 2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        grid = math.isqrt(n)
        if grid * grid != n:
            raise ValueError(f"conv projector needs a square token grid, got {n} tokens")
        feat = x.transpose(1, 2).reshape(b, d, grid, grid)
        return self.conv(feat).flatten(2).transpose(1, 2)


def build_projector(dim: int, spec: ProjectorConfig) -> nn.Module:
    if spec.kind == "mlp":
        return nn.Sequential(nn.Linear(dim, spec.hidden), nn.SiLU(), nn.Linear(spec.hidden, spec.hidden), nn.SiLU(),
                             nn.Linear(spec.hidden, spec.z_dim))
    if spec.kind == "linear":
        return nn.Linear(dim, spec.z_dim)
    return ConvProjector(dim, spec.z_dim, spec.kernel)


# --------------------------------------------------------------------------------------------------------------
# the model


def init_linear_layers(model: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every nn.Linear (DiT/SiT's base init; JiT's too)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class SiT(nn.Module):
    def __init__(self, input_size: int = 32, patch_size: int = 2, in_channels: int = 4, hidden_size: int = 1152,
                 depth: int = 28, num_heads: int = 16, mlp_ratio: float = 4.0, class_dropout_prob: float = 0.1,
                 num_classes: int = 1000, projectors: list[ProjectorConfig] | None = None, encoder_depth: int = 8,
                 fused_attn: bool = True, qk_norm: bool = False):
        super().__init__()
        self.qk_norm = qk_norm
        if input_size % patch_size:
            raise ValueError(f"latent size {input_size} is not divisible by the patch size {patch_size}")
        self.in_channels = in_channels
        self.out_channels = in_channels
        self.patch_size = patch_size
        self.num_classes = num_classes
        self.grid = input_size // patch_size
        self.projector_specs = list(projectors or [])
        if self.projector_specs and not 1 <= encoder_depth <= depth:
            raise ValueError(f"encoder_depth {encoder_depth} is outside the model's 1..{depth} blocks; "
                             f"set the method's encoder_depth to at most {depth}")
        self.encoder_depth = encoder_depth

        self.x_embedder = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size, bias=True)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        pos = torch.from_numpy(sincos_pos_embed_2d(hidden_size, self.grid)).unsqueeze(0)
        self.pos_embed = nn.Parameter(pos, requires_grad=False)
        self.blocks = nn.ModuleList(SiTBlock(hidden_size, num_heads, mlp_ratio, fused_attn, qk_norm)
                                    for _ in range(depth))
        self.projectors = nn.ModuleList(build_projector(hidden_size, spec) for spec in self.projector_specs)
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        init_linear_layers(self)
        weight = self.x_embedder.weight.data
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.zeros_(self.x_embedder.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        p, c, g = self.patch_size, self.out_channels, self.grid
        x = x.reshape(x.shape[0], g, g, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, g * p, g * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                extra_condition: torch.Tensor | None = None):
        """x [B,C,H,W] latents, t [B] in [0,1] (1 = noise), y [B] labels -> velocity, plus zs with projectors.

        extra_condition [B, D], when given, is added to the conditioning vector t_emb + y_emb (MeanFlow adds the
        embedding of t - r there; repabench.meanflow)."""
        h = self.x_embedder(x).flatten(2).transpose(1, 2) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y)
        if extra_condition is not None:
            c = c + extra_condition
        zs = None
        for index, block in enumerate(self.blocks):
            h = block(h, c)
            if self.projector_specs and index + 1 == self.encoder_depth:
                zs = [projector(h) for projector in self.projectors]
        velocity = self.unpatchify(self.final_layer(h, c))
        return (velocity, zs) if self.projector_specs else velocity


def build_sit(name: str, input_size: int, in_channels: int = 4, num_classes: int = 1000,
              projectors: list[ProjectorConfig] | None = None, encoder_depth: int = 8,
              class_dropout_prob: float = 0.1, fused_attn: bool = True, qk_norm: bool = False) -> SiT:
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_CONFIGS)}")
    cfg = {k: v for k, v in MODEL_CONFIGS[name].items() if k != "upstream"}
    return SiT(input_size=input_size, in_channels=in_channels, num_classes=num_classes, projectors=projectors,
               encoder_depth=encoder_depth, class_dropout_prob=class_dropout_prob, fused_attn=fused_attn,
               qk_norm=qk_norm, **cfg)


def generator_kwargs(model: SiT, class_dropout_prob: float) -> dict[str, Any]:
    """What build_sit needs (besides the name) to rebuild the generator without projectors."""
    kwargs = {"input_size": model.grid * model.patch_size, "in_channels": model.in_channels,
              "num_classes": model.num_classes, "class_dropout_prob": class_dropout_prob}
    if model.qk_norm:  # only when on, so checkpoints from before the option read the same
        kwargs["qk_norm"] = True
    return kwargs


def generator_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict without projector weights (generation needs none)."""
    return {k: v for k, v in state.items() if not k.startswith(_PROJECTOR_PREFIX)}


def load_generator(ckpt_path: str | Path, device: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the EMA generator of a training checkpoint in eval mode (SiT, or JiT / MeanFlow where
    `model.family` says so); returns (model, metadata without weights)."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; run the train rule that writes it")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    missing = {"ema", "model", "step"} - set(ckpt)
    if missing:
        raise ValueError(f"{path} is not a repabench training checkpoint (missing {sorted(missing)})")
    spec = ckpt["model"]
    if spec.get("family", "sit") == "jit":  # checkpoints without a family are SiT's
        from repabench.jit import build_jit

        model = build_jit(spec["name"], **spec["kwargs"])
    elif spec.get("family") == "meanflow":
        from repabench.meanflow import build_meanflow_sit

        model = build_meanflow_sit(spec["name"], **spec["kwargs"])
    else:
        model = build_sit(spec["name"], **spec["kwargs"])
    model.load_state_dict(ckpt["ema"], strict=True)
    model.eval().requires_grad_(False).to(device)
    meta = {k: v for k, v in ckpt.items() if k != "ema"}
    return model, meta
