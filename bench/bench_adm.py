"""ADM evaluation throughput, end to end: read sample shards -> Inception features -> statistics -> FID/sFID -> P/R.

    python bench/bench_adm.py                                   # GPU: 50k samples of 256 px vs a 10k reference
    python bench/bench_adm.py --n 64 --n-ref 16 --baseline-batch 16 --batch 32   # CPU smoke check

Synthetic images (smooth random fields, so the features are not degenerate) are written once as sample shards
under --workdir. Two settings evaluate the same shards:

* baseline: NCHW, fp32 (IEEE, no TF32), batch --baseline-batch, no read-ahead, fp32 P/R distances;
* optimised: channels_last, fp32 (IEEE), batch --batch, pinned read-ahead thread, cudnn.benchmark, fp16 P/R
  distances as ADM; plus the maximum feature deviation from the baseline (must stay at float rounding).

Uses the weights at --weights when present (else random init: same speed). Prints device, dtype, batch, commit,
images/s of both settings and their ratio, and writes the numbers to --json (default --workdir/bench_adm.json).

--extrapolate-to N (the GPU check: 10k measured, N = 50k) evaluates --n images and gives the end-to-end time of N:
the feature time scaled by N / n (per-image cost), the statistics, Frechet distance and precision/recall measured
on N feature rows (the measured pool tiled, plus noise of 1e-3 std); marked `extrapolated` in the JSON.
The Frechet distance uses scipy's sqrtm as ADM when scipy is importable, else the eigh form (`fid_method`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import common
from common import commit
from repabench.adm.features import extract
from repabench.adm.images import SAMPLES_FORMAT, open_images
from repabench.adm.inception import load_inception
from repabench.adm.metrics import Statistics, centred_factor, frechet_distance, precision_recall, statistics


def smooth_images(n: int, size: int, seed: int, device: torch.device) -> np.ndarray:
    """uint8 NHWC smooth random fields plus noise (features are not degenerate), drawn on `device` (fast on GPU)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    coarse = torch.randint(0, 256, (n, 3, 8, 8), generator=gen, device=device).float()
    fine = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic")
    noise = torch.randn(n, 3, size, size, generator=gen, device=device) * 12
    images = (fine + noise).clamp_(0, 255).to(torch.uint8)
    return images.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def write_shards(root: Path, n: int, size: int, shard_size: int, device: torch.device) -> Path:
    manifest = root / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("n_samples") == n:
        return root
    (root / "shards").mkdir(parents=True, exist_ok=True)
    entries = []
    for k, start in enumerate(range(0, n, shard_size)):
        count = min(shard_size, n - start)
        file = f"shards/{k:05d}.npy"
        np.save(root / file, smooth_images(count, size, seed=k, device=device))
        entries.append({"file": file, "start": start, "count": count})
    manifest.write_text(json.dumps({"format": SAMPLES_FORMAT, "n_samples": n, "shards": entries}))
    return root


def tiled(pool: np.ndarray, rows: int) -> np.ndarray:
    """`rows` feature rows from a measured pool: repeated, plus small noise so that no two rows coincide."""
    reps = np.tile(pool, (math.ceil(rows / len(pool)), 1))[:rows]
    rng = np.random.default_rng(0)
    return reps + rng.normal(0, 1e-3, reps.shape).astype(reps.dtype)


def evaluate(model, source, ref_pool, batch, device, pr_fp16, prefetch_depth, target_n: int, fid_method: str) -> dict:
    """Features of the `source` images, then statistics, FID and P/R of `target_n` feature rows (the measured
    pool when target_n is its size, else tiled); the feature time is scaled to target_n."""
    common.sync(device)
    began = time.perf_counter()
    feats = extract(model, source, batch, device, desc="bench", prefetch_depth=prefetch_depth)
    common.sync(device)
    t_features = time.perf_counter() - began
    pool = feats.pool if target_n == len(feats.pool) else tiled(feats.pool, target_n)
    began = time.perf_counter()
    ref = statistics(ref_pool)
    factor = centred_factor(pool) if fid_method == "eigh" and len(pool) <= pool.shape[1] else None  # as the stage
    fid = frechet_distance(statistics(pool), Statistics(ref.mu, ref.sigma), fid_method, sample_factor=factor)
    t_stats = time.perf_counter() - began
    precision, recall = precision_recall(ref_pool, pool, fp16=pr_fp16, device=device)
    t_pr = time.perf_counter() - began - t_stats
    t_features_target = t_features * target_n / source.count
    total = t_features_target + t_stats + t_pr
    return {"images": target_n, "measured_images": source.count, "features_measured_s": t_features,
            "features_s": t_features_target, "statistics_fid_s": t_stats, "pr_s": t_pr, "total_s": total,
            "features_img_s": source.count / t_features, "end_to_end_img_s": target_n / total,
            "FID": fid, "Precision": precision, "Recall": recall, "pool": feats.pool}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50000, help="sample images evaluated")
    parser.add_argument("--extrapolate-to", type=int, default=None,
                        help="report the end-to-end time of this many samples (features scaled, the rest measured)")
    parser.add_argument("--n-ref", type=int, default=10000, help="reference images for P/R (ADM: 10k)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--baseline-batch", type=int, default=64, help="ADM's evaluator uses 64")
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--weights", default="resources/weights/inception-2015-12-05-fid-helper.pt")
    parser.add_argument("--fid-method", choices=["auto", "sqrtm", "eigh"], default="auto",
                        help="auto: scipy's sqrtm (ADM) when scipy is importable, else eigh")
    parser.add_argument("--workdir", default="bench/out/adm")
    parser.add_argument("--json", type=Path, default=None, help="default: WORKDIR/bench_adm.json")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()

    device = torch.device(args.device)
    workdir = Path(args.workdir)
    target_n = max(args.n, args.extrapolate_to or args.n)
    fid_method = args.fid_method
    if fid_method == "auto":
        fid_method = "sqrtm" if importlib.util.find_spec("scipy") is not None else "eigh"
    out = common.ResultFile(args.json or workdir / "bench_adm.json", "adm", device, args)
    began = time.perf_counter()
    samples = open_images(write_shards(workdir / "samples", args.n, args.resolution, args.shard_size, device))
    reference = open_images(write_shards(workdir / "reference", args.n_ref, args.resolution, args.shard_size, device))
    shards_s = time.perf_counter() - began
    print(f"shards ready in {shards_s:.1f} s")
    weights = args.weights if Path(args.weights).is_file() else None
    print(f"device {device} ({torch.cuda.get_device_name(0) if device.type == 'cuda' else 'cpu'}), dtype float32, "
          f"commit {commit()}, weights {weights or 'random init'}, n {args.n}, ref {args.n_ref}, "
          f"{args.resolution} px, FID via {fid_method}"
          + (f"; end to end extrapolated to {target_n} samples" if target_n != args.n else ""))
    out.update(n=target_n, measured_n=args.n, n_ref=args.n_ref, resolution=args.resolution, fid_method=fid_method,
               extrapolated=None if target_n == args.n else
               {"from_images": args.n, "to_images": target_n,
                "how": "features time x to/from; statistics, FID and P/R measured on the pool tiled to `to`"},
               weights=weights or "random init", dtype="float32 (IEEE, TF32 off)", shards_s=shards_s)

    optimised_model = load_inception(weights, device, channels_last=True)
    torch.backends.cudnn.benchmark = True
    ref_pool = extract(optimised_model, reference, args.batch, device, desc="reference").pool
    runs = {}

    def keep() -> None:
        out.update(runs={name: {k: v for k, v in run.items() if k != "pool"} for name, run in runs.items()})

    if not args.skip_baseline:
        torch.backends.cudnn.benchmark = False
        baseline_model = load_inception(weights, device, channels_last=False)
        runs["baseline"] = evaluate(baseline_model, samples, ref_pool, args.baseline_batch, device, False, 0,
                                    target_n, fid_method)
        runs["baseline"]["batch"] = args.baseline_batch
        keep()
        del baseline_model
        torch.backends.cudnn.benchmark = True
    runs["optimised"] = evaluate(optimised_model, samples, ref_pool, args.batch, device, True, 3, target_n, fid_method)
    runs["optimised"]["batch"] = args.batch
    keep()
    for name, run in runs.items():
        print(f"{name:9s} batch {run['batch']:4d}: features {run['features_img_s']:8.1f} img/s, end to end "
              f"{run['end_to_end_img_s']:8.1f} img/s ({run['total_s']:.1f} s for {target_n}: features "
              f"{run['features_s']:.1f}, stats+FID {run['statistics_fid_s']:.1f}, P/R {run['pr_s']:.1f}); "
              f"FID {run['FID']:.4f} P {run['Precision']:.4f} R {run['Recall']:.4f}")
    summary = {}
    if "baseline" in runs:
        base, opt = runs["baseline"], runs["optimised"]
        deviation = float(np.abs(base["pool"] - opt["pool"]).max())
        ratio = opt["end_to_end_img_s"] / base["end_to_end_img_s"]
        print(f"optimised / baseline: {ratio:.2f}x end to end, "
              f"{opt['features_img_s'] / base['features_img_s']:.2f}x features; max |pool difference| {deviation:.2e}; "
              f"|FID difference| {abs(base['FID'] - opt['FID']):.2e}")
        summary = {"ratio_end_to_end": ratio, "max_pool_difference": deviation,
                   "fid_difference": abs(base["FID"] - opt["FID"])}
    out.finish(**summary)


if __name__ == "__main__":
    main()
