"""MeanFlow on the GPU at the Table 2b size: one MF-B/2 bf16 training step (JVP target, alignment loss) with finite
loss and gradients, and meanflow_sample on a batch of 4 at 1 and 4 NFE with CFG."""

import pytest
import torch

from repabench.meanflow import MeanFlowObjective, build_meanflow_sit, meanflow_loss, meanflow_sample
from repabench.sit import ProjectorConfig

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_one_bf16_mf_b2_step_and_sampling():
    torch.manual_seed(0)
    device = torch.device("cuda")
    projectors = [ProjectorConfig(kind="mlp", z_dim=768, hidden=2048)]
    model = build_meanflow_sit("MF-B/2", input_size=32, num_classes=1000, projectors=projectors).to(device)
    x = torch.randn(4, 4, 32, 32, device=device)
    y = torch.randint(0, 1000, (4,), device=device)
    targets = [torch.randn(4, 256, 768, device=device)]
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, parts = meanflow_loss(model, x, y, MeanFlowObjective(), targets, coeff=0.5)
    loss.backward()
    assert torch.isfinite(loss) and "align" in parts
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)

    model.eval()
    noise = torch.randn(4, 4, 32, 32, device=device)
    for steps in (1, 4):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            z = meanflow_sample(model, noise, y, steps=steps, cfg_scale=2.0, null_class=1000)
        assert z.shape == noise.shape and torch.isfinite(z).all()
