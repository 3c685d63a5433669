"""Samplers against hand computations and an analytic Gaussian flow; per-image randomness; shards; ADM npz export."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from repabench import sample as S


# ------------------------------------------------------------------------------------------------------------
# oracles written directly from docs/upstream-facts.md §5.1, in numpy float64


def oracle_sde(v_fn, x, y, steps, noises, cfg=1.0, lo=0.0, hi=1.0, null=10):
    grid = list(np.linspace(1.0, 0.04, steps)) + [0.0]

    def drift(x, t):
        def d(label):
            v = v_fn(x, t, label)
            s = (-(1 - t) * v - x) / t
            return v - 0.5 * (2 * t) * s
        if cfg > 1 and lo <= t <= hi:
            return d(np.full_like(y, null)) + cfg * (d(y) - d(np.full_like(y, null)))
        return d(y)

    for k in range(steps - 1):
        t, tn = grid[k], grid[k + 1]
        x = x + drift(x, t) * (tn - t) + np.sqrt(2 * t) * np.sqrt(abs(tn - t)) * noises[k]
    return x + drift(x, grid[-2]) * (0.0 - grid[-2])


def oracle_ode(v_fn, x, y, steps, heun=False, cfg=1.0, lo=0.0, hi=1.0, null=10):
    grid = np.linspace(1.0, 0.0, steps + 1)

    def vel(x, t, guide_t=None):
        if cfg > 1 and lo <= (t if guide_t is None else guide_t) <= hi:
            u = v_fn(x, t, np.full_like(y, null))
            return u + cfg * (v_fn(x, t, y) - u)
        return v_fn(x, t, y)

    for k in range(steps):
        t, tn = grid[k], grid[k + 1]
        d = vel(x, t)
        xn = x + (tn - t) * d
        if heun and k < steps - 1:
            xn = x + (tn - t) * 0.5 * (d + vel(xn, tn, guide_t=t))  # guidance decided at t_cur
        x = xn
    return x


def toy_v_numpy(x, t, y):
    """A velocity that depends on x, t and the label (null = 10 gives the unconditional branch)."""
    return (0.3 - 1.7 * t) * x + 0.5 * np.sin(3 * t) + 0.1 * y.reshape(-1, 1, 1, 1) * (y.reshape(-1, 1, 1, 1) != 10)


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, x, t, y):
        self.calls.append((x.shape[0], float(t[0]), y.clone(), x.dtype, t.dtype))
        yy = y.to(torch.float64).view(-1, 1, 1, 1)
        t64 = t.to(torch.float64).view(-1, 1, 1, 1)
        v = (0.3 - 1.7 * t64) * x.double() + 0.5 * torch.sin(3 * t64) + 0.1 * yy * (yy != 10)
        return v.to(x.dtype)


def _inputs(batch=3, shape=(2, 4, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *shape, generator=g, dtype=torch.float64)
    y = torch.tensor([1, 4, 7][:batch])
    return x, y


# ------------------------------------------------------------------------------------------------------------
# grids and settings


def test_time_grids_match_upstream():
    sde = S.SamplerSettings("sde", 5).time_grid()
    assert sde.dtype == torch.float64
    np.testing.assert_allclose(sde.numpy(), [1.0, 0.76, 0.52, 0.28, 0.04, 0.0], atol=1e-15)
    ode = S.SamplerSettings("ode", 4).time_grid()
    np.testing.assert_allclose(ode.numpy(), [1.0, 0.75, 0.5, 0.25, 0.0])


@pytest.mark.parametrize("bad", [
    {"mode": "dde", "steps": 10}, {"mode": "sde", "steps": 1}, {"mode": "sde", "steps": 10, "heun": True},
    {"mode": "ode", "steps": 10, "cfg_scale": 0.5}, {"mode": "ode", "steps": 10, "guidance_low": 0.8, "guidance_high": 0.2},
    {"mode": "ode", "steps": 10, "typo": 1}, {"steps": 10},
])
def test_bad_sampler_settings_are_rejected(bad):
    with pytest.raises(ValueError):
        S.SamplerSettings.from_config(bad)


# ------------------------------------------------------------------------------------------------------------
# hand computations


def test_sde_matches_oracle_and_counts_evaluations():
    x, y = _inputs()
    steps = 6
    noises = [np.random.default_rng(k).standard_normal(x.shape).astype(np.float32) for k in range(steps - 1)]
    rec = Recorder()
    out = S.run_sampler(rec, x, y, S.SamplerSettings("sde", steps), lambda k: torch.from_numpy(noises[k]),
                        null_class=10)
    expected = oracle_sde(toy_v_numpy, x.numpy(), y.numpy(), steps, [n.astype(np.float64) for n in noises])
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6)  # model runs in float32
    assert len(rec.calls) == steps  # exactly N network evaluations, last step deterministic
    assert all(c[3] == torch.float32 and c[4] == torch.float32 for c in rec.calls)
    assert [c[1] for c in rec.calls] == pytest.approx(list(np.linspace(1, 0.04, steps)), abs=1e-7)


def test_sde_last_step_is_deterministic():
    x, y = _inputs()
    settings = S.SamplerSettings("sde", 2)
    a = S.run_sampler(Recorder(), x, y, settings, lambda k: torch.zeros_like(x), null_class=10)
    b = S.run_sampler(Recorder(), x, y, settings, lambda k: torch.zeros_like(x), null_class=10)
    used = []
    S.run_sampler(Recorder(), x, y, settings, lambda k: used.append(k) or torch.zeros_like(x), null_class=10)
    assert used == [0]  # one noisy interval (1 -> 0.04), then 0.04 -> 0 without noise
    assert torch.equal(a, b)


@pytest.mark.parametrize("heun", [False, True])
def test_ode_matches_oracle(heun):
    x, y = _inputs()
    steps = 5
    rec = Recorder()
    out = S.run_sampler(rec, x, y, S.SamplerSettings("ode", steps, heun=heun), None, null_class=10)
    expected = oracle_ode(toy_v_numpy, x.numpy(), y.numpy(), steps, heun=heun)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6)
    assert len(rec.calls) == (2 * steps - 1 if heun else steps)  # no Heun correction on the last step


def test_cfg_interval_doubles_batch_with_null_labels():
    x, y = _inputs()
    steps = 4  # grid 1, .75, .5, .25, 0 -> guided at .75 and .5 for the interval [0.3, 0.8]
    settings = S.SamplerSettings("ode", steps, cfg_scale=2.5, guidance_low=0.3, guidance_high=0.8)
    rec = Recorder()
    out = S.run_sampler(rec, x, y, settings, None, null_class=10)
    expected = oracle_ode(toy_v_numpy, x.numpy(), y.numpy(), steps, cfg=2.5, lo=0.3, hi=0.8)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6)
    sizes = [(c[0], round(c[1], 3)) for c in rec.calls]
    assert sizes == [(3, 1.0), (6, 0.75), (6, 0.5), (3, 0.25)]
    guided_labels = rec.calls[1][2]
    assert guided_labels.tolist() == [1, 4, 7, 10, 10, 10]


def test_heun_corrector_guidance_is_decided_at_t_cur_like_upstream():
    """Two steps (grid 1, 0.5, 0), CFG 3 on [0, 0.7], v = t x + b(y) with b = 2 (label) or 0 (null), x(1) = 1.
    By hand: step 1 at t = 1 is unguided: d = 1 + 2 = 3, Euler proposal 1 - 0.5 * 3 = -0.5; the corrector at
    t = 0.5 is unguided too (t_cur = 1 is outside the interval): d' = 0.5 * -0.5 + 2 = 1.75, so
    x(0.5) = 1 - 0.5 * (3 + 1.75) / 2 = -0.1875.  Step 2 at t = 0.5 is guided and plain Euler (last step):
    d = 0.5 * -0.1875 + 0 + 3 * (2 - 0) = 5.90625, x(0) = -0.1875 - 0.5 * 5.90625 = -3.140625.
    (Guiding the corrector by t_next = 0.5 would give d' = 5.75, x(0.5) = -1.1875, x(0) = -4.140625.)"""
    calls = []

    def velocity(x, t, y):
        calls.append((x.shape[0], float(t[0])))
        return t.view(-1, 1, 1, 1) * x + 2.0 * (y != 10).to(x.dtype).view(-1, 1, 1, 1)

    settings = S.SamplerSettings("ode", 2, heun=True, cfg_scale=3.0, guidance_low=0.0, guidance_high=0.7)
    out = S.run_sampler(velocity, torch.ones(1, 1, 1, 1, dtype=torch.float64), torch.tensor([1]), settings,
                        None, null_class=10)
    assert out.item() == pytest.approx(-3.140625, abs=1e-12)
    assert calls == [(1, 1.0), (1, 0.5), (2, 0.5)]


def test_heun_with_cfg_interval_matches_oracle():
    x, y = _inputs()
    settings = S.SamplerSettings("ode", 6, heun=True, cfg_scale=2.0, guidance_low=0.2, guidance_high=0.7)
    out = S.run_sampler(Recorder(), x, y, settings, None, null_class=10)
    expected = oracle_ode(toy_v_numpy, x.numpy(), y.numpy(), 6, heun=True, cfg=2.0, lo=0.2, hi=0.7)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_cfg_on_sde_drift_matches_oracle():
    x, y = _inputs()
    steps = 5
    noises = [np.random.default_rng(10 + k).standard_normal(x.shape).astype(np.float32) for k in range(steps - 1)]
    settings = S.SamplerSettings("sde", steps, cfg_scale=1.8, guidance_low=0.0, guidance_high=0.7)
    out = S.run_sampler(Recorder(), x, y, settings, lambda k: torch.from_numpy(noises[k]), null_class=10)
    expected = oracle_sde(toy_v_numpy, x.numpy(), y.numpy(), steps, [n.astype(np.float64) for n in noises],
                          cfg=1.8, lo=0.0, hi=0.7)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_cfg_scale_one_never_doubles():
    x, y = _inputs()
    rec = Recorder()
    S.run_sampler(rec, x, y, S.SamplerSettings("ode", 3, cfg_scale=1.0), None, null_class=10)
    assert all(c[0] == 3 for c in rec.calls)


# ------------------------------------------------------------------------------------------------------------
# analytic case: Gaussian data x0 ~ N(0, s0^2 I), x_t = (1-t) x0 + t eps, so
#   v(x, t) = E[eps - x0 | x_t] = (t - (1-t) s0^2) / sigma_t^2 * x,  sigma_t^2 = (1-t)^2 s0^2 + t^2,
# and the ODE's exact flow is x_t = sigma_t / sigma_1 * x_1, i.e. x_0 = s0 * x_1.

S0 = 0.5


def gaussian_velocity(x, t, y):
    t = t.to(torch.float64).view(-1, *([1] * (x.dim() - 1)))
    var = (1 - t) ** 2 * S0 ** 2 + t ** 2
    return ((t - (1 - t) * S0 ** 2) / var * x.double()).to(x.dtype)


def _ode_error(steps, heun):
    x1 = torch.linspace(-2, 2, 16, dtype=torch.float64).view(16, 1, 1, 1)
    y = torch.zeros(16, dtype=torch.long)
    out = S.run_sampler(gaussian_velocity, x1, y, S.SamplerSettings("ode", steps, heun=heun), None, null_class=1)
    return (out - S0 * x1).abs().max().item()


def test_ode_converges_to_exact_flow_with_expected_orders():
    euler = [_ode_error(n, False) for n in (50, 100)]
    heun = [_ode_error(n, True) for n in (50, 100)]
    assert euler[1] < 0.02 and heun[1] < 1e-3
    assert 1.6 < euler[0] / euler[1] < 2.4          # first order
    assert heun[0] / heun[1] > 2.5                 # better than first order (the last step is Euler)
    assert heun[1] < euler[1] / 10


def test_sde_reaches_the_data_distribution():
    """Sample variance matches the exact variance recursion of the discrete scheme, and that is ~ s0^2."""
    steps, n = 60, 40000
    settings = S.SamplerSettings("sde", steps)
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randn(n, 1, 1, 1, generator=gen)
    out = S.run_sampler(gaussian_velocity, x1, torch.zeros(n, dtype=torch.long), settings,
                        lambda k: torch.randn(n, 1, 1, 1, generator=gen), null_class=1)
    grid = settings.time_grid().tolist()
    var = 1.0
    for k in range(steps):
        t, tn = grid[k], grid[k + 1]
        sig2 = (1 - t) ** 2 * S0 ** 2 + t ** 2
        a = (t - (1 - t) * S0 ** 2) / sig2          # v = a x
        c = a - t * ((-(1 - t) * a - 1) / t)        # drift = v - t * score, score = (-(1-t) v - x)/t
        var = (1 + c * (tn - t)) ** 2 * var + (2 * t * abs(tn - t) if k < steps - 1 else 0.0)
    sample_var = out.var().item()
    assert abs(sample_var - var) / var < 0.03       # 40k samples: relative s.e. of a variance ~ 0.7%
    assert abs(var - S0 ** 2) / S0 ** 2 < 0.1
    assert abs(out.mean().item()) < 0.01


def test_bf16_changes_results_only_slightly_and_keeps_float64_state():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))

    def velocity(x, t, y):
        h = x.permute(0, 2, 3, 1)
        return net(h + t.view(-1, 1, 1, 1)).permute(0, 3, 1, 2)

    x, y = _inputs(shape=(4, 3, 3))
    settings = S.SamplerSettings("ode", 8)
    fp32 = S.run_sampler(velocity, x, y, settings, None, null_class=10, precision="fp32")
    bf16 = S.run_sampler(velocity, x, y, settings, None, null_class=10, precision="bf16")
    assert fp32.dtype == bf16.dtype == torch.float64
    diff = (fp32 - bf16).abs().max().item()
    assert 0 < diff < 0.05


# ------------------------------------------------------------------------------------------------------------
# per-image randomness


def test_image_noise_does_not_depend_on_batch_composition():
    full = S.ImageNoise(range(6), seed=3, shape=(2, 3, 3), device=torch.device("cpu"))
    part = S.ImageNoise([4, 5], seed=3, shape=(2, 3, 3), device=torch.device("cpu"))
    for _ in range(3):  # initial noise then two steps
        a, b = full.draw(), part.draw()
        assert torch.equal(a[4:], b)
    other_seed = S.ImageNoise([4], seed=4, shape=(2, 3, 3), device=torch.device("cpu")).draw()
    assert not torch.equal(other_seed[0], S.ImageNoise([4], seed=3, shape=(2, 3, 3), device=torch.device("cpu")).draw()[0])


def test_labels_uniform_and_balanced():
    idx = list(range(5000))
    uniform = S.image_labels(idx, seed=0, num_classes=7, mode="uniform")
    assert uniform.dtype == np.int64 and uniform.min() == 0 and uniform.max() == 6
    counts = np.bincount(uniform, minlength=7)
    assert counts.min() > 600 and counts.max() < 830  # 714 expected each
    np.testing.assert_array_equal(S.image_labels(idx[100:110], 0, 7, "uniform"), uniform[100:110])
    balanced = S.image_labels(idx[:21], seed=0, num_classes=7, mode="balanced")
    np.testing.assert_array_equal(balanced, np.tile(np.arange(7), 3))
    with pytest.raises(ValueError):
        S.image_labels(idx, 0, 7, "random")


# ------------------------------------------------------------------------------------------------------------
# decoding, shards, manifest, export


def test_to_uint8_truncates_like_upstream():
    x = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0, 2.0, 2 * (100.7 / 255) - 1]).view(1, 1, 1, 7).expand(1, 3, 1, 7)
    out = S.to_uint8(x)
    assert out.shape == (1, 1, 7, 3) and out.dtype == np.uint8
    assert out[0, 0, :, 0].tolist() == [0, 0, 127, 254, 255, 255, 100]


def test_latents_are_unnormalised_before_decoding():
    bias = torch.tensor([0.5, -1.0], dtype=torch.float64)
    scale = torch.tensor([2.0, 4.0], dtype=torch.float64)
    seen = []

    def decode(z):
        seen.append(z)
        return torch.zeros(z.shape[0], 3, 2, 2)

    z = torch.ones(1, 2, 1, 1, dtype=torch.float64)
    S.latents_to_images(decode, z, bias, scale)
    assert seen[0].dtype == torch.float32
    np.testing.assert_allclose(seen[0].flatten().numpy(), [1 / 2 + 0.5, 1 / 4 - 1.0])


def _toy_generation(n=10, shard=4, labels="uniform", steps=3):
    return S.SamplingPlan(S.SamplerSettings("sde", steps), n, 0, labels, "fp32", shard, 5, (2, 2, 2))


def _toy_decode(z):
    return torch.tanh(z[:, :1].repeat(1, 3, 2, 2))  # [B,3,4,4] in (-1, 1)


def test_generate_shards_manifest_and_npz_export(tmp_path):
    gen = _toy_generation()
    key = gen.key({"w": 1})
    bias, scale = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    done = S.generate_shards(tmp_path, gaussian_velocity, _toy_decode, gen, key, bias, scale,
                             torch.device("cpu"), batch_size=3)
    assert done == [0, 1, 2]
    manifest = S.read_json(S.write_manifest(tmp_path, gen, key, {"sampler_name": "toy", "run": {}}))
    assert [(s["start"], s["count"]) for s in manifest["shards"]] == [(0, 4), (4, 4), (8, 2)]
    assert manifest["image_shape"] == [4, 4, 3] and manifest["sampler"]["name"] == "toy"

    # batch size does not change images; a rerun skips complete shards
    again = tmp_path / "again"
    S.generate_shards(again, gaussian_velocity, _toy_decode, gen, key, bias, scale, torch.device("cpu"), batch_size=10)
    for k in range(3):
        assert np.array_equal(np.load(tmp_path / f"shards/{k:05d}.npy"), np.load(again / f"shards/{k:05d}.npy"))
    assert S.generate_shards(tmp_path, gaussian_velocity, _toy_decode, gen, key, bias, scale,
                             torch.device("cpu"), batch_size=3) == []

    # a corrupted shard fails its checksum and is regenerated; a different key regenerates everything
    shard1 = tmp_path / "shards/00001.npy"
    data = bytearray(shard1.read_bytes())
    data[-1] ^= 0xFF
    shard1.write_bytes(bytes(data))
    assert S.generate_shards(tmp_path, gaussian_velocity, _toy_decode, gen, key, bias, scale,
                             torch.device("cpu"), batch_size=3) == [1]
    assert len(S.generate_shards(tmp_path, gaussian_velocity, _toy_decode, gen, gen.key({"w": 2}), bias, scale,
                                 torch.device("cpu"), batch_size=3)) == 3

    # export: arr_0 uint8 NHWC in index order, arr_1 labels
    S.generate_shards(tmp_path, gaussian_velocity, _toy_decode, gen, key, bias, scale, torch.device("cpu"), 3)
    S.write_manifest(tmp_path, gen, key, {"sampler_name": "toy"})
    npz = S.export_npz(tmp_path / "manifest.json", tmp_path / "samples.npz")
    with np.load(npz) as data:
        images, labels = data["arr_0"], data["arr_1"]
    expected = np.concatenate([np.load(tmp_path / f"shards/{k:05d}.npy") for k in range(3)])
    assert images.dtype == np.uint8 and images.shape == (10, 4, 4, 3)
    assert np.array_equal(images, expected)
    np.testing.assert_array_equal(labels, S.image_labels(range(10), 0, 5, "uniform"))


def test_more_samples_reuse_existing_shards(tmp_path):
    small, large = _toy_generation(n=8), _toy_generation(n=12)
    assert small.key({}) == large.key({})
    bias, scale = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    S.generate_shards(tmp_path, gaussian_velocity, _toy_decode, small, small.key({}), bias, scale, torch.device("cpu"), 4)
    assert S.generate_shards(tmp_path, gaussian_velocity, _toy_decode, large, large.key({}), bias, scale,
                             torch.device("cpu"), 4) == [2]


def test_manifest_refuses_missing_shards(tmp_path):
    gen = _toy_generation()
    with pytest.raises(RuntimeError, match="missing or incomplete"):
        S.write_manifest(tmp_path, gen, gen.key({}), {})


def test_sample_config_validation():
    assert S.SampleConfig.from_config({}).shard_size == 1000
    for bad in ({"labels": "random"}, {"precision": "fp16"}, {"shard_size": 0}, {"n_sample": 5}):
        with pytest.raises(ValueError):
            S.SampleConfig.from_config(bad)
