"""Importers: the authors' published files (upstream iREPA layouts) -> the workflow's own files.

Every downstream rule then runs unchanged on the imported files. Layouts (docs/upstream-facts.md, checked against
`End2End-Diffusion/iREPA` commit 99ad4ac):

* checkpoint (§2.7; `ldm/train.py`): a pickled dict `{"model", "ema", "opt", "args": argparse.Namespace, "steps"}`;
  the SiT keys follow `ldm/models/sit.py` (`x_embedder.proj.*` is timm's PatchEmbed, projectors under
  `projectors.<i>.projection_layer.*`, or `projectors.<i>.*` in the old layout). A state dict saved from a compiled
  or DDP-wrapped model carries `_orig_mod.` / `module.` prefixes; they are stripped. Generation uses `ema` only
  (`ldm/generate.py`).
* latent statistics (§3.3): `pretrained_models/sdvae-ft-mse-f8d4-latents-stats.pt`, keys `latents_scale` and
  `latents_bias` (4 values each, any shape); `z = (x - bias) * scale`, the same convention as our stats.json.
* latents (§3.4): the REPA per-image layout `NNNNN/img-mean-std-NNNNNNNN.npy` ([2C, h, w] float32 moments) plus
  `dataset.json` (`{"labels": [[relative image path, class], ...]}`), files in sorted order.
* features and masks (§7.1; `metrics/spatial_metrics_comparison.py`): `features/<encoder>.pt` a tensor
  `[N, T, D]`; `masks/*.png` sorted by name, each resized with PIL `.resize((256, 256))` (Pillow's default filter);
  `stats/fid/<eval>.csv` (columns `Steps`, `FID`, ...) and `stats/lp/<encoder>-none-mean/metrics.json`
  (`best_val_acc`, percent).

Upstream pairs features and masks by truncating one to the other's length. Here the masks are stored with the
features, paired by index, and the spatial-metrics stage filters both with the same kept indices: a feature file
must have one row per mask image, or one row per image that passes upstream's 64/256 patch filter (features
extracted for the already-filtered list). Any other count is an error, never a truncation.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from repabench.atomic import atomic_path, read_json, write_json
from repabench.provenance import provenance, sha256_file
from repabench.stage import parse_stage, stage_parser

log = logging.getLogger("repabench.upstream")

WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile, DDP/accelerate wrappers
KEY_RENAMES = (("x_embedder.proj.", "x_embedder."),)  # timm PatchEmbed -> our bare Conv2d
PROJECTOR_PREFIX = "projectors."
MASK_SIZE = 256  # upstream resizes every mask to 256x256 before pooling
MASK_MIN_PATCHES = 64  # of 256: upstream keeps images with >= 64 foreground and >= 64 background patches
UPSTREAM_SPNORM = {"none": "none", "zscore": "zscore"}  # iREPA:ldm/utils.py ALL_SPNORM_METHODS


class UpstreamError(RuntimeError):
    """A published file that is missing, truncated, of another layout, or for another run than expected."""


def _refetch(path: Path, hint: str | None) -> str:
    return f"delete {path} and fetch it again" + (f" ({hint})" if hint else "")


# --------------------------------------------------------------------------------------------------------------
# checkpoints


def load_upstream_checkpoint(path: str | os.PathLike, hint: str | None = None) -> dict[str, Any]:
    """The upstream checkpoint dict; `args` (an argparse.Namespace) is allowed without unpickling arbitrary code."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UpstreamError(f"published checkpoint {path} is missing; {hint or 'run fetch_published'}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, foreign classes
        raise UpstreamError(f"{path} cannot be read as a torch checkpoint ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200]}); it is truncated or corrupt: "
                            f"{_refetch(path, hint)}") from None
    if not isinstance(ckpt, dict) or "ema" not in ckpt or "args" not in ckpt:
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise UpstreamError(f"{path} is not an upstream iREPA/REPA training checkpoint (needs 'ema' and 'args', "
                            f"has {keys})")
    return ckpt


def upstream_args(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    args = ckpt["args"]
    args = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    return json.loads(json.dumps(args, default=str))  # plain JSON values (our checkpoints load weights_only)


def strip_wrappers(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def convert_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """Upstream SiT state dict -> ours: wrapper prefixes stripped, PatchEmbed renamed, projectors dropped."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        key = strip_wrappers(key)
        if key.startswith(PROJECTOR_PREFIX):
            continue
        for old, new in KEY_RENAMES:
            if key.startswith(old):
                key = new + key[len(old):]
        if key in out:
            raise UpstreamError(f"two upstream keys map to {key!r} (a state dict with and without wrapper prefixes?)")
        out[key] = value
    return out


def encoders_of(args: Mapping[str, Any]) -> list[str]:
    return [e for e in str(args.get("enc_type") or "").split(",") if e]


def check_run(args: Mapping[str, Any], path: Path, *, model: str, encoder: str,
              method: Mapping[str, Any] | None) -> None:
    """Refuse a checkpoint of another model, encoder or method than the one it is imported for."""
    if args.get("model") != model:
        raise UpstreamError(f"{path} is a {args.get('model')!r} checkpoint, but it is imported as {model!r}; "
                            "fix published.checkpoints or models")
    encoders = encoders_of(args)
    if encoders != encoder.split(","):
        raise UpstreamError(f"{path} was trained with encoder {','.join(encoders) or '(none)'!r} (args.enc_type), "
                            f"but it is imported for encoder {encoder!r}: wrong file in published.checkpoints")
    if method:
        projector = args.get("projection_layer_type", "mlp")
        spnorm = UPSTREAM_SPNORM.get(str(args.get("spnorm_method", "none")), str(args.get("spnorm_method")))
        want = (method.get("projector", "mlp"), method.get("spatial_norm", "none"))
        if (projector, spnorm) != want:
            raise UpstreamError(f"{path} was trained with projector {projector!r} and spatial norm {spnorm!r}, "
                                f"the method it is imported as has {want[0]!r} / {want[1]!r}")


def import_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, model: str, encoder: str, method_name: str,
                      latent_stats: Mapping[str, Any], method: Mapping[str, Any] | None = None,
                      step: int | None = None, hint: str | None = None) -> dict[str, Any]:
    """Write our generator checkpoint (the `ema` weights, strict load) from an upstream one; returns its metadata."""
    import torch

    from repabench.sit import build_sit, generator_kwargs
    from repabench.sizes import model_slug

    src = Path(src)
    ckpt = load_upstream_checkpoint(src, hint)
    args = upstream_args(ckpt)
    check_run(args, src, model=model, encoder=encoder, method=method)
    steps = int(ckpt.get("steps", -1))
    if step is not None and steps != step:
        raise UpstreamError(f"{src} holds step {steps}, expected {step}; fix published.checkpoints")
    path = str(args.get("path_type", "linear"))
    if path not in ("linear", "cosine"):
        raise UpstreamError(f"{src} was trained on path_type {path!r}; only linear and cosine exist upstream")
    state = convert_state_dict(ckpt["ema"])
    resolution = int(args.get("resolution", 256))
    class_dropout = float(args.get("cfg_prob", 0.1))
    net = build_sit(model, input_size=resolution // 8, in_channels=4, num_classes=int(args.get("num_classes", 1000)),
                    class_dropout_prob=class_dropout, qk_norm=bool(args.get("qk_norm", False)))
    result = net.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise UpstreamError(f"{src}: the ema weights do not fit {model} (missing {result.missing_keys[:5]}, "
                            f"unexpected {result.unexpected_keys[:5]}); an upstream layout this importer "
                            "does not know")
    ours = {k: v.detach().cpu().clone().contiguous() for k, v in net.state_dict().items()}
    source = {"path": str(src), "sha256": sha256_file(src), "steps": steps, "args": args,
              "layout": "iREPA ldm/train.py checkpoint (ema entry)"}
    meta = {
        "model": {"name": model, "kwargs": generator_kwargs(net, class_dropout)},
        "step": steps,
        "run": {"model": model_slug(model), "encoder": encoder, "method": method_name},
        "method": dict(method or {}),
        **({"path": path} if path != "linear" else {}),  # read by the sampler, as for our own checkpoints
        "latent_stats": dict(latent_stats),
        "upstream": source,
        "provenance": provenance("import_checkpoint", {"model": model, "encoder": encoder, "method": method_name},
                                 [src], "cpu", source="published", upstream_sha256=source["sha256"]),
    }
    with atomic_path(dst) as tmp:
        torch.save({"ema": ours, **meta}, tmp)
    return meta


# --------------------------------------------------------------------------------------------------------------
# latent statistics and latents


def import_latent_stats(src: str | os.PathLike, dst: str | os.PathLike, hint: str | None = None) -> dict[str, Any]:
    import torch

    src = Path(src)
    if not src.is_file():
        raise UpstreamError(f"published latent statistics {src} are missing; {hint or 'run fetch_published'}")
    try:
        raw = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UpstreamError(f"{src} cannot be read ({type(exc).__name__}); truncated or corrupt: "
                            f"{_refetch(src, hint)}") from None
    if not isinstance(raw, dict) or not {"latents_scale", "latents_bias"} <= set(raw):
        raise UpstreamError(f"{src} needs the keys latents_scale and latents_bias (docs/upstream-facts.md §3.3)")
    scale = torch.as_tensor(raw["latents_scale"], dtype=torch.float64).flatten()
    bias = torch.as_tensor(raw["latents_bias"], dtype=torch.float64).flatten()
    if scale.shape != bias.shape:
        raise UpstreamError(f"{src}: {scale.numel()} scale but {bias.numel()} bias values")
    stats = {"mode": "published", "bias": bias.tolist(), "scale": scale.tolist(),
             "source": {"path": str(src), "sha256": sha256_file(src)}}
    write_json(dst, stats)
    return stats


LATENT_FILE = re.compile(r"img-mean-std-(\d{8})\.npy$")


def import_latents(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """REPA per-image latent folder (`NNNNN/img-mean-std-NNNNNNNN.npy` + dataset.json) -> our latent store."""
    from repabench.store import StoreWriter

    src = Path(src)
    labels_file = src / "dataset.json"
    if not labels_file.is_file():
        raise UpstreamError(f"{labels_file} is missing (the upstream latent folder carries its labels there)")
    files = sorted(p for p in src.rglob("*.npy") if LATENT_FILE.search(p.name))
    if not files:
        raise UpstreamError(f"{src} has no img-mean-std-*.npy latents")
    labels_entries = read_json(labels_file).get("labels") or []
    if len(labels_entries) != len(files):
        raise UpstreamError(f"{src}: {len(files)} latent files but {len(labels_entries)} labels in dataset.json; "
                            "the folder is incomplete")
    labels = np.array([int(label) for _, label in sorted(labels_entries, key=lambda e: e[0])], dtype=np.int64)
    first = np.load(files[0], mmap_mode="r")
    if first.ndim != 3 or first.shape[0] % 2:
        raise UpstreamError(f"{files[0]}: moments must be [2C, h, w], got {first.shape}")
    with StoreWriter(dst, {"moments": ((len(files), *first.shape), np.float32),
                           "labels": ((len(files),), np.int64)}) as writer:
        for i, file in enumerate(files):
            try:
                array = np.load(file)
            except ValueError as exc:
                raise UpstreamError(f"{file} is truncated or not a .npy file ({exc}); fetch it again") from None
            if array.shape != first.shape:
                raise UpstreamError(f"{file}: shape {array.shape}, the others are {first.shape}")
            writer["moments"][i] = array
        writer["labels"][:] = labels
        return writer.commit({"source": {"path": str(src), "layout": "REPA vae-sd per-image .npy"},
                              "num_classes": int(labels.max()) + 1,
                              "provenance": provenance("import_latents", {}, [labels_file], "cpu")})


# --------------------------------------------------------------------------------------------------------------
# spatial-study features, masks and the authors' FID / LP numbers


def read_masks(directory: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Every `*.png` of the folder in sorted order, resized as upstream does, as uint8 [M, 256, 256]."""
    from PIL import Image

    directory = Path(directory)
    files = sorted(p for p in directory.glob("*.png"))
    if not files:
        raise UpstreamError(f"no mask files (*.png) in {directory}")
    masks = np.empty((len(files), MASK_SIZE, MASK_SIZE), dtype=np.uint8)
    for i, file in enumerate(files):
        try:
            with Image.open(file) as image:
                array = np.asarray(image.resize((MASK_SIZE, MASK_SIZE)))
        except OSError as exc:
            raise UpstreamError(f"mask {file} is unreadable ({exc}); fetch the mask folder again") from None
        if array.ndim == 3:  # an RGB(A) mask: foreground where any channel is set
            array = array.max(-1)
        masks[i] = (array > 0).astype(np.uint8)
    return masks, [f.name for f in files]


def upstream_kept(masks: np.ndarray) -> np.ndarray:
    """Indices upstream keeps: >= 64 foreground and >= 64 background 16x16 patches of the 256x256 mask."""
    from repabench.spatial import token_masks_from_pixels

    tokens = token_masks_from_pixels(masks, MASK_SIZE // 16)
    fg = tokens.sum(1)
    return np.flatnonzero((fg >= MASK_MIN_PATCHES) & (tokens.shape[1] - fg >= MASK_MIN_PATCHES))


def load_features(path: Path, hint: str | None = None) -> np.ndarray:
    import torch

    if not path.is_file():
        raise UpstreamError(f"published features {path} are missing; {hint or 'run fetch_published'}")
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UpstreamError(f"{path} cannot be read ({type(exc).__name__}); truncated or corrupt: "
                            f"{_refetch(path, hint)}") from None
    if not isinstance(value, torch.Tensor) or value.ndim != 3:
        raise UpstreamError(f"{path}: expected a tensor [N, T, D] (docs/upstream-facts.md §7.1), got "
                            f"{getattr(value, 'shape', type(value).__name__)}")
    if value.dtype == torch.bfloat16:
        value = value.float()
    return value.numpy()


def import_features(features: str | os.PathLike, masks_dir: str | os.PathLike | None, dst: str | os.PathLike, *,
                    encoder: str, hint: str | None = None) -> dict[str, Any]:
    """Upstream features [N, T, D] (+ masks) -> our feature store (tokens, pooled, masks paired by index)."""
    from repabench.encoders import encoder_spec
    from repabench.store import write_store

    features = Path(features)
    if features.stem != encoder:
        raise UpstreamError(f"{features} is named for encoder {features.stem!r}, not {encoder!r}")
    tokens = load_features(features, hint)
    n, t, d = tokens.shape
    side = int(round(t ** 0.5))
    if side * side != t:
        raise UpstreamError(f"{features}: {t} tokens per image is not a square grid")
    try:
        expected = encoder_spec(encoder).embed_dim
    except ValueError:
        expected = None
    if expected is not None and expected != d:
        raise UpstreamError(f"{features} has {d}-dim tokens but {encoder} has {expected}: features of another "
                            "encoder (wrong file in published.features?)")
    arrays: dict[str, np.ndarray] = {"tokens": tokens, "pooled": tokens.astype(np.float32).mean(1)}
    alignment = "no masks"
    n_masks = None
    if masks_dir is not None:
        masks, names = read_masks(masks_dir)
        n_masks = len(names)
        kept = upstream_kept(masks)
        if n == len(masks):
            alignment = "one feature row per mask image; the spatial stage filters both together"
        elif n == kept.size:
            masks = masks[kept]
            alignment = (f"features cover the {kept.size} mask images that pass upstream's filter "
                         f"(of {len(names)}); those masks are stored with them")
        else:
            raise UpstreamError(
                f"{features} has {n} rows, {masks_dir} has {len(names)} masks of which {kept.size} pass "
                "upstream's 64/256-patch filter: rows cannot be paired with masks (upstream would truncate "
                "silently; refused). Fetch the matching feature file and mask folder")
        arrays["masks"] = masks
    meta = {"encoder": {"name": encoder, "source": "published"}, "grid": side, "dtype": str(tokens.dtype),
            "upstream": {"features": str(features), "masks": None if masks_dir is None else str(masks_dir),
                         "n_rows": n, "n_masks": n_masks, "alignment": alignment},
            "provenance": provenance("import_features", {"encoder": encoder}, [features], "cpu",
                                     source="published")}
    write_store(dst, arrays, meta)
    return meta


def read_fid_csv(path: Path, step: int) -> dict[str, float]:
    import csv

    with path.open() as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("Steps") and int(float(r["Steps"])) == step]
    if len(rows) != 1:
        raise UpstreamError(f"{path}: {len(rows)} rows with Steps == {step}, expected exactly one")
    out = {}
    for key in ("FID", "sFID", "IS", "Precision", "Recall"):
        if rows[0].get(key) not in (None, ""):
            out[key] = float(rows[0][key])
    return out


def import_probe(src: str | os.PathLike, dst: str | os.PathLike, encoder: str) -> dict[str, Any]:
    """Upstream `stats/lp/<encoder>-none-mean/metrics.json` -> our probe JSON (the authors' accuracy)."""
    src = Path(src)
    if not src.is_file():
        raise UpstreamError(f"published linear-probe result {src} is missing; run fetch_published")
    data = read_json(src)
    if "best_val_acc" not in data:
        raise UpstreamError(f"{src} has no best_val_acc")
    result = {"encoder": encoder, "best_val_acc": float(data["best_val_acc"]), "source": "published",
              "upstream": {"path": str(src), "sha256": sha256_file(src)},
              "provenance": provenance("import_probe", {"encoder": encoder}, [src], "cpu", source="published",
                                       protocol="the authors' linear probe (upstream stats/lp, not recomputed)")}
    write_json(dst, result)
    return result


def paper_numbers(fid_files: Mapping[str, str | os.PathLike], lp_files: Mapping[str, str | os.PathLike],
                  step: int) -> dict[str, Any]:
    """The authors' own per-encoder numbers from their published stats files."""
    encoders: dict[str, dict[str, Any]] = {}
    for encoder, path in fid_files.items():
        encoders.setdefault(encoder, {}).update(read_fid_csv(Path(path), step), fid_file=str(path))
    for encoder, path in lp_files.items():
        data = read_json(path)
        encoders.setdefault(encoder, {}).update(LP=float(data["best_val_acc"]), lp_file=str(path))
    return {"step": step, "encoders": encoders}


# --------------------------------------------------------------------------------------------------------------
# stages


def _fail(exc: UpstreamError) -> SystemExit:
    return SystemExit(f"error: {exc}")


def _verified_then(sources: list[str | None], action):
    """Check each fetched source against its recorded checksum, then run `action`; errors end the stage."""
    from repabench.published_files import verified_published

    try:
        for source in sources:
            if source:
                verified_published(source)
        return action()
    except UpstreamError as exc:
        raise _fail(exc) from None


def import_checkpoint_main(argv: list[str]) -> int:
    parser = stage_parser("import_checkpoint", "upstream iREPA checkpoint (ema + args) -> our generator checkpoint",
                          required={"--source": "the published <step>.pt",
                                    "--latent-stats": "stats.json the checkpoint's latents use",
                                    "--model": None, "--encoder": None, "--method-name": None})
    parser.add_argument("--step", type=int, default=None, help="expected training step (args.steps)")
    parser.add_argument("--out", required=True)
    from repabench.align import Method

    args, config, _, _ = parse_stage(parser, argv, {"method": Method})
    from repabench.sizes import model_name

    model = args.model if "/" in args.model else model_name(args.model)
    meta = _verified_then([args.source], lambda: import_checkpoint(
        args.source, args.out, model=model, encoder=args.encoder, method_name=args.method_name,
        latent_stats=read_json(args.latent_stats), method=config.raw["method"], step=args.step))
    log.info("imported %s (step %d, %s) -> %s", args.source, meta["step"], meta["run"], args.out)
    return 0


def import_run_log_main(argv: list[str]) -> int:
    """The run's log.json for imported checkpoints (no training curve: the authors publish none)."""
    parser = stage_parser("import_run_log", "log.json of a published run (checkpoints and their sources)")
    parser.add_argument("--checkpoints", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    args, _, _, _ = parse_stage(parser, argv)
    import torch

    sources, run = [], {}
    for path in args.checkpoints:
        meta = torch.load(path, map_location="cpu", weights_only=True)
        run = meta["run"]
        sources.append({"checkpoint": path, "step": meta["step"], "upstream": meta.get("upstream", {}).get("path"),
                        "sha256": meta.get("upstream", {}).get("sha256")})
    write_json(args.out, {"run": run, "source": "published", "checkpoints": args.checkpoints, "entries": [],
                          "segments": [], "imported": sources,
                          "provenance": provenance("import_run_log", {}, args.checkpoints, "cpu", source="published")})
    return 0


def import_latent_stats_main(argv: list[str]) -> int:
    parser = stage_parser("import_latent_stats", "upstream sdvae latents-stats.pt -> our latent stats.json",
                          required={"--source": None, "--out": None})
    args, _, _, _ = parse_stage(parser, argv)
    _verified_then([args.source], lambda: import_latent_stats(args.source, args.out))
    return 0


def import_latents_main(argv: list[str]) -> int:
    parser = stage_parser("import_latents", "upstream per-image latent folder -> our latent store",
                          required={"--source": None, "--out": None})
    args, _, _, _ = parse_stage(parser, argv)
    _verified_then([], lambda: import_latents(args.source, args.out))
    return 0


def import_features_main(argv: list[str]) -> int:
    parser = stage_parser("import_features", "upstream features [N,T,D] + masks -> our feature store",
                          required={"--source": "features/<encoder>.pt"})
    parser.add_argument("--masks", default=None, help="the masks/ folder (PNG, sorted by name)")
    parser.add_argument("--encoder", required=True)
    parser.add_argument("--out", required=True)
    args, _, _, _ = parse_stage(parser, argv)
    meta = _verified_then([args.source, args.masks], lambda: import_features(
        args.source, args.masks, args.out, encoder=args.encoder))
    log.info("imported %s: %s", args.source, meta["upstream"]["alignment"])
    return 0


def import_probe_main(argv: list[str]) -> int:
    parser = stage_parser("import_probe", "upstream stats/lp/<encoder>-none-mean/metrics.json -> our probe JSON",
                          required={"--source": None, "--encoder": None, "--out": None})
    args, _, _, _ = parse_stage(parser, argv)
    _verified_then([args.source], lambda: import_probe(args.source, args.out, args.encoder))
    return 0


def paper_numbers_main(argv: list[str]) -> int:
    parser = stage_parser("paper_numbers", "the authors' per-encoder FID and LP from their published stats files")
    parser.add_argument("--fid", nargs="*", default=[], help="ENCODER=stats/fid/<eval>.csv")
    parser.add_argument("--lp", nargs="*", default=[], help="ENCODER=stats/lp/<encoder>-none-mean/metrics.json")
    parser.add_argument("--step", type=int, default=100_000)
    parser.add_argument("--out", required=True)
    args, _, _, _ = parse_stage(parser, argv)

    def pairs(items: list[str]) -> dict[str, str]:
        return dict(item.split("=", 1) for item in items)

    try:
        numbers = paper_numbers(pairs(args.fid), pairs(args.lp), args.step)
    except UpstreamError as exc:
        raise _fail(exc) from None
    numbers["provenance"] = provenance("paper_numbers", {"step": args.step},
                                       [*pairs(args.fid).values(), *pairs(args.lp).values()], "cpu")
    write_json(args.out, numbers)
    return 0
