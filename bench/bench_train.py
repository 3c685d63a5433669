"""Training throughput: SiT with REPA / iREPA and an online random-init target encoder, one GPU.

    python bench/bench_train.py --models SiT-XL/2 --encoders dinov2-vit-b      # GPU: batch 32 (paper) and 256
    python bench/bench_train.py --models SiT-T/2 --latent 16 --encoders effnetlite-cnn-lite0 \\
        --batch 4 --steps 2 --warmup 1 --threads 1                              # CPU smoke

One step is what repabench.train.Trainer.train_step does, built from the same pieces (AlignmentTargets, Method, the
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
from repabench.train import AlignmentTargets, ema_update

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
    targets: AlignmentTargets
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
    targets = AlignmentTargets([target_encoder], grid, method, device, autocast)
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
    eager_targets = AlignmentTargets([encoder], work.targets.grid, work.method, work.device, fp32)
    eager = Workload(work.net, work.net, work.ema, work.optimizer, eager_targets, work.method, fp32, small, work.device)
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
            "peak_gib": common.peak_memory_gib(work.device), "resident_gib": common.resident_memory_gib(work.device)}


def run_one(args, model_name: str, encoder: torch.nn.Module, method: Method, setting: Setting, batch: int,
            device: torch.device, flops: dict[str, float] | None) -> tuple[dict[str, Any], dict[str, float] | None]:
    """Build, (count FLOPs once), time; an out-of-memory error gives {'oom': True}."""
    common.free_memory(device)
    work = None
    began = time.perf_counter()
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
    result["wall_s"] = time.perf_counter() - began
    return result, flops


def report_line(setting: Setting, batch: int, result: dict[str, Any], flop_per_image: float | None,
                peak_tflops: float | None) -> str:
    if result.get("oom"):
        return f"  {setting.name:9s} batch {batch:5d}: out of memory"
    if result.get("skipped"):
        return f"  {setting.name:9s} batch {batch:5d}: skipped ({result['skipped']})"
    mfu = ""
    if flop_per_image and peak_tflops:
        result["mfu"] = result["images_per_s"] * flop_per_image / (peak_tflops * 1e12)
        mfu = f"  MFU {100 * result['mfu']:5.1f}%"
    return (f"  {setting.name:9s} batch {batch:5d}: {result['images_per_s']:9.2f} img/s  step "
            f"{result['step_ms']:9.1f} ms{mfu}  peak {result['peak_gib']:6.2f} GiB  warm-up {result['warmup_s']:.1f} s")


def batch_ceiling(measured: dict[str, Any], batch: int, capacity_gib: float, fill: float, multiple: int) -> int:
    """The largest batch whose activations fit: peak = resident + batch x (peak - resident) / batch measured,
    solved for `fill` x capacity and rounded down to a multiple of `multiple` (at least `batch`)."""
    per_image = max(measured["peak_gib"] - measured["resident_gib"], 1e-9) / batch
    fits = (fill * capacity_gib - measured["resident_gib"]) / per_image
    return max(batch, int(fits) // multiple * multiple)


class Runner:
    """Runs the configurations in order within the time budget; a run that would not finish in the budget left
    (judged by the same setting's runs so far: the longest build + compile time plus the steps at the highest
    time per image and step) is recorded as skipped instead of started."""

    def __init__(self, args, device: torch.device, peak: float | None) -> None:
        self.args, self.device, self.peak = args, device, peak
        self.budget = common.Budget(args.budget_s)
        self.cost: dict[str, tuple[float, float]] = {}  # setting -> (fixed s, s per image and step)

    def needed_s(self, setting: Setting, batch: int) -> float:
        fixed, per_image_step = self.cost.get(setting.name, (0.0, 0.0))
        return fixed + (self.args.warmup + self.args.steps) * per_image_step * batch

    def run(self, model_name, encoder, method, setting: Setting, batch: int, flops):
        if not self.budget.allows(self.needed_s(setting, batch)):
            return {"skipped": "time budget"}, flops
        result, flops = run_one(self.args, model_name, encoder, method, setting, batch, self.device, flops)
        if "step_ms" in result:  # wall = build + compile (fixed) + steps x step time (in proportion to the batch)
            step_s = result["step_ms"] / 1000
            fixed = max(0.0, result["wall_s"] - (self.args.warmup + self.args.steps) * step_s)
            old_fixed, old_step = self.cost.get(setting.name, (0.0, 0.0))
            self.cost[setting.name] = (max(old_fixed, fixed), max(old_step, step_s / batch))
        return result, flops


def find_max_batch(runner: Runner, config, encoder, setting: Setting, measured: dict[str, Any], batch: int,
                   run: Callable[..., dict[str, Any]]) -> int | None:
    """Estimate the largest batch from the memory of a measured run, then run it; on out-of-memory try 3/4 of it
    (twice at most). Returns the largest batch that ran, or None."""
    args = runner.args
    capacity = common.memory_capacity_gib(runner.device)
    target = min(args.max_batch, batch_ceiling(measured, batch, capacity, args.memory_fill, args.batch_multiple))
    for _ in range(3):
        result = run(config, setting, target, largest=True, estimated_ceiling=target, capacity_gib=capacity)
        if "images_per_s" in result:
            return target
        if not result.get("oom") or target <= batch:
            return None
        target = max(batch, target * 3 // 4 // args.batch_multiple * args.batch_multiple)
    return None


def print_flops(flops: dict[str, float], model_name: str, latent: int, encoder: torch.nn.Module,
                method: Method) -> dict[str, float | None]:
    """The FLOP count written out: counted per image, and the analytic figure next to it (returned)."""
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
    return {"sit_fwd_bwd": 6 * sit, "encoder": None if enc is None else 2 * enc,
            "total": None if enc is None else 6 * sit + 2 * enc}


@dataclass
class Config:
    """One model + method + encoder: its JSON record and its runs by (setting, batch)."""
    model: str
    method_name: str
    method: Method
    encoder: str
    flops: dict[str, float] | None = None
    largest: int | None = None  # the largest batch the optimised setting ran at

    def __post_init__(self) -> None:
        self.record: dict[str, Any] = {"model": self.model, "encoder": self.encoder, "method": self.method_name,
                                       "flops_per_image": None, "analytic_flops_per_image": None, "runs": []}
        self.rows: dict[tuple[str, int], dict[str, Any]] = {}

    def keep(self, setting: Setting, batch: int, result: dict[str, Any]) -> None:
        self.record["runs"].append({"setting": setting.name, "batch": batch, **result})
        if not result.get("largest"):
            self.rows[(setting.name, batch)] = result

    def describe(self, latent: int) -> str:
        m = self.method
        return (f"{self.model} + {self.method_name} ({m.projector} projector, spatial norm {m.spatial_norm}, "
                f"coeff {m.coeff}, depth {m.encoder_depth}), latents 4x{latent}x{latent}, encoder {self.encoder}")


def batches_of(args) -> dict[str, list[int]]:
    """Per-model batches: --batch, overridden per model by --batch-for MODEL=B1,B2."""
    batches = {model: list(args.batch) for model in args.models}
    for item in args.batch_for:
        model, _, values = item.partition("=")
        if model not in batches or not values:
            raise SystemExit(f"--batch-for {item!r}: expected MODEL=B1[,B2] with MODEL one of {args.models}")
        batches[model] = [int(v) for v in values.split(",")]
    return batches


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
    parser.add_argument("--batch-for", nargs="*", default=[], metavar="MODEL=B1,B2",
                        help="batches of one model instead of --batch, e.g. SiT-B/2=256")
    parser.add_argument("--find-max", nargs="*", default=None, metavar="MODEL",
                        help="also run the largest batch that fits (estimated from the memory of the largest "
                             "--batch run of the optimised setting, then run; the baseline at the same batch), "
                             "for the given models (none given: all)")
    parser.add_argument("--max-batch", type=int, default=4096, help="--find-max never goes beyond this")
    parser.add_argument("--memory-fill", type=float, default=0.9, help="--find-max: fraction of device memory")
    parser.add_argument("--batch-multiple", type=int, default=16, help="--find-max: round the batch down to this")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                        help="optimised setting: auto = on for GPU, off on CPU")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="bf16 dense peak for MFU (default: by GPU name, 989 for H100/H200 SXM; none on CPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="wall-clock budget: runs that would not finish in what is left are skipped")
    parser.add_argument("--json", type=Path, default=None,
                        help="write the results here (rewritten after every run, 'complete' at the end)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = common.resolve_device(args.device)
    peak = args.peak_tflops or common.peak_tflops(device) or (989.0 if device.type == "cuda" else None)
    methods = load_methods(args.config, args.methods, args.encoder_depth)
    batches = batches_of(args)
    all_settings = settings(device, args.compile)
    if args.skip_baseline:
        all_settings = all_settings[1:]
    optimised = all_settings[-1]
    print(common.header(device, dtype="/".join(s.precision for s in all_settings),
                        batch=" ".join(f"{m}:{','.join(map(str, b))}" for m, b in batches.items()),
                        steps=args.steps, latent=args.latent))
    for setting in all_settings:
        print(f"{setting.name:9s}: {setting.describe()}")
    print(f"peak for MFU: {f'{peak:g} TFLOP/s' if peak else 'none (pass --peak-tflops)'}")
    out = common.ResultFile(args.json, "train", device, args)
    out.update(peak_tflops=peak, settings={s.name: s.describe() for s in all_settings})
    runner = Runner(args, device, peak)
    records: list[dict[str, Any]] = []
    for encoder_name in args.encoders:
        grid_probe = args.latent // MODEL_CONFIGS[args.models[0]]["patch_size"]
        began = time.perf_counter()
        encoder = build_encoder(encoder_name, None, device=device, grid=grid_probe)
        enc_params = sum(p.numel() for p in encoder.parameters()) / 1e6
        print(f"\nencoder {encoder_name} (random init, {enc_params:.1f}M params, D={encoder.embed_dim}, "
              f"built in {time.perf_counter() - began:.1f} s)")
        configs = [Config(model_name, method_name, method, encoder_name) for model_name in args.models
                   for method_name, method in methods.items()]
        records += [c.record for c in configs]

        def run(config: Config, setting: Setting, batch: int, largest: bool = False, **extra: Any) -> dict[str, Any]:
            result, config.flops = runner.run(config.model, encoder, config.method, setting, batch, config.flops)
            if config.record["flops_per_image"] is None and config.flops is not None:
                config.record["flops_per_image"] = config.flops
                print(f"{config.describe(args.latent)}")
                config.record["analytic_flops_per_image"] = print_flops(config.flops, config.model, args.latent,
                                                                        encoder, config.method)
            if largest:
                result.update(largest=True, **extra)
            print(f"{config.model} + {config.method_name}:" + report_line(setting, batch, result,
                  config.flops and config.flops["total"], peak) + ("  (largest)" if largest else ""), flush=True)
            config.keep(setting, batch, result)
            out.update(records=records)
            return result

        # breadth first, cheapest first, so that a short budget still yields a figure of every configuration:
        # every baseline (eager, no compilation), every optimised run, then the largest batches
        for setting in all_settings:
            for config in configs:
                for batch in batches[config.model]:
                    run(config, setting, batch)
        for config in configs:
            find_max = args.find_max is not None and (not args.find_max or config.model in args.find_max)
            measured = [(b, r) for (name, b), r in config.rows.items() if name == "optimised" and "images_per_s" in r]
            if find_max and measured and config.flops is not None:
                batch, result = max(measured, key=lambda item: item[0])
                config.largest = find_max_batch(runner, config, encoder, optimised, result, batch, run)
        for config in configs:
            if config.largest and not args.skip_baseline:
                run(config, all_settings[0], config.largest, largest=True)
        for config in configs:
            for run_record in config.record["runs"]:
                if run_record["setting"] != "optimised" or "images_per_s" not in run_record:
                    continue
                base = next((r for r in config.record["runs"] if r["setting"] == "baseline"
                             and r["batch"] == run_record["batch"] and "images_per_s" in r), None)
                if base:
                    print(f"speed-up {config.model} + {config.method_name} batch {run_record['batch']}: "
                          f"{run_record['images_per_s'] / base['images_per_s']:.2f}x")
        del encoder
        common.free_memory(device)
    out.finish(records=records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
