"""Training precision on a small run: fp16 autocast + GradScaler (upstream) against bf16 autocast (issue 17 point 2).

    python bench/bench_precision.py [--device cuda] [--steps 400] [--json out.json]

The same SiT + iREPA run (same initialisation, batches, noise and times) is trained on a fixed synthetic latent set
under each precision, the encoder targets under the same autocast as the model (as upstream and `repabench train`),
then its EMA generates latents with the SDE sampler in fp32/TF32 (upstream's sampling precision). Quality is the
Frechet distance of the generated latents to the training latents in a fixed random projection ("FD-latent";
the GPU machine has no Inception weights or VAE, so this is not an Inception FID). A second fp16 run with another
seed measures the seed-to-seed spread that the precision difference has to exceed to mean anything. Also written:
the relative RMS error of the z-scored targets under each autocast against fp32, on the same images.
"""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import common
from repabench.adm.metrics import frechet_distance, statistics
from repabench.align import Method, alignment_loss, denoising_loss, linear_interpolant, sample_time
from repabench.encoders import build_encoder
from repabench.sample import SamplerSettings, run_sampler
from repabench.sit import MODEL_CONFIGS, build_sit
from repabench.train import AlignmentTargets, ema_update

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
IREPA = {"projector": "conv", "kernel": 3, "spatial_norm": "zscore", "alpha": 0.6, "coeff": 1.0}


def autocast_of(device: torch.device, precision: str):
    if precision == "fp32":
        return common.autocast(device, "fp32")
    return lambda: torch.autocast(device.type, dtype=DTYPES[precision])


def synthetic_set(n: int, latent: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [n, 3, 8L, 8L] of smooth random fields and their 'latents' [n, 4, L, L] (pooled, unit scale)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 3, 4, 4, generator=gen)
    fields = F.interpolate(coarse, size=8 * latent, mode="bicubic", align_corners=False)
    images = ((fields.tanh() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    pooled = F.avg_pool2d(images.float() / 127.5 - 1, 8)
    latents = torch.cat([pooled, pooled.mean(1, keepdim=True)], dim=1)
    return images, (latents - latents.mean()) / latents.std()


def target_error(encoder, images: torch.Tensor, grid: int, method: Method, device: torch.device) -> dict[str, float]:
    """Relative RMS error of the spatially normalised targets under each autocast against fp32."""
    exact = AlignmentTargets([encoder], grid, method, device, autocast_of(device, "fp32")).compute(images)[0].float()
    errors = {}
    for precision in DTYPES:
        targets = AlignmentTargets([encoder], grid, method, device, autocast_of(device, precision))
        got = targets.compute(images)[0].float()
        errors[precision] = float((got - exact).pow(2).mean().sqrt() / exact.pow(2).mean().sqrt())
    return errors


def train_run(args, precision: str, seed: int, images, latents, encoder, method: Method, device) -> dict:
    grid = args.latent // MODEL_CONFIGS[args.model]["patch_size"]
    autocast = autocast_of(device, precision)
    targets = AlignmentTargets([encoder], grid, method, device, autocast)
    torch.manual_seed(0)  # one initialisation for every run: only the precision (and the seed's data order) differ
    net = build_sit(args.model, args.latent, num_classes=1, projectors=method.projector_specs([encoder.embed_dim]),
                    encoder_depth=method.encoder_depth).to(device)
    ema = copy.deepcopy(net).requires_grad_(False)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(args.steps):
        idx = torch.randint(0, len(latents), (args.batch,), generator=gen)
        x0 = latents[idx].to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = sample_time(args.batch, generator=gen).to(device)
        x_t, v_target = linear_interpolant(x0, noise, t)
        z = targets.compute(images[idx].to(device))
        with autocast():
            velocity, zs = net(x_t, t, torch.zeros(args.batch, dtype=torch.long, device=device))
        denoise, align = denoising_loss(velocity, v_target), alignment_loss(zs, z)
        scaler.scale(denoise + method.coeff * align).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        ema_update(ema, net, args.ema_decay)
        losses.append((float(denoise.detach()), float(align.detach())))
    tail = np.asarray(losses[-max(1, args.steps // 10):])
    return {"precision": precision, "seed": seed, "ema": ema.eval(), "denoise_loss": float(tail[:, 0].mean()),
            "align_loss": float(tail[:, 1].mean()), "grad_scale": float(scaler.get_scale()) if scaler.is_enabled()
            else None}


def generate(ema, args, device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1234)  # the same noise for every run
    shape = (args.samples, 4, args.latent, args.latent)
    x1 = torch.randn(shape, generator=gen, dtype=torch.float64).to(device)
    noises = [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(args.sample_steps)]
    settings = SamplerSettings(mode="sde", steps=args.sample_steps)
    y = torch.zeros(args.samples, dtype=torch.long, device=device)
    with torch.inference_mode():
        return run_sampler(ema, x1, y, settings, lambda k: noises[k], null_class=1, precision="fp32").float().cpu()


def fd_latent(samples: torch.Tensor, reference: torch.Tensor, dim: int) -> float:
    gen = torch.Generator().manual_seed(99)
    projection = torch.randn(samples[0].numel(), dim, generator=gen) / math.sqrt(samples[0].numel())
    a = (samples.flatten(1) @ projection).double().numpy()
    b = (reference.flatten(1) @ projection).double().numpy()
    return float(frechet_distance(statistics(a), statistics(b), "eigh"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default="SiT-B/2")
    parser.add_argument("--latent", type=int, default=32, help="latent side (32 = 256 px images)")
    parser.add_argument("--encoder", default="dinov2-vit-b", help="target encoder (random init of the architecture)")
    parser.add_argument("--encoder-depth", type=int, default=4)
    parser.add_argument("--n", type=int, default=4096, help="synthetic training set size")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--ema-decay", type=float, default=0.99)
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--sample-steps", type=int, default=50)
    parser.add_argument("--fd-dim", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    device = common.resolve_device(args.device)
    common.set_tf32(device.type == "cuda")  # upstream: TF32 matmuls for training and sampling
    result = common.ResultFile(args.json, "precision", device, args)
    print(common.header(device, model=args.model, encoder=args.encoder, steps=args.steps, batch=args.batch))
    if device.type != "cuda":
        print("note: CPU autocast does not reproduce GPU fp16/bf16 numerics; this run checks the code path only")

    images, latents = synthetic_set(args.n, args.latent)
    grid = args.latent // MODEL_CONFIGS[args.model]["patch_size"]
    encoder = build_encoder(args.encoder, device=device, grid=grid)
    method = Method.from_config({**IREPA, "encoder_depth": args.encoder_depth, "projector_dim": 256})
    errors = target_error(encoder, images[:args.batch].to(device), grid, method, device)
    result.update(target_relative_rms_error=errors)
    print(f"z-scored target error vs fp32: fp16 {errors['fp16']:.2e}  bf16 {errors['bf16']:.2e}")

    runs = []
    for precision, seed in (("fp16", 0), ("bf16", 0), ("fp16", 1)):
        run = train_run(args, precision, seed, images, latents, encoder, method, device)
        run["fd_latent"] = fd_latent(generate(run.pop("ema"), args, device), latents, args.fd_dim)
        runs.append(run)
        result.update(runs=runs)
        print(f"{precision} seed {seed}: denoise {run['denoise_loss']:.4f} align {run['align_loss']:.4f} "
              f"FD-latent {run['fd_latent']:.4f}")
    difference = runs[0]["fd_latent"] - runs[1]["fd_latent"]
    spread = abs(runs[0]["fd_latent"] - runs[2]["fd_latent"])
    result.finish(fd_latent_fp16_minus_bf16=difference, fd_latent_seed_spread_fp16=spread,
                  resolved=abs(difference) > spread)
    print(f"FD-latent fp16 - bf16 = {difference:+.4f} (seed-to-seed spread of fp16: {spread:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
