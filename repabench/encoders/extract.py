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
from repabench.params import load_params, resolve_device, setup, stage_parser
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


def extract_features_main(argv: list[str]) -> int:
    parser = stage_parser("extract_features", "Patch tokens of one encoder over an image store.")
    parser.add_argument("--images", required=True, help="image store directory (images uint8 [N,H,W,3], labels)")
    parser.add_argument("--out", required=True, help="feature store directory to write")
    parser.add_argument("--encoder", required=True, help="encoder string (see repabench.encoders.known_encoders)")
    parser.add_argument("--weights-dir", default="resources/weights")
    parser.add_argument("--grid", type=int, default=None, help="token grid side (default: features.grid, else "
                                                              "image resolution / 16, the SiT token grid)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--dtype", choices=["float16", "float32"], default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--pooled-only", action="store_true",
                        help="store only the mean-pooled tokens [N, D] (the linear probe's input; ImageNet-train "
                             "tokens would take hundreds of GB)")
    parser.add_argument("--params", default=None, help="JSON: the `features` config section (flags win)")
    args = parser.parse_args(argv)
    setup(args)

    import torch
    from tqdm import tqdm

    from repabench.encoders import build_encoder, validate_encoder_name, weight_names
    from repabench.encoders.base import pool_tokens

    params = load_params(args.params)
    section = params.get("features", params)
    try:
        validate_encoder_name(args.encoder)
    except ValueError as exc:
        raise SystemExit(f"--encoder: {exc}") from None
    store = Store(args.images, verify=True)
    if "images" not in store or "labels" not in store:
        raise SystemExit(f"{args.images} is not an image store (needs `images` and `labels`, has {store.names})")
    images = store["images"]
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise SystemExit(f"{args.images}: `images` must be uint8 [N,H,W,3], got {images.dtype} {images.shape}")
    n, height, width = images.shape[:3]
    if height != width:
        raise SystemExit(f"{args.images}: images are {height}x{width}; the token grid needs square images")
    grid = args.grid or section.get("grid") or height // SIT_PIXELS_PER_TOKEN
    if grid < 1:
        raise SystemExit(f"grid {grid} < 1 for {height}-px images; pass --grid")
    batch_size = args.batch_size or section.get("batch_size", 64)
    dtype = args.dtype or section.get("dtype", "float16")
    device = resolve_device(args.device)

    weight_files = [Path(args.weights_dir) / name for name in weight_names(args.encoder)]
    encoder = build_encoder(args.encoder, args.weights_dir, device=device, grid=grid)
    log.info("encoder %s (pretrained=%s, D=%d) on %s, grid %d, %d images, batch %d", args.encoder,
             encoder.pretrained, encoder.embed_dim, device, grid, n, batch_size)

    tokens_shape = (n, grid * grid, encoder.embed_dim)
    specs = {"pooled": ((n, encoder.embed_dim), np.float32), "labels": ((n,), np.int64)}
    if not args.pooled_only:
        specs["tokens"] = (tokens_shape, np.dtype(dtype))
    if "masks" in store:
        specs["masks"] = (store["masks"].shape, store["masks"].dtype)
    started = time.time()
    with StoreWriter(args.out, specs) as writer, torch.inference_mode():
        for start in tqdm(range(0, n, batch_size), desc=f"extract {args.encoder}", unit="batch"):
            stop = min(start + batch_size, n)
            batch = torch.from_numpy(np.array(images[start:stop])).permute(0, 3, 1, 2).to(device)
            tokens = encoder(batch, grid=grid).float()
            writer["pooled"][start:stop] = pool_tokens(tokens).cpu().numpy()
            if not args.pooled_only:
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
                                                                       "dtype": dtype}, "encoder": args.encoder},
                                     inputs=[args.images, *weight_files], device=device,
                                     weights=_weight_checksums(weight_files),
                                     preprocessing=encoder.describe()["preprocessing"]),
        }
        writer.commit(meta)
    return 0
