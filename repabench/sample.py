"""Sampling: sharded, world-size independent generation with the samplers of `repabench.samplers`.

Generation does not depend on the number of processes: image i draws its label, its initial noise and
its SDE noise from streams seeded by (seed, i), and images are produced in fixed shards of consecutive
indices that process r of W takes round-robin (r, r+W, ...). A shard is written atomically
(`shards/NNNNN.npy` uint8 NHWC, `NNNNN.labels.npy`, then the sidecar `NNNNN.json` with checksums and the
generation key), so a rerun skips complete shards and a killed job resumes.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import time
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from repabench.atomic import atomic_path, read_json, write_json
from repabench.sections import config_section
from repabench.stage import parse_stage, resolve_device, stage_parser
from repabench.provenance import params_hash, provenance, sha256_file
from repabench.samplers import PRECISIONS, SamplerSettings, Velocity, family_mode_mismatch, run_sampler

log = logging.getLogger("repabench.sample")

LABEL_MODES = ("uniform", "balanced")


# ----------------------------------------------------------------------------------------------------
# Per-image randomness: image i's label and noise come from streams seeded by (seed, i)
# ----------------------------------------------------------------------------------------------------

_LABEL_STREAM, _NOISE_STREAM = 0, 1


def _stream(seed: int, index: int, which: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(index), which])))


def image_labels(indices: Sequence[int], seed: int, num_classes: int, mode: str) -> np.ndarray:
    """uniform: randint(0, num_classes) per image (as upstream); balanced: i mod num_classes (as JiT)."""
    if mode == "balanced":
        return np.asarray([i % num_classes for i in indices], dtype=np.int64)
    if mode == "uniform":
        return np.asarray([_stream(seed, i, _LABEL_STREAM).integers(0, num_classes) for i in indices], dtype=np.int64)
    raise ValueError(f"labels {mode!r} is not one of {LABEL_MODES}")


class ImageNoise:
    """The initial noise and then the per-step SDE noise of a batch of images, one stream per image."""

    def __init__(self, indices: Sequence[int], seed: int, shape: Sequence[int], device: torch.device):
        self.streams = [_stream(seed, i, _NOISE_STREAM) for i in indices]
        self.shape = tuple(shape)
        self.device = device

    def draw(self) -> torch.Tensor:
        batch = np.stack([s.standard_normal(self.shape, dtype=np.float32) for s in self.streams])
        tensor = torch.from_numpy(batch)
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def __call__(self, step: int) -> torch.Tensor:
        return self.draw()


# ----------------------------------------------------------------------------------------------------
# Decoding latents to uint8 images
# ----------------------------------------------------------------------------------------------------

def load_latent_stats(path: str | os.PathLike, channels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    stats = read_json(path)
    try:
        bias = torch.tensor(stats["bias"], dtype=torch.float64)
        scale = torch.tensor(stats["scale"], dtype=torch.float64)
    except KeyError as exc:
        raise ValueError(f"{path} lacks {exc}; rerun the latent_stats stage") from exc
    if bias.shape != scale.shape or bias.ndim != 1 or (channels is not None and bias.numel() != channels):
        raise ValueError(f"{path}: bias {list(bias.shape)} / scale {list(scale.shape)} do not match "
                         f"{channels} latent channels; rerun latent_stats for this autoencoder")
    return bias, scale


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW -> uint8 NHWC, truncating as upstream: uint8(clamp(255 (x+1)/2, 0, 255))."""
    x = (images.to(torch.float32) + 1.0) / 2.0
    x = torch.clamp(255.0 * x, 0.0, 255.0).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def latents_to_images(decode: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor,
                      bias: torch.Tensor, scale: torch.Tensor) -> np.ndarray:
    """Undo the latent normalisation (z / scale + bias), decode in float32, quantise."""
    shape = (1, -1, 1, 1)
    unnormalised = z.to(torch.float64) / scale.to(z.device).view(shape) + bias.to(z.device).view(shape)
    with torch.no_grad():
        return to_uint8(decode(unnormalised.to(torch.float32)))


# ----------------------------------------------------------------------------------------------------
# Shards
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shard:
    index: int
    start: int
    count: int

    @property
    def stem(self) -> str:
        return f"{self.index:05d}"

    @property
    def images_file(self) -> str:
        return f"shards/{self.stem}.npy"

    @property
    def labels_file(self) -> str:
        return f"shards/{self.stem}.labels.npy"

    @property
    def record_file(self) -> str:
        return f"shards/{self.stem}.json"


def plan_shards(n_samples: int, shard_size: int) -> list[Shard]:
    return [Shard(k, start, min(shard_size, n_samples - start))
            for k, start in enumerate(range(0, n_samples, shard_size))]


def shard_is_complete(out_dir: Path, shard: Shard, key: str, verify: bool = True) -> bool:
    """True when the shard's record matches this generation and its files match their checksums."""
    record_path = out_dir / shard.record_file
    if not record_path.is_file():
        return False
    try:
        record = read_json(record_path)
    except ValueError:
        return False
    if (record.get("key"), record.get("start"), record.get("count")) != (key, shard.start, shard.count):
        return False
    for file, digest in ((shard.images_file, "sha256"), (shard.labels_file, "labels_sha256")):
        path = out_dir / file
        if not path.is_file():
            return False
        if verify and sha256_file(path) != record.get(digest):
            log.warning("%s does not match its recorded checksum; it will be regenerated", path)
            return False
    return True


def write_shard(out_dir: Path, shard: Shard, images: np.ndarray, labels: np.ndarray, key: str) -> dict[str, Any]:
    if images.shape[0] != shard.count or labels.shape != (shard.count,):
        raise RuntimeError(f"shard {shard.stem}: got {images.shape[0]} images / {labels.shape} labels, "
                           f"expected {shard.count}")
    (out_dir / "shards").mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / shard.images_file) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(images, dtype=np.uint8))
    with atomic_path(out_dir / shard.labels_file) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, labels.astype(np.int64))
    record = {"key": key, "start": shard.start, "count": shard.count,
              "sha256": sha256_file(out_dir / shard.images_file),
              "labels_sha256": sha256_file(out_dir / shard.labels_file)}
    write_json(out_dir / shard.record_file, record)  # written last: its presence marks the shard complete
    return record


# ----------------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SamplingPlan:
    """Everything that determines the images, apart from the model and autoencoder weights."""

    settings: SamplerSettings
    n_samples: int
    seed: int
    labels: str
    precision: str
    shard_size: int
    num_classes: int
    latent_shape: tuple[int, int, int]

    def key(self, weights_identity: Mapping[str, Any]) -> str:
        """Hash recorded with each shard; n_samples is left out so that more samples reuse the shards."""
        fields = asdict(self)
        fields.pop("n_samples")
        if fields["settings"]["path"] == "linear":  # keys of generations from before the cosine path stay valid
            fields["settings"].pop("path")
        return params_hash({"generation": fields, "weights": dict(weights_identity)}, length=32)


@config_section("sample", workflow_keys=("gpus", "jit_sampler", "mf_sampler"))
class SampleConfig:
    """The `sample` section; `sampler` names the `samplers` entry the workflow evaluates (the rule passes it;
    `jit_sampler`, the one of JiT runs, likewise)."""

    n_samples: int
    sampler: str
    labels: str
    seed: int
    shard_size: int
    batch_size: int
    precision: str  # upstream samples in fp32 (TF32 matmuls); bf16 is a named option
    compile: bool

    def __post_init__(self) -> None:
        for name in ("n_samples", "shard_size", "batch_size"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"sample.{name} must be a positive integer, got {value!r}")
        if self.labels not in LABEL_MODES:
            raise ValueError(f"sample.labels {self.labels!r} is not one of {LABEL_MODES}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"sample.precision {self.precision!r} is not one of {PRECISIONS}")


def distributed_context() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the torchrun/accelerate environment; (0, 1, 0) without one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if world < 1 or not 0 <= rank < world:
        raise SystemExit(f"bad distributed environment: RANK={rank} WORLD_SIZE={world}")
    return rank, world, local


def generate_shards(out_dir: str | os.PathLike, velocity: Velocity, decode: Callable[[torch.Tensor], torch.Tensor],
                    generation: SamplingPlan, key: str, bias: torch.Tensor, scale: torch.Tensor,
                    device: torch.device, batch_size: int, rank: int = 0, world: int = 1,
                    integrate: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> list[int]:
    """Generate this process's missing shards (r, r+W, ...); returns the indices it generated.

    `integrate(noise, labels)` replaces the SiT samplers (JiT: its ODE, the output already in pixel space)."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    shards = plan_shards(generation.n_samples, generation.shard_size)[rank::world]
    todo = [s for s in shards if not shard_is_complete(out_dir, s, key)]
    log.info("rank %d/%d: %d of its %d shards to generate (%d complete)", rank, world, len(todo), len(shards),
             len(shards) - len(todo))
    done = []
    progress = tqdm(total=sum(s.count for s in todo), desc=f"sample r{rank}", unit="img", disable=not todo,
                    mininterval=10.0)
    started = time.perf_counter()
    for shard in todo:
        indices = list(range(shard.start, shard.start + shard.count))
        labels = image_labels(indices, generation.seed, generation.num_classes, generation.labels)
        images = []
        for lo in range(0, shard.count, batch_size):
            batch = indices[lo:lo + batch_size]
            noise = ImageNoise(batch, generation.seed, generation.latent_shape, device)
            x1 = noise.draw()
            y = torch.from_numpy(labels[lo:lo + batch_size]).to(device)
            with torch.inference_mode():
                z = (integrate(x1, y) if integrate is not None else
                     run_sampler(velocity, x1, y, generation.settings, noise, generation.num_classes,
                                 generation.precision))
                if not bool(torch.isfinite(z).all()):  # black images would still score a finite FID
                    raise SystemExit(
                        f"sample: the model produced NaN/inf latents for images {batch[0]}..{batch[-1]} of "
                        f"{out_dir / shard.images_file}; its checkpoint is broken (a diverged training run?). "
                        "Check the training log, retrain that run, then rerun sample; nothing was written")
                images.append(latents_to_images(decode, z, bias, scale))
            progress.update(len(batch))
        write_shard(out_dir, shard, np.concatenate(images), labels, key)
        done.append(shard.index)
        log.info("rank %d: wrote shard %s (%d images, %.1f img/s overall)", rank, shard.stem, shard.count,
                 progress.n / max(time.perf_counter() - started, 1e-9))
    progress.close()
    return done


def write_manifest(out_dir: str | os.PathLike, generation: SamplingPlan, key: str, extra: Mapping[str, Any]) -> Path:
    """Verify every shard and write `manifest.json` (the declared output of the sample rule)."""
    out_dir = Path(out_dir)
    entries = []
    for shard in plan_shards(generation.n_samples, generation.shard_size):
        if not shard_is_complete(out_dir, shard, key):
            raise RuntimeError(f"shard {out_dir / shard.images_file} is missing or incomplete; rerun the sample stage")
        record = read_json(out_dir / shard.record_file)
        entries.append({"file": shard.images_file, "labels_file": shard.labels_file, "start": shard.start,
                        "count": shard.count, "sha256": record["sha256"], "labels_sha256": record["labels_sha256"]})
    manifest = {
        "format": "repabench-samples-v1",
        "n_samples": generation.n_samples,
        "image_shape": None,
        "shards": entries,
        "key": key,
        "sampler": {"name": extra.get("sampler_name"), **asdict(generation.settings)},
        "labels": generation.labels,
        "num_classes": generation.num_classes,
        "seed": generation.seed,
        "precision": generation.precision,
        "shard_size": generation.shard_size,
        **{k: v for k, v in extra.items() if k != "sampler_name"},
    }
    first = np.load(out_dir / entries[0]["file"], mmap_mode="r")
    manifest["image_shape"] = list(first.shape[1:])
    write_json(out_dir / "manifest.json", manifest)
    return out_dir / "manifest.json"


def load_samples(manifest_path: str | os.PathLike, verify: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Memory-mapped image and label shards of a sample set, in index order."""
    manifest_path = Path(manifest_path)
    manifest = read_json(manifest_path)
    root = manifest_path.parent
    images, labels = [], []
    expected = 0
    for entry in manifest["shards"]:
        if entry["start"] != expected:
            raise ValueError(f"{manifest_path}: shard {entry['file']} starts at {entry['start']}, expected {expected}")
        path = root / entry["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing (listed in {manifest_path}); rerun the sample stage")
        if verify and sha256_file(path) != entry["sha256"]:
            raise ValueError(f"{path} does not match its checksum in {manifest_path}; delete it and rerun sample")
        array = np.load(path, mmap_mode="r")
        if array.shape[0] != entry["count"] or array.dtype != np.uint8:
            raise ValueError(f"{path}: {array.shape} {array.dtype}, expected {entry['count']} uint8 images")
        images.append(array)
        labels.append(np.load(root / entry["labels_file"]))
        expected += entry["count"]
    if expected != manifest["n_samples"]:
        raise ValueError(f"{manifest_path}: shards hold {expected} images, manifest says {manifest['n_samples']}")
    return images, labels


# ----------------------------------------------------------------------------------------------------
# ADM .npz export (streamed: never holds all images in memory)
# ----------------------------------------------------------------------------------------------------

def _write_npy_member(archive: zipfile.ZipFile, name: str, chunks: Sequence[np.ndarray]) -> None:
    dtype = chunks[0].dtype
    shape = (sum(c.shape[0] for c in chunks), *chunks[0].shape[1:])
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, header)
        for chunk in chunks:
            if chunk.dtype != dtype or chunk.shape[1:] != shape[1:]:
                raise ValueError(f"{name}: chunk {chunk.shape} {chunk.dtype} does not match {shape} {dtype}")
            for lo in range(0, chunk.shape[0], 256):
                member.write(np.ascontiguousarray(chunk[lo:lo + 256]).tobytes())


def export_npz(manifest_path: str | os.PathLike, out_path: str | os.PathLike, with_labels: bool = True) -> Path:
    images, labels = load_samples(manifest_path, verify=True)
    with atomic_path(out_path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            _write_npy_member(archive, "arr_0", images)
            if with_labels:
                _write_npy_member(archive, "arr_1", labels)
    return Path(out_path)


# ----------------------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------------------

def _file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """SHA-256 of a file, the recorded sidecar checksum of a fetched weight, or a directory listing hash."""
    from repabench.weights import sidecar

    path = Path(path)
    record = sidecar(path)
    if record.is_file():
        return {"path": str(path), "sha256": read_json(record).get("sha256")}
    if path.is_dir():
        listing = sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*") if p.is_file())
        return {"path": str(path), "listing": params_hash({"files": listing}, length=32)}
    return {"path": str(path), "sha256": sha256_file(path)}


def _init_distributed(world: int, device: torch.device) -> None:
    import torch.distributed as dist

    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # Ranks with one shard fewer wait at the final barrier; allow for a long wait.
        dist.init_process_group(backend, timeout=_dt.timedelta(hours=12))


def _barrier(world: int) -> None:
    import torch.distributed as dist

    if world > 1 and dist.is_initialized():
        dist.barrier()


def _process_device(requested: str, local_rank: int) -> torch.device:
    device = resolve_device(requested)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def sample_main(argv: list[str]) -> int:
    parser = stage_parser("sample", "Generate images in resumable, world-size independent shards.", device=True)
    parser.add_argument("--checkpoint", required=True, help="EMA checkpoint (.pt) written by train")
    parser.add_argument("--latent-stats", default=None, help="latent stats JSON (bias, scale); SiT checkpoints only")
    parser.add_argument("--autoencoder-kind", default=None, choices=["pca", "sd-vae-ft-mse"], help="SiT only")
    parser.add_argument("--autoencoder", default=None, help="autoencoder weights (file or directory); SiT only")
    parser.add_argument("--out-dir", required=True, help="results/samples/<model>/<enc>/<method>/<step>/<sampler>")
    args, config, _, _ = parse_stage(parser, argv, {"sampler": SamplerSettings, "sample": SampleConfig})
    generate(args.checkpoint, args.latent_stats, args.autoencoder_kind, args.autoencoder, args.out_dir,
             config.sampler, config.sample, sampler_name=config.raw["sampler"].get("name"), device=args.device,
             recorded_params=config.raw)
    return 0


def generate(checkpoint: str | Path, latent_stats: str | Path | None, autoencoder_kind: str | None,
             autoencoder_path: str | Path | None,
             out_dir: str | Path, settings: SamplerSettings, config: SampleConfig, sampler_name: str | None = None,
             device: str = "auto", recorded_params: Mapping[str, Any] | None = None) -> Path:
    """Generate `config.n_samples` images of a checkpoint into shards under `out_dir` (shards already complete
    are kept), then write its manifest; returns the manifest path. Every rank of a distributed launch calls it.
    A JiT checkpoint generates pixels directly: it takes no latent statistics and no autoencoder."""
    sampler_name = sampler_name or Path(out_dir).name
    if recorded_params is None:
        recorded_params = {"sampler": {**asdict(settings), "name": sampler_name}, "sample": asdict(config)}
    for path in (checkpoint, latent_stats, autoencoder_path):
        if path is not None and not Path(path).exists():
            raise SystemExit(f"{path} does not exist; run the stage that produces it first")

    rank, world, local_rank = distributed_context()
    device = _process_device(device, local_rank)
    _init_distributed(world, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    from repabench.sit import load_generator
    from repabench.vae import load_autoencoder

    model, meta = load_generator(checkpoint, device)
    model.eval()
    settings = replace(settings, path=meta.get("path", "linear"))
    latent_shape = _latent_shape(model, meta)
    num_classes = _num_classes(model, meta)
    family = (meta.get("model") or {}).get("family", "sit")
    jit = family == "jit"
    if jit:  # pixels in [-1, 1]: the identity "decoder", no latent normalisation
        bias = torch.zeros(latent_shape[0], dtype=torch.float64)
        scale = torch.ones(latent_shape[0], dtype=torch.float64)
        decode: Callable[[torch.Tensor], torch.Tensor] = _identity
        try:
            jit_settings = settings.jit(meta.get("objective") or {})
        except ValueError as exc:
            raise SystemExit(f"sample: {checkpoint}: {exc}") from None
    elif "autoencoder" in meta:  # REPA-E: the checkpoint's tuned decoder and its EMA BatchNorm statistics
        from repabench.end_to_end import tuned_decoder

        bias = torch.tensor(meta["latent_stats"]["bias"], dtype=torch.float64)
        scale = torch.tensor(meta["latent_stats"]["scale"], dtype=torch.float64)
        decode = tuned_decoder(meta["autoencoder"]).to(device).decode
        latent_stats = autoencoder_path = autoencoder_kind = None  # the checkpoint holds both
    else:
        mismatch = family_mode_mismatch(family, settings.mode)
        if mismatch:
            raise SystemExit(f"sample: {checkpoint} is {mismatch}")
        if latent_stats is None or autoencoder_path is None or autoencoder_kind is None:
            raise SystemExit("sample: a SiT checkpoint needs --latent-stats, --autoencoder-kind and --autoencoder")
        bias, scale = load_latent_stats(latent_stats, channels=latent_shape[0])
        _check_latent_stats(meta, bias, scale, latent_stats)
        autoencoder = load_autoencoder(autoencoder_kind, autoencoder_path)  # verifies fetched weights itself
        if hasattr(autoencoder, "to"):
            autoencoder = autoencoder.to(device)
        decode = autoencoder.decode

    precision = config.precision
    if precision == "bf16" and device.type != "cuda":
        log.warning("bf16 autocast requested on %s; sampling in fp32 (CPU bf16 autocast is several times slower "
                    "and does not reproduce GPU bf16 numerics anyway)", device)
        precision = "fp32"
    generation = SamplingPlan(settings, int(config.n_samples), int(config.seed), config.labels,
                            precision, int(config.shard_size), num_classes, latent_shape)
    weights = {"checkpoint": _file_identity(checkpoint)}
    if autoencoder_path is not None:
        weights.update(latent_stats=_file_identity(latent_stats),
                       autoencoder={"kind": autoencoder_kind, **_file_identity(autoencoder_path)})
    key = generation.key(weights)
    velocity = _compiled(model, config.compile)
    integrate = None
    if jit or family == "meanflow":
        from repabench.jit import jit_sample
        from repabench.meanflow import meanflow_sample

        def autocast(device: torch.device) -> Any:
            return (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                    if generation.precision == "bf16" else contextlib.nullcontext())

        def integrate(x1: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with autocast(x1.device):
                if jit:
                    return jit_sample(velocity, x1, y, jit_settings, num_classes).float()
                return meanflow_sample(velocity, x1.float(), y, int(settings.steps), float(settings.cfg_scale),
                                       num_classes).double()
    out_dir = Path(out_dir)
    manifest = out_dir / "manifest.json"
    if rank == 0 and manifest.exists():
        manifest.unlink()  # stale until every shard of this generation is verified again
    started = time.perf_counter()
    generated = generate_shards(out_dir, velocity, decode, generation, key, bias, scale, device,
                                int(config.batch_size), rank, world, integrate=integrate)
    elapsed = time.perf_counter() - started
    _barrier(world)
    if rank == 0:
        run = dict(meta.get("run") or {})
        step = meta.get("step")
        write_manifest(out_dir, generation, key, {
            "sampler_name": sampler_name,
            "run": {"model": run.get("model"), "encoder": run.get("encoder"), "method": run.get("method"),
                    "step": step, "sampler": sampler_name},
            "precision_requested": config.precision,
            "batch_size": int(config.batch_size),
            "world_size": world,
            "weights": weights,
            "provenance": provenance("sample", recorded_params,
                                     [p for p in (checkpoint, latent_stats, autoencoder_path) if p is not None],
                                     device, seed=generation.seed, precision=generation.precision,
                                     tf32=device.type == "cuda",
                                     rank0_generated_shards=len(generated), rank0_seconds=round(elapsed, 3)),
        })
        log.info("wrote %s (%d samples)", manifest, generation.n_samples)
    _barrier(world)
    return manifest


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _latent_shape(model: Any, meta: Mapping[str, Any]) -> tuple[int, int, int]:
    kwargs = dict((meta.get("model") or {}).get("kwargs") or {})
    channels = getattr(model, "in_channels", None) or kwargs.get("in_channels", 4)
    size = getattr(model, "input_size", None) or kwargs.get("input_size")
    if size is None:
        raise SystemExit("cannot tell the latent size from the checkpoint (model.kwargs.input_size is missing)")
    return int(channels), int(size), int(size)


def _num_classes(model: Any, meta: Mapping[str, Any]) -> int:
    kwargs = dict((meta.get("model") or {}).get("kwargs") or {})
    value = getattr(model, "num_classes", None) or kwargs.get("num_classes")
    if value is None:
        raise SystemExit("cannot tell num_classes from the checkpoint (model.kwargs.num_classes is missing)")
    return int(value)


def _check_latent_stats(meta: Mapping[str, Any], bias: torch.Tensor, scale: torch.Tensor, path: str) -> None:
    trained = meta.get("latent_stats")
    if not isinstance(trained, Mapping) or "bias" not in trained or "scale" not in trained:
        return
    trained_bias = torch.as_tensor(trained["bias"], dtype=torch.float64).flatten()
    trained_scale = torch.as_tensor(trained["scale"], dtype=torch.float64).flatten()
    if (trained_bias.shape != bias.shape or not torch.allclose(trained_bias, bias, rtol=1e-5, atol=1e-7)
            or not torch.allclose(trained_scale, scale, rtol=1e-5, atol=1e-7)):
        raise SystemExit(f"{path} differs from the latent statistics the checkpoint was trained with; "
                         "pass the stats file of the training run")


def _compiled(model: torch.nn.Module, compile_model: bool) -> Velocity:
    if not compile_model:
        return model
    return torch.compile(model, dynamic=False)


def export_npz_main(argv: list[str]) -> int:
    parser = stage_parser("export_npz", "Export sample shards to ADM's .npz layout (arr_0 uint8 NHWC, arr_1 labels).")
    parser.add_argument("--manifest", required=True, help="results/samples/.../manifest.json")
    parser.add_argument("--out", required=True, help="output .npz")
    args, _, _, _ = parse_stage(parser, argv)
    path = export_npz(args.manifest, args.out)
    log.info("wrote %s", path)
    return 0
