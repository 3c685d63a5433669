"""The training objective: flow matching (upstream's linear path; the cosine path as an option) plus the REPA/iREPA
alignment loss.

Facts in docs/upstream-facts.md §2.1-2.3.

A method is data (a named config entry): projector kind and size, conv kernel, attachment depth, spatial
normalisation of the encoder targets and the alignment-loss coefficient.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from repabench.sections import config_section
from repabench.sit import ProjectorConfig

SPATIAL_NORMS = ("none", "zscore")
ZSCORE_EPS = 1e-6


@config_section("methods.*")
class Method:
    """One named entry of `methods` (its defaults are the schema's)."""

    projector: str
    projector_dim: int
    kernel: int
    spatial_norm: str
    alpha: float
    coeff: float
    encoder_depth: int
    label: str = ""
    end_to_end: bool = False  # REPA-E: the alignment loss also tunes the VAE (repabench.end_to_end)
    vae_align_coeff: float = 1.5  # REPA-E's --vae-align-proj-coeff; end-to-end methods only

    def __post_init__(self) -> None:
        if self.spatial_norm not in SPATIAL_NORMS:
            raise ValueError(f"spatial_norm {self.spatial_norm!r} is not one of {SPATIAL_NORMS}")
        if self.end_to_end and self.coeff <= 0:
            raise ValueError("an end_to_end method needs coeff > 0 (REPA-E aligns the SiT and the VAE)")

    def projector_specs(self, z_dims: Sequence[int]) -> list[ProjectorConfig]:
        return [ProjectorConfig(self.projector, int(z), hidden=self.projector_dim, kernel=self.kernel) for z in z_dims]

    def as_dict(self) -> dict[str, Any]:
        """The entry as recorded; the REPA-E keys only for end-to-end methods (other runs' hashes unchanged)."""
        out = asdict(self)
        if not self.end_to_end:
            del out["end_to_end"], out["vae_align_coeff"]
        return out


# --------------------------------------------------------------------------------------------------------------
# flow matching


TIME_WEIGHTINGS = ("uniform", "lognormal")
PATHS = ("linear", "cosine")


def sample_time(batch: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None,
                weighting: str = "uniform", path: str = "linear") -> torch.Tensor:
    """Training times per sample: upstream `weighting="uniform"` t ~ U(0, 1), or `"lognormal"`:
    sigma = exp(n), n ~ N(0, 1), t = sigma / (1 + sigma) on the linear path, (2 / pi) atan(sigma) on the cosine."""
    if path not in PATHS:
        raise ValueError(f"path {path!r} is not one of {PATHS}")
    if weighting == "uniform":
        return torch.rand(batch, device=device, generator=generator)
    if weighting == "lognormal":
        sigma = torch.randn(batch, device=device, generator=generator).exp()
        return sigma / (1 + sigma) if path == "linear" else (2 / math.pi) * torch.atan(sigma)
    raise ValueError(f"time weighting {weighting!r} is not one of {TIME_WEIGHTINGS}")


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B] values shaped [B, 1, 1, ...] to broadcast against `like`, in its dtype."""
    return values.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def drop_labels(labels: torch.Tensor, prob: float, null_class: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Each label replaced by the null class with probability `prob` (classifier-free guidance training)."""
    if prob <= 0:
        return labels
    drop = torch.rand(labels.shape[0], device=labels.device, generator=generator) < prob
    return torch.where(drop, torch.full_like(labels, null_class), labels)


def path_coefficients(t: torch.Tensor, path: str = "linear") -> tuple[torch.Tensor, ...]:
    """(alpha_t, sigma_t, d alpha/dt, d sigma/dt) of x_t = alpha_t x0 + sigma_t eps: linear 1-t, t;
    cosine cos(pi t / 2), sin(pi t / 2) (upstream's `path_type`)."""
    if path == "linear":
        return 1 - t, t, -torch.ones_like(t), torch.ones_like(t)
    if path == "cosine":
        angle = t * (math.pi / 2)
        return angle.cos(), angle.sin(), -(math.pi / 2) * angle.sin(), (math.pi / 2) * angle.cos()
    raise ValueError(f"path {path!r} is not one of {PATHS}")


def interpolant(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                path: str = "linear") -> tuple[torch.Tensor, torch.Tensor]:
    """x_t on the path and the velocity target v = d alpha x0 + d sigma eps (t = 0 data, t = 1 noise)."""
    if path == "linear":
        return linear_interpolant(x0, noise, t)
    t = per_sample(t, x0)
    alpha, sigma, d_alpha, d_sigma = path_coefficients(t, path)
    return alpha * x0 + sigma * noise, d_alpha * x0 + d_sigma * noise


def linear_interpolant(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t = (1 - t) x0 + t eps and the velocity target v = eps - x0 (t = 0 data, t = 1 noise)."""
    t = per_sample(t, x0)
    return (1 - t) * x0 + t * noise, noise - x0


def denoising_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean of the squared error over C, H, W, then the mean over the batch (in fp32)."""
    errors = (prediction.float() - target.float()).pow(2).flatten(1).mean(1)
    return errors.mean()


# --------------------------------------------------------------------------------------------------------------
# alignment


def spatial_normalize(tokens: torch.Tensor, method: str, alpha: float | None = None,
                      eps: float = ZSCORE_EPS) -> torch.Tensor:
    """iREPA target normalisation over the token axis, per image and channel, in fp32.

    zscore: (f - alpha * mean_T f) / (std_T f + eps), std unbiased (N - 1) as torch's default; alpha is the
    method's (`Method.alpha`).
    """
    tokens = tokens.float()
    if method == "none":
        return tokens
    if method != "zscore":
        raise ValueError(f"unknown spatial normalisation {method!r}; one of {SPATIAL_NORMS}")
    if alpha is None:
        raise ValueError("zscore spatial normalisation needs alpha (the method's `alpha`)")
    mean = tokens.mean(dim=1, keepdim=True)
    std = tokens.std(dim=1, keepdim=True, unbiased=True)
    return (tokens - alpha * mean) / (std + eps)


def alignment_loss(projected: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Negative cosine similarity per token, mean over batch and tokens, averaged over encoders (in fp32)."""
    if len(projected) != len(targets) or not projected:
        raise ValueError(f"{len(projected)} projector outputs for {len(targets)} encoder targets")
    losses = []
    for z, target in zip(projected, targets):
        if z.shape != target.shape:
            raise ValueError(f"projector output {tuple(z.shape)} does not match encoder target {tuple(target.shape)}; "
                             "the encoder must return one token per SiT token with its embed dim")
        cosine = (F.normalize(z.float(), dim=-1) * F.normalize(target.float(), dim=-1)).sum(-1)
        losses.append(-cosine.mean())
    return torch.stack(losses).mean()


def with_alignment(denoise: torch.Tensor, parts: dict[str, float], zs: Sequence[torch.Tensor] | None,
                   targets: Sequence[torch.Tensor] | None, coeff: float) -> tuple[torch.Tensor, dict[str, float]]:
    """denoise + coeff * alignment_loss(zs, targets) when encoder targets are given (parts gains "align")."""
    if not targets:
        return denoise, parts
    if zs is None:
        raise ValueError("encoder targets were given but the generator has no projectors")
    align = alignment_loss(zs, targets)
    return denoise + coeff * align, {**parts, "align": float(align.detach())}
