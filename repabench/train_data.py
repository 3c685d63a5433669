"""What a training step reads: the latent statistics, the step-indexed batches of the image and latent stores,
and the content identity of those inputs (part of a run's state hash)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repabench.atomic import read_json
from repabench.store import Store


@dataclass
class LatentStats:
    bias: list[float]
    scale: list[float]
    mode: str

    @classmethod
    def load(cls, path: str | os.PathLike, channels: int) -> "LatentStats":
        raw = read_json(path)
        try:
            stats = cls(bias=[float(b) for b in raw["bias"]], scale=[float(s) for s in raw["scale"]],
                        mode=str(raw.get("mode", "data")))
        except KeyError as exc:
            raise ValueError(f"{path}: latent stats need 'bias' and 'scale' lists ({exc} missing)") from exc
        if len(stats.bias) != channels or len(stats.scale) != channels:
            raise ValueError(f"{path}: {len(stats.bias)} bias / {len(stats.scale)} scale values for {channels} "
                             "latent channels; rerun latent_stats on this latent store")
        return stats

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class StepBatches(torch.utils.data.Dataset):
    """Item `step` = this rank's share of the global batch of that step.

    The order is a function of (seed, epoch) only: epoch e visits a permutation drawn from a generator seeded
    with (seed, e), in chunks of global_batch (drop_last). So the data position is the step itself, and a
    resumed run reads exactly the batches it would have read.
    """

    def __init__(self, images: Path, latents: Path | None, seed: int, global_batch: int, rank: int, world: int,
                 need_images: bool):
        self.images_path, self.latents_path = images, latents
        self.seed, self.global_batch, self.rank, self.world = seed, global_batch, rank, world
        self.need_images = need_images
        self.count = Store(latents if latents is not None else images).count  # no latents: a pixel (JiT) run
        self.steps_per_epoch = self.count // global_batch
        self.per_rank = global_batch // world
        self._stores: tuple[Store, Store] | None = None
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:  # only used through an explicit sampler
        return 1 << 62

    def position(self, step: int) -> dict[str, int]:
        return {"epoch": step // self.steps_per_epoch, "batch_in_epoch": step % self.steps_per_epoch}

    def indices(self, step: int) -> np.ndarray:
        epoch, within = divmod(step, self.steps_per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.count))
        chunk = self._perm[1][within * self.global_batch:(within + 1) * self.global_batch]
        return np.sort(chunk[self.rank * self.per_rank:(self.rank + 1) * self.per_rank])

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        if self._stores is None:  # opened lazily: one memory map per data-loader worker
            self._stores = (Store(self.images_path),
                            Store(self.latents_path) if self.latents_path is not None else None)
        images, latents = self._stores
        idx = self.indices(step)
        if latents is None:
            return {"index": torch.from_numpy(idx.astype(np.int64)),
                    "label": torch.from_numpy(np.asarray(images["labels"][idx], dtype=np.int64)),
                    "image": _nchw(images["images"][idx])}
        batch = {"index": torch.from_numpy(idx.astype(np.int64)),
                 "moments": torch.from_numpy(np.ascontiguousarray(latents["moments"][idx], dtype=np.float32)),
                 "label": torch.from_numpy(np.asarray(latents["labels"][idx], dtype=np.int64))}
        if self.need_images:
            batch["image"] = torch.from_numpy(np.ascontiguousarray(images["images"][idx])).permute(0, 3, 1, 2).contiguous()
        return batch


def _nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def check_images(images: Path) -> Store:
    """The image store of a pixel-space (JiT) run."""
    image_store = Store(images, verify=True)
    if "images" not in image_store or "labels" not in image_store:
        raise ValueError(f"{images} is not an image store (needs 'images' and 'labels'); run prepare_images")
    return image_store


def check_inputs(images: Path, latents: Path) -> tuple[Store, Store]:
    image_store, latent_store = Store(images, verify=True), Store(latents, verify=True)
    if "moments" not in latent_store or "labels" not in latent_store:
        raise ValueError(f"{latents} is not a latent store (needs 'moments' and 'labels'); run cache_latents")
    if "images" not in image_store:
        raise ValueError(f"{images} is not an image store (needs 'images'); run prepare_images")
    if image_store.count != latent_store.count:
        raise ValueError(f"{images} has {image_store.count} images but {latents} has {latent_store.count} latents; "
                         "they are paired by index, rerun cache_latents on this image store")
    if not np.array_equal(np.asarray(image_store["labels"]), np.asarray(latent_store["labels"])):
        raise ValueError(f"labels of {images} and {latents} differ; rerun cache_latents on this image store")
    return image_store, latent_store


def checksums(store: Store) -> dict[str, str]:
    return {name: entry.get("sha256") for name, entry in sorted(store.manifest["arrays"].items())}


def data_identity(images: Store, latents: Store, stats: LatentStats) -> dict[str, Any]:
    """Content identity of the inputs (array checksums from the manifests), independent of their paths."""
    return {"images": checksums(images), "latents": checksums(latents), "latent_stats": stats.as_dict()}
