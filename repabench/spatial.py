"""Spatial-structure metrics of encoder patch tokens: LDS, CDS, SRSS and RMSC (docs/upstream-facts.md §7).

Every metric gives one value per image, computed from the cosine Gram matrix K of the image's
L2-normalised tokens on a square token grid, with Manhattan distances between grid cells:

* LDS  = mean K over 4-neighbour pairs - mean K over ordered pairs at distance >= `far`;
* CDS  = -slope of the least-squares line through (d, mean K at distance exactly d), d = 1..dmax
         (distances the grid does not have are left out of the fit);
* SRSS = mean over foreground anchors of [mean K(foreground, d_pos_min <= d <= d_pos)
         - mean K(background, d >= d_neg)]; NaN without a valid anchor (needs a mask);
* RMSC = sqrt(mean over tokens of ||t - mean token||^2) of the unit tokens.

All four are evaluated for a batch of images at once: one batched Gram matrix per chunk, then the
distance-class averages as a single product with a stack of pair-weight matrices.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from repabench.sections import config_section
from repabench.stage import parse_stage, stage_parser

log = logging.getLogger("repabench.spatial")

METRICS = ("LDS", "CDS", "SRSS", "RMSC")
NORMALIZE_EPS = 1e-8


SRSS_D_POS_MIN = 1  # positives start at distance 1 (a token is not its own positive)


@config_section("spatial")
class SpatialConfig:
    """The `spatial` section: distance classes of LDS, CDS and SRSS, the mask filter and the bootstrap."""

    lds_far: int
    cds_dmax: int
    srss_d_pos: int
    srss_d_neg: int
    min_fraction: float
    bootstrap: int

    @property
    def srss_d_pos_min(self) -> int:
        return SRSS_D_POS_MIN


def grid_side(num_tokens: int) -> int:
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(
            f"{num_tokens} tokens do not form a square grid; spatial metrics need T = grid^2 patch tokens "
            "(drop CLS/register tokens when extracting features)"
        )
    return side


def manhattan_distances(side: int) -> torch.Tensor:
    """[T, T] integer Manhattan distances between the cells of a side x side grid (row-major)."""
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    return (ys[:, None] - ys[None, :]).abs() + (xs[:, None] - xs[None, :]).abs()


class _PairWeights:
    """Pair-weight matrices of one grid; K summed against them gives every distance-class mean."""

    def __init__(self, side: int, cfg: SpatialConfig, device: torch.device):
        dist = manhattan_distances(side)
        max_dist = 2 * (side - 1)
        if cfg.lds_far > max_dist:
            raise ValueError(
                f"LDS far distance {cfg.lds_far} exceeds the largest distance {max_dist} of a {side}x{side} grid; "
                "lower spatial.lds_far or use a finer token grid"
            )
        self.cds_distances = [d for d in range(1, cfg.cds_dmax + 1) if d <= max_dist]
        if len(self.cds_distances) < 2:
            raise ValueError(f"a {side}x{side} grid has fewer than two distances for the CDS fit")
        columns = [_mean_weights(dist == 1) - _mean_weights(dist >= cfg.lds_far)]
        columns += [_mean_weights(dist == d) for d in self.cds_distances]
        self.matrix = torch.stack([c.reshape(-1) for c in columns], dim=1).to(device)  # [T*T, 1 + n_d]
        self.positive = ((dist >= cfg.srss_d_pos_min) & (dist <= cfg.srss_d_pos)).float().to(device)
        self.negative = (dist >= cfg.srss_d_neg).float().to(device)
        d = torch.tensor(self.cds_distances, dtype=torch.float64)
        centred = d - d.mean()
        self.cds_coeffs = (-(centred / (centred**2).sum())).float().to(device)  # -slope = coeffs . s_d


def _mean_weights(selected: torch.Tensor) -> torch.Tensor:
    selected = selected.double()
    return (selected / selected.sum()).float()


def _auto_chunk(num_tokens: int, dim: int, device: torch.device) -> int:
    """Images per chunk: float32 tokens (twice: input and centred) plus three T x T buffers within a budget."""
    budget = (4 << 30) if device.type == "cuda" else (256 << 20)
    per_image = 4 * (2 * num_tokens * dim + 3 * num_tokens * num_tokens)
    return max(1, budget // per_image)


def spatial_metrics(
    tokens: torch.Tensor | np.ndarray,
    token_masks: torch.Tensor | np.ndarray | None = None,
    cfg: SpatialConfig = SpatialConfig(),
    device: str | torch.device | None = None,
    chunk: int | None = None,
    progress: bool = False,
    rows: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-image LDS, CDS, SRSS, RMSC of tokens [N, T, D] (T a square); token_masks [N, T] (1 = foreground).

    `rows` (ascending indices) evaluates only those images of `tokens`, read chunk by chunk so a
    memory-mapped store is never loaded whole; `token_masks` then has one row per selected image.
    Returns float64 arrays with one value per evaluated image; SRSS is all-NaN without masks.
    """
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be [N, T, D], got shape {tuple(tokens.shape)}")
    _, t, dim = tokens.shape
    n = tokens.shape[0] if rows is None else len(rows)
    side = grid_side(t)
    if token_masks is not None and tuple(token_masks.shape) != (n, t):
        raise ValueError(f"token masks must be [N, T] = {(n, t)}, got {tuple(token_masks.shape)}")
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    weights = _PairWeights(side, cfg, device)
    chunk = chunk or _auto_chunk(t, dim, device)
    out = {name: np.full(n, np.nan) for name in METRICS}
    starts = range(0, n, chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="spatial metrics", unit="chunk")
    with torch.no_grad():
        for start in starts:
            stop = min(start + chunk, n)
            index = slice(start, stop) if rows is None else rows[start:stop]
            x = tokens[index]
            x = torch.from_numpy(np.array(x)) if isinstance(x, np.ndarray) else x
            x = F.normalize(x.to(device=device, dtype=torch.float32), dim=-1, eps=NORMALIZE_EPS)
            gram = torch.bmm(x, x.transpose(1, 2))  # [B, T, T]
            sums = gram.reshape(gram.shape[0], -1) @ weights.matrix  # [B, 1 + n_d]
            out["LDS"][start:stop] = sums[:, 0].double().cpu().numpy()
            out["CDS"][start:stop] = (sums[:, 1:] @ weights.cds_coeffs).double().cpu().numpy()
            centred = x - x.mean(dim=1, keepdim=True)
            out["RMSC"][start:stop] = centred.pow(2).sum(-1).mean(-1).clamp_min(0).sqrt().double().cpu().numpy()
            if token_masks is not None:
                m = token_masks[start:stop]  # one mask row per evaluated image
                m = torch.from_numpy(np.array(m)) if isinstance(m, np.ndarray) else m
                m = m.to(device=device, dtype=torch.float32)
                out["SRSS"][start:stop] = _srss(gram, (m > 0).float(), weights).double().cpu().numpy()
    return out


def _srss(gram: torch.Tensor, fg: torch.Tensor, weights: _PairWeights) -> torch.Tensor:
    bg = 1.0 - fg
    pos_count = fg @ weights.positive.T  # [B, T]: foreground tokens within d_pos of each anchor
    neg_count = bg @ weights.negative.T
    pos_sum = torch.bmm(gram * weights.positive, fg[..., None]).squeeze(-1)
    neg_sum = torch.bmm(gram * weights.negative, bg[..., None]).squeeze(-1)
    valid = (fg > 0) & (pos_count > 0) & (neg_count > 0)
    score = pos_sum / pos_count.clamp_min(1) - neg_sum / neg_count.clamp_min(1)
    n_valid = valid.sum(1)
    image = (score * valid).sum(1) / n_valid.clamp_min(1)
    defined = (fg.sum(1) >= 2) & (bg.sum(1) >= 1) & (n_valid > 0)
    return torch.where(defined, image, torch.full_like(image, float("nan")))


def token_masks_from_pixels(masks: np.ndarray | torch.Tensor, side: int) -> np.ndarray:
    """Pixel masks [N, H, W] -> [N, side*side] bool: a patch is foreground if any of its pixels is."""
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {tuple(masks.shape)}")
    n, h, w = masks.shape
    if h % side or w % side:
        raise ValueError(f"mask size {h}x{w} is not divisible by the token grid {side}x{side}")
    out = np.empty((n, side * side), dtype=bool)
    for start in range(0, n, 1024):
        m = torch.as_tensor(np.array(masks[start:start + 1024])) > 0
        pooled = F.max_pool2d(m.float()[:, None], kernel_size=(h // side, w // side))
        out[start:start + 1024] = pooled.reshape(m.shape[0], -1).bool().numpy()
    return out


def metric_subsets(masked: bool, n_kept: int, n_total: int, min_fraction: float,
                   mask_source: str | None = None) -> dict[str, str]:
    """Which images each metric's mean is over, in words (upstream: the mask-filtered subset for all four)."""
    if masked:
        origin = f" ({mask_source} masks)" if mask_source else ""
        subset = (f"mask-filtered: {n_kept} of {n_total} images{origin} with >= {100 * min_fraction:.0f}% "
                  "foreground and background patches (as upstream)")
        return {name: subset for name in METRICS}
    everything = f"all {n_total} images (no masks; upstream uses its mask-filtered subset)"
    return {**{name: everything for name in METRICS}, "SRSS": "none (no masks)"}


def mask_filter(token_masks: np.ndarray, min_fraction: float) -> np.ndarray:
    """Indices of images with >= min_fraction of foreground AND of background patches (64/256 upstream)."""
    t = token_masks.shape[1]
    need = min_fraction * t
    fg = token_masks.sum(1)
    return np.flatnonzero((fg >= need) & (t - fg >= need))


def bootstrap_mean_ci(values: np.ndarray, n_boot: int, seed: int = 0, level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap interval of the mean over images (NaNs dropped first)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return None
    if n_boot <= 0 or v.size == 1:
        return [float(v.mean()), float(v.mean())]
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for lo in range(0, n_boot, 256):
        hi = min(lo + 256, n_boot)
        means[lo:hi] = v[rng.integers(0, v.size, size=(hi - lo, v.size))].mean(1)
    alpha = (1 - level) / 2
    return [float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))]


def summarize(values: dict[str, np.ndarray], n_boot: int, seed: int = 0) -> dict[str, Any]:
    summary = {}
    for name in METRICS:
        v = values[name]
        finite = v[~np.isnan(v)]
        summary[name] = {
            "mean": float(finite.mean()) if finite.size else None,
            "ci95": bootstrap_mean_ci(v, n_boot, seed),
            "n": int(finite.size),
        }
    return summary


def spatial_metrics_main(argv: list[str]) -> int:
    parser = stage_parser("spatial_metrics", "LDS, CDS, SRSS, RMSC of an encoder's patch-token store", device=True)
    parser.add_argument("--features", required=True, help="feature store (tokens [N,T,D], optional masks [N,H,W])")
    parser.add_argument("--encoder", required=True)
    parser.add_argument("--out", required=True, help="result JSON")
    args, config, device, seed = parse_stage(parser, argv, {"spatial": SpatialConfig, "seed": int})
    write_spatial_metrics(args.features, args.encoder, args.out, config.spatial, seed, device,
                          recorded_params=config.raw)
    return 0


def write_spatial_metrics(features: str | Path, encoder: str, out: str | Path, cfg: SpatialConfig, seed: int,
                          device: torch.device, per_image: str | Path | None = None,
                          recorded_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The spatial metrics of a feature store, bootstrapped, as a result JSON (returned); `per_image` also
    writes an .npz of the per-image values and the indices of the images they belong to."""
    from repabench.atomic import write_json
    from repabench.provenance import provenance
    from repabench.store import Store

    n_boot = cfg.bootstrap
    store = Store(features, verify=True)
    tokens = store["tokens"]
    if tokens.ndim != 3:
        raise SystemExit(f"{features}: `tokens` must be [N, T, D], got {tokens.shape}")
    n_total, t, _ = tokens.shape
    side = grid_side(t)
    kept = np.arange(n_total)
    token_masks = None
    if "masks" in store:
        masks = store["masks"]
        if masks.shape[0] != n_total:
            raise SystemExit(
                f"{features}: {masks.shape[0]} masks for {n_total} token rows; masks must be paired by index "
                "with the features (rerun extract_features)"
            )
        all_token_masks = token_masks_from_pixels(masks, side)
        kept = mask_filter(all_token_masks, cfg.min_fraction)
        token_masks = all_token_masks[kept]
        log.info("mask filter: %d of %d images have >= %.0f%% foreground and background patches",
                 kept.size, n_total, 100 * cfg.min_fraction)
        if kept.size == 0:
            raise SystemExit(
                f"{features}: no image passes the mask filter (min_fraction {cfg.min_fraction}); "
                "lower spatial.min_fraction or check the masks"
            )
    else:
        log.warning("%s has no masks: SRSS is undefined and reported as null", features)

    log.info("spatial metrics of %s: %d images x %d tokens (%dx%d) x %d dims on %s",
             encoder, kept.size, t, side, side, tokens.shape[2], device)
    # The same ascending `kept` indices select features and masks, so they stay paired.
    values = spatial_metrics(tokens, token_masks, cfg, device=device, progress=True,
                             rows=None if kept.size == n_total else kept)
    summary = summarize(values, n_boot, seed)
    result: dict[str, Any] = {
        "encoder": encoder,
        "n_total": int(n_total),
        "n_images": int(kept.size),
        "n_kept_srss": int(summary["SRSS"]["n"]),
        "grid": side,
        "masked": token_masks is not None,
    }
    for name in METRICS:
        result[name] = {"mean": summary[name]["mean"], "ci95": summary[name]["ci95"]}
    if token_masks is None:
        result["SRSS"]["reason"] = "the feature store has no masks"
    mask_origin = store.meta("masks") or {}
    result["masks"] = mask_origin or None
    result["subsets"] = metric_subsets(token_masks is not None, int(kept.size), int(n_total), cfg.min_fraction,
                                       mask_origin.get("source"))
    result["provenance"] = provenance(
        "spatial_metrics", recorded_params or {"spatial": asdict(cfg), "seed": seed}, [features], device,
        config=asdict(cfg), seed=seed,
    )
    if per_image:
        from repabench.atomic import atomic_path

        with atomic_path(per_image) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, kept=kept, **values)
    write_json(out, result)
    log.info("wrote %s: %s", out, {k: result[k]["mean"] for k in METRICS})
    return result
