"""Spatial metrics against brute-force per-pair loops, identities and synthetic fields of known structure."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from repabench.spatial import (
    SpatialConfig,
    mask_filter,
    spatial_metrics,
    spatial_metrics_main,
    token_masks_from_pixels,
    write_spatial_metrics,
)
from repabench.store import write_store

CFG = SpatialConfig()


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (max(np.linalg.norm(a), 1e-8) * max(np.linalg.norm(b), 1e-8)))


def _brute(tokens: np.ndarray, fg: np.ndarray | None, cfg: SpatialConfig = CFG) -> dict[str, float]:
    """One image, written as the spec reads: loops over cells and ordered pairs."""
    t = tokens.shape[0]
    side = int(round(math.sqrt(t)))
    cells = [(i // side, i % side) for i in range(t)]
    dist = lambda i, j: abs(cells[i][0] - cells[j][0]) + abs(cells[i][1] - cells[j][1])  # noqa: E731
    k = lambda i, j: _cos(tokens[i], tokens[j])  # noqa: E731

    local = []
    for y in range(side):
        for x in range(side):
            if x + 1 < side:
                local.append(k(y * side + x, y * side + x + 1))
            if y + 1 < side:
                local.append(k(y * side + x, (y + 1) * side + x))
    far = [k(i, j) for i in range(t) for j in range(t) if dist(i, j) >= cfg.lds_far]
    lds = np.mean(local) - np.mean(far)

    ds, s = [], []
    for d in range(1, cfg.cds_dmax + 1):
        vals = [k(i, j) for i in range(t) for j in range(t) if dist(i, j) == d]
        if vals:
            ds.append(d)
            s.append(np.mean(vals))
    slope = np.polyfit(ds, s, 1)[0]

    unit = tokens / np.maximum(np.linalg.norm(tokens, axis=1, keepdims=True), 1e-8)
    rmsc = math.sqrt(np.mean(np.sum((unit - unit.mean(0)) ** 2, axis=1)))

    srss = float("nan")
    if fg is not None and fg.sum() >= 2 and (~fg).sum() >= 1:
        anchors = []
        for i in range(t):
            if not fg[i]:
                continue
            pos = [k(i, j) for j in range(t) if fg[j] and cfg.srss_d_pos_min <= dist(i, j) <= cfg.srss_d_pos]
            neg = [k(i, j) for j in range(t) if not fg[j] and dist(i, j) >= cfg.srss_d_neg]
            if pos and neg:
                anchors.append(np.mean(pos) - np.mean(neg))
        if anchors:
            srss = float(np.mean(anchors))
    return {"LDS": lds, "CDS": -slope, "SRSS": srss, "RMSC": rmsc}


def _random_masks(rng, n, t):
    masks = rng.random((n, t)) < rng.uniform(0.2, 0.8, size=(n, 1))
    masks[0] = False  # no foreground: SRSS must be NaN
    masks[0, 5] = True  # exactly one foreground token
    return masks


@pytest.mark.parametrize("side,dim", [(7, 5), (6, 12), (4, 3), (8, 16)])
def test_metrics_match_brute_force(side, dim):
    rng = np.random.default_rng(side)
    n, t = 5, side * side
    # a shared offset makes cosines far from zero, so wrong pair sets show up in the values
    tokens = (rng.normal(size=(n, t, dim)) + rng.normal(size=(1, 1, dim))).astype(np.float16)
    masks = _random_masks(rng, n, t)
    got = spatial_metrics(tokens, masks, CFG, device="cpu", chunk=2)
    for b in range(n):
        want = _brute(tokens[b].astype(np.float64), masks[b])
        for name in ("LDS", "CDS", "RMSC"):
            assert got[name][b] == pytest.approx(want[name], abs=2e-5), (name, b)
        if math.isnan(want["SRSS"]):
            assert math.isnan(got["SRSS"][b])
        else:
            assert got["SRSS"][b] == pytest.approx(want["SRSS"], abs=2e-5)
    assert math.isnan(got["SRSS"][0])


def test_other_distances_and_zero_tokens():
    cfg = SpatialConfig(lds_far=3, cds_dmax=5, srss_d_pos=2, srss_d_neg=4)
    rng = np.random.default_rng(1)
    tokens = rng.normal(size=(3, 25, 4)).astype(np.float32)
    tokens[1, 3] = 0.0  # a zero token: cosines with it are 0 (eps-normalised), not NaN
    masks = rng.random((3, 25)) < 0.5
    got = spatial_metrics(tokens, masks, cfg, device="cpu")
    for b in range(3):
        want = _brute(tokens[b].astype(np.float64), masks[b], cfg)
        for name in ("LDS", "CDS", "SRSS", "RMSC"):
            assert got[name][b] == pytest.approx(want[name], abs=2e-5), (name, b)


def test_rmsc_identity_for_unit_tokens():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 64, 10)) + 2.0 * rng.normal(size=(6, 1, 10))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    got = spatial_metrics(x.astype(np.float32), None, CFG, device="cpu")["RMSC"]
    want = np.sqrt(1 - np.sum(x.mean(1) ** 2, axis=-1))
    np.testing.assert_allclose(got, want, atol=1e-6)


def _smooth_field(rng, side, dim, length):
    """Tokens that vary slowly over the grid: a Gaussian-blurred noise field."""
    noise = torch.as_tensor(rng.normal(size=(1, dim, side, side)), dtype=torch.float32)
    radius = int(3 * length)
    kernel_1d = torch.exp(-0.5 * (torch.arange(-radius, radius + 1) / length) ** 2)
    kernel_1d = kernel_1d / kernel_1d.sum()
    padded = torch.nn.functional.pad(noise, (radius,) * 4, mode="circular")
    blurred = torch.nn.functional.conv2d(padded, kernel_1d.view(1, 1, 1, -1).expand(dim, 1, 1, -1), groups=dim)
    blurred = torch.nn.functional.conv2d(blurred, kernel_1d.view(1, 1, -1, 1).expand(dim, 1, -1, 1), groups=dim)
    return blurred[0].reshape(dim, -1).T.numpy()


def test_structure_orders_as_expected():
    rng = np.random.default_rng(3)
    side, dim, n = 16, 32, 8
    smooth = np.stack([_smooth_field(rng, side, dim, 2.0) for _ in range(n)])
    noise = rng.normal(size=(n, side * side, dim))
    constant = np.repeat(rng.normal(size=(n, 1, dim)), side * side, axis=1) + 1e-3 * noise
    s = spatial_metrics(smooth.astype(np.float32), None, CFG, device="cpu")
    z = spatial_metrics(noise.astype(np.float32), None, CFG, device="cpu")
    c = spatial_metrics(constant.astype(np.float32), None, CFG, device="cpu")
    assert s["LDS"].mean() > 0.3 and s["CDS"].mean() > 0.02
    assert abs(z["LDS"].mean()) < 0.02 and abs(z["CDS"].mean()) < 0.005
    assert abs(c["LDS"].mean()) < 0.01 and c["RMSC"].mean() < 0.01  # uniform image: no structure, no contrast
    assert z["RMSC"].mean() > 0.95  # iid unit tokens are nearly orthogonal to their mean


def test_srss_rewards_region_coherent_tokens():
    rng = np.random.default_rng(4)
    side, dim, n = 8, 16, 6
    fg = np.zeros((n, side, side), bool)
    fg[:, 2:6, 1:5] = True
    fg = fg.reshape(n, -1)
    proto = rng.normal(size=(2, dim))
    coherent = np.where(fg[..., None], proto[0], proto[1]) + 0.3 * rng.normal(size=(n, side * side, dim))
    noise = rng.normal(size=(n, side * side, dim))
    a = spatial_metrics(coherent.astype(np.float32), fg, CFG, device="cpu")["SRSS"]
    b = spatial_metrics(noise.astype(np.float32), fg, CFG, device="cpu")["SRSS"]
    assert a.mean() > 0.5 and abs(b.mean()) < 0.1


def test_token_masks_max_pool_any_pixel():
    masks = np.zeros((2, 32, 32), np.uint8)
    masks[0, 0, 0] = 1  # one pixel marks its whole 4x4 patch
    masks[1, 5:9, 30] = 255
    got = token_masks_from_pixels(masks, 8).reshape(2, 8, 8)
    assert got[0, 0, 0] and got[0].sum() == 1
    assert got[1, 1, 7] and got[1, 2, 7] and got[1].sum() == 2
    with pytest.raises(ValueError, match="divisible"):
        token_masks_from_pixels(np.zeros((1, 30, 30)), 8)


def test_mask_filter_threshold():
    t = 16
    counts = [0, 3, 4, 8, 12, 13, 16]
    masks = np.array([[1] * c + [0] * (t - c) for c in counts], bool)
    assert mask_filter(masks, 0.25).tolist() == [2, 3, 4]  # >= 4 foreground and >= 4 background


def test_non_square_grid_is_an_error():
    with pytest.raises(ValueError, match="square"):
        spatial_metrics(np.zeros((1, 65, 4), np.float32), None, CFG, device="cpu")


def test_stage_filters_features_and_masks_together(tmp_path):
    rng = np.random.default_rng(5)
    n, side, dim, px = 12, 8, 8, 32
    tokens = rng.normal(size=(n, side * side, dim)).astype(np.float16)
    masks = np.zeros((n, px, px), np.uint8)
    for i in range(n):
        if i % 3 == 0:
            continue  # empty mask: filtered out
        masks[i, : px * (i % 3) // 3 + 4] = 1
    write_store(tmp_path / "feat", {"tokens": tokens, "labels": np.arange(n), "masks": masks})
    out = tmp_path / "spatial.json"
    per_image = tmp_path / "per_image.npz"
    cfg = SpatialConfig(bootstrap=50, lds_far=6, cds_dmax=8, srss_d_pos=1, srss_d_neg=6, min_fraction=0.25)
    write_spatial_metrics(tmp_path / "feat", "toy", out, cfg, seed=0, device=torch.device("cpu"), per_image=per_image)
    result = json.loads(out.read_text())
    token_masks = token_masks_from_pixels(masks, side)
    kept = mask_filter(token_masks, 0.25)
    assert 0 < kept.size < n
    saved = np.load(per_image)
    assert saved["kept"].tolist() == kept.tolist()
    for j, i in enumerate(kept):  # each value belongs to the image whose mask selected it
        want = _brute(tokens[i].astype(np.float64), token_masks[i])
        assert saved["SRSS"][j] == pytest.approx(want["SRSS"], abs=2e-5)
        assert saved["LDS"][j] == pytest.approx(want["LDS"], abs=2e-5)
    assert result["n_images"] == kept.size and result["n_total"] == n
    assert all(result["subsets"][m].startswith(f"mask-filtered: {kept.size} of {n} images")
               for m in ("LDS", "CDS", "SRSS", "RMSC"))
    assert result["SRSS"]["mean"] == pytest.approx(np.nanmean(saved["SRSS"]), abs=1e-9)
    lo, hi = result["LDS"]["ci95"]
    assert lo <= result["LDS"]["mean"] <= hi
    assert result["provenance"]["stage"] == "spatial_metrics"


def test_stage_without_masks_reports_null_srss(tmp_path):
    rng = np.random.default_rng(6)
    write_store(tmp_path / "feat", {"tokens": rng.normal(size=(4, 16, 3)).astype(np.float16), "labels": np.arange(4)})
    out = tmp_path / "s.json"
    assert spatial_metrics_main(["--features", str(tmp_path / "feat"), "--encoder", "e", "--out", str(out),
                                 "--params", '{"spatial": {"bootstrap": 10, "lds_far": 3, "cds_dmax": 4}}', "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    assert result["SRSS"]["mean"] is None and "reason" in result["SRSS"] and result["n_kept_srss"] == 0
    assert result["LDS"]["mean"] is not None
    assert result["subsets"]["SRSS"] == "none (no masks)"
    assert result["subsets"]["LDS"] == result["subsets"]["RMSC"] == (
        "all 4 images (no masks; upstream uses its mask-filtered subset)")
