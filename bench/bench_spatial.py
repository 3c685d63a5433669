"""Throughput of the spatial metrics: batched (repabench.spatial) vs a per-image loop.

    python bench/bench_spatial.py                       # GPU when present: 10k images x 256 tokens x 1024 dims
    python bench/bench_spatial.py --n 256 --device cpu  # CPU smoke

Tokens are random float16 on the device (feature-store dtype); masks are random rectangles so SRSS
is exercised. The baseline computes each image on its own with boolean-indexed distance classes,
the way a straightforward port of the definitions would, on `--baseline-n` images.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import common
from common import sync
from repabench.spatial import SpatialConfig, manhattan_distances, spatial_metrics


def per_image_baseline(tokens: torch.Tensor, masks: torch.Tensor, cfg: SpatialConfig) -> list[tuple[float, ...]]:
    side = math.isqrt(tokens.shape[1])
    dist = manhattan_distances(side).to(tokens.device)
    out = []
    for x, fg in zip(tokens, masks):
        x = F.normalize(x.float(), dim=-1, eps=1e-8)
        k = x @ x.T
        lds = k[dist == 1].mean() - k[dist >= cfg.lds_far].mean()
        d = torch.arange(1, cfg.cds_dmax + 1, dtype=torch.float32, device=x.device)
        s = torch.stack([k[dist == int(v)].mean() for v in d])
        cds = -((d - d.mean()) * (s - s.mean())).sum() / ((d - d.mean()) ** 2).sum()
        rmsc = (x - x.mean(0)).pow(2).sum(-1).mean().sqrt()
        scores = []
        for i in torch.nonzero(fg).flatten().tolist():
            pos = fg & (dist[i] >= cfg.srss_d_pos_min) & (dist[i] <= cfg.srss_d_pos)
            neg = ~fg & (dist[i] >= cfg.srss_d_neg)
            if pos.any() and neg.any():
                scores.append(k[i][pos].mean() - k[i][neg].mean())
        srss = torch.stack(scores).mean() if scores else torch.tensor(float("nan"))
        out.append((lds.item(), cds.item(), float(srss), rmsc.item()))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=None, help="images (default 10000 on GPU, 512 on CPU)")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--chunk", type=int, default=None)
    parser.add_argument("--baseline-n", type=int, default=None, help="images for the per-image loop")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    n = args.n or (10000 if device.type == "cuda" else 512)
    baseline_n = min(n, args.baseline_n or (200 if device.type == "cuda" else 32))
    side = math.isqrt(args.tokens)
    cfg = SpatialConfig()

    out = common.ResultFile(args.json, "spatial", device, args)
    gen = torch.Generator(device=device).manual_seed(0)  # drawn on the device: 10k x 256 x 1024 is slow on a CPU
    tokens = (torch.randn(n, args.tokens, args.dim, generator=gen, dtype=torch.float16, device=device)
              + torch.randn(1, 1, args.dim, generator=gen, dtype=torch.float16, device=device))
    masks = torch.zeros(n, side, side, dtype=torch.bool)
    rng = np.random.default_rng(0)
    for i in range(n):
        y0, x0 = rng.integers(0, side // 2, size=2)
        masks[i, y0:y0 + side // 2, x0:x0 + side // 2] = True
    masks = masks.reshape(n, -1).to(device)

    spatial_metrics(tokens[:8], masks[:8], cfg, device=device)  # warm-up (kernels, allocator)
    sync(device)
    start = time.perf_counter()
    batched = spatial_metrics(tokens, masks, cfg, device=device, chunk=args.chunk)
    sync(device)
    batched_s = time.perf_counter() - start

    start = time.perf_counter()
    baseline = per_image_baseline(tokens[:baseline_n], masks[:baseline_n], cfg)
    sync(device)
    baseline_s = time.perf_counter() - start

    worst = max(abs(batched[name][i] - baseline[i][j])
                for i in range(baseline_n) for j, name in enumerate(("LDS", "CDS", "SRSS", "RMSC")))
    batched_rate, baseline_rate = n / batched_s, baseline_n / baseline_s
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(f"device: {name}")
    print(f"images {n} x tokens {args.tokens} ({side}x{side}) x dims {args.dim}, float16 input")
    print(f"batched:   {batched_s:8.3f} s  {batched_rate:10.1f} images/s")
    print(f"per-image: {baseline_s:8.3f} s  {baseline_rate:10.1f} images/s  (on {baseline_n} images)")
    print(f"speed-up:  {batched_rate / baseline_rate:8.1f}x   max |batched - per-image| = {worst:.2e}")
    out.finish(images=n, tokens=args.tokens, dim=args.dim, dtype="float16 input",
               batched={"images": n, "seconds": batched_s, "images_per_s": batched_rate},
               baseline={"images": baseline_n, "seconds": baseline_s, "images_per_s": baseline_rate,
                         "setting": "per-image loop"},
               speedup=batched_rate / baseline_rate, max_abs_difference=worst)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
