"""JiT ("Just image Transformers"): the pixel-space diffusion transformer, its x-prediction objective, its sampler.

Re-implemented from the facts in docs/upstream-facts.md §10 (JiT `model_jit.py`, `denoiser.py`, `main_jit.py`; the
iREPA `jit/` copy adds the projector hook). The network sees noisy RGB pixels in [-1, 1] through a bottleneck patch
embedding (Conv patch -> bottleneck channels, no bias; 1x1 Conv -> width), runs RMSNorm / qk-norm / SwiGLU / 2D RoPE
blocks with adaLN conditioning on t_emb + y_emb, prepends `in_context_len` copies of the class embedding (plus a
learned position embedding) at block `in_context_start` and predicts the clean image.

Time runs the other way from SiT: t = 0 is noise, t = 1 is the clean image, z_t = t x + (1 - t) e. The loss is on
the velocity v = (x - z_t) / max(1 - t, t_eps) derived from the predicted image.

REPA / iREPA: projectors (repabench.sit.build_projector) read the patch tokens after block `encoder_depth`
(1-based); in-context tokens present at that depth are left out, so the projector sees the square patch grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from repabench.align import denoising_loss, drop_labels, per_sample, with_alignment
from repabench.sizes import JIT_CONFIGS  # noqa: F401 (re-exported)
from repabench.sit import (ProjectorConfig, TimestepEmbedder, build_projector, init_linear_layers, modulate,
                           sincos_pos_embed_2d)

# the sizes (JiT `model_jit.py`) live in repabench.sizes, read by the workflow without torch


# --------------------------------------------------------------------------------------------------------------
# layers


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in fp32 and cast back."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * normed).to(x.dtype)


def rope_angles(head_dim: int, grid: int, prefix_tokens: int = 0, theta: float = 10000.0) -> torch.Tensor:
    """Rotation angles [prefix + grid^2, head_dim] of JiT's 2D RoPE (each angle repeated for its pair of dims).

    The first half of a head rotates with the token's row, the second half with its column, each with the
    frequencies theta^(-2k / (head_dim / 2)); prefix (in-context) tokens get angle 0, i.e. no rotation."""
    if head_dim % 4:
        raise ValueError(f"head dimension {head_dim} must be divisible by 4 for the 2D RoPE")
    axis_dim = head_dim // 2
    freqs = theta ** (-torch.arange(0, axis_dim, 2, dtype=torch.float64) / axis_dim)
    per_axis = (torch.arange(grid, dtype=torch.float64)[:, None] * freqs[None]).repeat_interleave(2, dim=-1)
    rows = per_axis[:, None, :].expand(grid, grid, axis_dim)
    cols = per_axis[None, :, :].expand(grid, grid, axis_dim)
    angles = torch.cat([rows, cols], dim=-1).reshape(grid * grid, head_dim)
    return torch.cat([torch.zeros(prefix_tokens, head_dim, dtype=torch.float64), angles]).float()


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[2k], x[2k+1]) of the last axis by its angle."""
    pairs = x.unflatten(-1, (-1, 2))
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return x * angles.cos().to(x.dtype) + rotated * angles.sin().to(x.dtype)


class JiTAttention(nn.Module):
    """Self-attention with qkv bias, RMSNorm on q and k per head, then RoPE on q and k."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 fused: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.fused = fused
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.q_norm = RMSNorm(dim // num_heads)
        self.k_norm = RMSNorm(dim // num_heads)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(self.q_norm(q), angles), apply_rope(self.k_norm(k), angles)
        drop = self.attn_drop if self.training else 0.0
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        else:  # explicit softmax: supports forward-mode AD and double precision everywhere
            weights = ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(dim=-1)
            out = F.dropout(weights, drop) @ v
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class SwiGLU(nn.Module):
    """silu(x W1) * (x W2) -> W3, hidden width 2/3 of the nominal MLP width (JiT's rule)."""

    def __init__(self, dim: int, nominal_hidden: int, drop: float = 0.0):
        super().__init__()
        hidden = int(nominal_hidden * 2 / 3)
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.w12(x).chunk(2, dim=-1)
        return self.w3(self.drop(F.silu(gate) * value))


class JiTBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, fused_attn: bool = True):
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.attn = JiTAttention(dim, num_heads, attn_drop, proj_drop, fused_attn)
        self.norm2 = RMSNorm(dim)
        self.mlp = SwiGLU(dim, int(dim * mlp_ratio), proj_drop)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate_a.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_a, scale_a), angles)
        return x + gate_m.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class JiTFinalLayer(nn.Module):
    def __init__(self, dim: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = RMSNorm(dim)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class BottleneckPatchEmbed(nn.Module):
    """Conv(patch, stride patch, no bias) to `bottleneck` channels, then a 1x1 Conv (with bias) to the width."""

    def __init__(self, in_channels: int, patch_size: int, bottleneck_dim: int, dim: int):
        super().__init__()
        self.proj1 = nn.Conv2d(in_channels, bottleneck_dim, kernel_size=patch_size, stride=patch_size, bias=False)
        self.proj2 = nn.Conv2d(bottleneck_dim, dim, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj2(self.proj1(x)).flatten(2).transpose(1, 2)


# --------------------------------------------------------------------------------------------------------------
# the model


class JiT(nn.Module):
    def __init__(self, input_size: int = 256, patch_size: int = 16, in_channels: int = 3, hidden_size: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, num_classes: int = 1000, bottleneck_dim: int = 128,
                 in_context_len: int = 32, in_context_start: int = 4, projectors: list[ProjectorConfig] | None = None,
                 encoder_depth: int = 8, fused_attn: bool = True):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"image size {input_size} is not divisible by the patch size {patch_size}")
        if in_context_len and not 0 <= in_context_start < depth:
            raise ValueError(f"in_context_start {in_context_start} is outside the model's 0..{depth - 1} blocks")
        self.projector_specs = list(projectors or [])
        if self.projector_specs and not 1 <= encoder_depth <= depth:
            raise ValueError(f"encoder_depth {encoder_depth} is outside the model's 1..{depth} blocks; "
                             f"set the method's encoder_depth to at most {depth}")
        self.in_channels = self.out_channels = in_channels
        self.patch_size = patch_size
        self.grid = input_size // patch_size
        self.num_classes = num_classes
        self.in_context_len = in_context_len
        self.in_context_start = in_context_start
        self.encoder_depth = encoder_depth

        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = nn.Embedding(num_classes + 1, hidden_size)  # row num_classes: the null label
        self.x_embedder = BottleneckPatchEmbed(in_channels, patch_size, bottleneck_dim, hidden_size)
        pos = torch.from_numpy(sincos_pos_embed_2d(hidden_size, self.grid)).unsqueeze(0)
        self.pos_embed = nn.Parameter(pos, requires_grad=False)
        if in_context_len:
            self.in_context_posemb = nn.Parameter(torch.zeros(1, in_context_len, hidden_size))
        head_dim = hidden_size // num_heads
        self.register_buffer("rope_patches", rope_angles(head_dim, self.grid), persistent=False)
        self.register_buffer("rope_in_context", rope_angles(head_dim, self.grid, in_context_len), persistent=False)
        middle = range(depth // 4, depth // 4 * 3)  # dropout only in the middle half of the blocks
        self.blocks = nn.ModuleList(
            JiTBlock(hidden_size, num_heads, mlp_ratio, attn_drop if i in middle else 0.0,
                     proj_drop if i in middle else 0.0, fused_attn) for i in range(depth))
        self.projectors = nn.ModuleList(build_projector(hidden_size, spec) for spec in self.projector_specs)
        self.final_layer = JiTFinalLayer(hidden_size, patch_size, self.out_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        init_linear_layers(self)
        for conv in (self.x_embedder.proj1, self.x_embedder.proj2):
            nn.init.xavier_uniform_(conv.weight.data.view(conv.weight.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj2.bias)
        if self.in_context_len:
            nn.init.normal_(self.in_context_posemb, std=0.02)
        nn.init.normal_(self.y_embedder.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for layer in [block.adaLN_modulation[-1] for block in self.blocks] + [
                self.final_layer.adaLN_modulation[-1], self.final_layer.linear]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        p, c, g = self.patch_size, self.out_channels, self.grid
        x = x.reshape(x.shape[0], g, g, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, g * p, g * p)

    def forward(self, z: torch.Tensor, t: torch.Tensor, y: torch.Tensor):
        """z [B,3,H,W] noisy pixels, t [B] in [0,1] (1 = clean), y [B] labels (num_classes = null) ->
        predicted clean image, plus the projected patch tokens with projectors."""
        y_emb = self.y_embedder(y)
        c = self.t_embedder(t) + y_emb
        h = self.x_embedder(z) + self.pos_embed
        prefix = 0
        zs = None
        for index, block in enumerate(self.blocks):
            if self.in_context_len and index == self.in_context_start:
                h = torch.cat([y_emb.unsqueeze(1) + self.in_context_posemb, h], dim=1)
                prefix = self.in_context_len
            h = block(h, c, self.rope_in_context if prefix else self.rope_patches)
            if self.projector_specs and index + 1 == self.encoder_depth:
                zs = [projector(h[:, prefix:]) for projector in self.projectors]
        image = self.unpatchify(self.final_layer(h[:, prefix:], c))
        return (image, zs) if self.projector_specs else image


def build_jit(name: str, input_size: int = 256, num_classes: int = 1000,
              projectors: list[ProjectorConfig] | None = None, encoder_depth: int = 8, attn_drop: float = 0.0,
              proj_drop: float = 0.0, fused_attn: bool = True) -> JiT:
    if name not in JIT_CONFIGS:
        raise ValueError(f"unknown JiT model {name!r}; known: {', '.join(JIT_CONFIGS)}")
    cfg = {k: v for k, v in JIT_CONFIGS[name].items() if k != "upstream"}
    return JiT(input_size=input_size, num_classes=num_classes, projectors=projectors, encoder_depth=encoder_depth,
               attn_drop=attn_drop, proj_drop=proj_drop, fused_attn=fused_attn, **cfg)


# --------------------------------------------------------------------------------------------------------------
# objective


@dataclass(frozen=True)
class JiTObjective:
    """x-prediction with a velocity loss (JiT `denoiser.py`; `main_jit.py` defaults)."""

    p_mean: float = -0.8
    p_std: float = 0.8
    t_eps: float = 0.05
    noise_scale: float = 1.0
    label_drop_prob: float = 0.1

    def sample_time(self, batch: int, device: Any = "cpu", generator: torch.Generator | None = None) -> torch.Tensor:
        """Logit-normal t = sigmoid(N(p_mean, p_std^2)) per sample."""
        return torch.sigmoid(torch.randn(batch, device=device, generator=generator) * self.p_std + self.p_mean)

    def velocity(self, image: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(image - z_t) / max(1 - t, t_eps): the velocity towards `image` (t = 1 clean)."""
        return (image - z) / (1 - per_sample(t, z)).clamp_min(self.t_eps)


def jit_loss(net: JiT, x: torch.Tensor, y: torch.Tensor, objective: JiTObjective = JiTObjective(),
             targets: list[torch.Tensor] | None = None, coeff: float = 0.0, t: torch.Tensor | None = None,
             noise: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Velocity MSE of the predicted clean image (+ coeff * alignment loss with encoder targets).

    x [B,3,H,W] in [-1, 1]. Labels are dropped here (as upstream's Denoiser does) when the net is training.
    `t` and `noise` (standard normal; scaled by noise_scale here) are drawn unless given."""
    if net.training:
        y = drop_labels(y, objective.label_drop_prob, net.num_classes, generator)
    if t is None:
        t = objective.sample_time(x.shape[0], x.device, generator)
    if noise is None:
        noise = torch.randn(x.shape, device=x.device, generator=generator)
    z = per_sample(t, x) * x + (1 - per_sample(t, x)) * objective.noise_scale * noise
    out = net(z, t, y)
    image, zs = out if isinstance(out, tuple) else (out, None)
    denoise = denoising_loss(objective.velocity(image, z, t), objective.velocity(x, z, t))
    return with_alignment(denoise, {"denoise": float(denoise.detach())}, zs, targets, coeff)


# --------------------------------------------------------------------------------------------------------------
# sampler


@dataclass(frozen=True)
class JiTSampler:
    """ODE from t = 0 (noise) to t = 1 on a uniform grid; Heun (or Euler) steps, the last one Euler.

    Guidance (cfg != 1) applies where t < interval_max and (interval_min == 0 or t > interval_min), as upstream."""

    steps: int = 50
    method: str = "heun"
    cfg: float = 1.0
    interval_min: float = 0.0
    interval_max: float = 1.0
    t_eps: float = 0.05
    noise_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in ("heun", "euler"):
            raise ValueError(f"JiT sampling method {self.method!r} is not one of heun, euler")
        if self.steps < 1:
            raise ValueError(f"JiT sampling needs at least 1 step, got {self.steps}")

    def guided(self, t: float) -> bool:
        return self.cfg != 1.0 and t < self.interval_max and (self.interval_min == 0 or t > self.interval_min)


@torch.no_grad()
def jit_sample(net: Callable[..., Any], noise: torch.Tensor, labels: torch.Tensor, settings: JiTSampler,
               null_class: int) -> torch.Tensor:
    """Images from standard-normal `noise` [B,3,H,W]; `net(z, t, y)` predicts the clean image."""

    def velocity(z: torch.Tensor, t: float) -> torch.Tensor:
        guided = settings.guided(t)
        batch_z = torch.cat([z, z]) if guided else z
        batch_y = torch.cat([labels, torch.full_like(labels, null_class)]) if guided else labels
        out = net(batch_z, torch.full((batch_z.shape[0],), t, device=z.device, dtype=z.dtype), batch_y)
        image = out[0] if isinstance(out, tuple) else out
        v = (image - batch_z) / max(1.0 - t, settings.t_eps)
        if not guided:
            return v
        v_cond, v_uncond = v.chunk(2)
        return v_uncond + settings.cfg * (v_cond - v_uncond)

    z = settings.noise_scale * noise
    grid = torch.linspace(0.0, 1.0, settings.steps + 1, dtype=torch.float64).tolist()
    for t, t_next in zip(grid[:-2], grid[1:-1]):
        v = velocity(z, t)
        if settings.method == "heun":
            v = 0.5 * (v + velocity(z + (t_next - t) * v, t_next))
        z = z + (t_next - t) * v
    return z + (grid[-1] - grid[-2]) * velocity(z, grid[-2])
