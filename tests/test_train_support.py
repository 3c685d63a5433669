"""Shared fixtures for the training tests: a tiny image/latent store and a stand-in target encoder.

Run as a script (`python tests/test_train_support.py <train args>`) it is the `train` stage with the stand-in
encoder, for the subprocess tests (SIGTERM, SIGKILL, time budget). It holds no tests itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from repabench.store import write_store  # noqa: E402

N_IMAGES, RESOLUTION, LATENT, CLASSES = 48, 32, 8, 3


class StandInEncoder(nn.Module):
    """Deterministic frozen 'encoder': average-pool to the grid, fixed random linear map + tanh."""

    embed_dim = 6

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(1234)
        self.weight = nn.Parameter(torch.randn(3, self.embed_dim, generator=gen), requires_grad=False)

    def forward(self, images: torch.Tensor, grid: int) -> torch.Tensor:
        assert images.dtype == torch.uint8 and images.shape[1] == 3
        pooled = F.adaptive_avg_pool2d(images.float() / 255.0, grid)
        return torch.tanh(pooled.flatten(2).transpose(1, 2) @ self.weight * 3.0)


def stand_in_builder(name: str, weights_dir) -> nn.Module:
    return StandInEncoder()



def train_in_process(argv) -> int:
    """`python -m repabench train argv` in this process with the stand-in encoder (thread count restored)."""
    import repabench.train as train

    threads = torch.get_num_threads()
    original, train.build_target_encoder = train.build_target_encoder, stand_in_builder
    try:
        return train.train_main(argv)
    finally:
        train.build_target_encoder = original
        torch.set_num_threads(threads)


def make_data(root: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, CLASSES, N_IMAGES).astype(np.int64)
    base = rng.integers(0, 256, (CLASSES, 1, 1, 3))
    images = np.clip(base[labels] + rng.normal(0, 40, (N_IMAGES, RESOLUTION, RESOLUTION, 3)), 0, 255).astype(np.uint8)
    pooled = images.reshape(N_IMAGES, LATENT, 4, LATENT, 4, 3).mean((2, 4)).transpose(0, 3, 1, 2) / 127.5 - 1
    mean = np.concatenate([pooled, pooled[:, :1] * 0.5], axis=1).astype(np.float32)
    moments = np.concatenate([mean, np.full_like(mean, 0.05)], axis=1)
    paths = {"images": root / "data" / "train", "latents": root / "latents" / "train",
             "stats": root / "latents" / "stats.json"}
    write_store(paths["images"], {"images": images, "labels": labels},
                {"resolution": RESOLUTION, "num_classes": CLASSES, "class_names": ["a", "b", "c"]})
    write_store(paths["latents"], {"moments": moments, "labels": labels})
    paths["stats"].write_text(json.dumps({"bias": [0.1, 0.0, -0.1, 0.0], "scale": [1.5, 1.0, 1.0, 2.0],
                                          "mode": "data"}))
    from repabench.vae import PCAAutoencoder

    paths["autoencoder"] = root / "autoencoder" / "pca.pt"
    paths["autoencoder"].parent.mkdir(parents=True, exist_ok=True)
    PCAAutoencoder.fit(images, 4).save(paths["autoencoder"], {})
    return paths


METHOD_IREPA = {"projector": "conv", "kernel": 3, "spatial_norm": "zscore", "alpha": 0.6, "coeff": 1.0,
                "encoder_depth": 2, "projector_dim": 32}
TRAIN = {"steps": 8, "checkpoint_steps": [4, 8], "state_every": 2, "global_batch": 8, "mixed_precision": "no",
         "compile": False, "num_workers": 0, "log_every": 2, "cache_targets": False, "lr": 1e-3, "ema_decay": 0.9}


def train_argv(paths: dict[str, Path], out: Path, state_root: Path, method=None, train=None, seed=0,
               extra=()) -> list[str]:
    params = {"method": method or METHOD_IREPA, "train": {**TRAIN, **(train or {})}, "seed": seed}
    return ["--images", str(paths["images"]), "--latents", str(paths["latents"]), "--latent-stats",
            str(paths["stats"]), "--encoder", "stand-in-enc", "--model", "SiT-T/2", "--method-name", "irepa",
            "--params", json.dumps(params), "--out-dir", str(out), "--state-root", str(state_root),
            "--device", "cpu", "--threads", "1", "--no-progress", *extra]


def jit_argv(paths: dict[str, Path], out: Path, state_root: Path, method=None, train=None, seed=0,
             extra=()) -> list[str]:
    """A JiT run's argv: the images only (no latents), JiT-T/8 (a 4x4 grid at 32 px)."""
    argv = train_argv(paths, out, state_root, method, train, seed, extra)
    for flag in ("--latents", "--latent-stats"):
        at = argv.index(flag)
        del argv[at:at + 2]
    argv[argv.index("--model") + 1] = "JiT-T/8"
    return argv



def mf_argv(paths: dict[str, Path], out: Path, state_root: Path, method=None, train=None, seed=0,
            extra=()) -> list[str]:
    """A MeanFlow run's argv: SiT's (the latents too) with MF-T/2 (a 4x4 grid on the 8x8 latents)."""
    argv = train_argv(paths, out, state_root, method, train, seed, extra)
    argv[argv.index("--model") + 1] = "MF-T/2"
    return argv
METHOD_IREPAE = {**METHOD_IREPA, "end_to_end": True, "vae_align_coeff": 1.5}


def repae_argv(paths: dict[str, Path], out: Path, state_root: Path, method=None, train=None, seed=0,
               extra=()) -> list[str]:
    """An end-to-end (REPA-E) run's argv: images, the PCA autoencoder to tune and its latent stats (no latents)."""
    argv = train_argv(paths, out, state_root, method or METHOD_IREPAE, train, seed, extra)
    at = argv.index("--latents")
    del argv[at:at + 2]
    return argv + ["--autoencoder", str(paths["autoencoder"]), "--autoencoder-kind", "pca"]


if __name__ == "__main__":
    import repabench.train as train

    train.build_target_encoder = stand_in_builder
    sys.exit(train.train_main(sys.argv[1:]))
