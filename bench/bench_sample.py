"""Sampling throughput: SiT-XL/2 (random init), Euler-Maruyama SDE, 250 steps, no CFG.

    python bench/bench_sample.py                                   # GPU: XL/2, 32x32 latents, batch 256
    python bench/bench_sample.py --model SiT-T/2 --latent 16 --steps 4 --batch 8 --baseline-batch 8   # CPU smoke

Compares the fp32-eager baseline (batch `--baseline-batch`, upstream's per-process default 32 in REPA) with
the optimised setting: bf16 autocast, torch.compile (mode reduce-overhead = CUDA graphs on GPU), large batch.
Times the sampler only (the VAE decode is a small, separate cost). The final-layer and adaLN weights that
start at zero are perturbed (std --perturb) so that the velocity, and hence the bf16 tolerance, is not trivial.

Also reports the tolerance of the optimisations on the same images: max |latent difference| and the fraction of
uint8 pixel values that change under a fixed linear "decoder" (tanh of the first 3 latent channels, upsampled),
for bf16 vs fp32 and for a different batch size in fp32. The bf16 images are the first --tolerance-batch images
of the timed optimised batch (image i's noise depends on i only, so fp32 eager at a small batch gives the same
images), so the tolerance costs no second compilation.

--time-steps K (the GPU check) times K of the sampler's steps instead of all --steps and scales the time by
steps / K (every step is one network evaluation of the same cost); the result is marked `extrapolated_from_steps`,
and the tolerance is then measured over K steps.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import common
from bench_train import sit_forward_macs
from common import commit, timed
from repabench.sample import ImageNoise, SamplerSettings, image_labels, run_sampler, to_uint8
from repabench.sit import build_sit


def build_model(name: str, latent: int, device: torch.device, perturb: float) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_sit(name, input_size=latent, in_channels=4, num_classes=1000)
    with torch.no_grad():
        for block in model.blocks:
            block.adaLN_modulation[-1].weight.normal_(0, perturb)
        model.final_layer.adaLN_modulation[-1].weight.normal_(0, perturb)
        model.final_layer.linear.weight.normal_(0, perturb)
    return model.eval().requires_grad_(False).to(device)


def sample_batch(velocity, indices, settings, latent, device, precision) -> torch.Tensor:
    noise = ImageNoise(indices, seed=0, shape=(4, latent, latent), device=device)
    x1 = noise.draw()
    y = torch.from_numpy(image_labels(indices, 0, 1000, "uniform")).to(device)
    with torch.inference_mode():
        return run_sampler(velocity, x1, y, settings, noise, null_class=1000, precision=precision)


def pseudo_images(z: torch.Tensor) -> np.ndarray:
    rgb = torch.tanh(z[:, :3].float())
    return to_uint8(torch.nn.functional.interpolate(rgb, scale_factor=8, mode="nearest"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="SiT-XL/2")
    parser.add_argument("--latent", type=int, default=32, help="latent side (32 = 256 px)")
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--time-steps", type=int, default=None,
                        help="run this many steps and scale the time to --steps (default: all --steps)")
    parser.add_argument("--batch", type=int, default=256, help="batch of the optimised setting")
    parser.add_argument("--baseline-batch", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", choices=["none", "default", "reduce-overhead"], default=None,
                        help="default: reduce-overhead (CUDA graphs) on GPU, none on CPU")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--perturb", type=float, default=0.02)
    parser.add_argument("--tolerance-batch", type=int, default=16, help="images for the tolerance check")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="bf16 dense peak for MFU (default: by GPU name; none on CPU)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    device = common.resolve_device(args.device)
    compile_mode = args.compile or ("reduce-overhead" if device.type == "cuda" else "none")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    run_steps = min(args.time_steps or args.steps, args.steps)
    scale = args.steps / run_steps  # seconds of `steps` steps per second measured
    settings = SamplerSettings("sde", run_steps)
    model = build_model(args.model, args.latent, device, args.perturb)
    params = sum(p.numel() for p in model.parameters())
    peak = args.peak_tflops or common.peak_tflops(device)
    flop_per_image = 2 * sit_forward_macs(model) * args.steps
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "-"
    print(f"commit {commit()}  device {device} ({gpu})  torch {torch.__version__}  threads {torch.get_num_threads()}")
    print(f"model {args.model} ({params / 1e6:.1f}M params)  latents 4x{args.latent}x{args.latent}  "
          f"SDE {args.steps} steps, no CFG" + (f" (timed over {run_steps} steps, scaled x{scale:g})"
                                              if run_steps != args.steps else ""))
    out = common.ResultFile(args.json, "sample", device, args)
    out.update(model=args.model, steps=args.steps, extrapolated_from_steps=run_steps if run_steps != args.steps else None,
               flop_per_image=flop_per_image, peak_tflops=peak)

    def rate(batch: int, seconds: float) -> dict:
        images_per_s = batch / (seconds * scale)
        return {"batch": batch, "images_per_s": images_per_s, "hours_per_50k": 50000 / images_per_s / 3600,
                "mfu": images_per_s * flop_per_image / (peak * 1e12) if peak else None}

    base_idx = list(range(args.baseline_batch))
    base_s = timed(lambda: sample_batch(model, base_idx, settings, args.latent, device, "fp32"), device, args.repeats)
    baseline = {**rate(args.baseline_batch, base_s), "setting": "fp32 eager" + (", TF32" if device.type == "cuda" else "")}
    out.update(baseline=baseline)
    print(f"baseline : fp32 eager, batch {args.baseline_batch:4d}: {baseline['images_per_s']:9.3f} img/s  "
          f"-> {baseline['hours_per_50k']:8.2f} h for 50k on one device")

    velocity = model
    if compile_mode != "none":
        velocity = torch.compile(model, mode=None if compile_mode == "default" else compile_mode, dynamic=False)
    opt_idx = list(range(args.batch))
    precision = "bf16"
    start = time.perf_counter()
    sample_batch(velocity, opt_idx, settings, args.latent, device, precision)  # warm-up (and compilation)
    warm = time.perf_counter() - start
    last: dict[str, torch.Tensor] = {}

    def optimised_pass() -> None:
        last["z"] = sample_batch(velocity, opt_idx, settings, args.latent, device, precision)

    opt_s = timed(optimised_pass, device, args.repeats)
    optimised = {**rate(args.batch, opt_s), "setting": f"bf16 autocast, compile {compile_mode}", "warmup_s": warm}
    speedup = optimised["images_per_s"] / baseline["images_per_s"]
    out.update(optimised=optimised, speedup=speedup)
    mfu = f", MFU {100 * optimised['mfu']:.1f}%" if peak else ""
    print(f"optimised: bf16 autocast, compile={compile_mode}, batch {args.batch:4d}: {optimised['images_per_s']:9.3f} "
          f"img/s  -> {optimised['hours_per_50k']:8.2f} h for 50k on one device (warm-up {warm:.1f} s{mfu})")
    print(f"speed-up : {speedup:.2f}x")

    n = min(args.tolerance_batch, args.batch)
    idx = list(range(n))
    ref = sample_batch(model, idx, settings, args.latent, device, "fp32")
    quarter = max(1, n // 4)
    other_batch = torch.cat([sample_batch(model, idx[i:i + quarter], settings, args.latent, device, "fp32")
                             for i in range(0, n, quarter)])
    bf16 = last["z"][:n]
    ref_img = pseudo_images(ref)
    tolerance = {"images": n, "steps": run_steps}
    for key, label, z in (("fp32_batch_change", "fp32 batch change", other_batch), ("bf16_vs_fp32", "bf16 vs fp32", bf16)):
        img = pseudo_images(z)
        entry = {"max_abs_latent_diff": float((z.double() - ref.double()).abs().max()),
                 "uint8_values_changed": float(np.mean(img != ref_img)),
                 "max_abs_uint8_diff": int(np.abs(img.astype(int) - ref_img).max())}
        tolerance[key] = entry
        print(f"tolerance: {label:17s} max|dz| {entry['max_abs_latent_diff']:.3e}  "
              f"uint8 values changed {100 * entry['uint8_values_changed']:.3f}%  "
              f"max |d uint8| {entry['max_abs_uint8_diff']}")
    out.finish(tolerance=tolerance)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
