"""GPU checks of sampling (skipped without CUDA): SiT-B/2 in bf16 on 32x32 latents, tolerance against fp32,
repeatability, throughput, and the sample stage on the device."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from repabench.atomic import read_json, write_json
from repabench.sample import ImageNoise, SamplerSettings, image_labels, run_sampler
from repabench.sit import build_sit, generator_kwargs
from repabench.vae import PCAAutoencoder

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
REPO = Path(__file__).resolve().parent.parent


def _model(name="SiT-B/2", latent=32):
    torch.manual_seed(0)
    model = build_sit(name, input_size=latent, in_channels=4, num_classes=1000)
    with torch.no_grad():  # the zero-initialised layers get small weights so that the velocity is not zero
        for block in model.blocks:
            block.adaLN_modulation[-1].weight.normal_(0, 0.02)
        model.final_layer.adaLN_modulation[-1].weight.normal_(0, 0.02)
        model.final_layer.linear.weight.normal_(0, 0.02)
    return model.eval().requires_grad_(False).cuda()


def _sample(model, indices, steps, precision):
    device = torch.device("cuda")
    noise = ImageNoise(indices, seed=0, shape=(4, 32, 32), device=device)
    x1 = noise.draw()
    y = torch.from_numpy(image_labels(indices, 0, 1000, "uniform")).to(device)
    with torch.inference_mode():
        return run_sampler(model, x1, y, SamplerSettings("sde", steps), noise, 1000, precision)


def test_sit_b2_bf16_sampling_on_gpu():
    model = _model()
    idx = list(range(64))
    _sample(model, idx[:8], 4, "bf16")  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    z16 = _sample(model, idx, 250, "bf16")
    torch.cuda.synchronize()
    rate = len(idx) / (time.perf_counter() - start)
    print(f"\nSiT-B/2 bf16 SDE-250 batch 64 on {torch.cuda.get_device_name()}: {rate:.1f} img/s "
          f"({50000 / rate / 3600:.2f} h per 50k)")
    assert z16.dtype == torch.float64 and torch.isfinite(z16).all()
    z32 = _sample(model, idx, 250, "fp32")
    again = _sample(model, idx, 250, "bf16")
    assert torch.equal(z16, again)  # repeatable on the same device and batch
    rel = ((z16 - z32).norm() / z32.norm()).item()
    print(f"bf16 vs fp32 relative latent difference after 250 SDE steps: {rel:.2e}")
    assert rel < 0.05


def test_sample_stage_on_gpu(tmp_path):
    model = build_sit("SiT-B/2", input_size=16, in_channels=4, num_classes=7)
    stats = {"bias": [0.0] * 4, "scale": [1.0] * 4, "mode": "data"}
    torch.save({"ema": model.state_dict(), "model": {"name": "SiT-B/2", "kwargs": generator_kwargs(model, 0.1)},
                "step": 1, "run": {"model": "sit-b-2", "encoder": "x", "method": "repa"}, "latent_stats": stats},
               tmp_path / "ckpt.pt")
    write_json(tmp_path / "stats.json", stats)
    images = np.random.default_rng(0).integers(0, 256, size=(8, 128, 128, 3), dtype=np.uint8)
    PCAAutoencoder.fit(images, channels=4).save(tmp_path / "ae.pt", meta={})
    params = json.dumps({"sampler": {"mode": "sde", "steps": 20}, "sample": {"n_samples": 100, "shard_size": 50,
                                                                             "batch_size": 50, "precision": "bf16"}})
    result = subprocess.run([sys.executable, "-m", "repabench", "sample", "--checkpoint", str(tmp_path / "ckpt.pt"),
                             "--latent-stats", str(tmp_path / "stats.json"), "--autoencoder-kind", "pca",
                             "--autoencoder", str(tmp_path / "ae.pt"), "--out-dir", str(tmp_path / "out"),
                             "--params", params, "--device", "cuda"], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = read_json(tmp_path / "out" / "manifest.json")
    assert manifest["precision"] == "bf16" and manifest["n_samples"] == 100
    assert manifest["provenance"]["device"]["device"].startswith("cuda")
