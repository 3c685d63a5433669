"""Training throughput: SiT with REPA / iREPA and an online random-init target encoder, one GPU.

    python bench/bench_train.py --models SiT-XL/2 --encoders dinov2-vit-b      # GPU: batch 32 (paper) and 256
    python bench/bench_train.py --models SiT-T/2 --latent 16 --encoders effnetlite-cnn-lite0 \\
        --batch 4 --steps 2 --warmup 1 --threads 1                              # CPU smoke

One step is what repabench.train.Trainer.train_step does, built from the same pieces (Targets, Method, the
losses, ema_update): host batch -> device, posterior sample of the latent, t ~ U(0,1), encoder targets from the
uint8 images (no grad, autocast) with the method's spatial normalisation, SiT forward + projector, loss,
backward, clip 1.0, AdamW, EMA over every parameter. Data loading is not timed (the batch sits in host memory,
pinned on GPU). Methods come from --config (default config/paper.yaml: repa = MLP 2048 coeff 0.5, irepa =
conv k3 + zscore alpha 0.6 coeff 1.0, both at depth 8).

Two settings per configuration, in the same run:
* baseline : fp32 eager, TF32 off, AdamW foreach (upstream's default without compile), NCHW images;
* optimised: bf16 autocast, torch.compile (SiT and encoder), fused AdamW, TF32, channels-last images/weights.

FLOPs per trained image are counted with torch.utils.flop_counter.FlopCounterMode on one eager step (SiT forward
+ backward incl. projector, encoder forward; attention through the math kernel so that it is counted) and given
next to the analytic figure (2 x multiply-adds; SiT-XL/2 = 118.6 G MACs per forward at 256 px). MFU = images/s x
FLOP per image / --peak-tflops (989 = H100 SXM bf16 dense; printed on CPU only when given).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

import common
from repabench.align import Method, alignment_loss, denoising_loss, linear_interpolant, sample_time
from repabench.encoders import build_encoder
from repabench.sit import MODEL_CONFIGS, SiT, build_sit
from repabench.train import Targets, ema_update

GRAD_CLIP = 1.0
EMA_DECAY = 0.9999
LR = 1e-4


@dataclass(frozen=True)
class Setting:
    name: str
    precision: str
    compile: bool
    fused_adam: bool
    tf32: bool
    channels_last: bool

    def describe(self) -> str:
        return (f"{self.precision}, compile {'on' if self.compile else 'off'}, AdamW "
                f"{'fused' if self.fused_adam else 'foreach'}, TF32 {'on' if self.tf32 else 'off'}, "
                f"{'channels-last' if self.channels_last else 'NCHW'}")


def settings(device: torch.device, compile_mode: str) -> list[Setting]:
    compiled = compile_mode == "on" or (compile_mode == "auto" and device.type == "cuda")
    return [Setting("baseline", "fp32", False, False, False, False),
            Setting("optimised", "bf16", compiled, True, device.type == "cuda", True)]


def load_methods(config: Path, names: list[str], encoder_depth: int | None) -> dict[str, Method]:
    """The named methods of a config; `encoder_depth` overrides their attachment depth (small smoke models)."""
    entries = yaml.safe_load(config.read_text())["methods"]
    missing = [name for name in names if name not in entries]
    if missing:
        raise SystemExit(f"{config}: no method {missing}; it has {sorted(entries)}")
    methods = {name: Method.from_config(entries[name], name) for name in names}
    if encoder_depth is not None:
        methods = {name: dataclasses.replace(m, encoder_depth=encoder_depth) for name, m in methods.items()}
    return methods


# --------------------------------------------------------------------------------------------------------------
# the workload


@dataclass
class HostBatch:
    moments: torch.Tensor  # [B, 2C, h, w] fp32 (posterior mean and std, as the latent store)
    labels: torch.Tensor
    images: torch.Tensor  # [B, 3, H, W] uint8

    @classmethod
    def random(cls, batch: int, latent: int, channels_last: bool, pin: bool) -> "HostBatch":
        gen = torch.Generator().manual_seed(0)
        mean = torch.randn(batch, 4, latent, latent, generator=gen)
        moments = torch.cat([mean, torch.full_like(mean, 0.1)], dim=1)
        labels = torch.randint(0, 1000, (batch,), generator=gen)
        images = common.to_nchw(common.random_images(batch, latent * 8), channels_last)
        tensors = (moments, labels, images)
        return cls(*(t.pin_memory() for t in tensors)) if pin else cls(*tensors)


@dataclass
class Workload:
    net: SiT  # the eager module (optimizer, EMA and FLOP counting use it)
    model: Callable  # net, or its compiled form
    ema: SiT
    optimizer: torch.optim.Optimizer
    targets: Targets
    method: Method
    autocast: Callable
    batch: HostBatch
    device: torch.device


def build_workload(model_name: str, latent: int, encoder: torch.nn.Module, method: Method, setting: Setting,
                   batch: int, device: torch.device) -> Workload:
    common.set_tf32(setting.tf32)
    torch._dynamo.reset()  # each configuration compiles afresh (no recompile-limit fallback to eager)
    autocast = common.autocast(device, setting.precision)
    grid = latent // MODEL_CONFIGS[model_name]["patch_size"]
    encoder = encoder.to(memory_format=torch.channels_last if setting.channels_last else torch.contiguous_format)
    target_encoder = torch.compile(encoder, dynamic=False) if setting.compile else encoder
    targets = Targets([target_encoder], grid, method, device, autocast)
    torch.manual_seed(0)
    net = build_sit(model_name, latent, projectors=method.projector_specs([encoder.embed_dim]),
                    encoder_depth=method.encoder_depth).to(device)
    if setting.channels_last:
        net = net.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(net).requires_grad_(False)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=0.0, fused=True if setting.fused_adam else None)
    model = torch.compile(net, dynamic=False) if setting.compile else net
    host = HostBatch.random(batch, latent, setting.channels_last, pin=device.type == "cuda")
    return Workload(net, model, ema, optimizer, targets, method, autocast, host, device)


def sit_loss(work: Workload, model: Callable, batch: HostBatch) -> torch.Tensor:
    """Everything of a step up to the loss: data to device, noising, encoder targets, SiT forward, losses."""
    device = work.device
    moments = batch.moments.to(device, non_blocking=True)
    labels = batch.labels.to(device, non_blocking=True)
    images = batch.images.to(device, non_blocking=True)
    mean, std = moments.chunk(2, dim=1)
    x0 = mean + std * torch.randn_like(mean)
    t = sample_time(x0.shape[0], device=device)
    x_t, v_target = linear_interpolant(x0, torch.randn_like(x0), t)
    targets = work.targets.compute(images)
    with work.autocast():
        velocity, zs = model(x_t, t, labels)
    return denoising_loss(velocity, v_target) + work.method.coeff * alignment_loss(zs, targets)


def train_step(work: Workload) -> None:
    loss = sit_loss(work, work.model, work.batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(work.net.parameters(), GRAD_CLIP, foreach=True)
    work.optimizer.step()
    work.optimizer.zero_grad(set_to_none=True)
    ema_update(work.ema, work.net, EMA_DECAY)


# --------------------------------------------------------------------------------------------------------------
# FLOPs


def counted_flops(work: Workload, images: int = 2) -> dict[str, float]:
    """FLOP per image counted on an eager fp32 step of `images` images: encoder forward, SiT forward + backward."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    b = work.batch
    small = HostBatch(b.moments[:images], b.labels[:images], b.images[:images])
    encoder = work.targets.encoders[0]
    encoder = getattr(encoder, "_orig_mod", encoder)  # the eager module under a compiled one
    fp32 = common.autocast(work.device, "fp32")
    eager = Workload(work.net, work.net, work.ema, work.optimizer,
                     Targets([encoder], work.targets.grid, work.method, work.device, fp32), work.method, fp32, small,
                     work.device)
    with sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as enc_counter, torch.no_grad():
            encoder(small.images.to(work.device), work.targets.grid)
        with FlopCounterMode(display=False) as total_counter:
            sit_loss(eager, work.net, small).backward()
    work.optimizer.zero_grad(set_to_none=True)
    encoder_flops = enc_counter.get_total_flops() / images
    return {"encoder": encoder_flops, "sit_fwd_bwd": total_counter.get_total_flops() / images - encoder_flops,
            "total": total_counter.get_total_flops() / images}


def sit_forward_macs(net: SiT) -> float:
    """Analytic multiply-adds of one SiT forward per image: blocks, embedders, final layer, projectors."""
    d = net.blocks[0].attn.qkv.in_features
    n, depth, p, c = net.grid ** 2, len(net.blocks), net.patch_size, net.in_channels
    hidden = net.blocks[0].mlp.fc1.out_features
    block = n * (4 * d * d + 2 * d * hidden) + 2 * n * n * d + 6 * d * d
    embed = n * c * p * p * d + 256 * d + d * d
    final = 2 * d * d + n * d * p * p * c
    projectors = 0.0
    for spec in net.projector_specs:
        if spec.kind == "mlp":
            projectors += n * (d * spec.hidden + spec.hidden ** 2 + spec.hidden * spec.z_dim)
        elif spec.kind == "conv":
            projectors += n * d * spec.z_dim * spec.kernel ** 2
        else:
            projectors += n * d * spec.z_dim
    return depth * block + embed + final + projectors


def encoder_forward_macs(encoder: torch.nn.Module, grid: int) -> float | None:
    """Analytic multiply-adds of a timm ViT encoder per image (linear layers x tokens + attention); None otherwise."""
    network = getattr(encoder, "network", None)
    blocks = getattr(network, "blocks", None)
    patch_embed = getattr(network, "patch_embed", None)
    if blocks is None or patch_embed is None:
        return None
    tokens = grid * grid + int(getattr(network, "num_prefix_tokens", 0))
    width = int(network.embed_dim)
    linear = sum(m.in_features * m.out_features for m in blocks.modules() if isinstance(m, torch.nn.Linear))
    conv = patch_embed.proj.weight
    return tokens * linear + len(blocks) * 2 * tokens * tokens * width + grid * grid * conv[0].numel() * conv.shape[0]


# --------------------------------------------------------------------------------------------------------------
# measurement


def measure(work: Workload, warmup: int, steps: int) -> dict[str, float]:
    start = time.perf_counter()
    for _ in range(warmup):
        train_step(work)
    common.sync(work.device)
    warm_s = time.perf_counter() - start
    seconds = common.timed(lambda: [train_step(work) for _ in range(steps)], work.device)
    batch = work.batch.labels.shape[0]
    return {"images_per_s": batch * steps / seconds, "step_ms": 1000 * seconds / steps, "warmup_s": warm_s,
            "peak_gib": common.peak_memory_gib(work.device)}


def run_one(args, model_name: str, encoder: torch.nn.Module, method: Method, setting: Setting, batch: int,
            device: torch.device, flops: dict[str, float] | None) -> tuple[dict[str, Any], dict[str, float] | None]:
    """Build, (count FLOPs once), time; an out-of-memory error gives {'oom': True}."""
    common.free_memory(device)
    work = None
    try:
        work = build_workload(model_name, args.latent, encoder, method, setting, batch, device)
        if flops is None:
            flops = counted_flops(work)
        result = measure(work, args.warmup, args.steps)
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not common.is_oom(exc):
            raise
        result = {"oom": True}
    finally:
        del work
        common.free_memory(device)
    return result, flops


def report_line(setting: Setting, batch: int, result: dict[str, Any], flop_per_image: float | None,
                peak_tflops: float | None) -> str:
    if result.get("oom"):
        return f"  {setting.name:9s} batch {batch:5d}: out of memory"
    mfu = ""
    if flop_per_image and peak_tflops:
        result["mfu"] = result["images_per_s"] * flop_per_image / (peak_tflops * 1e12)
        mfu = f"  MFU {100 * result['mfu']:5.1f}%"
    return (f"  {setting.name:9s} batch {batch:5d}: {result['images_per_s']:9.2f} img/s  step "
            f"{result['step_ms']:9.1f} ms{mfu}  peak {result['peak_gib']:6.2f} GiB  warm-up {result['warmup_s']:.1f} s")


def find_max_batch(args, model_name, encoder, method, setting, start: int, device, flops, peak):
    """Double the batch from `start` until out of memory (or --max-batch); returns the last batch that ran."""
    best = None
    batch = start
    while batch <= args.max_batch:
        result, _ = run_one(args, model_name, encoder, method, setting, batch, device, flops)
        print(report_line(setting, batch, result, flops["total"], peak) + "  (find-max)", flush=True)
        if result.get("oom"):
            break
        best = (batch, result)
        batch *= 2
    return best


def print_flops(flops: dict[str, float], model_name: str, latent: int, encoder: torch.nn.Module,
                method: Method) -> None:
    """The FLOP count written out: counted per image, and the analytic figure next to it."""
    with torch.device("meta"):
        net = build_sit(model_name, latent, projectors=method.projector_specs([encoder.embed_dim]),
                        encoder_depth=method.encoder_depth)
    sit = sit_forward_macs(net)
    enc = encoder_forward_macs(encoder, net.grid)
    print(f"  FLOP/image counted : SiT fwd+bwd {flops['sit_fwd_bwd'] / 1e9:.1f} G + encoder fwd "
          f"{flops['encoder'] / 1e9:.1f} G = {flops['total'] / 1e9:.1f} GFLOP (FlopCounterMode on an fp32 eager step)")
    sit_text = f"SiT fwd {sit / 1e9:.2f} G MACs -> 3 x 2 x {sit / 1e9:.2f} = {6 * sit / 1e9:.1f} G"
    if enc is None:
        print(f"  FLOP/image analytic: {sit_text} (encoder: no analytic formula, not a ViT)")
    else:
        print(f"  FLOP/image analytic: {sit_text} + encoder fwd 2 x {enc / 1e9:.2f} = {2 * enc / 1e9:.1f} G = "
              f"{(6 * sit + 2 * enc) / 1e9:.1f} GFLOP (FLOP = 2 x multiply-adds, backward = 2 x forward)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["SiT-B/2", "SiT-XL/2"])
    parser.add_argument("--encoders", nargs="+", default=["dinov2-vit-b", "pe-vit-g"],
                        help="random-init encoders of the real architecture (speed does not depend on weights)")
    parser.add_argument("--methods", nargs="+", default=["repa", "irepa"])
    parser.add_argument("--config", type=Path, default=common.REPO / "config" / "paper.yaml",
                        help="the methods are read from this config")
    parser.add_argument("--encoder-depth", type=int, default=None,
                        help="override the methods' projector depth (8; at most the model's depth, 4 for SiT-T)")
    parser.add_argument("--latent", type=int, default=32, help="latent side (32 = 256 px, 16x16 tokens at patch 2)")
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 256],
                        help="per-GPU batches (32 = the paper's 256 global over 8 GPUs)")
    parser.add_argument("--find-max", action="store_true", help="optimised setting: double the batch until OOM")
    parser.add_argument("--max-batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                        help="optimised setting: auto = on for GPU, off on CPU")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="bf16 dense peak for MFU (default 989 = H100 SXM on GPU; none on CPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = common.resolve_device(args.device)
    peak = args.peak_tflops or (989.0 if device.type == "cuda" else None)
    methods = load_methods(args.config, args.methods, args.encoder_depth)
    all_settings = settings(device, args.compile)
    if args.skip_baseline:
        all_settings = all_settings[1:]
    print(common.header(device, dtype="/".join(s.precision for s in all_settings), batch=",".join(map(str, args.batch)),
                        steps=args.steps, latent=args.latent))
    for setting in all_settings:
        print(f"{setting.name:9s}: {setting.describe()}")
    print(f"peak for MFU: {f'{peak:g} TFLOP/s' if peak else 'none (pass --peak-tflops)'}")
    records = []
    for encoder_name in args.encoders:
        grid_probe = args.latent // MODEL_CONFIGS[args.models[0]]["patch_size"]
        began = time.perf_counter()
        encoder = build_encoder(encoder_name, None, device=device, grid=grid_probe)
        enc_params = sum(p.numel() for p in encoder.parameters()) / 1e6
        print(f"\nencoder {encoder_name} (random init, {enc_params:.1f}M params, D={encoder.embed_dim}, "
              f"built in {time.perf_counter() - began:.1f} s)")
        for model_name in args.models:
            for method_name, method in methods.items():
                flops = None
                print(f"{model_name} + {method_name} ({method.projector} projector, spatial norm {method.spatial_norm}, "
                      f"coeff {method.coeff}, depth {method.encoder_depth}), latents 4x{args.latent}x{args.latent}")
                rows: dict[tuple[str, int], dict[str, Any]] = {}
                for batch in args.batch:
                    for setting in all_settings:
                        result, flops = run_one(args, model_name, encoder, method, setting, batch, device, flops)
                        if not rows and flops is not None:
                            print_flops(flops, model_name, args.latent, encoder, method)
                        print(report_line(setting, batch, result, flops and flops["total"], peak), flush=True)
                        rows[(setting.name, batch)] = result
                    base, opt = rows.get(("baseline", batch), {}), rows.get(("optimised", batch), {})
                    if "images_per_s" in base and "images_per_s" in opt:
                        print(f"  speed-up  batch {batch:5d}: {opt['images_per_s'] / base['images_per_s']:.2f}x")
                if args.find_max and flops is not None:
                    best = find_max_batch(args, model_name, encoder, method, all_settings[-1], max(args.batch) * 2,
                                          device, flops, peak)
                    if best:
                        print(f"  largest batch that ran: {best[0]} ({best[1]['images_per_s']:.2f} img/s)")
                records.append({"model": model_name, "encoder": encoder_name, "method": method_name,
                                "flops_per_image": flops,
                                "runs": [{"setting": s, "batch": b, **r} for (s, b), r in rows.items()]})
        del encoder
        common.free_memory(device)
    if args.json:
        args.json.write_text(json.dumps({"commit": common.commit(), "device": common.device_name(device),
                                         "torch": torch.__version__, "peak_tflops": peak, "records": records},
                                        indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
