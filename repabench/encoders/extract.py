"""Stage `extract_features`: patch tokens of one encoder over an image store -> a feature store.

Output store: `tokens` [N, grid*grid, D] (float16 by default), `labels` [N], `masks` copied when the image
store has them; the manifest records the encoder, its preprocessing, weight checksums and provenance.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from repabench.atomic import read_json
from repabench.sections import config_section
from repabench.stage import parse_stage, stage_parser
from repabench.provenance import provenance
from repabench.store import Store, StoreWriter
from repabench.weights import sidecar

log = logging.getLogger("repabench.encoders")

SIT_PIXELS_PER_TOKEN = 16  # VAE f8 x SiT patch 2


def _weight_checksums(files: list[Path]) -> dict[str, str | None]:
    sums = {}
    for file in files:
        record = sidecar(file)
        sums[file.name] = read_json(record).get("sha256") if record.is_file() else None
    return sums


@config_section("features")
class FeaturesConfig:
    """The `features` section: token grid (None = the SiT token grid of the images), batch size, stored dtype."""

    grid: int | None
    batch_size: int
    dtype: str


def extract_features_main(argv: list[str]) -> int:
    parser = stage_parser("extract_features", "Patch tokens of one encoder over an image store.", device=True)
    parser.add_argument("--images", required=True, help="image store directory (images uint8 [N,H,W,3], labels)")
    parser.add_argument("--out", required=True, help="feature store directory to write")
    parser.add_argument("--encoder", required=True, help="encoder string (see repabench.encoders.known_encoders)")
    parser.add_argument("--weights-dir", default="resources/weights")
    parser.add_argument("--pooled-only", action="store_true",
                        help="store only the mean-pooled tokens [N, D] (the linear probe's input; ImageNet-train "
                             "tokens would take hundreds of GB)")
    args, config, device, _ = parse_stage(parser, argv, {"features": FeaturesConfig})
    extract_features(args.images, args.out, args.encoder, args.weights_dir, config.features, device,
                     pooled_only=args.pooled_only)
    return 0


def extract_features(images_dir: str | Path, out: str | Path, encoder_name: str, weights_dir: str | Path,
                     features: FeaturesConfig, device, pooled_only: bool = False) -> Path:
    """Patch tokens (and their means) of one encoder over an image store, written as a feature store."""
    import torch
    from tqdm import tqdm

    from repabench.encoders import build_encoder, validate_encoder_name, weight_names
    from repabench.encoders.base import pool_tokens

    try:
        validate_encoder_name(encoder_name)
    except ValueError as exc:
        raise SystemExit(f"--encoder: {exc}") from None
    store = Store(images_dir, verify=True)
    if "images" not in store or "labels" not in store:
        raise SystemExit(f"{images_dir} is not an image store (needs `images` and `labels`, has {store.names})")
    images = store["images"]
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise SystemExit(f"{images_dir}: `images` must be uint8 [N,H,W,3], got {images.dtype} {images.shape}")
    n, height, width = images.shape[:3]
    if height != width:
        raise SystemExit(f"{images_dir}: images are {height}x{width}; the token grid needs square images")
    grid = features.grid or height // SIT_PIXELS_PER_TOKEN
    if grid < 1:
        raise SystemExit(f"grid {grid} < 1 for {height}-px images; set features.grid")
    batch_size, dtype = features.batch_size, features.dtype

    weight_files = [Path(weights_dir) / name for name in weight_names(encoder_name)]
    encoder = build_encoder(encoder_name, weights_dir, device=device, grid=grid)
    log.info("encoder %s (pretrained=%s, D=%d) on %s, grid %d, %d images, batch %d", encoder_name,
             encoder.pretrained, encoder.embed_dim, device, grid, n, batch_size)

    tokens_shape = (n, grid * grid, encoder.embed_dim)
    array_shapes = {"pooled": ((n, encoder.embed_dim), np.float32), "labels": ((n,), np.int64)}
    if not pooled_only:
        array_shapes["tokens"] = (tokens_shape, np.dtype(dtype))
    if "masks" in store:
        array_shapes["masks"] = (store["masks"].shape, store["masks"].dtype)
    started = time.time()
    with StoreWriter(out, array_shapes) as writer, torch.inference_mode():
        for start in tqdm(range(0, n, batch_size), desc=f"extract {encoder_name}", unit="batch"):
            stop = min(start + batch_size, n)
            batch = torch.from_numpy(np.array(images[start:stop])).permute(0, 3, 1, 2).to(device)
            tokens = encoder(batch, grid=grid).float()
            writer["pooled"][start:stop] = pool_tokens(tokens).cpu().numpy()
            if not pooled_only:
                writer["tokens"][start:stop] = tokens.cpu().numpy().astype(dtype)
        writer["labels"][:] = np.asarray(store["labels"], dtype=np.int64)
        if "masks" in store:
            writer["masks"][:] = store["masks"]
        elapsed = time.time() - started
        log.info("%d images in %.1f s (%.1f img/s)", n, elapsed, n / max(elapsed, 1e-9))
        meta = {
            "encoder": encoder.describe(),
            "grid": grid,
            "dtype": dtype,
            "resolution": height,
            "num_classes": store.meta("num_classes"),
            "class_names": store.meta("class_names"),
            "masks": store.meta("masks"),
            "images_per_second": n / max(elapsed, 1e-9),
            "provenance": provenance("extract_features", {"features": {"grid": grid, "batch_size": batch_size,
                                                                       "dtype": dtype}, "encoder": encoder_name},
                                     inputs=[images_dir, *weight_files], device=device,
                                     weights=_weight_checksums(weight_files),
                                     preprocessing=encoder.describe()["preprocessing"]),
        }
        writer.commit(meta)
    return Path(out)
