"""Objective: interpolant, v-target, denoising loss, zscore spatial norm, alignment loss vs. brute-force numpy."""

import numpy as np
import pytest
import torch

from repabench.align import (Method, alignment_loss, denoising_loss, linear_interpolant, sample_time,
                             spatial_normalize)


def test_linear_interpolant_and_velocity_target():
    rng = np.random.default_rng(0)
    x0, eps = rng.normal(size=(3, 4, 2, 2)), rng.normal(size=(3, 4, 2, 2))
    t = np.array([0.0, 0.25, 1.0])
    xt, v = linear_interpolant(torch.tensor(x0), torch.tensor(eps), torch.tensor(t))
    for i in range(3):
        np.testing.assert_allclose(xt[i].numpy(), (1 - t[i]) * x0[i] + t[i] * eps[i])
        # v = d/dt x_t for alpha_t = 1 - t, sigma_t = t; check by finite difference too
        np.testing.assert_allclose(v[i].numpy(), eps[i] - x0[i])
    h = 1e-6
    xt_h, _ = linear_interpolant(torch.tensor(x0), torch.tensor(eps), torch.tensor(t) + h)
    np.testing.assert_allclose(((xt_h - xt) / h).numpy(), v.numpy(), atol=1e-5)
    np.testing.assert_allclose(xt[0].numpy(), x0[0])  # t = 0 is data
    np.testing.assert_allclose(xt[2].numpy(), eps[2])  # t = 1 is noise


def test_denoising_loss_is_mean_over_chw_then_batch():
    rng = np.random.default_rng(1)
    pred, target = rng.normal(size=(2, 4, 3, 3)), rng.normal(size=(2, 4, 3, 3))
    expected = np.mean([np.mean((pred[b] - target[b]) ** 2) for b in range(2)])
    assert denoising_loss(torch.tensor(pred), torch.tensor(target)).item() == pytest.approx(expected)


def test_sample_time_uniform_on_unit_interval():
    t = sample_time(20000, generator=torch.Generator().manual_seed(0))
    assert t.min() >= 0 and t.max() < 1
    assert abs(t.mean().item() - 0.5) < 0.01 and abs(t.var().item() - 1 / 12) < 0.003


@pytest.mark.parametrize("alpha", [0.0, 0.6, 0.8, 1.0])
def test_zscore_against_loops(alpha):
    rng = np.random.default_rng(2)
    f = rng.normal(loc=3.0, scale=2.0, size=(2, 9, 5)).astype(np.float32)
    out = spatial_normalize(torch.tensor(f).to(torch.bfloat16), "zscore", alpha=alpha)
    assert out.dtype == torch.float32  # computed in fp32 even for low-precision encoder output
    fb = torch.tensor(f).to(torch.bfloat16).float().numpy().astype(np.float64)
    for b in range(2):
        for d in range(5):
            col = fb[b, :, d]
            mu = col.sum() / 9
            sd = np.sqrt(((col - mu) ** 2).sum() / (9 - 1))  # unbiased
            np.testing.assert_allclose(out[b, :, d].numpy(), (col - alpha * mu) / (sd + 1e-6), rtol=1e-5, atol=1e-5)


def test_zscore_uses_unbiased_std_and_none_is_identity():
    f = torch.tensor([[[1.0], [3.0]]])  # mean 2, unbiased std sqrt(2), biased std 1
    out = spatial_normalize(f, "zscore", alpha=1.0)
    torch.testing.assert_close(out, torch.tensor([[[-1.0], [1.0]]]) / (2 ** 0.5 + 1e-6))
    torch.testing.assert_close(spatial_normalize(f, "none"), f)
    with pytest.raises(ValueError):
        spatial_normalize(f, "l2")


def test_alignment_loss_against_loops_and_encoder_average():
    rng = np.random.default_rng(3)
    z1, t1 = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 4, 3))
    z2, t2 = rng.normal(size=(2, 4, 6)), rng.normal(size=(2, 4, 6))

    def brute(z, t):
        total = 0.0
        for b in range(z.shape[0]):
            for n in range(z.shape[1]):
                total -= z[b, n] @ t[b, n] / (np.linalg.norm(z[b, n]) * np.linalg.norm(t[b, n]))
        return total / (z.shape[0] * z.shape[1])

    one = alignment_loss([torch.tensor(z1)], [torch.tensor(t1)]).item()
    assert one == pytest.approx(brute(z1, t1))
    two = alignment_loss([torch.tensor(z1), torch.tensor(z2)], [torch.tensor(t1), torch.tensor(t2)]).item()
    assert two == pytest.approx((brute(z1, t1) + brute(z2, t2)) / 2)
    # perfectly aligned (up to positive scale) gives -1
    assert alignment_loss([torch.tensor(z1) * 3], [torch.tensor(z1)]).item() == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="does not match"):
        alignment_loss([torch.tensor(z1)], [torch.tensor(z2)])


def test_method_from_config():
    m = Method.from_config({"projector": "conv", "kernel": 3, "spatial_norm": "zscore", "alpha": 0.6, "coeff": 1.0})
    specs = m.projector_specs([384, 768])
    assert [s.z_dim for s in specs] == [384, 768] and specs[0].kernel == 3 and specs[0].kind == "conv"
    with pytest.raises(ValueError, match="unknown keys"):
        Method.from_config({"projector": "mlp", "gamma": 1})
    with pytest.raises(ValueError, match="spatial_norm"):
        Method.from_config({"projector": "mlp", "spatial_norm": "whiten"})


def test_lognormal_time_weighting_is_sigma_over_one_plus_sigma():
    """Upstream's lognormal option on the linear path: sigma = exp(n), n ~ N(0,1), t = sigma / (1 + sigma)."""
    t = sample_time(20000, generator=torch.Generator().manual_seed(0), weighting="lognormal")
    n = torch.randn(20000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(t, torch.exp(n) / (1 + torch.exp(n)))
    assert 0 < t.min() and t.max() < 1 and abs(t.median().item() - 0.5) < 0.01
    assert abs((t < 0.2689).float().mean().item() - 0.1587) < 0.01  # sigmoid(-1) at the 15.87% quantile of N(0,1)
    with pytest.raises(ValueError, match="lognormal"):
        sample_time(4, weighting="logit")


def test_train_config_weighting_option_and_trajectory():
    from repabench.train import TrainConfig

    assert not {"weighting", "qk_norm"} & set(TrainConfig().trajectory())  # defaults: earlier run hashes unchanged
    assert TrainConfig.from_config({"qk_norm": True}).trajectory()["qk_norm"] is True
    assert TrainConfig.from_config({"weighting": "lognormal"}).trajectory()["weighting"] == "lognormal"
    with pytest.raises(ValueError, match="weighting"):
        TrainConfig.from_config({"weighting": "cosine"})
