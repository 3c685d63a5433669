"""REPA-E: end-to-end tuning of the autoencoder together with the diffusion model (End2End-Diffusion/REPA-E,
commit 3ad8046, `train_repae.py`; docs/upstream-facts.md §9.4).

A run whose method has `end_to_end: true` reads images, not cached latents. Each step:
  1. the autoencoder encodes the batch (x / 127.5 - 1) to a posterior, samples z, decodes a reconstruction;
  2. VAE update: regulariser(x, recon, posterior) + vae_align_coeff * alignment loss, the alignment computed by the
     SiT with its weights frozen and in eval mode (its latent BatchNorm normalises with the running statistics),
     so the gradient reaches the VAE through z only; the VAE has its own AdamW (REPA-E: lr 1e-4, the SiT's betas,
     eps and weight decay, clip 1.0);
  3. SiT update (train.py): the latent BatchNorm in train mode normalises z.detach() with the batch statistics and
     updates its running statistics, then the usual velocity loss + coeff * alignment loss with the same t and
     noise as step 2. The stop-gradient means the diffusion loss never reaches the VAE.
The BatchNorm (affine-free, eps 1e-4, momentum 0.1) starts from the latent statistics (running mean = bias,
running var = 1 / scale^2); its running statistics are averaged with the SiT's EMA decay, and the EMA ones are the
(bias, scale) sampling un-normalises with, as REPA-E's generate.py reads them from the EMA model.

Regulariser implemented: L1 reconstruction (weight 1.0) + KL to N(0, I) summed over C, H, W and averaged over the
batch (weight 1e-6). Left out: REPA-E's LPIPS perceptual term (weight 1.0; its VGG16 and LPIPS weights are not in
the offline catalog) and its PatchGAN term (hinge discriminator, generator weight 0.1, started from a pretrained
discriminator checkpoint that is not published as a text fact). `UPSTREAM_DEFAULTS` records all of them.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from repabench.align import alignment_loss, interpolant, sample_time
from repabench.sections import config_section

# REPA-E's defaults (train_repae.py argparse, README command, configs/l1_lpips_kl_gan.yaml)
UPSTREAM_DEFAULTS: Mapping[str, Any] = {
    "proj_coeff": 0.5, "vae_align_proj_coeff": 1.5, "vae_learning_rate": 1e-4, "disc_learning_rate": 1e-4,
    "bn_momentum": 0.1, "bn_eps": 1e-4, "max_grad_norm": 1.0, "adam_betas": (0.9, 0.999), "adam_weight_decay": 0.0,
    "reconstruction_loss": "l1", "reconstruction_weight": 1.0, "perceptual_loss": "lpips", "perceptual_weight": 1.0,
    "kl_weight": 1e-6, "logvar_init": 0.0, "discriminator_weight": 0.1, "discriminator_factor": 1.0,
    "discriminator_start": 0, "lecam_regularization_weight": 0.0, "batch_size": 256, "mixed_precision": "fp16",
}
NOT_IMPLEMENTED = ("perceptual (LPIPS, weight 1.0)", "GAN (PatchGAN hinge, weight 0.1, pretrained discriminator)")
TRAINABLE_KINDS = ("sd-vae-ft-mse", "pca")


@config_section("train.end_to_end")
class EndToEndConfig:
    """`train.end_to_end`: the VAE side of an end-to-end run (defaults: the schema's, REPA-E's values)."""

    vae_lr: float
    vae_grad_clip: float
    bn_momentum: float
    bn_eps: float
    reconstruction_weight: float
    kl_weight: float

    def record(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "not_implemented": list(NOT_IMPLEMENTED),
                "upstream_defaults": dict(UPSTREAM_DEFAULTS)}


# --------------------------------------------------------------------------------------------------------------
# latent normalisation


class LatentBatchNorm(nn.BatchNorm2d):
    """REPA-E's latent normalisation: BatchNorm2d without affine parameters (which could game the diffusion loss)."""

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-4):
        super().__init__(channels, eps=eps, momentum=momentum, affine=False, track_running_stats=True)

    @torch.no_grad()
    def start_from(self, bias: Sequence[float], scale: Sequence[float]) -> None:
        """running mean = bias, running var = 1 / scale^2 (the latent_stats of the initial autoencoder)."""
        self.running_mean.copy_(torch.as_tensor(list(bias), dtype=torch.float32))
        self.running_var.copy_(1.0 / torch.as_tensor(list(scale), dtype=torch.float32) ** 2)

    def latent_stats(self) -> dict[str, Any]:
        """(bias, scale) as the sample stage un-normalises with: z = x / scale + bias."""
        return {"mode": "batchnorm", "bias": self.running_mean.tolist(), "scale": self.running_var.rsqrt().tolist()}


@torch.no_grad()
def ema_buffers(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """Float buffers averaged with `decay`, the others copied (REPA-E's EMA of the BatchNorm statistics)."""
    for mine, theirs in zip(ema.buffers(), model.buffers()):
        if mine.is_floating_point():
            mine.mul_(decay).add_(theirs, alpha=1 - decay)
        else:
            mine.copy_(theirs)


# --------------------------------------------------------------------------------------------------------------
# trainable autoencoders: posterior(x in [-1, 1]) -> (mean, logvar or None), decode(z) -> x in [-1, 1]


class TrainableSDVAE(nn.Module):
    """diffusers AutoencoderKL, trainable (encoder, decoder and the quant convs)."""

    kind = "sd-vae-ft-mse"

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae.train().requires_grad_(True)

    @property
    def channels(self) -> int:
        return int(self.vae.config.latent_channels)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        dist = self.vae.encode(x).latent_dist
        return dist.mean, dist.logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z).sample


class TrainablePCA(nn.Module):
    """The demo's linear f8 autoencoder made trainable: 1x1 convs over 8x8 pixel patches, started at the PCA
    (encoder rows = components, bias = -components @ mean; decoder = the transpose, bias = mean). Deterministic:
    no posterior variance, so no KL term."""

    kind = "pca"
    patch = 8

    def __init__(self, mean: torch.Tensor, components: torch.Tensor):
        super().__init__()
        channels, width = components.shape
        self.encoder = nn.Conv2d(width, channels, 1)
        self.decoder = nn.Conv2d(channels, width, 1)
        with torch.no_grad():
            self.encoder.weight.copy_(components.float().view(channels, width, 1, 1))
            self.encoder.bias.copy_(-(components.float() @ mean.float()))
            self.decoder.weight.copy_(components.float().T.reshape(width, channels, 1, 1))
            self.decoder.bias.copy_(mean.float())

    @property
    def channels(self) -> int:
        return self.encoder.out_channels

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.encoder(F.pixel_unshuffle(x, self.patch)), None

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.decoder(z), self.patch)


def trainable_autoencoder(kind: str, path: Any) -> nn.Module:
    """The initial autoencoder of an end-to-end run, trainable (random-init SD-VAE when path is None)."""
    from repabench.vae import PCAAutoencoder, SDVAE

    if kind == "pca":
        pca = PCAAutoencoder.load(path)
        return TrainablePCA(pca.mean, pca.components)
    if kind == "sd-vae-ft-mse":
        return TrainableSDVAE(SDVAE.load(path).vae)
    raise ValueError(f"vae.kind {kind!r} cannot be tuned end to end; use one of {TRAINABLE_KINDS}")


def autoencoder_record(autoencoder: nn.Module) -> dict[str, Any]:
    """What the sample stage rebuilds the tuned decoder from (kind, shape, weights)."""
    record: dict[str, Any] = {"kind": autoencoder.kind, "channels": autoencoder.channels,
                              "state": {k: v.detach().cpu().clone() for k, v in autoencoder.state_dict().items()}}
    if autoencoder.kind == "sd-vae-ft-mse":
        record["config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in autoencoder.vae.config.items()
                            if not k.startswith("_")}
    return record


def tuned_decoder(record: Mapping[str, Any]) -> nn.Module:
    """The tuned autoencoder of a checkpoint's `autoencoder` record, in eval mode."""
    if record["kind"] == "pca":
        state = record["state"]
        width = state["encoder.weight"].shape[1]
        model: nn.Module = TrainablePCA(torch.zeros(width), torch.zeros(int(record["channels"]), width))
    else:
        from diffusers import AutoencoderKL

        model = TrainableSDVAE(AutoencoderKL(**record["config"]))
    model.load_state_dict(record["state"])
    return model.eval().requires_grad_(False)


# --------------------------------------------------------------------------------------------------------------
# the VAE side of a step


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over C, H, W, averaged over the batch (REPA-E's kl_loss)."""
    logvar = logvar.float().clamp(-30.0, 20.0)
    per_sample = 0.5 * (mean.float() ** 2 + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)
    return per_sample.mean()


def vae_regulariser(x: torch.Tensor, recon: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor | None,
                    cfg: EndToEndConfig) -> dict[str, torch.Tensor]:
    """The implemented terms of REPA-E's VAE loss (reconstruction L1 + KL), weighted, and their sum."""
    parts = {"recon": cfg.reconstruction_weight * F.l1_loss(recon.float(), x.float())}
    if logvar is not None and cfg.kl_weight > 0:
        parts["kl"] = cfg.kl_weight * kl_to_standard_normal(mean, logvar)
    parts["total"] = torch.stack(list(parts.values())).sum()
    return parts


@dataclass
class EndToEndBatch:
    """What the SiT update of the step uses: normalised latents (no gradient to the VAE), t, noise, VAE metrics."""

    x0: torch.Tensor
    t: torch.Tensor
    noise: torch.Tensor
    metrics: dict[str, torch.Tensor]


class EndToEnd(nn.Module):
    """The autoencoder, its optimiser and the latent BatchNorm (with its EMA) of an end-to-end run."""

    def __init__(self, autoencoder: nn.Module, bias: Sequence[float], scale: Sequence[float], cfg: EndToEndConfig,
                 betas: Sequence[float], eps: float, weight_decay: float):
        super().__init__()
        self.cfg = cfg
        self.autoencoder = autoencoder.train().requires_grad_(True)
        self.bn = LatentBatchNorm(autoencoder.channels, cfg.bn_momentum, cfg.bn_eps)
        self.bn.start_from(bias, scale)
        self.ema_bn = copy.deepcopy(self.bn).eval()
        self.optimizer = torch.optim.AdamW(self.autoencoder.parameters(), lr=cfg.vae_lr, betas=tuple(betas),
                                           eps=eps, weight_decay=weight_decay)

    def vae_update(self, sit: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   targets: Sequence[torch.Tensor] | None, vae_align_coeff: float, weighting: str, path: str,
                   autocast: Callable[[], Any] = contextlib.nullcontext) -> EndToEndBatch:
        """Steps 1-2 of the docstring; returns the SiT's batch (step 3 runs in the Trainer)."""
        x = images.float() / 127.5 - 1.0
        with autocast():
            mean, logvar = self.autoencoder.posterior(x)
            z = mean if logvar is None else mean + (0.5 * logvar).exp() * torch.randn_like(mean)
            recon = self.autoencoder.decode(z)
        parts = vae_regulariser(x, recon, mean, logvar, self.cfg)
        t = sample_time(z.shape[0], device=z.device, weighting=weighting, path=path)
        noise = torch.randn_like(z, dtype=torch.float32)
        loss = parts["total"]
        align = torch.zeros((), device=z.device)
        if targets is not None and vae_align_coeff > 0:
            align = self.alignment_through(sit, z, t, noise, labels, targets, path, autocast)
            loss = loss + vae_align_coeff * align
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.autoencoder.parameters(), self.cfg.vae_grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.bn.train()
        x0 = self.bn(z.detach().float())
        metrics = {"vae_loss": loss.detach(), "vae_align": align.detach(), "vae_grad_norm": grad_norm.detach(),
                   **{f"vae_{k}": v.detach() for k, v in parts.items() if k != "total"}}
        return EndToEndBatch(x0=x0, t=t, noise=noise, metrics=metrics)

    def alignment_through(self, sit: nn.Module, z: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                          labels: torch.Tensor, targets: Sequence[torch.Tensor], path: str = "linear",
                          autocast: Callable[[], Any] = contextlib.nullcontext) -> torch.Tensor:
        """The alignment loss of latents z through the frozen SiT (eval mode: no label dropout, BatchNorm on its
        running statistics), differentiable in z only."""
        was_training = sit.training
        flags = [p.requires_grad for p in sit.parameters()]
        sit.eval().requires_grad_(False)
        self.bn.eval()
        try:
            x_t, _ = interpolant(self.bn(z.float()), noise, t, path)
            with autocast():
                _, zs = sit(x_t, t, labels)
            return alignment_loss(zs, targets)
        finally:
            for p, flag in zip(sit.parameters(), flags):
                p.requires_grad_(flag)
            sit.train(was_training)

    def after_step(self, ema_decay: float) -> None:
        ema_buffers(self.ema_bn, self.bn, ema_decay)

    def latent_stats(self) -> dict[str, Any]:
        """The EMA BatchNorm's (bias, scale): what sampling un-normalises with."""
        return self.ema_bn.latent_stats()

    def checkpoint_record(self) -> dict[str, Any]:
        return {"autoencoder": autoencoder_record(self.autoencoder), "latent_stats": self.latent_stats(),
                "end_to_end": self.cfg.record()}

    def training_state(self) -> dict[str, Any]:
        return {"autoencoder": self.autoencoder.state_dict(), "optimizer": self.optimizer.state_dict(),
                "bn": self.bn.state_dict(), "ema_bn": self.ema_bn.state_dict()}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        self.autoencoder.load_state_dict(state["autoencoder"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.bn.load_state_dict(state["bn"])
        self.ema_bn.load_state_dict(state["ema_bn"])
