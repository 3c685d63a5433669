"""MeanFlow: the JVP target against finite differences, r = t, (r, t) sampling, 1/2-NFE by hand, counts, SiT path."""

import pytest
import torch

from repabench.meanflow import (MeanFlowObjective, build_meanflow_sit, meanflow_loss, meanflow_sample,
                                meanflow_target)
from repabench.sit import ProjectorConfig, build_sit

# Geng et al., "Mean Flows for One-step Generative Modeling" (arXiv 2505.13447), Table 2 (ImageNet 256, 1-NFE):
# MF-B/2 131M, MF-L/2 459M, MF-XL/2 676M parameters (SiT with a second time embedder; trainable parameters).
PAPER_MILLIONS = {"SiT-B/2": 131, "SiT-L/2": 459, "SiT-XL/2": 676}


@pytest.mark.parametrize("name", list(PAPER_MILLIONS))
def test_parameter_counts_match_the_paper(name):
    with torch.device("meta"):
        model = build_meanflow_sit(name, input_size=32)
        sit = build_sit(name, input_size=32)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert round(trainable / 1e6) == PAPER_MILLIONS[name]
    d = sit.pos_embed.shape[-1]
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in sit.parameters())
    assert extra == 256 * d + d + d * d + d  # exactly one more timestep MLP


def tiny(**kwargs):
    torch.manual_seed(0)
    model = build_meanflow_sit("SiT-T/2", input_size=8, in_channels=2, num_classes=3, **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.1)
    return model


def test_jvp_target_matches_a_finite_difference():
    model = tiny().double().eval()
    y = torch.tensor([0, 2])
    fn = lambda z, r, t: model(z, r, t, y)  # noqa: E731
    z, v = torch.randn(2, 2, 8, 8, dtype=torch.float64), torch.randn(2, 2, 8, 8, dtype=torch.float64)
    r, t = torch.tensor([0.1, 0.3], dtype=torch.float64), torch.tensor([0.6, 0.9], dtype=torch.float64)
    u, target = meanflow_target(fn, z, r, t, v)
    # central difference along (v, 0, 1); h not smaller because SiT embeds t in float32
    h = 1e-3
    with torch.no_grad():
        dudt = (fn(z + h * v, r, t + h) - fn(z - h * v, r, t - h)) / (2 * h)
    expected = v - (t - r).view(-1, 1, 1, 1) * dudt
    assert torch.allclose(u, fn(z, r, t)) and torch.allclose(target, expected, atol=2e-4)
    assert (target - v).abs().max() > 100 * 2e-4  # the derivative term is far above the tolerance


def test_r_equal_t_gives_the_flow_matching_target():
    model = tiny().double().eval()
    z, v = torch.randn(3, 2, 8, 8, dtype=torch.float64), torch.randn(3, 2, 8, 8, dtype=torch.float64)
    t = torch.tensor([0.2, 0.5, 0.95], dtype=torch.float64)
    _, target = meanflow_target(lambda zz, rr, tt: model(zz, rr, tt, torch.tensor([0, 1, 2])), z, t, t, v)
    assert torch.equal(target, v)


def test_loss_uses_the_jvp_primal_with_its_gradient():
    model = tiny(projectors=[ProjectorConfig("linear", 5)], encoder_depth=2).train()
    objective = MeanFlowObjective(label_drop_prob=0.0)
    x, y = torch.randn(4, 2, 8, 8), torch.tensor([0, 1, 2, 0])
    r, t, noise = torch.tensor([0.1, 0.2, 0.5, 0.4]), torch.tensor([0.5, 0.2, 0.9, 0.4]), torch.randn(4, 2, 8, 8)
    targets = [torch.randn(4, 16, 5)]
    loss, parts = meanflow_loss(model, x, y, objective, targets=targets, coeff=0.5, r=r, t=t, noise=noise)
    loss.backward()
    grad = model.blocks[0].attn.qkv.weight.grad.clone()
    # the same loss by hand: u from a plain forward, the target from the identity, adaptive weight (e + 0.01)^1
    model.zero_grad()
    tb = t.view(-1, 1, 1, 1)
    z = (1 - tb) * x + tb * noise
    v = noise - x
    _, u_tgt = meanflow_target(lambda zz, rr, tt: model(zz, rr, tt, y)[0], z, r, t, v)
    u, zs = model(z, r, t, y)
    err = ((u - u_tgt) ** 2).sum(dim=(1, 2, 3))
    align = -torch.nn.functional.cosine_similarity(zs[0], targets[0], dim=-1).mean()
    by_hand = (err / (err.detach() + 0.01)).mean() + 0.5 * align
    by_hand.backward()
    assert torch.allclose(loss, by_hand, rtol=1e-5)
    assert parts["mse"] == pytest.approx(float(err.detach().mean()), rel=1e-5)
    assert torch.allclose(grad, model.blocks[0].attn.qkv.weight.grad, rtol=1e-4, atol=1e-7)
    assert parts["align"] == pytest.approx(float(align.detach()), abs=1e-6)


def test_time_pairs_follow_the_published_ratio():
    objective = MeanFlowObjective()
    r, t = objective.sample_times(400, generator=torch.Generator().manual_seed(1))
    assert torch.all(r <= t) and torch.all((t > 0) & (t < 1))
    assert int((r != t).sum()) == 100  # 25 % of the batch has r != t (MeanFlow's ImageNet setting)
    # logit-normal(-0.4, 1): the median of t = max of two draws is sigmoid(-0.4 + 1 * 0.5449) (Phi^-1(sqrt(.5)))
    assert float(t.median()) == pytest.approx(float(torch.sigmoid(torch.tensor(-0.4 + 0.5449))), abs=0.04)


def test_guided_target_mixes_velocity_and_model_outputs():
    model = tiny().double().eval()
    objective = MeanFlowObjective(omega=2.0, kappa=0.5, guidance_t_max=0.8, label_drop_prob=0.0)
    x, noise = torch.randn(2, 2, 8, 8, dtype=torch.float64), torch.randn(2, 2, 8, 8, dtype=torch.float64)
    y = torch.tensor([1, 2])
    t = torch.tensor([0.5, 0.9], dtype=torch.float64)  # the second lies outside the guidance interval
    r = torch.tensor([0.2, 0.4], dtype=torch.float64)
    _, parts = meanflow_loss(model, x, y, objective, r=r, t=t, noise=noise)
    tb = t.view(-1, 1, 1, 1)
    z = (1 - tb) * x + tb * noise
    with torch.no_grad():
        u_c, u_u = model(z, t, t, y), model(z, t, t, torch.tensor([3, 3]))
    v = noise - x
    v_g = torch.stack([2.0 * v[0] + 0.5 * u_c[0] + (1 - 2.0 - 0.5) * u_u[0], v[1]])
    # the identity holds for the guided field: its JVP runs along (v~, 0, 1), not along v
    u, target = meanflow_target(lambda zz, rr, tt: model(zz, rr, tt, y), z, r, t, v_g)
    _, unguided_target = meanflow_target(lambda zz, rr, tt: model(zz, rr, tt, y), z, r, t, v)
    # the (unweighted) squared error: the adaptive weight would bring every sample's loss close to 1
    err = ((u - target) ** 2).sum(dim=(1, 2, 3)).mean()
    wrong = ((u - (v_g + (unguided_target - v))) ** 2).sum(dim=(1, 2, 3)).mean()
    assert parts["mse"] == pytest.approx(float(err), rel=1e-5)
    assert parts["mse"] != pytest.approx(float(wrong), rel=1e-2)


def test_one_step_sample_is_noise_minus_u_by_hand():
    model = tiny().eval()
    noise, y = torch.randn(2, 2, 8, 8), torch.tensor([0, 1])
    out = meanflow_sample(model, noise, y, steps=1)
    with torch.no_grad():
        expected = noise - model(noise, torch.zeros(2), torch.ones(2), y)
    assert torch.allclose(out, expected)


def test_two_step_sample_and_sampling_time_guidance_by_hand():
    model = tiny().eval()
    noise, y, null = torch.randn(1, 2, 8, 8), torch.tensor([2]), torch.tensor([3])
    out = meanflow_sample(model, noise, y, steps=2, cfg_scale=1.5, null_class=3)
    with torch.no_grad():
        def guided(z, r, t):
            rr, tt = torch.full((1,), r), torch.full((1,), t)
            u_u = model(z, rr, tt, null)
            return u_u + 1.5 * (model(z, rr, tt, y) - u_u)
        z_half = noise - 0.5 * guided(noise, 0.5, 1.0)
        expected = z_half - 0.5 * guided(z_half, 0.0, 0.5)
    assert torch.allclose(out, expected, atol=1e-6)


def test_sit_default_path_is_unchanged_by_the_extra_condition():
    torch.manual_seed(0)
    sit = build_sit("SiT-T/2", input_size=8, in_channels=2, num_classes=3).eval()
    with torch.no_grad():
        for p in sit.parameters():
            if p.requires_grad:
                p.normal_(0, 0.1)
    x, t, y = torch.randn(2, 2, 8, 8), torch.rand(2), torch.tensor([0, 1])
    with torch.no_grad():
        # the original composition, written out from the submodules
        h = sit.x_embedder(x).flatten(2).transpose(1, 2) + sit.pos_embed
        c = sit.t_embedder(t) + sit.y_embedder(y)
        for block in sit.blocks:
            h = block(h, c)
        reference = sit.unpatchify(sit.final_layer(h, c))
        assert torch.equal(sit(x, t, y), reference)
        assert torch.equal(sit(x, t, y, extra_condition=torch.zeros(2, 64)), reference)
        t2 = torch.rand(2)
        moved = sit(x, t, y, extra_condition=sit.t_embedder(t2) - sit.t_embedder(t))
        assert torch.allclose(moved, sit(x, t2, y), atol=1e-6)
