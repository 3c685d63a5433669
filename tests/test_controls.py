"""The causal controls (`_shuffled`, `_global`, `_local` encoders), the FID noise floor and the computed verdict."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import repabench.encoders as enc
from repabench.adm.metrics import Statistics, bootstrap_fids, bootstrap_indices, frechet_distance, statistics
from repabench.encoders.base import pool_tokens
from repabench.spatial import SpatialConfig, spatial_metrics
from repabench import verdict as V

BASE = "effnetlite-cnn-lite0_randinit"  # the real architecture, no weights to fetch


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (3, 3, 128, 128), generator=generator, dtype=torch.uint8)


@pytest.fixture(scope="module")
def tokens(images):
    with torch.inference_mode():
        return {name: enc.build_encoder(name)(images, grid=8)
                for name in (BASE, f"{BASE}_shuffled", f"{BASE}_global", f"{BASE}_local")}


def _brute_lds(tokens: np.ndarray, far: int) -> float:
    side = int(round(math.sqrt(len(tokens))))
    unit = tokens / np.linalg.norm(tokens, axis=1, keepdims=True)
    near, distant = [], []
    for a, b in itertools.permutations(range(len(tokens)), 2):
        d = abs(a // side - b // side) + abs(a % side - b % side)
        cos = float(unit[a] @ unit[b])
        if d == 1:
            near.append(cos)
        elif d >= far:
            distant.append(cos)
    return float(np.mean(near) - np.mean(distant))


def test_variant_names_validate_and_build_on_the_real_architecture():
    for suffix in enc.VARIANTS:
        enc.validate_encoder_name(f"pe-vit-g{suffix}")
        enc.validate_encoder_name(f"pe-vit-g_randinit{suffix}")
        assert enc.weight_names(f"dinov2-vit-b{suffix}") == enc.weight_names("dinov2-vit-b")
        assert enc.encoder_variant(f"dinov2-vit-b{suffix}") == ("dinov2-vit-b", suffix)
    with pytest.raises(ValueError, match="_shuffled"):
        enc.validate_encoder_name("dinov9-vit-b_shuffled")
    meta = enc.build_encoder("pe-vit-g_shuffled", device="meta")
    assert tuple(meta(torch.empty((1, 3, 256, 256), device="meta")).shape) == (1, 256, 1536)
    described = enc.build_encoder(f"{BASE}_global").describe()
    assert described["variant"] == "global" and described["base_encoder"] == BASE


def test_shuffled_keeps_pooled_features_bit_identical_and_changes_lds(tokens):
    original, shuffled = tokens[BASE], tokens[f"{BASE}_shuffled"]
    assert not torch.equal(original, shuffled)
    assert torch.equal(torch.sort(original, dim=1).values, torch.sort(shuffled, dim=1).values)  # a permutation
    assert torch.equal(pool_tokens(original), pool_tokens(shuffled))  # bit for bit, so the probe's input is equal
    cfg = SpatialConfig(lds_far=4)
    ours = {name: spatial_metrics(tokens[name], cfg=cfg, device="cpu")["LDS"] for name in (BASE, f"{BASE}_shuffled")}
    for name, values in ours.items():
        want = [_brute_lds(t.double().numpy(), cfg.lds_far) for t in tokens[name]]
        np.testing.assert_allclose(values, want, atol=1e-5)
    assert np.all(np.abs(ours[BASE] - ours[f"{BASE}_shuffled"]) > 1e-3)
    assert np.mean(ours[BASE]) > np.mean(ours[f"{BASE}_shuffled"])  # neighbours stop being similar


def test_the_permutation_is_the_same_for_every_image(images):
    encoder = enc.build_encoder(f"{BASE}_shuffled")
    with torch.inference_mode():
        one_by_one = torch.cat([encoder(images[i:i + 1], grid=8) for i in range(len(images))])
        batched = encoder(images, grid=8)
    torch.testing.assert_close(one_by_one, batched)


def test_global_has_no_spatial_structure_and_local_no_global_component(tokens):
    metrics = spatial_metrics(tokens[f"{BASE}_global"], cfg=SpatialConfig(lds_far=4), device="cpu")
    np.testing.assert_allclose(metrics["LDS"], 0, atol=1e-6)
    np.testing.assert_allclose(metrics["CDS"], 0, atol=1e-6)
    np.testing.assert_allclose(metrics["RMSC"], 0, atol=1e-3)
    torch.testing.assert_close(pool_tokens(tokens[f"{BASE}_global"]), pool_tokens(tokens[BASE]), rtol=1e-5, atol=1e-6)
    local = tokens[f"{BASE}_local"]
    torch.testing.assert_close(local.mean(1), torch.zeros_like(local.mean(1)), rtol=0, atol=1e-5)
    torch.testing.assert_close(local[:, 1] - local[:, 0], tokens[BASE][:, 1] - tokens[BASE][:, 0])


# --- the FID noise floor -----------------------------------------------------------------------------------


def test_bootstrap_fids_equal_the_direct_fid_of_each_resample():
    rng = np.random.default_rng(1)
    dim = 24
    ref_acts = rng.standard_normal((300, dim)) @ rng.standard_normal((dim, dim)) * 0.3
    ref = statistics(ref_acts)
    for n in (12, 40):  # N < dim: the Gram-matrix route; N > dim: the direct route
        acts = rng.standard_normal((n, dim)) + 0.5
        idx = bootstrap_indices(n, 5, seed=3)
        want = [frechet_distance(statistics(acts[i]), ref, "sqrtm" if n > dim else "eigh") for i in idx]
        np.testing.assert_allclose(bootstrap_fids(acts, ref, idx), want, rtol=1e-7)
    assert not np.array_equal(idx[0], idx[1])


def test_fid_noise_shrinks_with_more_samples():
    from repabench.adm.stages import fid_noise

    rng = np.random.default_rng(2)
    dim = 16
    ref = Statistics(np.zeros(dim), np.eye(dim))
    sds = []
    for n in (40, 640):
        acts = rng.standard_normal((n, dim)) * 1.2 + 0.3
        fid = frechet_distance(statistics(acts), ref, "eigh")
        noise = fid_noise(acts, ref, fid, 100, 0)
        assert noise["interval"][0] < fid < noise["interval"][1]
        sds.append(noise["sd"])
    assert sds[1] < sds[0] / 2  # ~ 1/sqrt(N)
    assert fid_noise(acts, ref, fid, 0, 0) is None


# --- the computed verdict (synthetic inputs) ----------------------------------------------------------------


ENCODERS = [f"e{i}" for i in range(8)]


def _predictors(spatial_signal: np.ndarray, lp_signal: np.ndarray) -> dict[str, dict[str, float]]:
    return {e: {"LP": float(lp_signal[i]), "LDS": float(spatial_signal[i]), "CDS": float(spatial_signal[i] * 0.1),
                "SRSS": float(spatial_signal[i] + 0.01 * i), "RMSC": float(spatial_signal[i] * 2)}
            for i, e in enumerate(ENCODERS)}


def _setting(fid: np.ndarray, sd: float) -> dict[str, tuple[float, float]]:
    return {e: (float(fid[i]), sd) for i, e in enumerate(ENCODERS)}


def test_verdict_not_resolved_when_differences_are_below_the_floor():
    rng = np.random.default_rng(0)
    spatial, lp = rng.standard_normal(8), rng.standard_normal(8)
    fid = 100 - 2 * spatial  # perfectly predicted by the spatial metrics ...
    by_encoder = _setting(fid, sd=50.0)  # ... but every difference drowns in the noise
    pairs = V.resolved_pairs(by_encoder)
    assert pairs["n_resolved"] == 0
    result = V.verdict(V.spatial_advantage(_predictors(spatial, lp), by_encoder, 500, 0), pairs)
    assert result["answer"] == V.NOT_RESOLVED and "noise floor" in result["why"]


def test_verdict_yes_no_and_not_resolved_from_the_numbers():
    rng = np.random.default_rng(0)
    spatial, lp = rng.standard_normal(8), rng.standard_normal(8)
    yes = _setting(100 - 20 * spatial, sd=0.1)
    no = _setting(100 - 20 * lp, sd=0.1)
    verdicts = {}
    for name, by_encoder in {"yes": yes, "no": no}.items():
        verdicts[name] = V.verdict(V.spatial_advantage(_predictors(spatial, lp), by_encoder, 500, 0),
                                   V.resolved_pairs(by_encoder))["answer"]
    assert verdicts == {"yes": "yes", "no": "no"}
    mixed = _setting(100 - 20 * (spatial + lp), sd=0.1)  # both predict about equally: the interval covers 0
    advantage = V.spatial_advantage(_predictors(spatial, lp), mixed, 500, 0)
    assert advantage["ci95"][0] < 0 < advantage["ci95"][1]
    assert V.verdict(advantage, V.resolved_pairs(mixed))["answer"] == V.NOT_RESOLVED
    few = {e: yes[e] for e in ENCODERS[:3]}
    assert V.verdict(V.spatial_advantage(_predictors(spatial, lp), few, 500, 0),
                     V.resolved_pairs(few))["answer"] == V.NOT_RESOLVED


def test_differences_learning_and_controls():
    assert V.difference(10.0, 1.0, 14.0, 1.0)["resolved"] is True  # 4 > 1.96 * sqrt(2) = 2.77
    assert V.difference(10.0, 1.0, 12.0, 1.0)["resolved"] is False
    assert V.difference(10.0, None, 12.0, 1.0)["resolved"] is None
    fids = {("sit-t-2", "repa", 200): {"a": (300.0, 5.0), "a_shuffled": (330.0, 5.0)}}
    rows = V.learning(fids, {"sit-t-2": (400.0, 5.0)})
    assert all(r["beats_untrained"] for r in rows)
    assert not V.learning(fids, {"sit-t-2": (305.0, 5.0)})[0]["beats_untrained"]
    predictors = {"a": {"LP": 50.0, "LDS": 0.3}, "a_shuffled": {"LP": 50.0, "LDS": 0.01}}
    [row] = V.controls(["a", "a_shuffled"], predictors, fids, "sit-t-2", 200, ["repa"])
    assert row["kind"] == "shuffled" and row["methods"]["repa"]["resolved"] is True
    assert "LP unchanged" in row["summary"] and "worse by 30.00" in row["summary"]


def test_the_summary_defers_to_the_computed_verdict():
    from repabench.report.controls import verdict_lines
    from repabench.report.correlation import summary_lines

    stats = {"verdict": {"answer": V.NOT_RESOLVED, "why": "no pair of the 7 encoders differs"}, "learning": [],
             "controls": []}
    plain = ["Linear-probe accuracy: |r| = 0.67.", "Here linear probing predicts FID better, unlike the paper.",
             "With 7 encoders the intervals are wide."]
    lines = summary_lines(verdict_lines(stats), plain)
    assert lines[0].startswith("Do the spatial metrics predict FID better") and "Not resolved" in lines[0]
    assert plain[0] in lines and plain[2] in lines and plain[1] not in lines
    assert summary_lines([], plain) == plain
