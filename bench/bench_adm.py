"""ADM evaluation throughput, end to end: read sample shards -> Inception features -> statistics -> FID/sFID -> P/R.

    python bench/bench_adm.py                                   # GPU: 50k samples of 256 px vs a 10k reference
    python bench/bench_adm.py --n 64 --n-ref 16 --baseline-batch 16 --batch 32   # CPU smoke check

Synthetic images (smooth random fields, so the features are not degenerate) are written once as sample shards
under --workdir. Two settings evaluate the same shards:

* baseline: NCHW, fp32 (IEEE, no TF32), batch --baseline-batch, no read-ahead, fp32 P/R distances;
* optimised: channels_last, fp32 (IEEE), batch --batch, pinned read-ahead thread, cudnn.benchmark, fp16 P/R
  distances as ADM; plus the maximum feature deviation from the baseline (must stay at float rounding).

Uses the weights at --weights when present (else random init: same speed). Prints device, dtype, batch, commit,
images/s of both settings and their ratio, and writes the numbers to --workdir/bench_adm.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from common import commit
from repabench.adm.features import extract
from repabench.adm.images import SAMPLES_FORMAT, open_images
from repabench.adm.inception import load_inception
from repabench.adm.metrics import Statistics, frechet_distance, precision_recall, statistics


def smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, 3, 8, 8)).astype(np.float32)
    fine = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(size, size), mode="bicubic")
    noise = rng.normal(0, 12, (n, 3, size, size)).astype(np.float32)
    return np.clip(fine.numpy() + noise, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def write_shards(root: Path, n: int, size: int, shard_size: int) -> Path:
    manifest = root / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("n_samples") == n:
        return root
    (root / "shards").mkdir(parents=True, exist_ok=True)
    entries = []
    for k, start in enumerate(range(0, n, shard_size)):
        count = min(shard_size, n - start)
        file = f"shards/{k:05d}.npy"
        np.save(root / file, smooth_images(count, size, seed=k))
        entries.append({"file": file, "start": start, "count": count})
    manifest.write_text(json.dumps({"format": SAMPLES_FORMAT, "n_samples": n, "shards": entries}))
    return root


def evaluate(model, source, ref_pool, batch, device, pr_fp16, prefetch_depth) -> dict:
    if device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    feats = extract(model, source, batch, device, desc="bench", prefetch_depth=prefetch_depth)
    t_features = time.perf_counter() - began
    ref = statistics(ref_pool)
    fid = frechet_distance(statistics(feats.pool), Statistics(ref.mu, ref.sigma), "sqrtm"
                           if len(feats.pool) > 2048 else "eigh")
    t_stats = time.perf_counter() - began - t_features
    precision, recall = precision_recall(ref_pool, feats.pool, fp16=pr_fp16, device=device)
    total = time.perf_counter() - began
    return {"features_s": t_features, "statistics_fid_s": t_stats, "pr_s": total - t_features - t_stats,
            "total_s": total, "features_img_s": source.count / t_features, "end_to_end_img_s": source.count / total,
            "FID": fid, "Precision": precision, "Recall": recall, "pool": feats.pool}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50000)
    parser.add_argument("--n-ref", type=int, default=10000, help="reference images for P/R (ADM: 10k)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--baseline-batch", type=int, default=64, help="ADM's evaluator uses 64")
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--weights", default="resources/weights/inception-2015-12-05-fid-helper.pt")
    parser.add_argument("--workdir", default="bench/out/adm")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()

    device = torch.device(args.device)
    workdir = Path(args.workdir)
    began = time.perf_counter()
    samples = open_images(write_shards(workdir / "samples", args.n, args.resolution, args.shard_size))
    reference = open_images(write_shards(workdir / "reference", args.n_ref, args.resolution, args.shard_size))
    print(f"shards ready in {time.perf_counter() - began:.1f} s")
    weights = args.weights if Path(args.weights).is_file() else None
    print(f"device {device} ({torch.cuda.get_device_name(0) if device.type == 'cuda' else 'cpu'}), dtype float32, "
          f"commit {commit()}, weights {weights or 'random init'}, n {args.n}, ref {args.n_ref}, "
          f"{args.resolution} px")

    optimised_model = load_inception(weights, device, channels_last=True)
    torch.backends.cudnn.benchmark = True
    ref_pool = extract(optimised_model, reference, args.batch, device, desc="reference").pool
    report: dict = {"device": str(device), "commit": commit(), "n": args.n, "n_ref": args.n_ref,
                    "resolution": args.resolution, "dtype": "float32 (IEEE, TF32 off)"}
    runs = {}
    if not args.skip_baseline:
        torch.backends.cudnn.benchmark = False
        baseline_model = load_inception(weights, device, channels_last=False)
        runs["baseline"] = evaluate(baseline_model, samples, ref_pool, args.baseline_batch, device, False, 0)
        del baseline_model
        torch.backends.cudnn.benchmark = True
    runs["optimised"] = evaluate(optimised_model, samples, ref_pool, args.batch, device, True, 3)
    for name, run in runs.items():
        batch = args.baseline_batch if name == "baseline" else args.batch
        print(f"{name:9s} batch {batch:4d}: features {run['features_img_s']:8.1f} img/s, end to end "
              f"{run['end_to_end_img_s']:8.1f} img/s ({run['total_s']:.1f} s: features {run['features_s']:.1f}, "
              f"stats+FID {run['statistics_fid_s']:.1f}, P/R {run['pr_s']:.1f}); FID {run['FID']:.4f} "
              f"P {run['Precision']:.4f} R {run['Recall']:.4f}")
    if "baseline" in runs:
        base, opt = runs["baseline"], runs["optimised"]
        deviation = float(np.abs(base["pool"] - opt["pool"]).max())
        ratio = opt["end_to_end_img_s"] / base["end_to_end_img_s"]
        print(f"optimised / baseline: {ratio:.2f}x end to end, "
              f"{opt['features_img_s'] / base['features_img_s']:.2f}x features; max |pool difference| {deviation:.2e}; "
              f"|FID difference| {abs(base['FID'] - opt['FID']):.2e}")
        report.update(ratio_end_to_end=ratio, max_pool_difference=deviation)
    report["runs"] = {name: {k: v for k, v in run.items() if k != "pool"} for name, run in runs.items()}
    (workdir / "bench_adm.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
