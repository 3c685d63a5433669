"""One REPA-E step of SiT-B/2 at 256 px (latents 4x32x32, 256 tokens) with a random-init SD-VAE ft-MSE (the real
architecture) under bf16 autocast on one GPU: finite losses, the VAE moves in its update and the SiT does not,
then the SiT's own update on the stop-gradient latents has finite gradients."""

from __future__ import annotations

import functools

import pytest
import torch

from repabench.align import alignment_loss, denoising_loss, interpolant
from repabench.end_to_end import EndToEnd, EndToEndConfig, trainable_autoencoder
from repabench.sit import ProjectorConfig, build_sit

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_one_end_to_end_step_of_sit_b2_with_a_random_init_sd_vae_in_bf16():
    torch.manual_seed(0)
    device = torch.device("cuda")
    sit = build_sit("SiT-B/2", 32, in_channels=4, num_classes=1000,
                    projectors=[ProjectorConfig("conv", 768, hidden=2048, kernel=3)], encoder_depth=4).to(device)
    e2e = EndToEnd(trainable_autoencoder("sd-vae-ft-mse", None), [0.86, -0.28, 0.0, 0.0], [0.18215] * 4,
                   EndToEndConfig(), (0.9, 0.999), 1e-8, 0.0).to(device)
    images = torch.randint(0, 256, (4, 3, 256, 256), device=device).float()
    labels = torch.randint(0, 1000, (4,), device=device)
    targets = [torch.randn(4, 256, 768, device=device)]
    autocast = functools.partial(torch.autocast, device_type="cuda", dtype=torch.bfloat16)
    sit_before = [p.detach().clone() for p in sit.parameters()]
    vae_before = [p.detach().clone() for p in e2e.autoencoder.parameters()]

    batch = e2e.vae_update(sit, images, labels, targets, 1.5, "uniform", "linear", autocast)
    assert all(torch.isfinite(v).all() for v in batch.metrics.values()), batch.metrics
    assert float(batch.metrics["vae_grad_norm"]) > 0
    assert all(torch.equal(a, b) for a, b in zip(sit_before, sit.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(vae_before, e2e.autoencoder.parameters()))

    x_t, v = interpolant(batch.x0, batch.noise, batch.t)
    with autocast():
        velocity, zs = sit(x_t, batch.t, labels)
    loss = denoising_loss(velocity, v) + 0.5 * alignment_loss(zs, targets)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in sit.parameters())
    assert all(p.grad is None for p in e2e.autoencoder.parameters())
    print(f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
