"""Feature-extraction throughput of the study's encoders (random init: speed does not depend on the weights).

    python bench/bench_features.py                                   # GPU: dinov2-vit-b, 256 px, 16x16 tokens
    python bench/bench_features.py --encoders dinov2-vit-b pe-vit-g --n 4096
    python bench/bench_features.py --device cpu --encoders effnetlite-cnn-lite0 --resolution 128 --n 8 \\
        --batch 4 --baseline-batch 4 --threads 1                     # CPU smoke
    python bench/bench_features.py --device cpu --encoders --cpu-demo --threads 2   # the demo encoder only

What is timed is the extract_features loop: uint8 images from an NHWC host array -> device -> encoder ->
float16 tokens back on the host. Two settings over the same images, in the same run:
* baseline : fp32 eager (TF32 off), NCHW, batch --baseline-batch (the stage's default 64);
* optimised: bf16 autocast (TF32 on), channels-last input (the NHWC store permuted without a copy) and weights,
  torch.compile (on GPU), pinned host memory, batch --batch;
plus the tolerance of the optimised tokens against fp32 eager (cosine similarity, max |difference| / token std).
--cpu-demo adds the demo encoder (EfficientNet-Lite0, batch norms folded, channels-last) as the CPU demo runs it:
fp32 eager on the CPU at --demo-resolution.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import common
from repabench.encoders import build_encoder

SIT_PIXELS_PER_TOKEN = 16  # VAE f8 x SiT patch 2: 256 px -> 16x16 tokens
DEMO_ENCODER = "effnetlite-cnn-lite0"


@dataclass(frozen=True)
class Setting:
    name: str
    precision: str
    channels_last: bool
    compile: bool
    tf32: bool
    batch: int

    def describe(self) -> str:
        return (f"{self.precision}, TF32 {'on' if self.tf32 else 'off'}, "
                f"{'channels-last' if self.channels_last else 'NCHW'}, compile {'on' if self.compile else 'off'}, "
                f"batch {self.batch}")


def prepare(encoder: torch.nn.Module, setting: Setting) -> torch.nn.Module:
    common.set_tf32(setting.tf32)
    encoder = encoder.to(memory_format=torch.channels_last if setting.channels_last else torch.contiguous_format)
    torch._dynamo.reset()
    return torch.compile(encoder, dynamic=False) if setting.compile else encoder


def extract(encoder, images: torch.Tensor, setting: Setting, grid: int, device: torch.device) -> torch.Tensor:
    """float16 tokens [N, grid^2, D] on the host, as the extract_features stage stores them."""
    autocast = common.autocast(device, setting.precision)
    out = []
    with torch.inference_mode():
        for start in range(0, images.shape[0], setting.batch):
            chunk = common.to_nchw(images[start:start + setting.batch], setting.channels_last)
            with autocast():
                tokens = encoder(chunk.to(device, non_blocking=True), grid)
            out.append(tokens.to(torch.float16).cpu())
    return torch.cat(out)


def run_setting(encoder, images, setting, grid, device) -> tuple[dict, torch.Tensor]:
    """Warm-up on one batch (compilation), then one timed pass over all images."""
    common.free_memory(device)
    model = prepare(encoder, setting)
    began = time.perf_counter()
    extract(model, images[:setting.batch], setting, grid, device)
    warm = time.perf_counter() - began
    tokens = None

    def full_pass() -> None:
        nonlocal tokens
        tokens = extract(model, images, setting, grid, device)

    seconds = common.timed(full_pass, device)
    return {"images_per_s": images.shape[0] / seconds, "warmup_s": warm,
            "peak_gib": common.peak_memory_gib(device)}, tokens


def tolerance(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    ref, oth = reference.float(), other.float()
    cosine = F.cosine_similarity(ref, oth, dim=-1)
    return {"cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min()),
            "max_abs_diff_over_std": float((ref - oth).abs().max() / ref.std())}


def bench_encoder(name: str, images: torch.Tensor, grid: int, settings: list[Setting], device: torch.device) -> dict:
    """The settings' images/s on one encoder; returns {name, params_m, settings: {..}, speedup, tolerance}."""
    began = time.perf_counter()
    encoder = build_encoder(name, None, device=device, grid=grid)
    params = sum(p.numel() for p in encoder.parameters()) / 1e6
    print(f"\n{name} (random init, {params:.1f}M params, D={encoder.embed_dim}, input "
          f"{encoder.input_size(grid)} px, built in {time.perf_counter() - began:.1f} s)")
    results, tokens = {}, {}
    for setting in settings:
        try:
            results[setting.name], tokens[setting.name] = run_setting(encoder, images, setting, grid, device)
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not common.is_oom(exc):
                raise
            print(f"  {setting.name:9s}: out of memory at batch {setting.batch}")
            continue
        r = results[setting.name]
        r.update(setting=setting.describe(), batch=setting.batch)
        print(f"  {setting.name:9s}: {r['images_per_s']:9.1f} img/s  peak {r['peak_gib']:6.2f} GiB  "
              f"warm-up {r['warmup_s']:.1f} s  ({setting.describe()})", flush=True)
    record = {"encoder": name, "params_m": params, "images": images.shape[0], "resolution": images.shape[1],
              "grid": grid, "settings": results}
    if "baseline" in results and "optimised" in results:
        ratio = results["optimised"]["images_per_s"] / results["baseline"]["images_per_s"]
        tol = tolerance(tokens["baseline"], tokens["optimised"])
        record.update(speedup=ratio, tolerance=tol)
        print(f"  speed-up : {ratio:.2f}x   tolerance: cosine to fp32 mean {tol['cosine_mean']:.5f} min "
              f"{tol['cosine_min']:.5f}, max |diff| / std {tol['max_abs_diff_over_std']:.3f}")
    del encoder
    common.free_memory(device)
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="*", default=["dinov2-vit-b"])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--grid", type=int, default=None, help="token grid (default resolution / 16, the SiT grid)")
    parser.add_argument("--n", type=int, default=None, help="images (default 2048 on GPU, 64 on CPU)")
    parser.add_argument("--batch", type=int, default=256, help="batch of the optimised setting")
    parser.add_argument("--baseline-batch", type=int, default=64, help="extract_features' default batch")
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto", help="auto: on for GPU")
    parser.add_argument("--cpu-demo", action="store_true", help=f"also time {DEMO_ENCODER} fp32 on the CPU")
    parser.add_argument("--demo-resolution", type=int, default=128, help="the demo config's resolution")
    parser.add_argument("--demo-n", type=int, default=256)
    parser.add_argument("--demo-batch", type=int, default=128, help="the demo config's features.batch_size")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="write the results here (after every encoder)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = common.resolve_device(args.device)
    n = args.n or (2048 if device.type == "cuda" else 64)
    grid = args.grid or args.resolution // SIT_PIXELS_PER_TOKEN
    compiled = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
    settings = [Setting("baseline", "fp32", False, False, False, args.baseline_batch),
                Setting("optimised", "bf16", True, compiled, device.type == "cuda", args.batch)]
    out = common.ResultFile(args.json, "features", device, args)
    records = []
    if args.encoders:
        print(common.header(device, dtype="fp32/bf16", batch=f"{args.baseline_batch}/{args.batch}", images=n,
                            resolution=args.resolution, grid=grid))
        images = common.random_images(n, args.resolution)
        if device.type == "cuda":
            images = images.pin_memory()
        for name in args.encoders:
            records.append(bench_encoder(name, images, grid, settings, device))
            out.update(records=records)
    if args.cpu_demo:
        cpu = torch.device("cpu")
        demo_grid = args.demo_resolution // SIT_PIXELS_PER_TOKEN
        print(f"CPU demo: {common.header(cpu, dtype='fp32', batch=args.demo_batch, images=args.demo_n)}")
        demo = [Setting("demo", "fp32", False, False, False, args.demo_batch)]
        demo_record = bench_encoder(DEMO_ENCODER, common.random_images(args.demo_n, args.demo_resolution), demo_grid,
                                    demo, cpu)
        records.append({**demo_record, "cpu_demo": True})
    out.finish(records=records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
