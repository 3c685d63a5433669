"""Upstream's cosine path (`path_type="cosine"`): training interpolant and target, lognormal times, the SDE score.

Oracles: finite differences of x_t in t for the velocity target; for Gaussian data x0 ~ N(0, s^2) the exact
velocity field E[v | x_t] and score -x_t / Var(x_t) are known in closed form, so the sampler's drift and the
variance of its samples can be checked against them.
"""

import math

import numpy as np
import pytest
import torch

from repabench.align import interpolant, path_coefficients, sample_time
from repabench.samplers import SamplerSettings, euler_maruyama


def test_cosine_interpolant_target_is_the_time_derivative():
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 3, 4, 4, generator=gen, dtype=torch.float64), torch.randn(5, 3, 4, 4, generator=gen,
                                                                                      dtype=torch.float64)
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    xt, v = interpolant(x0, eps, t, "cosine")
    tb = t.reshape(-1, 1, 1, 1)
    torch.testing.assert_close(xt, torch.cos(math.pi * tb / 2) * x0 + torch.sin(math.pi * tb / 2) * eps)
    h = 1e-6
    plus, _ = interpolant(x0, eps, t + h, "cosine")
    minus, _ = interpolant(x0, eps, t - h, "cosine")
    torch.testing.assert_close(v, (plus - minus) / (2 * h), atol=1e-8, rtol=1e-6)
    alpha, sigma, _, _ = path_coefficients(t, "cosine")
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(t))  # variance preserving
    lin_xt, lin_v = interpolant(x0, eps, t, "linear")
    torch.testing.assert_close(lin_v, eps - x0)
    with pytest.raises(ValueError, match="path"):
        interpolant(x0, eps, t, "sigmoid")


def test_lognormal_times_on_the_cosine_path_are_two_over_pi_atan_sigma():
    t = sample_time(20000, generator=torch.Generator().manual_seed(0), weighting="lognormal", path="cosine")
    n = torch.randn(20000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(t, (2 / math.pi) * torch.atan(torch.exp(n)))
    assert abs(t.median().item() - 0.5) < 0.01  # atan(1) = pi/4 at the median of N(0,1)
    u = sample_time(8, generator=torch.Generator().manual_seed(1), path="cosine")
    torch.testing.assert_close(u, torch.rand(8, generator=torch.Generator().manual_seed(1)))


S = 0.5  # data standard deviation of the Gaussian toy


def gaussian_velocity(path):
    """Exact E[v | x_t] for x0 ~ N(0, S^2 I), eps ~ N(0, I): (a a' S^2 + s s') / (a^2 S^2 + s^2) x_t."""

    def velocity(x, t, y):
        a, s, da, ds = (c.to(torch.float64).reshape(-1, 1) for c in path_coefficients(t.to(torch.float64), path))
        return ((a * da * S**2 + s * ds) / (a**2 * S**2 + s**2)).to(x.dtype) * x

    return velocity


@pytest.mark.parametrize("path", ["linear", "cosine"])
def test_sde_drift_uses_the_true_score_of_the_path(path):
    from repabench.samplers import _cosine_sde_drift, _sde_drift

    drift = {"linear": _sde_drift, "cosine": _cosine_sde_drift}[path]
    x = torch.linspace(-2, 2, 7, dtype=torch.float64).reshape(-1, 1)
    for t in (0.04, 0.3, 0.7, 1.0):
        v = gaussian_velocity(path)(x, torch.full((7,), t), None)
        a, s, _, _ = (float(c) for c in path_coefficients(torch.tensor(t, dtype=torch.float64), path))
        score = -x / (a**2 * S**2 + s**2)
        torch.testing.assert_close(drift(x, t, v), v - t * score)


def test_cosine_sde_samples_have_the_data_variance_and_the_linear_score_does_not():
    n = 20000
    x1 = torch.randn(n, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    noise_gen = torch.Generator().manual_seed(1)
    noises = torch.randn(200, n, 1, generator=noise_gen, dtype=torch.float64)

    def sample(path):
        settings = SamplerSettings(mode="sde", steps=200, path=path)
        return euler_maruyama(gaussian_velocity("cosine"), x1, torch.zeros(n, dtype=torch.long), settings,
                              lambda k: noises[k], null_class=0)

    std = sample("cosine").std().item()
    assert std == pytest.approx(S, rel=0.05)
    assert abs(sample("linear").std().item() - S) > 0.1 * S  # the linear score on a cosine model is wrong


def test_train_config_path_option_trajectory_and_checkpoint(tmp_path, monkeypatch):
    import repabench.train as train
    from test_train_support import make_data, train_argv, train_in_process

    assert "path" not in train.TrainConfig().trajectory()  # default: earlier run hashes unchanged
    assert train.TrainConfig.from_config({"path": "cosine"}).trajectory()["path"] == "cosine"
    with pytest.raises(ValueError, match="train.path"):
        train.TrainConfig.from_config({"path": "vp"})

    seen = []
    original = train.interpolant

    def spy(x0, noise, t, path="linear"):
        out = original(x0, noise, t, path)
        seen.append((x0, noise, t, path, out))
        return out

    monkeypatch.setattr(train, "interpolant", spy)
    paths = make_data(tmp_path)
    out = tmp_path / "run"
    argv = train_argv(paths, out, tmp_path / "state", train={"path": "cosine", "steps": 2, "checkpoint_steps": [2]})
    assert train_in_process(argv) == 0
    assert seen and all(p == "cosine" for *_, p, _ in seen)
    x0, noise, t, _, (xt, v) = seen[0]
    tb = t.reshape(-1, 1, 1, 1)
    torch.testing.assert_close(xt, torch.cos(math.pi * tb / 2) * x0 + torch.sin(math.pi * tb / 2) * noise)
    ckpt = torch.load(next(out.rglob("0000002.pt")), weights_only=False)
    assert ckpt["path"] == "cosine"
    assert np.isfinite([float(x) for x in v.flatten()[:10]]).all()
