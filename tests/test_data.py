import json

import numpy as np
import pytest
from PIL import Image

from repabench.data import center_crop_arr, demo_stamps, list_image_folder, split_stamps, write_demo_store, \
    write_image_folder_store
from repabench.store import Store


def brute_force_center_crop(image: Image.Image, size: int) -> np.ndarray:
    """ADM's crop restated: repeated BOX halving, BICUBIC to short side = size, central window."""
    img = image.convert("RGB")
    w, h = img.size
    while min(w, h) >= 2 * size:
        w, h = w // 2, h // 2
        img = img.resize((w, h), Image.BOX)
    s = size / min(w, h)
    w, h = round(w * s), round(h * s)
    img = img.resize((w, h), Image.BICUBIC)
    full = np.array(img)
    out = np.zeros((size, size, 3), np.uint8)
    y0, x0 = (h - size) // 2, (w - size) // 2
    for y in range(size):
        for x in range(size):
            out[y, x] = full[y0 + y, x0 + x]
    return out


@pytest.mark.parametrize("shape", [(301, 517), (97, 61), (64, 64), (1031, 257), (255, 1200)])
def test_center_crop_matches_brute_force_on_odd_sizes(shape):
    rng = np.random.default_rng(sum(shape))
    image = Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
    got = center_crop_arr(image, 64)
    assert got.shape == (64, 64, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, brute_force_center_crop(image, 64))


def test_center_crop_takes_the_centre():
    # a 200x100 (w x h) image: left half black, right half white; the 64-px crop is centred on the boundary
    arr = np.zeros((100, 200, 3), np.uint8)
    arr[:, 100:] = 255
    crop = center_crop_arr(Image.fromarray(arr), 64)
    assert crop[:, :20].max() < 30 and crop[:, -20:].min() > 225


def test_demo_store_is_deterministic_and_labelled(tmp_path, demo_stores):
    again = write_demo_store(tmp_path / "again", "train", 48, 128, seed=0)
    a, b = Store(demo_stores / "train"), Store(again)
    for name in ("images", "labels", "masks"):
        np.testing.assert_array_equal(a[name], b[name])
    other = Store(write_demo_store(tmp_path / "other", "train", 48, 128, seed=1))
    assert not np.array_equal(a["images"], other["images"])
    assert a["images"].shape == (48, 128, 128, 3) and a["masks"].shape == (48, 128, 128)
    names = a.meta("class_names")
    assert a.meta("num_classes") == len(names) >= 6
    assert set(np.unique(a["labels"])) == set(range(len(names)))  # round-robin over every class
    fg = a["masks"].reshape(48, -1).mean(1)
    assert (fg > 0.01).all() and (fg < 0.9).all()  # every scene has an object and some background


def test_mask_is_exactly_where_the_object_was_pasted(demo_stores):
    store = Store(demo_stores / "heldout")
    images, masks = store["images"].astype(float), store["masks"].astype(bool)
    # object pixels differ in colour statistics from background pixels in the same image
    diffs = [np.abs(images[i][masks[i]].mean(0) - images[i][~masks[i]].mean(0)).sum() for i in range(len(images))]
    assert np.median(diffs) > 10


def test_train_and_heldout_stamps_are_disjoint():
    stamps, names = demo_stamps()
    split = split_stamps(stamps)
    train = {s.path for s in split["train"]}
    heldout = {s.path for s in split["heldout"]}
    assert train and heldout and not train & heldout
    for label in range(len(names)):
        assert any(s.label == label for s in split["heldout"]) and any(s.label == label for s in split["train"])


def test_image_folder_sorted_classes_and_crop(tmp_path):
    rng = np.random.default_rng(0)
    for synset, count in (("n02", 2), ("n01", 3)):
        (tmp_path / "train" / synset).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (90 + i, 130, 3), dtype=np.uint8)).save(
                tmp_path / "train" / synset / f"img{i}.JPEG")
    files, labels, classes = list_image_folder(tmp_path / "train")
    assert classes == ["n01", "n02"] and labels == [0, 0, 0, 1, 1]
    out = write_image_folder_store(tmp_path / "train", tmp_path / "store", 64, threads=2)
    store = Store(out)
    assert store["images"].shape == (5, 64, 64, 3)
    with Image.open(files[3]) as img:
        np.testing.assert_array_equal(store["images"][3], center_crop_arr(img, 64))
    assert json.loads((out / "manifest.json").read_text())["class_names"] == ["n01", "n02"]


def test_image_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.root"):
        list_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        list_image_folder(tmp_path / "empty")
