"""JiT-B/16 at its real size (256 px, 16x16 tokens, 1000 classes) on one GPU: a bf16 training step with an iREPA-style
conv projector to 1280-d targets (PE-G's width) gives a finite loss and finite gradients everywhere, and the Heun
sampler with CFG turns a batch of 4 into finite images. Skipped without CUDA (run by `make gpu-check`)."""

from __future__ import annotations

import pytest
import torch

from repabench.jit import JiTObjective, JiTSampler, build_jit, jit_loss, jit_sample
from repabench.sit import ProjectorConfig

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_jit_b16_bf16_step_and_sampling_are_finite():
    torch.manual_seed(0)
    model = build_jit("JiT-B/16", input_size=256, num_classes=1000,
                      projectors=[ProjectorConfig("conv", 1280, kernel=3)], encoder_depth=4).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95))
    x = torch.rand(8, 3, 256, 256, device="cuda") * 2 - 1
    y = torch.randint(0, 1000, (8,), device="cuda")
    targets = [torch.randn(8, 256, 1280, device="cuda")]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, parts = jit_loss(model.train(), x, y, JiTObjective(), targets, coeff=0.5)
    loss.backward()
    assert torch.isfinite(loss) and "align" in parts
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    optimizer.step()

    model.eval()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        images = jit_sample(model, torch.randn(4, 3, 256, 256, device="cuda"), torch.arange(4, device="cuda"),
                            JiTSampler(steps=4, cfg=2.9, interval_min=0.1, interval_max=1.0), null_class=1000)
    assert images.shape == (4, 3, 256, 256) and torch.isfinite(images.float()).all()
