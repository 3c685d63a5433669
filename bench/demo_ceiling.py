"""The best FID the demo's generator could reach: real images and their autoencoder reconstructions, scored
exactly as the demo scores generated samples (ADM Inception pool3, N images against the held-out reference).

    make demo                                                     # once, for the images and the reference
    .venv/bin/python bench/demo_ceiling.py --results results --weights resources/weights/inception-2015-12-05-fid-helper.pt

Prints, for --n training images (default 80, the demo's sample count): the FID of the real images (the floor that
N samples allow), and of their reconstructions through PCA autoencoders of each --channels count, fitted on the
demo's training images as the `vae` stage fits them. A generator cannot score below the reconstruction FID of its
autoencoder, so the gap between the untrained baseline and that figure is all the room a demo's "learning is
visible" comparison has. Runs on the CPU in the project's .venv (it imports repabench); numbers also go to --json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from repabench.adm.features import extract
from repabench.adm.metrics import Statistics, frechet_distance, statistics
from repabench.adm.stages import _model, read_reference
from repabench.atomic import atomic_path
from repabench.sample import to_uint8
from repabench.vae import PCAAutoencoder


class ArraySource:
    """An in-memory image array with the interface `extract` reads (count, batches)."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images
        self.count = len(images)

    def batches(self, size: int):
        for start in range(0, self.count, size):
            yield self.images[start:start + size]


def reconstruct(autoencoder: PCAAutoencoder, images: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2)
    z = autoencoder.encode_moments(x)[:, :autoencoder.channels]
    return to_uint8(autoencoder.decode(z))  # quantised as generated samples are


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--weights", type=Path, default=Path("resources/weights/inception-2015-12-05-fid-helper.pt"))
    parser.add_argument("--reference", default="heldout")
    parser.add_argument("--n", type=int, default=80)
    parser.add_argument("--channels", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    train_images = np.load(args.results / "data/train/images.npy")
    if len(train_images) < args.n:
        raise SystemExit(f"--n {args.n} exceeds the {len(train_images)} training images under {args.results}")
    reference, _ = read_reference(args.results / f"reference/{args.reference}.npz")
    ref = Statistics(reference["mu"], reference["sigma"])
    model = _model(str(args.weights), "cpu")

    def fid(images: np.ndarray) -> float:
        feats = extract(model, ArraySource(images), 50, "cpu", want_spatial=False, want_logits=False)
        return float(frechet_distance(statistics(feats.pool.astype(np.float64)), ref))

    shown = train_images[:args.n]
    rows = [{"images": f"real (first {args.n} training images)", "channels": None, "fid": fid(shown)}]
    for channels in args.channels:
        autoencoder = PCAAutoencoder.fit(train_images, channels=channels)
        rows.append({"images": "PCA reconstruction", "channels": channels, "fid": fid(reconstruct(autoencoder, shown))})

    print(f"FID of {args.n} images vs the {args.reference} reference (ADM Inception pool3)")
    for row in rows:
        label = row["images"] + (f", {row['channels']} channels" if row["channels"] else "")
        print(f"  {label:45s} {row['fid']:8.1f}")
    if args.json:
        with atomic_path(args.json) as tmp:
            Path(tmp).write_text(json.dumps({"n": args.n, "reference": args.reference, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
