"""Images: the ADM centre crop, ImageNet-style folders, and the embedded offline demo set.

Both sources produce the same image store (see `repabench.store`): `images` uint8 [N,H,W,3],
`labels` int64 [N], optionally `masks` uint8 [N,H,W] (1 = foreground), plus `class_names`.

The demo set pastes photographic Tux Paint cut-outs (Debian `tuxpaint-stamps-default`; label = the
stamp's category, mask = its alpha channel) onto crops of the photos and textures that ship in
scikit-image and matplotlib. Stamps are split between train and held-out, so held-out images show
objects never seen in training. Everything is a pure function of the seed.
"""

from __future__ import annotations

import importlib.util
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image

from repabench.sections import config_section
from repabench.stage import parse_stage, stage_parser
from repabench.provenance import provenance
from repabench.store import StoreWriter

TUXPAINT_STAMPS = Path(os.environ.get("REPABENCH_TUXPAINT", "/usr/share/tuxpaint/stamps"))
IMAGE_EXTENSIONS = {".jpeg", ".jpg", ".png", ".bmp", ".webp"}

# class name -> stamp folders (relative to the Tux Paint stamp root); cartoon sub-folders are skipped
DEMO_CLASSES: dict[str, tuple[str, ...]] = {
    "mammal": ("animals/mammals", "animals/marsupials"),
    "bird": ("animals/birds",),
    "insect": ("animals/insects",),
    "fish": ("animals/fish", "animals/shellfish"),
    "fruit": ("food/fruit",),
    "vegetable": ("food/vegetables",),
    "flower": ("plants/flowers",),
    "vehicle": ("vehicles",),
}
DEMO_BACKGROUNDS = (
    "skimage:astronaut.png", "skimage:brick.png", "skimage:chelsea.png", "skimage:coffee.png",
    "skimage:grass.png", "skimage:gravel.png", "skimage:hubble_deep_field.jpg", "skimage:rocket.jpg",
    "skimage:motorcycle_left.png", "skimage:ihc.png", "skimage:retina.jpg", "skimage:color.png",
    "matplotlib:mpl-data/sample_data/grace_hopper.jpg",
)


# ----------------------------------------------------------------------------------------------
# ADM centre crop


def center_crop_arr(image: Image.Image, size: int) -> np.ndarray:
    """ADM centre crop: halve with BOX while the short side >= 2*size, BICUBIC so the short side
    is `size` (each side rounded), then the central size x size window. Returns uint8 HWC RGB."""
    image = image.convert("RGB")
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
    arr = np.asarray(image)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return np.ascontiguousarray(arr[top:top + size, left:left + size])


# ----------------------------------------------------------------------------------------------
# ImageNet-style folder tree


def list_image_folder(root: str | os.PathLike, max_images: int | None = None) -> tuple[list[Path], list[int], list[str]]:
    """`root/<class>/*.<img>` with classes in sorted order (torchvision ImageFolder convention)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist; set data.root to the folder holding "
                                f"train/<synset>/*.JPEG (and the held-out split)")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise ValueError(f"{root} has no class sub-folders; expected {root}/<synset>/*.JPEG")
    files, labels = [], []
    for index, name in enumerate(classes):
        for file in sorted((root / name).rglob("*")):
            if file.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(file)
                labels.append(index)
    if not files:
        raise ValueError(f"{root} has class folders but no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    picks = evenly_spaced(len(files), max_images)
    return [files[i] for i in picks], [labels[i] for i in picks], classes


def evenly_spaced(n: int, cap: int | None) -> np.ndarray:
    """Indices of at most `cap` of n items spread over the sorted list (keeps every class represented)."""
    if cap is None or n <= cap:
        return np.arange(n)
    return np.linspace(0, n - 1, cap).round().astype(int)


def _read_mask(path: Path) -> Image.Image:
    with Image.open(path) as mask:
        return mask.convert("L")


def write_image_folder_store(root, out, resolution: int, max_images: int | None = None,
                             mask_dir: str | None = None, threads: int = 8, meta: dict | None = None,
                             mask_archive: str | os.PathLike | None = None, mask_source: str | None = None) -> Path:
    """Centre-cropped images of `root` (+ masks). With `mask_archive` (an ImageNet-S release, see repabench.masks)
    only the images that have a mask are stored, each with its mask: images and masks are filtered together."""
    meta = dict(meta or {})
    files, labels, classes = list_image_folder(root, None if mask_archive else max_images)
    mask_of = None
    if mask_dir:
        mask_files = sorted(p for p in Path(mask_dir).iterdir() if p.suffix.lower() == ".png")
        if len(mask_files) != len(files):
            raise ValueError(f"{mask_dir} has {len(mask_files)} masks for {len(files)} images in {root}; "
                             "there must be one mask per image, in sorted order")
        mask_of = lambda i: _read_mask(mask_files[i])  # noqa: E731
        meta["masks"] = {"source": "mask_dir", "pairing": "sorted order", "dir": str(mask_dir)}
    elif mask_archive:
        from repabench.masks import ArchiveMasks, pair_with_archive

        pairing = pair_with_archive(files, mask_archive, mask_source)
        keep = pairing.kept[evenly_spaced(pairing.kept.size, max_images)]
        members = dict(zip(pairing.kept.tolist(), pairing.members))
        files, labels = [files[i] for i in keep], [labels[i] for i in keep]
        mask_of = ArchiveMasks(mask_archive, [members[i] for i in keep.tolist()])
        meta["masks"] = {**pairing.describe(mask_source), "n_stored": len(files), "archive": str(mask_archive)}
    array_shapes = {"images": ((len(files), resolution, resolution, 3), np.uint8), "labels": ((len(files),), np.int64)}
    if mask_of is not None:
        array_shapes["masks"] = ((len(files), resolution, resolution), np.uint8)
    from tqdm import tqdm

    with StoreWriter(out, array_shapes) as writer:
        writer["labels"][:] = labels

        def work(i: int) -> None:
            with Image.open(files[i]) as img:
                writer["images"][i] = center_crop_arr(img, resolution)
            if mask_of is not None:  # the image's own crop, so mask pixels stay on their image pixels
                writer["masks"][i] = center_crop_arr(mask_of(i).convert("RGB"), resolution)[..., 0] > 0

        with ThreadPoolExecutor(max(1, threads)) as pool:
            for _ in tqdm(pool.map(work, range(len(files))), total=len(files), desc=f"crop {Path(root).name}",
                          mininterval=5):
                pass
        return writer.commit({"resolution": resolution, "num_classes": len(classes), "class_names": classes,
                              "source": "imagefolder", "root": str(root), **meta})


# ----------------------------------------------------------------------------------------------
# Embedded demo set


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"python package {name} is not installed; run `make install`")
    return Path(list(spec.submodule_search_locations)[0])


def demo_backgrounds() -> list[np.ndarray]:
    images = []
    for item in DEMO_BACKGROUNDS:
        package, rel = item.split(":")
        path = _package_dir(package) / ("data" if package == "skimage" else "") / rel
        with Image.open(path) as img:
            images.append(np.asarray(img.convert("RGB")))
    return images


@dataclass(frozen=True)
class Stamp:
    path: Path
    label: int


def demo_stamps(root: Path = TUXPAINT_STAMPS) -> tuple[list[Stamp], list[str]]:
    if not root.is_dir():
        raise FileNotFoundError(f"Tux Paint stamps not found at {root}; install the Debian package "
                                "tuxpaint-stamps-default (`make install` does) or set REPABENCH_TUXPAINT")
    stamps: list[Stamp] = []
    names = list(DEMO_CLASSES)
    for label, name in enumerate(names):
        for folder in DEMO_CLASSES[name]:
            for path in sorted((root / folder).rglob("*.png")):
                if "cartoon" in path.parts:
                    continue
                with Image.open(path) as img:
                    if img.mode == "RGBA":
                        stamps.append(Stamp(path, label))
    return stamps, names


def split_stamps(stamps: Sequence[Stamp], heldout_fraction: float = 0.25) -> dict[str, list[Stamp]]:
    """Deterministic per-class split (ordered by a hash of the file name, independent of the seed);
    every class keeps at least one stamp on each side."""
    split: dict[str, list[Stamp]] = {"train": [], "heldout": []}
    for label in sorted({s.label for s in stamps}):
        group = sorted((s for s in stamps if s.label == label), key=lambda s: zlib.crc32(s.path.name.encode()))
        n_heldout = min(len(group) - 1, max(1, round(heldout_fraction * len(group))))
        split["heldout"] += group[:n_heldout]
        split["train"] += group[n_heldout:]
    return split


def _load_cutout(path: Path) -> tuple[Image.Image, Image.Image]:
    with Image.open(path) as img:
        rgba = img.convert("RGBA")
    bbox = rgba.getchannel("A").point(lambda a: 255 if a > 127 else 0).getbbox()
    if bbox:
        rgba = rgba.crop(bbox)
    return rgba.convert("RGB"), rgba.getchannel("A")


def compose_scene(rng: np.random.Generator, background: np.ndarray, rgb: Image.Image, alpha: Image.Image,
                  size: int) -> tuple[np.ndarray, np.ndarray]:
    """Paste one cut-out on a random crop of `background`; returns (uint8 HxWx3 image, uint8 HxW mask)."""
    h, w = background.shape[:2]
    crop = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
    top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    canvas = Image.fromarray(background[top:top + crop, left:left + crop]).resize((size, size), Image.BICUBIC)
    if rng.random() < 0.5:
        canvas = canvas.transpose(Image.FLIP_LEFT_RIGHT)
    extent = rng.uniform(0.45, 0.75) * size  # longest side of the object
    scale = extent / max(rgb.size)
    obj_size = (max(1, round(rgb.size[0] * scale)), max(1, round(rgb.size[1] * scale)))
    obj, obj_alpha = rgb.resize(obj_size, Image.BICUBIC), alpha.resize(obj_size, Image.BILINEAR)
    if rng.random() < 0.5:
        obj, obj_alpha = obj.transpose(Image.FLIP_LEFT_RIGHT), obj_alpha.transpose(Image.FLIP_LEFT_RIGHT)
    x = int(rng.integers(0, size - obj_size[0] + 1))
    y = int(rng.integers(0, size - obj_size[1] + 1))
    canvas.paste(obj, (x, y), obj_alpha)
    mask = Image.new("L", (size, size), 0)
    mask.paste(obj_alpha, (x, y))
    return np.asarray(canvas, dtype=np.uint8), (np.asarray(mask) > 127).astype(np.uint8)


def demo_scenes(split: str, count: int, size: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Scene i of a split is a pure function of (seed, split, i); classes are balanced round-robin."""
    stamps, names = demo_stamps()
    pool = split_stamps(stamps)[split]
    by_class = [[s for s in pool if s.label == c] for c in range(len(names))]
    if any(not group for group in by_class):
        empty = [names[c] for c, group in enumerate(by_class) if not group]
        raise RuntimeError(f"demo split {split!r} has no stamps for classes {empty}; is tuxpaint-stamps-default complete?")
    backgrounds = demo_backgrounds()
    cache: dict[Path, tuple[Image.Image, Image.Image]] = {}
    split_key = zlib.crc32(split.encode())
    for i in range(count):
        rng = np.random.default_rng([seed, split_key, i])
        label = i % len(names)
        stamp = by_class[label][int(rng.integers(len(by_class[label])))]
        if stamp.path not in cache:
            cache[stamp.path] = _load_cutout(stamp.path)
        background = backgrounds[int(rng.integers(len(backgrounds)))]
        image, mask = compose_scene(rng, background, *cache[stamp.path], size)
        yield image, mask, label


def write_demo_store(out, split: str, count: int, resolution: int, seed: int, meta: dict | None = None) -> Path:
    _, names = demo_stamps()
    array_shapes = {"images": ((count, resolution, resolution, 3), np.uint8), "labels": ((count,), np.int64),
             "masks": ((count, resolution, resolution), np.uint8)}
    with StoreWriter(out, array_shapes) as writer:
        for i, (image, mask, label) in enumerate(demo_scenes(split, count, resolution, seed)):
            writer["images"][i], writer["masks"][i], writer["labels"][i] = image, mask, label
        return writer.commit({"resolution": resolution, "num_classes": len(names), "class_names": names,
                              "source": "demo", "split": split,
                              "masks": {"source": "demo cut-out alpha", "pairing": "drawn with the image"},
                              **(meta or {})})


# ----------------------------------------------------------------------------------------------
# Stage


@config_section("data.demo")
class DemoSetConfig:
    """`data.demo`: the size and seed of the embedded demo set."""

    n_train: int
    n_heldout: int
    seed: int


@config_section("data", nested={"demo": DemoSetConfig})
class DataConfig:
    """The `data` section: where the images come from and how they are cropped."""

    source: str
    root: str | None
    splits: dict
    resolution: int
    max_images: int | None
    mask_dir: str | None
    demo: DemoSetConfig
    mask_source: str | None = None  # absent in the schema = no ImageNet-S masks


def prepare_images(data: DataConfig, split: str, out: str | Path, threads: int = 8,
                   mask_archive: str | Path | None = None,
                   recorded_params: Mapping[str, Any] | None = None) -> Path:
    """The uint8 image store of one split (`train`, `heldout`, or `masked`: the held-out images that have a mask
    in the ImageNet-S `mask_archive`) of the configured source."""
    archive = _mask_archive(mask_archive, data) if split == "masked" else None
    extra = {"mask_archive_sha256": _recorded_sha256(archive)} if archive else {}
    meta = {"provenance": provenance("prepare_images", recorded_params or {"data": asdict(data)},
                                     [archive] if archive else [], **extra)}
    if data.source == "demo":
        count = data.demo.n_train if split == "train" else data.demo.n_heldout
        return write_demo_store(out, split, count, data.resolution, data.demo.seed, meta)
    if not data.root:
        raise SystemExit("data.source is imagefolder but data.root is not set; point it at the ImageNet root")
    folder = Path(data.root) / data.splits["heldout" if split == "masked" else split]
    mask_dir = data.mask_dir if split == "heldout" else None
    return write_image_folder_store(folder, out, data.resolution, data.max_images, mask_dir, threads=threads,
                                    meta=meta, mask_archive=archive, mask_source=data.mask_source)


def prepare_images_main(argv: list[str]) -> int:
    parser = stage_parser("prepare_images", "Build the uint8 image store of one split.")
    parser.add_argument("--split", required=True, choices=["train", "heldout", "masked"],
                        help="masked: the held-out images that have a mask in --mask-archive (spatial metrics)")
    parser.add_argument("--mask-archive", default=None, help="ImageNet-S release zip (split masked only)")
    parser.add_argument("--out", required=True, help="output store directory")
    args, config, _, _ = parse_stage(parser, argv, {"data": DataConfig, "seed": int})
    prepare_images(config.data, args.split, args.out, threads=args.threads or 8, mask_archive=args.mask_archive,
                   recorded_params=config.raw)
    return 0


def _mask_archive(mask_archive: str | Path | None, data: DataConfig) -> Path:
    from repabench.masks import archive_name
    from repabench.weights import verified_path

    if not data.mask_source:
        raise SystemExit("split masked needs data.mask_source (imagenet-s50, imagenet-s300 or imagenet-s919)")
    if not mask_archive:
        raise SystemExit(f"split masked needs --mask-archive (the fetched {archive_name(data.mask_source)})")
    if Path(mask_archive).name != archive_name(data.mask_source):
        raise SystemExit(f"--mask-archive {mask_archive} is not the {data.mask_source} release "
                         f"{archive_name(data.mask_source)}; fetch that one "
                         f"(python -m repabench fetch_weights --name {archive_name(data.mask_source)})")
    if data.source != "imagefolder":
        raise SystemExit("split masked pairs ImageNet val images with masks: set data.source to imagefolder")
    return verified_path(mask_archive)


def _recorded_sha256(path: Path) -> str:
    from repabench.atomic import read_json
    from repabench.weights import sidecar

    return read_json(sidecar(path))["sha256"] if sidecar(path).exists() else "unrecorded"
