"""Encoders on CUDA give the CPU tokens (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

import repabench.encoders as enc

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("name", ["effnetlite-cnn-lite0_randinit", "inception-cnn-2015_randinit", "pe-vit-t",
                                  "dinov2-vit-s", "dinov3-vit-s16", "sam2-vit-s", "pixels-classic-raw"])
def test_cuda_tokens_match_cpu(name):
    images = torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8)
    with torch.inference_mode():
        cpu = enc.build_encoder(name, grid=8)(images, grid=8)
        gpu = enc.build_encoder(name, device="cuda", grid=8)(images.cuda(), grid=8)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
    torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-3, rtol=2e-3)
