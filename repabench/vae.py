"""Autoencoders and latents: SD-VAE ft-MSE (real runs), the offline PCA autoencoder (demo), latent statistics.

Both autoencoders share one interface:
    encode_moments(images uint8 [B,3,H,W]) -> [B, 2C, H/8, W/8]  (posterior mean, then std)
    decode(z) -> images in [-1, 1]                                 (z is the un-normalised latent)
Training normalises a posterior sample as (z - bias) * scale; `latent_stats` computes (bias, scale)
from the data (iREPA) or uses the constant 0.18215 (REPA).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from repabench.atomic import atomic_path, write_json
from repabench.sections import config_section
from repabench.stage import parse_stage, stage_parser
from repabench.provenance import provenance
from repabench.integrity import content_identity
from repabench.store import Store, StoreWriter
from repabench.weights import WEIGHTS, verified_path

SD_VAE_SCALE = 0.18215
SD_VAE_WEIGHTS = WEIGHTS["sd-vae-ft-mse"]
SD_VAE_CONFIG: dict[str, Any] = {  # the published sd-vae-ft-mse config.json
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
    "block_out_channels": [128, 256, 512, 512], "sample_size": 256, "act_fn": "silu",
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
}


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8-valued [B,3,H,W] -> float in [-1, 1] (x / 127.5 - 1, as REPA feeds the VAE)."""
    return images.float() / 127.5 - 1.0


class SDVAE(torch.nn.Module):
    """diffusers AutoencoderKL behind the shared interface."""

    kind = "sd-vae-ft-mse"

    def __init__(self, vae: torch.nn.Module):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)

    @classmethod
    def load(cls, path: str | Path | None) -> "SDVAE":
        from diffusers import AutoencoderKL

        if path is None:
            return cls(AutoencoderKL(**SD_VAE_CONFIG))  # random init of the real architecture (tests)
        return cls(AutoencoderKL.from_pretrained(str(verified_path(path, SD_VAE_WEIGHTS.name))))

    @torch.inference_mode()
    def encode_moments(self, images: torch.Tensor) -> torch.Tensor:
        dist = self.vae.encode(to_unit_range(images).to(self.vae.dtype)).latent_dist
        return torch.cat([dist.mean, dist.std], dim=1).float()

    @torch.inference_mode()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z.to(self.vae.dtype)).sample.float()


class PCAAutoencoder(torch.nn.Module):
    """An f8 linear autoencoder: PCA of 8x8x3 pixel patches (the offline demo's stand-in for SD-VAE).

    The encoder is deterministic, so the posterior std is zero; the decoder is exact on the PCA subspace.
    """

    kind = "pca"
    patch = 8

    def __init__(self, mean: torch.Tensor, components: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.float())              # [3*8*8]
        self.register_buffer("components", components.float())  # [C, 3*8*8], orthonormal rows

    @property
    def channels(self) -> int:
        return self.components.shape[0]

    @classmethod
    def fit(cls, images: np.ndarray, channels: int = 4, max_patches: int = 200_000, seed: int = 0) -> "PCAAutoencoder":
        x = to_unit_range(torch.from_numpy(np.array(images)).permute(0, 3, 1, 2))
        patches = F.pixel_unshuffle(x, cls.patch).permute(0, 2, 3, 1).reshape(-1, 3 * cls.patch ** 2).double()
        if patches.shape[0] > max_patches:
            gen = torch.Generator().manual_seed(seed)
            patches = patches[torch.randperm(patches.shape[0], generator=gen)[:max_patches]]
        mean = patches.mean(0)
        cov = (patches - mean).T @ (patches - mean) / (patches.shape[0] - 1)
        eigvals, eigvecs = torch.linalg.eigh(cov)
        components = eigvecs[:, torch.argsort(eigvals, descending=True)[:channels]].T
        components = components * torch.sign(components.sum(1, keepdim=True) + 1e-12)  # deterministic sign
        return cls(mean, components)

    @classmethod
    def load(cls, path: str | Path) -> "PCAAutoencoder":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"demo autoencoder {path} is missing; run `snakemake {path}`")
        state = torch.load(path, map_location="cpu", weights_only=True)
        return cls(state["mean"], state["components"])

    def save(self, path: str | Path, meta: dict[str, Any]) -> None:
        with atomic_path(path) as tmp:
            torch.save({"mean": self.mean, "components": self.components, "meta": json.dumps(meta, default=str)}, tmp)

    @torch.inference_mode()
    def encode_moments(self, images: torch.Tensor) -> torch.Tensor:
        patches = F.pixel_unshuffle(to_unit_range(images).to(self.mean.device), self.patch)  # [B, 192, h, w]
        mean = torch.einsum("cp,bphw->bchw", self.components, patches - self.mean[None, :, None, None])
        return torch.cat([mean, torch.zeros_like(mean)], dim=1)

    @torch.inference_mode()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        patches = torch.einsum("cp,bchw->bphw", self.components, z.float()) + self.mean[None, :, None, None]
        return F.pixel_shuffle(patches, self.patch).clamp(-1, 1)


def load_autoencoder(kind: str, path: str | Path | None) -> torch.nn.Module:
    if kind == "pca":
        return PCAAutoencoder.load(path)
    if kind == "sd-vae-ft-mse":
        return SDVAE.load(path)
    raise ValueError(f"unknown autoencoder kind {kind!r}; use 'pca' (demo) or 'sd-vae-ft-mse'")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1]."""
    mse = torch.mean((a.float() - b.float()) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)


def latent_statistics(moments: np.ndarray, mode: str, channels: int, seed: int = 0, chunk: int = 4096) -> dict[str, Any]:
    """Per-channel bias and scale of posterior samples (mode data), or SD's constant (mode constant)."""
    if mode == "constant":
        return {"mode": "constant", "bias": [0.0] * channels, "scale": [SD_VAE_SCALE] * channels}
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for start in range(0, moments.shape[0], chunk):
        block = torch.from_numpy(np.asarray(moments[start:start + chunk], dtype=np.float32))
        mean, std = block[:, :channels], block[:, channels:]
        sample = (mean + std * torch.randn(mean.shape, generator=gen)).double()
        total += sample.sum((0, 2, 3))
        total_sq += (sample ** 2).sum((0, 2, 3))
        count += sample.numel() // channels
    mu = total / count
    var = total_sq / count - mu ** 2
    return {"mode": "data", "bias": mu.tolist(), "scale": (1.0 / var.clamp_min(1e-12).sqrt()).tolist()}


# ----------------------------------------------------------------------------------------------
# Stages


@config_section("vae")
class VaeConfig:
    """The `vae` section: which autoencoder, how latents are normalised, its channels and batch size."""

    kind: str
    latent_norm: str
    channels: int
    batch_size: int


def fit_autoencoder(images: str | Path, out: str | Path, vae: VaeConfig, seed: int,
                    recorded_params: dict[str, Any] | None = None) -> Path:
    """Fit the offline PCA autoencoder with `vae.channels` channels on an image store."""
    store = Store(images, verify=True)
    model = PCAAutoencoder.fit(store["images"], vae.channels, seed=seed)
    params = recorded_params or {"vae": asdict(vae), "seed": seed}
    model.save(out, provenance("fit_autoencoder", params, [images]))
    return Path(out)


def cache_latents(images: str | Path, out: str | Path, vae: VaeConfig, autoencoder: str | Path | None,
                  device: torch.device, recorded_params: dict[str, Any] | None = None) -> Path:
    """Encode an image store to posterior moments [N, 2 * channels, h, w], paired by index with its labels."""
    model = load_autoencoder(vae.kind, autoencoder).to(device)
    store = Store(images, verify=True)
    pixels = store["images"]
    n, res = pixels.shape[0], pixels.shape[1]
    if res % 8:
        raise SystemExit(f"{images}: resolution {res} is not a multiple of 8 (the f8 autoencoders need it)")
    channels = 2 * vae.channels
    from tqdm import tqdm

    batch = vae.batch_size
    with StoreWriter(out, {"moments": ((n, channels, res // 8, res // 8), np.float32),
                           "labels": ((n,), np.int64)}) as writer:
        writer["labels"][:] = store["labels"]
        for start in tqdm(range(0, n, batch), desc="cache_latents", mininterval=5):
            x = torch.from_numpy(np.array(pixels[start:start + batch])).permute(0, 3, 1, 2).to(device)
            writer["moments"][start:start + x.shape[0]] = model.encode_moments(x).cpu().numpy()
        inputs = [images] + ([autoencoder] if autoencoder else [])
        writer.commit({
            "autoencoder": vae.kind,
            "images_content_sha256": content_identity(images)["content_sha256"],
            "provenance": provenance("cache_latents", recorded_params or {"vae": asdict(vae)}, inputs, device),
        })
    return Path(out)


def write_latent_stats(latents: str | Path, out: str | Path, vae: VaeConfig, seed: int,
                       recorded_params: dict[str, Any] | None = None) -> Path:
    """Per-channel latent (bias, scale) of a latent store, as `vae.latent_norm` asks, as JSON."""
    store = Store(latents, verify=True)
    stats = latent_statistics(store["moments"], vae.latent_norm, vae.channels, seed)
    stats["provenance"] = provenance("latent_stats", recorded_params or {"vae": asdict(vae), "seed": seed}, [latents])
    write_json(out, stats)
    return Path(out)


IMAGES_TO_OUT = {"--images": "image store", "--out": None}
LATENTS_TO_OUT = {"--latents": "latent store (cache_latents)", "--out": "stats JSON"}


def fit_autoencoder_main(argv: list[str]) -> int:
    parser = stage_parser("fit_autoencoder", "Fit the offline PCA autoencoder (demo).", required=IMAGES_TO_OUT)
    args, config, _, seed = parse_stage(parser, argv, {"vae": VaeConfig, "seed": int})
    fit_autoencoder(args.images, args.out, config.vae, seed, config.raw)
    return 0


def cache_latents_main(argv: list[str]) -> int:
    parser = stage_parser("cache_latents", "Encode an image store to posterior moments [8,h,w], paired by index.",
                          device=True, required=IMAGES_TO_OUT)
    parser.add_argument("--autoencoder", default=None, help="PCA file or SD-VAE snapshot dir (resources/weights/...)")
    args, config, device, _ = parse_stage(parser, argv, {"vae": VaeConfig})
    cache_latents(args.images, args.out, config.vae, args.autoencoder, device, config.raw)
    return 0


def latent_stats_main(argv: list[str]) -> int:
    parser = stage_parser("latent_stats", "Per-channel latent (bias, scale).", required=LATENTS_TO_OUT)
    args, config, _, seed = parse_stage(parser, argv, {"vae": VaeConfig, "seed": int})
    write_latent_stats(args.latents, args.out, config.vae, seed, config.raw)
    return 0
