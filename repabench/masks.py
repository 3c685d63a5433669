"""Foreground masks of ImageNet val images from the ImageNet-S segmentation archives (LUSSeg/ImageNet-S).

Layout (docs/upstream-facts.md §7.2): the release
`ImageNetS{50,300,919}-<md5>.zip` holds `ImageNetS<k>/validation-segmentation/<synset>/<val stem>.png`, one RGB PNG per
annotated val image (752 / 4,097 / 12,419 images), class id = R + 256 * G; 0 is "other" (background) and 1000 the
ignored part. Foreground here = any class id other than 0 and 1000.

Masks are paired with the val images by file stem (`ILSVRC2012_val_00024327`), not by folder: ImageNet-S919 merges a
few synsets, so a mask can sit under another synset's folder than its image. The archive is read in place. The
releases are entries of `repabench.weight_catalog` (fetched by `fetch_weights`, checked against their MD5).
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np
from PIL import Image

from repabench.weight_catalog import WEIGHTS, WeightFile

BACKGROUND_ID, IGNORED_ID = 0, 1000
MASK_ARCHIVES: dict[str, WeightFile] = {w.extra["mask_source"]: w for w in WEIGHTS.values() if "mask_source" in w.extra}


def archive_name(source: str) -> str:
    if source not in MASK_ARCHIVES:
        raise ValueError(f"unknown mask source {source!r}; known: {', '.join(MASK_ARCHIVES)}")
    return MASK_ARCHIVES[source].name


def foreground(segmentation: Image.Image) -> np.ndarray:
    """uint8 [H, W], 1 where an ImageNet-S segmentation PNG (id = R + 256 G) marks a class (not 0, not 1000)."""
    rgb = np.asarray(segmentation.convert("RGB"), dtype=np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1]
    return ((ids != BACKGROUND_ID) & (ids != IGNORED_ID)).astype(np.uint8)


@dataclass(frozen=True)
class MaskPairing:
    """Val images that have a mask (indices into the image list, ascending) and their archive members."""

    kept: np.ndarray
    members: list[str]
    n_images: int
    n_masks: int

    def describe(self, source: str) -> dict:
        return {"source": source, "pairing": "by file stem", "n_val_images": self.n_images,
                "n_masks_in_archive": self.n_masks, "n_paired": int(self.kept.size),
                "n_masks_without_image": self.n_masks - int(self.kept.size)}


def pair_with_archive(files: Sequence[Path], archive: str | os.PathLike, source: str) -> MaskPairing:
    """Pair image files with the archive's validation masks by stem; images without a mask are left out."""
    folder = MASK_ARCHIVES[source].extra["folder"]
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.startswith(folder + "/") and n.lower().endswith(".png")]
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{archive} is not a readable zip ({exc}); delete it and fetch it again") from None
    if not names:
        raise ValueError(f"{archive} has no masks under {folder}/; is it the {source} archive of LUSSeg/ImageNet-S?")
    by_stem: dict[str, str] = {}
    for name in names:
        stem = PurePosixPath(name).stem
        if stem in by_stem:
            raise ValueError(f"{archive}: two masks for {stem} ({by_stem[stem]}, {name}); "
                             "the archive is not the release")
        by_stem[stem] = name
    kept = [i for i, f in enumerate(files) if Path(f).stem in by_stem]
    if not kept:
        raise ValueError(f"none of the {len(files)} images has a mask in {archive} (paired by file stem, e.g. "
                         f"{PurePosixPath(names[0]).stem}); point data.root/splits.heldout at ImageNet val")
    return MaskPairing(np.asarray(kept, dtype=np.int64), [by_stem[Path(files[i]).stem] for i in kept],
                       len(files), len(names))


class ArchiveMasks:
    """Reads the paired masks from the zip as 0/255 greyscale images (one open handle per thread)."""

    def __init__(self, archive: str | os.PathLike, members: Sequence[str]):
        import threading

        self.archive, self.members, self._local = archive, list(members), threading.local()

    def __call__(self, i: int) -> Image.Image:
        if not hasattr(self._local, "zip"):
            self._local.zip = zipfile.ZipFile(self.archive)
        with Image.open(io.BytesIO(self._local.zip.read(self.members[i]))) as png:
            return Image.fromarray(foreground(png) * 255)
