"""MeanFlow: one- and few-step generation by learning the average velocity u(z, r, t) on SiT.

Facts (MeanFlow, Geng et al. 2025, arXiv 2505.13447, and its official code: docs/upstream-facts.md §9.5; §9.4 for the
iREPA numbers): linear path z_t = (1 - t) x + t e (t = 1 noise, as SiT), instantaneous velocity v = e - x, average
velocity u(z_t, r, t) = 1/(t - r) * integral_r^t v ds for r <= t. The MeanFlow identity gives the regression target

    u_tgt = v - (t - r) * d/dt u(z_t, r, t),   d/dt u = v . du/dz + du/dt  (r held fixed),

computed with one forward-mode JVP along the tangent (v, 0, 1) and stopped from the gradient. The network
conditions on t and on the interval t - r: a second timestep embedder for t - r whose output is added to SiT's
t_emb + y_emb. Sampling: z_r = z_t - (t - r) u(z_t, r, t), one step (1-NFE) from t = 1 to r = 0 or a few.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from repabench.align import drop_labels, per_sample, with_alignment
from repabench.sit import MODEL_CONFIGS, ProjectorConfig, SiT, TimestepEmbedder

TIME_SAMPLERS = ("logit_normal", "uniform")


class MeanFlowSiT(SiT):
    """SiT with a second time input: forward(z, r, t, y) -> u (plus projected tokens with projectors).

    Labels are dropped by `meanflow_loss`, not inside the model: the guided target needs to know which samples lost
    theirs. The label table keeps its null row (index num_classes)."""

    def __init__(self, **sit_kwargs: Any):
        super().__init__(**sit_kwargs)
        self.y_embedder.dropout_prob = 0.0
        self.h_embedder = TimestepEmbedder(self.pos_embed.shape[-1])
        nn.init.normal_(self.h_embedder.mlp[0].weight, std=0.02)
        nn.init.zeros_(self.h_embedder.mlp[0].bias)
        nn.init.normal_(self.h_embedder.mlp[2].weight, std=0.02)
        nn.init.zeros_(self.h_embedder.mlp[2].bias)

    def forward(self, x: torch.Tensor, r: torch.Tensor, t: torch.Tensor, y: torch.Tensor):  # type: ignore[override]
        return super().forward(x, t, y, extra_condition=self.h_embedder(t - r))


def build_meanflow_sit(name: str, input_size: int, in_channels: int = 4, num_classes: int = 1000,
                       projectors: list[ProjectorConfig] | None = None, encoder_depth: int = 8,
                       fused_attn: bool = False, qk_norm: bool = False) -> MeanFlowSiT:
    """A MeanFlow SiT of a repabench SiT size (`MF-B/2` or `SiT-B/2`). Fused attention is off by default:
    PyTorch's fused CPU/flash SDPA kernels have no forward-mode AD, which the JVP target needs."""
    name = name.replace("MF-", "SiT-", 1) if name.startswith("MF-") else name
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_CONFIGS)}")
    cfg = {k: v for k, v in MODEL_CONFIGS[name].items() if k != "upstream"}
    return MeanFlowSiT(input_size=input_size, in_channels=in_channels, num_classes=num_classes,
                       projectors=projectors, encoder_depth=encoder_depth, class_dropout_prob=0.1,
                       fused_attn=fused_attn, qk_norm=qk_norm, **cfg)


# --------------------------------------------------------------------------------------------------------------
# objective


@dataclass(frozen=True)
class MeanFlowObjective:
    """MeanFlow's ImageNet settings: logit-normal(-0.4, 1.0) times, 25 % of samples with r != t, adaptive weight
    power 1. Guidance in the target (omega, kappa, interval on t) is off at omega = 1, kappa = 0."""

    time_sampler: str = "logit_normal"
    p_mean: float = -0.4
    p_std: float = 1.0
    ratio_r_not_t: float = 0.25
    adaptive_p: float = 1.0
    adaptive_eps: float = 0.01
    label_drop_prob: float = 0.1
    omega: float = 1.0
    kappa: float = 0.0
    guidance_t_min: float = 0.0
    guidance_t_max: float = 1.0

    def __post_init__(self) -> None:
        if self.time_sampler not in TIME_SAMPLERS:
            raise ValueError(f"MeanFlow time sampler {self.time_sampler!r} is not one of {TIME_SAMPLERS}")
        if not 0.0 <= self.ratio_r_not_t <= 1.0:
            raise ValueError(f"ratio_r_not_t must lie in [0, 1], got {self.ratio_r_not_t}")

    @property
    def guided(self) -> bool:
        return self.omega != 1.0 or self.kappa != 0.0

    def sample_times(self, batch: int, device: Any = "cpu",
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(r, t) per sample: two draws, t the larger; the first round(batch * (1 - ratio_r_not_t)) samples get
        r = t (as the official code, which fixes the count per batch rather than drawing it)."""
        if self.time_sampler == "logit_normal":
            normal = torch.randn(batch, 2, device=device, generator=generator)
            draws = torch.sigmoid(normal * self.p_std + self.p_mean)
        else:
            draws = torch.rand(batch, 2, device=device, generator=generator)
        t, r = draws.max(dim=1).values, draws.min(dim=1).values
        equal = torch.arange(batch, device=device) < round(batch * (1.0 - self.ratio_r_not_t))
        return torch.where(equal, t, r), t


def _velocity_only(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def meanflow_target(model_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Any], z: torch.Tensor,
                    r: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """(model output at (z, r, t), u_tgt = v - clip(t - r, 0, 1) * du/dt along (v, 0, 1), without gradient).

    The output keeps its graph (it is the JVP's primal), so the loss needs no second forward pass."""
    out, tangent = torch.func.jvp(model_fn, (z, r, t), (v, torch.zeros_like(r), torch.ones_like(t)))
    dudt = _velocity_only(tangent)
    target = v - per_sample((t - r).clamp(0.0, 1.0), z) * dudt
    return out, target.detach()


@torch.no_grad()
def guided_velocity(model: MeanFlowSiT, z: torch.Tensor, t: torch.Tensor, y: torch.Tensor, v: torch.Tensor,
                    dropped: torch.Tensor, objective: MeanFlowObjective) -> torch.Tensor:
    """MeanFlow's guided field v~ = omega v + kappa u(z, t, t | y) + (1 - omega - kappa) u(z, t, t | null), where
    t lies in the guidance interval and the label was kept; v elsewhere."""
    null = torch.full_like(y, model.num_classes)
    both = _velocity_only(model(torch.cat([z, z]), torch.cat([t, t]), torch.cat([t, t]), torch.cat([y, null])))
    u_cond, u_uncond = both.chunk(2)
    guided = objective.omega * v + objective.kappa * u_cond + (1 - objective.omega - objective.kappa) * u_uncond
    use = (t >= objective.guidance_t_min) & (t <= objective.guidance_t_max) & ~dropped
    return torch.where(per_sample(use, z).bool(), guided, v)


def meanflow_loss(model: MeanFlowSiT, x: torch.Tensor, y: torch.Tensor,
                  objective: MeanFlowObjective = MeanFlowObjective(), targets: list[torch.Tensor] | None = None,
                  coeff: float = 0.0, r: torch.Tensor | None = None, t: torch.Tensor | None = None,
                  noise: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Adaptively weighted MeanFlow loss (+ coeff * alignment loss on the projected tokens of the same forward).

    Per sample: e = sum over C,H,W of (u - u_tgt)^2, loss = mean(e / stopgrad((e + adaptive_eps)^adaptive_p))."""
    labels = drop_labels(y, objective.label_drop_prob, model.num_classes, generator) if model.training else y
    dropped = labels == model.num_classes
    if t is None or r is None:
        r, t = objective.sample_times(x.shape[0], x.device, generator)
    if noise is None:
        noise = torch.randn(x.shape, device=x.device, generator=generator)
    z = (1 - per_sample(t, x)) * x + per_sample(t, x) * noise
    v = noise - x
    if objective.guided:
        v = guided_velocity(model, z, t, labels, v, dropped, objective)
    out, u_target = meanflow_target(lambda zz, rr, tt: model(zz, rr, tt, labels), z, r, t, v)
    u, zs = out if isinstance(out, tuple) else (out, None)
    error = (u.float() - u_target.float()).pow(2).flatten(1).sum(1)
    weight = (error.detach() + objective.adaptive_eps).pow(objective.adaptive_p)
    denoise = (error / weight).mean()
    parts = {"denoise": float(denoise.detach()), "mse": float(error.detach().mean())}
    return with_alignment(denoise, parts, zs, targets, coeff)


# --------------------------------------------------------------------------------------------------------------
# sampling


@torch.no_grad()
def meanflow_sample(model: Callable[..., Any], noise: torch.Tensor, labels: torch.Tensor, steps: int = 1,
                    cfg_scale: float = 1.0, null_class: int | None = None) -> torch.Tensor:
    """z_r = z_t - (t - r) u(z_t, r, t) over `steps` equal intervals from t = 1 (noise) to 0 (steps NFE; twice
    the batch when cfg_scale != 1: u_uncond + cfg_scale (u_cond - u_uncond), at sampling time)."""
    if steps < 1:
        raise ValueError(f"MeanFlow sampling needs at least 1 step, got {steps}")
    if cfg_scale != 1.0 and null_class is None:
        raise ValueError("sampling-time guidance needs the null class")
    z = noise
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64).tolist()
    for t, r in zip(grid[:-1], grid[1:]):
        guided = cfg_scale != 1.0
        batch_z = torch.cat([z, z]) if guided else z
        batch_y = torch.cat([labels, torch.full_like(labels, null_class)]) if guided else labels
        full = (batch_z.shape[0],)
        u = _velocity_only(model(batch_z, torch.full(full, r, dtype=z.dtype, device=z.device),
                                 torch.full(full, t, dtype=z.dtype, device=z.device), batch_y))
        if guided:
            u_cond, u_uncond = u.chunk(2)
            u = u_uncond + cfg_scale * (u_cond - u_uncond)
        z = z - (t - r) * u
    return z
