"""A few steps of SiT-B/2 with REPA and iREPA on one GPU, bf16 + torch.compile, at the 256-px shapes
(latents 4x32x32, 256 tokens, 768-d encoder tokens). Prints images/s and peak memory from the run log."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import repabench.train as train
from repabench.sit import load_generator
from repabench.store import write_store

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

N, RES, LATENT, CLASSES, ZDIM = 512, 256, 32, 10, 768


class PooledPixels(nn.Module):
    """Stand-in 768-d encoder: pooled pixels through a fixed random map (the real registry needs weights)."""

    embed_dim = ZDIM

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(3, ZDIM, generator=gen), requires_grad=False)

    def forward(self, images: torch.Tensor, grid: int) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(images.float() / 255.0, grid)
        return torch.tanh(pooled.flatten(2).transpose(1, 2) @ self.weight).float()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu-data")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, CLASSES, N).astype(np.int64)
    images = rng.integers(0, 256, (N, RES, RES, 3), dtype=np.uint8)
    moments = np.concatenate([rng.normal(size=(N, 4, LATENT, LATENT)), np.full((N, 4, LATENT, LATENT), 0.1)],
                             axis=1).astype(np.float32)
    write_store(root / "images", {"images": images, "labels": labels}, {"resolution": RES, "num_classes": CLASSES})
    write_store(root / "latents", {"moments": moments, "labels": labels})
    (root / "stats.json").write_text(json.dumps({"bias": [0.0] * 4, "scale": [1.0] * 4, "mode": "data"}))
    return root


METHODS = {
    "repa": {"projector": "mlp", "spatial_norm": "none", "coeff": 0.5, "encoder_depth": 4},
    "irepa": {"projector": "conv", "kernel": 3, "spatial_norm": "zscore", "alpha": 0.6, "coeff": 1.0,
              "encoder_depth": 4},
}


@pytest.mark.parametrize("method", list(METHODS))
def test_sit_b2_bf16_compile_steps(data, tmp_path, monkeypatch, method):
    monkeypatch.setattr(train, "build_target_encoder", lambda name, weights_dir: PooledPixels())
    steps = 30
    params = {"method": METHODS[method], "seed": 0,
              "train": {"steps": steps, "checkpoint_steps": [steps], "state_every": steps, "global_batch": 64,
                        "mixed_precision": "bf16", "tf32": True, "compile": True, "cache_targets": False,
                        "num_workers": 4, "gpus": 1, "log_every": 10}}
    argv = ["--images", str(data / "images"), "--latents", str(data / "latents"), "--latent-stats",
            str(data / "stats.json"), "--encoder", "pooled-pixels-768", "--model", "SiT-B/2", "--method-name", method,
            "--params", json.dumps(params), "--out-dir", str(tmp_path / "out"), "--state-root",
            str(tmp_path / "state"), "--device", "cuda", "--no-progress"]
    assert train.train_main(argv) == 0
    log = json.loads((tmp_path / "out" / "log.json").read_text())
    entries = log["entries"]
    assert all(np.isfinite(e["loss"]) for e in entries)
    # the first window includes compilation; the last one is steady state
    print(f"\nSiT-B/2 {method} bf16+compile, global batch 64: {entries[-1]['images_per_s']} images/s, "
          f"peak {entries[-1]['peak_memory_mb']:.0f} MiB, loss {entries[0]['loss']:.3f} -> {entries[-1]['loss']:.3f}")
    model, meta = load_generator(tmp_path / "out" / "checkpoints" / f"{steps:07d}.pt", "cuda")
    out = model(torch.randn(2, 4, LATENT, LATENT, device="cuda"), torch.rand(2, device="cuda"),
                torch.tensor([0, CLASSES], device="cuda"))
    assert out.shape == (2, 4, LATENT, LATENT) and torch.isfinite(out).all()
