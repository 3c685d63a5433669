"""ImageNet-S masks for the spatial metrics: a synthetic release zip in the real layout, paired with a val folder.

The layout (LUSSeg/ImageNet-S README, datapreparation_anno.sh): `ImageNetS919/validation-segmentation/<synset>/
<val stem>.png`, RGB with class id = R + 256 G, 0 = other, 1000 = ignored. The oracle of each stored mask is the
id map the test drew itself; the oracle of the kept images is the set of stems the archive has.
"""

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from repabench.masks import MASK_ARCHIVES, archive_name, foreground
from repabench.store import Store

SIZE = 64
SOURCE = "imagenet-s919"
FOLDER = MASK_ARCHIVES[SOURCE].extra["folder"]


def _id_png(ids: np.ndarray) -> bytes:
    import io

    rgb = np.zeros(ids.shape + (3,), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1] = ids % 256, ids // 256
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def _id_map(rng: np.random.Generator, class_id: int, small: bool = False) -> np.ndarray:
    """Background 0, one rectangle of the class (a few pixels if `small`), an ignored (1000) border strip."""
    ids = np.zeros((SIZE, SIZE), dtype=np.int64)
    y0, x0 = rng.integers(0, SIZE // 2, size=2)
    h, w = (3, 3) if small else rng.integers(SIZE // 4, SIZE // 2, size=2)
    ids[y0:y0 + h, x0:x0 + w] = class_id
    ids[:, :3] = 1000
    return ids


@pytest.fixture()
def imagenet_s(tmp_path):
    """val/<synset>/ILSVRC2012_val_*.JPEG (6 images) and an ImageNet-S919 zip with masks for 4 of them:
    one under another synset's folder (ImageNet-S919 merges synsets), one with a class id > 255 (G channel),
    one too small for the 25% filter, one mask without an image, and a train-semi mask that is not a val mask."""
    rng = np.random.default_rng(0)
    val = tmp_path / "imagenet" / "val"
    stems = {"n01440764": ["ILSVRC2012_val_00000293", "ILSVRC2012_val_00002138", "ILSVRC2012_val_00003014"],
             "n04355933": ["ILSVRC2012_val_00000011", "ILSVRC2012_val_00000048", "ILSVRC2012_val_00009999"]}
    files = []
    for synset, names in stems.items():
        (val / synset).mkdir(parents=True)
        for name in names:
            path = val / synset / f"{name}.JPEG"
            Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(path, format="JPEG")
            files.append(path)
    masked = {  # stem -> (folder synset in the archive, class id)
        "ILSVRC2012_val_00000293": ("n01440764", 1),
        "ILSVRC2012_val_00003014": ("n01440764", 7),
        "ILSVRC2012_val_00000011": ("n04356056", 700),  # merged synset: mask under the other folder
        "ILSVRC2012_val_00009999": ("n04355933", 301),
    }
    ids = {stem: _id_map(rng, cid, small=stem.endswith("3014")) for stem, (_, cid) in masked.items()}
    archive = tmp_path / "weights" / archive_name(SOURCE)
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        for stem, (synset, _) in masked.items():
            zf.writestr(f"{FOLDER}/{synset}/{stem}.png", _id_png(ids[stem]))
        zf.writestr(f"{FOLDER}/n01440764/ILSVRC2012_val_00049999.png", _id_png(_id_map(rng, 1)))
        zf.writestr("ImageNetS919/train-semi-segmentation/n01440764/n01440764_1.png", _id_png(_id_map(rng, 1)))
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    (archive.parent / f"{archive.name}.sha256.json").write_text(json.dumps({"sha256": sha,
                                                                             "bytes": archive.stat().st_size}))
    return {"root": tmp_path / "imagenet", "archive": archive, "files": files, "ids": ids, "sha": sha}


def _params(root, **data):
    return json.dumps({"seed": 0, "data": {"source": "imagefolder", "root": str(root), "resolution": SIZE,
                                           "splits": {"train": "train", "heldout": "val"}, "max_images": None,
                                           "mask_source": SOURCE, **data}})


def _prepare(tmp_path, imagenet_s, **data):
    from repabench.data import prepare_images_main

    out = tmp_path / "masked"
    prepare_images_main(["--split", "masked", "--mask-archive", str(imagenet_s["archive"]), "--out", str(out),
                         "--params", _params(imagenet_s["root"], **data)])
    return Store(out)


def test_foreground_decodes_r_plus_256_g():
    ids = np.array([[0, 1, 255, 256], [700, 999, 1000, 1001]])
    with Image.open(__import__("io").BytesIO(_id_png(ids))) as png:
        got = foreground(png)
    np.testing.assert_array_equal(got, (ids != 0) & (ids != 1000))


def test_masked_split_keeps_exactly_the_images_with_masks_each_with_its_own_mask(tmp_path, imagenet_s):
    from repabench.data import center_crop_arr

    store = _prepare(tmp_path, imagenet_s)
    expected = [f for f in imagenet_s["files"] if f.stem in imagenet_s["ids"]]  # sorted folder order
    assert store.count == len(expected) == 4
    classes = sorted(p.name for p in imagenet_s["root"].joinpath("val").iterdir())
    np.testing.assert_array_equal(store["labels"], [classes.index(f.parent.name) for f in expected])
    for i, file in enumerate(expected):
        with Image.open(file) as img:
            np.testing.assert_array_equal(store["images"][i], center_crop_arr(img, SIZE))
        ids = imagenet_s["ids"][file.stem]
        np.testing.assert_array_equal(store["masks"][i], ((ids != 0) & (ids != 1000)).astype(np.uint8))
    masks = store.meta("masks")
    assert masks["source"] == SOURCE and masks["n_val_images"] == 6 and masks["n_paired"] == 4
    assert masks["n_masks_in_archive"] == 5 and masks["n_masks_without_image"] == 1
    assert store.meta("provenance")["mask_archive_sha256"] == imagenet_s["sha"]


def test_max_images_caps_the_paired_images_not_the_folder(tmp_path, imagenet_s):
    store = _prepare(tmp_path, imagenet_s, max_images=2)
    assert store.count == 2 and store.meta("masks")["n_stored"] == 2
    assert store["masks"].reshape(2, -1).any(1).all()  # both kept images are masked ones


def test_spatial_metrics_use_the_mask_filtered_subset_and_name_the_source(tmp_path, imagenet_s):
    from repabench.atomic import read_json
    from repabench.spatial import SpatialConfig, mask_filter, spatial_metrics, spatial_metrics_main, \
        token_masks_from_pixels
    from repabench.store import write_store

    images = _prepare(tmp_path, imagenet_s)
    tokens = np.random.default_rng(1).standard_normal((images.count, 16, 8)).astype(np.float32)
    features = tmp_path / "features"
    write_store(features, {"tokens": tokens, "masks": np.asarray(images["masks"])}, {"masks": images.meta("masks")})
    out = tmp_path / "spatial.json"
    spatial_metrics_main(["--features", str(features), "--encoder", "x", "--out", str(out), "--device", "cpu",
                          "--params", json.dumps({"spatial": {"min_fraction": 0.25, "bootstrap": 0}})])
    result = read_json(out)
    # oracle of the subset: a 4x4 token grid; a token is foreground if any of its 16x16 pixels is
    pix = np.asarray(images["masks"]).reshape(images.count, 4, 16, 4, 16).any((2, 4)).reshape(images.count, 16)
    keep = [i for i in range(images.count) if 4 <= pix[i].sum() <= 12]
    assert result["n_images"] == len(keep) and 0 < len(keep) < images.count
    assert SOURCE in result["subsets"]["LDS"] and result["masks"]["source"] == SOURCE
    token_masks = token_masks_from_pixels(np.asarray(images["masks"]), 4)
    np.testing.assert_array_equal(mask_filter(token_masks, 0.25), keep)
    want = spatial_metrics(tokens[keep], token_masks[keep], SpatialConfig(), device="cpu")
    assert result["RMSC"]["mean"] == pytest.approx(np.nanmean(want["RMSC"]))


def test_errors_name_the_problem(tmp_path, imagenet_s):
    from repabench.data import prepare_images_main
    from repabench.masks import pair_with_archive

    with pytest.raises(SystemExit, match="mask_source"):
        prepare_images_main(["--split", "masked", "--mask-archive", str(imagenet_s["archive"]), "--out",
                             str(tmp_path / "a"), "--params", _params(imagenet_s["root"], mask_source=None)])
    with pytest.raises(SystemExit, match="not the imagenet-s50 release"):
        prepare_images_main(["--split", "masked", "--mask-archive", str(imagenet_s["archive"]), "--out",
                             str(tmp_path / "b"), "--params", _params(imagenet_s["root"], mask_source="imagenet-s50")])
    with pytest.raises(ValueError, match="none of the 2 images has a mask"):
        pair_with_archive([Path("v/n1/ILSVRC2012_val_00000001.JPEG"), Path("v/n1/ILSVRC2012_val_00000002.JPEG")],
                          imagenet_s["archive"], SOURCE)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("other/x.png", b"")
    with pytest.raises(ValueError, match="no masks under ImageNetS919/validation-segmentation"):
        pair_with_archive(imagenet_s["files"], empty, SOURCE)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_fetch_checks_the_published_md5(tmp_path, monkeypatch):
    import torch.hub

    from repabench.weights import WeightError, WeightFile, fetch, verified_path

    payload = tmp_path / "release.zip"
    payload.write_bytes(b"masks" * 100)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda url, dst, progress=True:
                        Path(dst).write_bytes(payload.read_bytes()))
    good = WeightFile("good.zip", "url:https://example.invalid/good.zip",
                      extra={"md5": hashlib.md5(payload.read_bytes()).hexdigest()})
    assert verified_path(fetch(good, tmp_path / "w"), name="x").read_bytes() == payload.read_bytes()
    bad = WeightFile("bad.zip", "url:https://example.invalid/bad.zip", extra={"md5": "0" * 32})
    with pytest.raises(WeightError, match="MD5"):
        fetch(bad, tmp_path / "w")
    assert not (tmp_path / "w" / "bad.zip").exists()


def test_mask_archives_are_catalogued_weights_fetched_by_url():
    from repabench.weight_catalog import WEIGHTS

    assert set(MASK_ARCHIVES) == {"imagenet-s50", "imagenet-s300", "imagenet-s919"}
    for source, spec in MASK_ARCHIVES.items():
        assert WEIGHTS[spec.name] is spec and spec.source.startswith("url:https://github.com/LUSSeg/ImageNet-S/")
        assert spec.extra["md5"] in spec.name and len(spec.extra["md5"]) == 32


def test_the_schema_adds_no_mask_source_to_configs_without_one():
    """No default: the `data` params of runs from before the option (hashed by Snakemake) stay as they were."""
    import yaml
    from snakemake.utils import validate

    repo = Path(__file__).resolve().parent.parent
    config = yaml.safe_load((repo / ".test/config/config.yaml").read_text())
    validate(config, str(repo / "workflow/schemas/config.schema.yaml"))
    assert "mask_source" not in config["data"]
    paper = yaml.safe_load((repo / "config/paper.yaml").read_text())
    validate(paper, str(repo / "workflow/schemas/config.schema.yaml"))
    assert paper["data"]["mask_source"] == SOURCE
