"""JiT: parameter counts against the JiT paper, RoPE, the x-prediction loss, the sampler by hand, a CPU overfit."""

import math

import pytest
import torch

from repabench.jit import (JIT_CONFIGS, JiT, JiTObjective, JiTSampler, apply_rope, build_jit, jit_loss, jit_sample,
                           rope_angles)
from repabench.sit import ProjectorConfig

# Li & He, "Back to Basics: Let Denoising Generative Models Denoise" (arXiv 2511.13720), system-level comparison on
# ImageNet 256: JiT-B/16 131M, JiT-L/16 459M, JiT-H/16 953M parameters.
PAPER_MILLIONS = {"JiT-B/16": 131, "JiT-L/16": 459, "JiT-H/16": 953}


def hand_count(depth, d, heads, patch, bottleneck, in_context, image=256, classes=1000, channels=3):
    """JiT's layer shapes (JiT `model_jit.py`, docs/upstream-facts.md §10), independent of the module code."""
    head = d // heads
    swiglu = int(4 * d * 2 / 3)
    block = (d * 3 * d + 3 * d + d * d + d  # qkv (bias) + proj
             + 2 * head  # RMSNorm weights of q and k
             + 2 * d  # two RMSNorm weights
             + d * 2 * swiglu + 2 * swiglu + swiglu * d + d  # SwiGLU w12, w3
             + d * 6 * d + 6 * d)  # adaLN
    tokens = (image // patch) ** 2
    out = patch * patch * channels
    return (depth * block
            + channels * patch * patch * bottleneck + bottleneck * d + d  # bottleneck patch embedding
            + tokens * d  # frozen sin-cos position embedding
            + in_context * d  # in-context position embedding
            + 256 * d + d + d * d + d  # timestep MLP
            + (classes + 1) * d  # label table with the null row
            + d + d * out + out + d * 2 * d + 2 * d)  # final RMSNorm, linear, adaLN


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", [n for n, cfg in JIT_CONFIGS.items() if cfg["upstream"]])
def test_real_sizes_match_the_layer_formula(name):
    cfg = JIT_CONFIGS[name]
    with torch.device("meta"):
        model = build_jit(name, input_size=256)
    assert _count(model) == hand_count(cfg["depth"], cfg["hidden_size"], cfg["num_heads"], cfg["patch_size"],
                                       cfg["bottleneck_dim"], cfg["in_context_len"])


@pytest.mark.parametrize("name", list(PAPER_MILLIONS))
def test_parameter_counts_match_the_paper(name):
    with torch.device("meta"):
        model = build_jit(name, input_size=256)
    assert round(_count(model) / 1e6) == PAPER_MILLIONS[name]


def test_rope_rotates_by_relative_position_only():
    head_dim, grid = 8, 3
    angles = rope_angles(head_dim, grid, prefix_tokens=2)
    assert angles.shape == (2 + grid * grid, head_dim) and torch.all(angles[:2] == 0)
    # token (row 1, col 2) -> index 2 + 1 * 3 + 2; its first half turns with the row, the second with the column
    assert torch.allclose(angles[2 + 5, :4], torch.tensor([1.0, 1.0, 0.01, 0.01]))
    assert torch.allclose(angles[2 + 5, 4:], torch.tensor([2.0, 2.0, 0.02, 0.02]))
    q, k = torch.randn(head_dim, dtype=torch.float64), torch.randn(head_dim, dtype=torch.float64)
    a = angles.double()
    rot = lambda x, i: apply_rope(x, a[i])  # noqa: E731
    # (row 0, col 0)-(row 1, col 1) and (row 1, col 1)-(row 2, col 2) share the offset: equal scores
    assert torch.allclose(rot(q, 2) @ rot(k, 2 + 4), rot(q, 2 + 4) @ rot(k, 2 + 8))
    assert torch.allclose(rot(q, 5).norm(), q.norm())


def tiny_jit(**kwargs):
    torch.manual_seed(0)
    args = dict(input_size=16, patch_size=4, hidden_size=32, depth=3, num_heads=2, bottleneck_dim=8,
                in_context_len=2, in_context_start=1, num_classes=3)
    return JiT(**{**args, **kwargs})


def _randomise(model):
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.05)
    return model


def test_projector_sees_the_patch_grid_with_or_without_in_context_tokens():
    for depth in (1, 3):  # block 1 runs before the in-context tokens (start 1), block 3 after
        model = tiny_jit(projectors=[ProjectorConfig("conv", 5), ProjectorConfig("mlp", 7, hidden=16)],
                         encoder_depth=depth)
        image, zs = model(torch.randn(2, 3, 16, 16), torch.rand(2), torch.tensor([0, 3]))
        assert image.shape == (2, 3, 16, 16) and [z.shape for z in zs] == [(2, 16, 5), (2, 16, 7)]


def test_in_context_tokens_enter_at_their_block():
    z, t, y = torch.randn(1, 3, 16, 16), torch.rand(1), torch.tensor([1])
    for depth, affected in ((1, False), (2, True)):  # in_context_start = 1: inserted before the second block
        model = _randomise(tiny_jit(projectors=[ProjectorConfig("linear", 4)], encoder_depth=depth)).eval()
        before = model(z, t, y)[1][0]
        with torch.no_grad():
            model.in_context_posemb.add_(1.0)
        assert torch.allclose(model(z, t, y)[1][0], before) != affected


def test_loss_matches_the_hand_formula():
    model = _randomise(tiny_jit()).eval()
    objective = JiTObjective()
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    y = torch.tensor([0, 1, 2])
    t = torch.tensor([0.2, 0.7, 0.99])  # the last one is clamped by t_eps
    noise = torch.randn_like(x)
    loss, parts = jit_loss(model, x, y, objective, t=t, noise=noise)
    # v - v_hat = (x - x_hat) / max(1 - t, t_eps): the loss is the clean-image error scaled by the clamp
    tb = t.view(-1, 1, 1, 1)
    z = tb * x + (1 - tb) * noise
    x_hat = model(z, t, y)
    expected = ((x - x_hat) ** 2 / torch.clamp(1 - tb, min=0.05) ** 2).mean(dim=(1, 2, 3)).mean()
    assert torch.allclose(loss, expected, rtol=1e-5)
    assert parts["denoise"] == pytest.approx(float(expected.detach()), 1e-5)


def test_loss_adds_the_weighted_alignment_term():
    model = _randomise(tiny_jit(projectors=[ProjectorConfig("linear", 6)], encoder_depth=2)).eval()
    x, y, t, noise = torch.randn(2, 3, 16, 16), torch.tensor([0, 1]), torch.rand(2), torch.randn(2, 3, 16, 16)
    targets = [torch.randn(2, 16, 6)]
    plain, _ = jit_loss(model, x, y, t=t, noise=noise)
    total, parts = jit_loss(model, x, y, targets=targets, coeff=0.5, t=t, noise=noise)
    z = t.view(-1, 1, 1, 1) * x + (1 - t.view(-1, 1, 1, 1)) * noise
    zs = model(z, t, y)[1][0]
    cosine = torch.nn.functional.cosine_similarity(zs, targets[0], dim=-1)
    assert torch.allclose(total, plain - 0.5 * cosine.mean(), rtol=1e-5)
    assert parts["align"] == pytest.approx(float(-cosine.mean().detach()), abs=1e-6)


def test_label_dropout_only_in_training():
    model = tiny_jit()
    seen = []
    model.y_embedder.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].clone()))
    objective = JiTObjective(label_drop_prob=1.0)
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([0, 1])
    jit_loss(model.train(), x, y, objective)
    jit_loss(model.eval(), x, y, objective)
    assert seen[0].tolist() == [3, 3] and seen[1].tolist() == [0, 1]


class LinearDenoiser(torch.nn.Module):
    """x_hat = k z with k depending on whether the label is the null class: an ODE solvable by hand."""

    def __init__(self, k_cond, k_uncond, null):
        super().__init__()
        self.k_cond, self.k_uncond, self.null = k_cond, k_uncond, null

    def forward(self, z, t, y):
        k = torch.where(y == self.null, self.k_uncond, self.k_cond).view(-1, 1, 1, 1)
        return k * z


def test_one_euler_step_lands_on_the_prediction():
    net = LinearDenoiser(0.5, 0.5, null=3)
    noise = torch.randn(2, 3, 4, 4)
    out = jit_sample(net, noise, torch.tensor([0, 1]), JiTSampler(steps=1, noise_scale=2.0), null_class=3)
    # z1 = z0 + 1 * (k z0 - z0) / (1 - 0) = k z0, z0 = 2 * noise
    assert torch.allclose(out, 0.5 * 2.0 * noise)


def test_two_heun_steps_by_hand():
    k = 0.3
    net = LinearDenoiser(k, k, null=3)
    noise = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    out = jit_sample(net, noise, torch.tensor([0, 1]), JiTSampler(steps=2), null_class=3)
    # Heun 0 -> 1/2: v0 = (k-1) z0; Euler guess z0 (1 + (k-1)/2); v there = 2 (k-1) z_guess;
    # z_half = z0 + (v0 + v_guess) / 4. Last step Euler 1/2 -> 1: z1 = z_half + (1/2) 2 (k-1) z_half = k z_half.
    z_half = noise * (1 + 0.25 * (k - 1) * (1 + 2 * (1 + 0.5 * (k - 1))))
    assert torch.allclose(out, k * z_half)


def test_guidance_only_inside_its_interval():
    k_c, k_u, w = 0.6, 0.2, 3.0
    net = LinearDenoiser(k_c, k_u, null=3)
    noise = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    settings = JiTSampler(steps=2, cfg=w, interval_min=0.1, interval_max=1.0)
    out = jit_sample(net, noise, torch.tensor([0]), settings, null_class=3)
    # guided velocity = ((k_u - 1) + w (k_c - k_u)) z / (1 - t): the same ODE with k_g = k_u + w (k_c - k_u).
    # t = 0 is outside (0.1, 1): the conditional prediction alone (k_c); t = 1/2 is inside: guided.
    k_g = k_u + w * (k_c - k_u)
    v0 = (k_c - 1) * noise
    guess = noise + 0.5 * v0
    z_half = noise + 0.25 * (v0 + 2 * (k_g - 1) * guess)
    assert torch.allclose(out, k_g * z_half)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model on a shared CPU: more threads only contend
    yield
    torch.set_num_threads(threads)


def test_tiny_jit_overfits_one_batch(one_thread):
    torch.manual_seed(0)
    model = JiT(input_size=8, patch_size=4, hidden_size=32, depth=2, num_heads=2, bottleneck_dim=8,
                in_context_len=2, in_context_start=1, num_classes=4)
    objective = JiTObjective(label_drop_prob=0.0)
    x = torch.rand(4, 3, 8, 8) * 2 - 1
    y = torch.arange(4)
    probe = dict(t=torch.full((4,), 0.3), noise=torch.randn_like(x))
    model.eval()
    start = float(jit_loss(model, x, y, objective, **probe)[0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95))
    model.train()
    for _ in range(150):
        loss, _ = jit_loss(model, x, y, objective)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    end = float(jit_loss(model, x, y, objective, **probe)[0])
    assert math.isfinite(end) and end < 0.2 * start


def test_tiny_size_matches_the_demo_token_grid():
    model = build_jit("JiT-T/16", input_size=128, num_classes=10, projectors=[ProjectorConfig("conv", 4)],
                      encoder_depth=3)
    image, zs = model(torch.randn(1, 3, 128, 128), torch.rand(1), torch.tensor([10]))
    assert model.grid == 8 and image.shape == (1, 3, 128, 128) and zs[0].shape == (1, 64, 4)
