"""Encoder zoo: registry, shapes of every encoder, preprocessing per family, packaged weights, extraction stage."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import repabench.encoders as enc
from repabench.encoders.preprocessing import CLIP_MEAN, CLIP_STD, HALF, IMAGENET_MEAN, IMAGENET_STD
from repabench.weights import WEIGHTS, WeightError, fetch

torch.set_num_threads(2)

# D of docs/upstream-facts.md §4.2 (and of our demo encoders), written out independently of the registry.
UPSTREAM_DIMS = {
    "dinov2-vit-b": 768, "dinov2-vit-l": 1024, "dinov2-vit-g": 1536,
    "dinov3-vit-b16": 768, "dinov3-vit-l16": 1024, "dinov3-vit-h16plus": 1280, "dinov3-vit-7b16": 4096,
    "webssl-vit-dino300m_full2b_224": 1024, "webssl-vit-dino1b_full2b_224": 1536,
    "webssl-vit-dino2b_full2b_224": 2688, "webssl-vit-dino3b_full2b_224": 3072,
    "pe-vit-b": 768, "pe-vit-l": 1024, "pe-vit-g": 1536, "langpe-vit-l": 1024, "langpe-vit-g": 1536,
    "spatialpe-vit-b": 768, "spatialpe-vit-l": 1024, "spatialpe-vit-g": 1536,
    "cradio-vit-b": 768, "cradio-vit-l": 1024, "dino-vit-b": 768, "clip-vit-L": 1024,
    "mocov3-vit-b": 768, "mocov3-vit-l": 1024, "jepa-vit-h": 1280, "mae-vit-l": 1024,
    "siglip-vit-b": 768, "siglip-vit-l": 1024, "siglip-vit-so400m": 1152,
    "siglip2-vit-b": 768, "siglip2-vit-l": 1024, "siglip2-vit-so400m": 1152, "siglip2-vit-g": 1536,
    "sam2-vit-s": 768, "sam2-vit-b": 896, "sam2-vit-l": 1152,
    "effnetlite-cnn-lite0": 112, "effnetlite-cnn-lite1": 112, "effnetlite-cnn-lite2": 120,
    "inception-cnn-2015": 768, "hog-classic-cells": 128, "pixels-classic-raw": 768,
}
STUDY_27 = [
    "dinov2-vit-b", "dinov2-vit-l", "dinov2-vit-g", "dinov3-vit-b16", "dinov3-vit-l16", "dinov3-vit-h16plus",
    "dinov3-vit-7b16", "webssl-vit-dino300m_full2b_224", "webssl-vit-dino1b_full2b_224",
    "webssl-vit-dino2b_full2b_224", "webssl-vit-dino3b_full2b_224", "pe-vit-b", "pe-vit-l", "pe-vit-g",
    "langpe-vit-l", "langpe-vit-g", "spatialpe-vit-b", "spatialpe-vit-l", "spatialpe-vit-g", "cradio-vit-b",
    "cradio-vit-l", "dino-vit-b", "clip-vit-L", "mocov3-vit-b", "mocov3-vit-l", "jepa-vit-h", "mae-vit-l",
]
DEMO = ["effnetlite-cnn-lite0", "effnetlite-cnn-lite1", "effnetlite-cnn-lite2", "inception-cnn-2015",
        "hog-classic-cells", "pixels-classic-raw"]


def _base(name: str) -> str:
    return name.removesuffix("_randinit")


# --- registry -------------------------------------------------------------------------------------------------


def test_registry_holds_the_study_readme_and_demo_encoders():
    known = set(enc.known_encoders())
    assert len(STUDY_27) == 27 and set(STUDY_27) <= known
    assert sorted(enc.STUDY_ENCODERS) == sorted(STUDY_27)
    assert {"siglip-vit-b", "siglip2-vit-b", "sam2-vit-s"} <= known
    assert set(DEMO) | {f"{n}_randinit" for n in DEMO[:4]} <= known
    for name in known:
        assert name.count("-") == 2, name  # type-arch-config


def test_unknown_encoder_fails_and_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        enc.validate_encoder_name("dinov9-vit-b")
    message = str(info.value)
    assert "dinov9-vit-b" in message and "dinov2-vit-b" in message and "effnetlite-cnn-lite0" in message
    with pytest.raises(ValueError, match="no weights"):
        enc.validate_encoder_name("hog-classic-cells_randinit")
    enc.validate_encoder_name("pe-vit-g_randinit")  # any encoder with weights has a random-init control


def test_weight_names_are_registered_weights():
    for name in enc.known_encoders():
        names = enc.weight_names(name)
        assert all(w in WEIGHTS for w in names), name
        if name.endswith("_randinit") or enc.REGISTRY[_base(name)].family in ("hog", "hog_dense", "sift", "pixels"):
            assert names == []
        else:
            assert len(names) == 1
    assert WEIGHTS["efficientnet-lite1.pth"].sha256.startswith("77cc7160")
    assert WEIGHTS["efficientnet-lite2.pth"].sha256.startswith("9656183e")
    assert WEIGHTS["webssl-vit-dino1b_full2b_224"].source.startswith("hfrepo:facebook/webssl-dino1b-full2b-224@")


def test_importing_the_registry_does_not_import_torch():
    code = "import sys, repabench.encoders as e; e.weight_names('dinov2-vit-b'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --- every encoder: random init of the real architecture, [B, 256, D] at 256 px -------------------------------


@pytest.mark.parametrize("name", enc.known_encoders())
def test_every_encoder_builds_random_init_and_returns_256_tokens(name):
    """Meta device (no memory, no compute) for all, so the 7B and the ~2-3B giants fit; HOG needs real pixels."""
    expected_dim = UPSTREAM_DIMS.get(_base(name), enc.REGISTRY[_base(name)].embed_dim)
    if enc.REGISTRY[_base(name)].family == "sam2logit":  # its processor needs real pixels; tests/test_sam2logit.py
        encoder = enc.build_encoder(name, device="meta")
        assert encoder.embed_dim == expected_dim and not encoder.pretrained
        return
    if enc.REGISTRY[_base(name)].family in ("hog", "hog_dense", "sift"):
        encoder = enc.build_encoder(name)
        images = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8)
    else:
        encoder = enc.build_encoder(name, device="meta")
        images = torch.empty((2, 3, 256, 256), device="meta")
    assert encoder.embed_dim == expected_dim
    assert not encoder.pretrained
    assert tuple(encoder(images).shape) == (2, 256, expected_dim)


@pytest.mark.parametrize("name", ["pe-vit-t", "dinov2mixed-vit-s", "effnetlite-cnn-lite0_randinit",
                                  "inception-cnn-2015_randinit"])
def test_real_forward_at_a_small_grid_is_finite_and_deterministic(name):
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    first = enc.build_encoder(name, grid=2)(images, grid=2)
    second = enc.build_encoder(name, grid=16)(images, grid=2)  # rebuilt for grid 2 with the same seed
    assert first.shape == (2, 4, enc.REGISTRY[_base(name)].embed_dim)
    assert torch.isfinite(first).all()
    torch.testing.assert_close(first, second)


def test_vit_rebuilds_for_a_new_grid():
    encoder = enc.build_encoder("pe-vit-t", grid=2)
    assert encoder(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), grid=2).shape == (1, 4, 192)
    assert encoder(torch.zeros(1, 3, 48, 48, dtype=torch.uint8), grid=3).shape == (1, 9, 192)
    assert encoder.network.pos_embed.shape[1] == 1 + 9  # CLS + 3x3 positions, resampled once for the grid


# --- preprocessing per family against hand-computed expectations --------------------------------------------

# encoder: (resize mode, antialias, input side at grid 16, mean, std, order) from docs/upstream-facts.md §4.2
EXPECTED_PREPROCESSING = {
    "dinov2-vit-b": ("bicubic", False, 224, IMAGENET_MEAN, IMAGENET_STD, "norm_then_resize"),
    "webssl-vit-dino1b_full2b_224": ("bicubic", False, 224, IMAGENET_MEAN, IMAGENET_STD, "norm_then_resize"),
    "jepa-vit-h": ("bicubic", False, 224, IMAGENET_MEAN, IMAGENET_STD, "norm_then_resize"),
    "dino-vit-b": ("bicubic", False, 256, IMAGENET_MEAN, IMAGENET_STD, "norm_then_resize"),
    "siglip-vit-b": ("bicubic", False, 256, IMAGENET_MEAN, IMAGENET_STD, "norm_then_resize"),
    "siglip-vit-so400m": ("bicubic", False, 224, IMAGENET_MEAN, IMAGENET_STD, "norm_then_resize"),
    "siglip2-vit-g": ("bicubic", False, 256, IMAGENET_MEAN, IMAGENET_STD, "norm_then_resize"),
    "mocov3-vit-b": ("bicubic", False, 256, IMAGENET_MEAN, IMAGENET_STD, "norm_then_resize"),
    "mae-vit-l": ("bicubic", False, 256, IMAGENET_MEAN, IMAGENET_STD, "norm_then_resize"),
    "clip-vit-L": ("bicubic", False, 224, CLIP_MEAN, CLIP_STD, "resize_then_norm"),
    "dinov3-vit-b16": ("bilinear", True, 256, IMAGENET_MEAN, IMAGENET_STD, "resize_then_norm"),
    "pe-vit-b": ("bilinear", False, 256, HALF, HALF, "resize_then_norm"),
    "pe-vit-g": ("bilinear", False, 224, HALF, HALF, "resize_then_norm"),
    "spatialpe-vit-b": ("bilinear", False, 256, HALF, HALF, "resize_then_norm"),
    "spatialpe-vit-l": ("bilinear", False, 224, HALF, HALF, "resize_then_norm"),
    "langpe-vit-l": ("bilinear", False, 224, HALF, HALF, "resize_then_norm"),
    "cradio-vit-b": ("bilinear", False, 256, CLIP_MEAN, CLIP_STD, "resize_then_norm"),
    "sam2-vit-s": ("bicubic", False, 512, IMAGENET_MEAN, IMAGENET_STD, "resize_then_norm"),
    "effnetlite-cnn-lite0": ("bicubic", False, 256, (127 / 255,) * 3, (128 / 255,) * 3, "resize_then_norm"),
    "pixels-classic-raw": ("bilinear", True, 256, HALF, HALF, "resize_then_norm"),
}


def _halving_matrix(n_out: int, mode: str, antialias: bool) -> np.ndarray:
    """Rows of the 1-D filter that maps 2*n_out samples to n_out (align_corners=False), derived by hand:
    output i sits at input coordinate 2i + 0.5.  bicubic (A = -0.75) taps 2i-1..2i+2 at distances 1.5, 0.5:
    w(0.5) = 1.25/8 - 2.25/4 + 1 = 0.59375, w(1.5) = -0.75/8 = -0.09375.  bilinear: 0.5, 0.5.  bilinear with
    antialias (triangle stretched by 2): 0.125, 0.375, 0.375, 0.125."""
    taps = {("bicubic", False): [-0.09375, 0.59375, 0.59375, -0.09375], ("bilinear", False): [0, 0.5, 0.5, 0],
            ("bilinear", True): [0.125, 0.375, 0.375, 0.125]}[(mode, antialias)]
    matrix = np.zeros((n_out, 2 * n_out))
    for i in range(n_out):
        for offset, weight in zip((-1, 0, 1, 2), taps):
            matrix[i, min(max(2 * i + offset, 0), 2 * n_out - 1)] += weight
    return matrix


@pytest.mark.parametrize("name", sorted(EXPECTED_PREPROCESSING))
def test_preprocessing_matches_the_upstream_recipe(name):
    mode, antialias, side16, mean, std, order = EXPECTED_PREPROCESSING[name]
    prep = enc.encoder_spec(name).preprocessing
    assert (prep.mode, prep.antialias, prep.size(16), prep.order) == (mode, antialias, side16, order)
    # constants in units of x / 255, whatever scale the family divides by
    np.testing.assert_allclose(np.asarray(prep.mean) * prep.scale / 255, mean, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(prep.std) * prep.scale / 255, std, rtol=1e-12)

    encoder = enc.build_encoder(name, device="meta")  # preprocess needs no weights
    grid = 2
    out_side = side16 // 16 * grid
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(1, 3, 2 * out_side, 2 * out_side)).astype(np.float64)
    got = encoder.preprocess(torch.from_numpy(image).to(torch.uint8), grid).double().numpy()[0]
    m = _halving_matrix(out_side, mode, antialias)
    mean01 = np.asarray(mean).reshape(3, 1, 1)
    std01 = np.asarray(std).reshape(3, 1, 1)
    expected = np.stack([m @ channel @ m.T for channel in image[0] / 255])
    expected = (expected - mean01) / std01
    inner = slice(1, out_side - 1)  # borders depend on the edge rule; interior is the filter itself
    np.testing.assert_allclose(got[:, inner, inner], expected[:, inner, inner], atol=2e-5)


def test_no_resize_at_the_native_size_is_pure_normalisation():
    image = torch.randint(0, 256, (1, 3, 256, 256), dtype=torch.uint8)
    got = enc.build_encoder("mocov3-vit-b", device="meta").preprocess(image, 16)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(got, (image.float() / 255 - mean) / std)


def test_inception_input_side_gives_the_grid_exactly():
    from repabench.adm.inception import ADMInception
    from repabench.encoders.cnn import inception_input_size

    with torch.device("meta"):
        trunk = ADMInception()
    for grid in (4, 8, 16):
        side = inception_input_size(grid)
        assert trunk.to_mixed_6e(torch.empty(1, 3, side, side, device="meta")).shape[-1] == grid
        assert trunk.to_mixed_6e(torch.empty(1, 3, side - 1, side - 1, device="meta")).shape[-1] == grid - 1
    assert inception_input_size(16) == 283


def test_pixel_tokens_are_the_normalised_16px_patches():
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    tokens = enc.build_encoder("pixels-classic-raw")(images, grid=2)
    x = images.double() / 127.5 - 1
    for r in range(2):
        for c in range(2):
            patch = x[:, :, 16 * r:16 * r + 16, 16 * c:16 * c + 16].reshape(2, -1)
            torch.testing.assert_close(tokens[:, 2 * r + c].double(), patch, atol=1e-6, rtol=0)


def test_hog_tokens_see_a_vertical_edge_as_horizontal_gradient():
    image = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    image[..., 24:] = 255  # edge inside the right-hand column of tokens
    tokens = enc.build_encoder("hog-classic-cells")(image, grid=2)[0].reshape(4, 16, 8)
    assert torch.allclose(tokens[0], torch.zeros(16, 8))  # flat token: no gradient, no descriptor
    edge = tokens[1]
    np.testing.assert_allclose(edge.norm().item(), 1.0, atol=1e-5)
    strong = edge.sum(dim=1) > 0
    assert strong.any() and (edge[strong].argmax(dim=1) == 0).all()  # orientation bin 0 = horizontal gradient


# --- packaged weights -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_weights(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("weights")
    for name in ("efficientnet-lite0.pth", "inception-2015-12-05-fid-helper.pt"):
        fetch(WEIGHTS[name], directory)
    return directory


def _foolbox_imagenet() -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    spec = importlib.util.find_spec("foolbox")  # the package's data folder only; importing foolbox needs eagerpy
    root = Path(list(spec.submodule_search_locations)[0]) / "data"
    images, labels = [], []
    for file in sorted(root.glob("imagenet_*.jpg")):
        image = Image.open(file).convert("RGB")
        w, h = image.size
        side = min(w, h)
        image = image.crop(((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2))
        images.append(torch.from_numpy(np.array(image.resize((256, 256), Image.BICUBIC))).permute(2, 0, 1))
        labels.append(int(file.stem.split("_")[-1]))
    return torch.stack(images), torch.tensor(labels)


def test_packaged_efficientnet_lite0_classifies_imagenet_photos(demo_weights):
    images, labels = _foolbox_imagenet()
    assert len(labels) == 20
    with torch.inference_mode():
        pretrained = enc.build_encoder("effnetlite-cnn-lite0", demo_weights)
        random = enc.build_encoder("effnetlite-cnn-lite0_randinit", demo_weights)
        accuracy = (pretrained.classify(images).argmax(1) == labels).float().mean().item()
        chance_like = (random.classify(images).argmax(1) == labels).float().mean().item()
    assert pretrained.pretrained and not random.pretrained
    assert accuracy >= 0.75  # 18/20 measured; chance is 1/1000
    assert chance_like <= 0.1


def test_inception_trunk_matches_the_packaged_torchscript(demo_weights):
    encoder = enc.build_encoder("inception-cnn-2015", demo_weights)
    scripted = torch.jit.load(str(demo_weights / "inception-2015-12-05-fid-helper.pt"), map_location="cpu").eval()
    x = torch.randn(1, 3, 283, 283)
    with torch.inference_mode():
        ours = encoder.trunk.to_mixed_6e(x)
        theirs = x
        for name, layer in scripted.net.layers.named_children():
            theirs = layer(theirs)
            if name == "mixed_7":  # Mixed_6e
                break
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_missing_or_corrupt_weight_file_names_the_file_and_the_fix(tmp_path, demo_weights):
    with pytest.raises(WeightError) as info:
        enc.build_encoder("effnetlite-cnn-lite0", tmp_path)
    assert str(tmp_path / "efficientnet-lite0.pth") in str(info.value) and "fetch_weights" in str(info.value)

    corrupt = tmp_path / "efficientnet-lite0.pth"
    corrupt.write_bytes((demo_weights / "efficientnet-lite0.pth").read_bytes()[:1000])
    with pytest.raises(WeightError) as info:
        enc.build_encoder("effnetlite-cnn-lite0", tmp_path)
    assert str(corrupt) in str(info.value) and "fetch_weights" in str(info.value)


# --- the extract_features stage -------------------------------------------------------------------------------


def test_extract_features_stage_writes_a_feature_store(tmp_path, demo_weights):
    from repabench.encoders import extract_features_main
    from repabench.store import Store, write_store

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    masks = (rng.random((5, 32, 32)) > 0.5).astype(np.uint8)
    write_store(tmp_path / "images", {"images": images, "labels": np.arange(5), "masks": masks},
                {"resolution": 32, "num_classes": 5, "class_names": list("abcde")})
    params = json.dumps({"features": {"grid": None, "batch_size": 2, "dtype": "float16"}})
    for name in ("pixels-classic-raw", "effnetlite-cnn-lite0"):
        out = tmp_path / "features" / name
        assert extract_features_main(["--images", str(tmp_path / "images"), "--out", str(out), "--encoder", name,
                                      "--weights-dir", str(demo_weights), "--device", "cpu",
                                      "--params", params]) == 0
        store = Store(out, verify=True)
        dim = enc.REGISTRY[name].embed_dim
        assert store["tokens"].shape == (5, 4, dim) and store["tokens"].dtype == np.float16
        np.testing.assert_array_equal(store["labels"], np.arange(5))
        np.testing.assert_array_equal(store["masks"], masks)
        assert store.meta("grid") == 2 and store.meta("encoder")["name"] == name
        assert store.meta("provenance")["stage"] == "extract_features"
        direct = enc.build_encoder(name, demo_weights)(torch.from_numpy(images).permute(0, 3, 1, 2), grid=2)
        np.testing.assert_allclose(store["tokens"].astype(np.float32), direct.numpy(), rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(store["pooled"], direct.numpy().mean(1), rtol=1e-5, atol=1e-5)
    pooled_only = tmp_path / "features" / "pooled-only"
    assert extract_features_main(["--images", str(tmp_path / "images"), "--out", str(pooled_only), "--encoder",
                                  "pixels-classic-raw", "--device", "cpu", "--params", params, "--pooled-only"]) == 0
    assert "tokens" not in Store(pooled_only) and Store(pooled_only)["pooled"].shape == (5, 768)
    weights = Store(tmp_path / "features" / "effnetlite-cnn-lite0").meta("provenance")["weights"]
    assert weights == {"efficientnet-lite0.pth": WEIGHTS["efficientnet-lite0.pth"].sha256}


def test_extract_features_rejects_an_unknown_encoder(tmp_path):
    from repabench.encoders import extract_features_main

    with pytest.raises(SystemExit, match="known encoders"):
        extract_features_main(["--images", str(tmp_path), "--out", str(tmp_path / "o"), "--encoder", "nope-vit-b"])


# --- loading hub/upstream-format checkpoints (synthetic files with the real layouts; no download) -----------


def _save_with_record(state: dict, path: Path, torch_pickle: bool = False) -> None:
    from safetensors.torch import save_file

    from repabench.atomic import write_json
    from repabench.provenance import sha256_file
    from repabench.weights import sidecar

    if torch_pickle:
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    write_json(sidecar(path), {"name": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size})


def test_checkpoints_load_with_the_upstream_position_embedding_resampling(tmp_path):
    import timm
    from timm.layers import resample_abs_pos_embed

    # DINO ViT-S/16 saved at its native 224 px (14x14 positions): bicubic + antialias to 16x16 (timm's resampler)
    native = timm.create_model("vit_small_patch16_224", num_classes=0).state_dict()
    _save_with_record(native, tmp_path / "dino-vit-s.safetensors")
    dino = enc.build_encoder("dino-vit-s", tmp_path)
    assert dino.pretrained
    expected = resample_abs_pos_embed(native["pos_embed"], (16, 16), num_prefix_tokens=1)
    torch.testing.assert_close(dino.network.pos_embed, expected)
    torch.testing.assert_close(dino.network.blocks[3].mlp.fc1.weight, native["blocks.3.mlp.fc1.weight"])

    # MoCo v3 layout: {"state_dict": {"module.base_encoder.*", "module.momentum_encoder.*", ...}}
    wrapped = {"state_dict": {**{f"module.base_encoder.{k}": v for k, v in native.items()},
                              "module.momentum_encoder.cls_token": native["cls_token"]}, "epoch": 300}
    _save_with_record(wrapped, tmp_path / "mocov3-vit-s.pth.tar", torch_pickle=True)
    moco = enc.build_encoder("mocov3-vit-s", tmp_path)
    torch.testing.assert_close(moco.network.pos_embed, expected)
    assert moco.network.blocks[0].attn.num_heads == 12  # MoCo v3's ViT-S has 12 heads

    # PE-Core-T at its native 384 px (24x24): bilinear without antialias, as PE resizes inside its forward
    pe_native = timm.create_model("vit_pe_core_tiny_patch16_384", num_classes=0, global_pool="").state_dict()
    _save_with_record(pe_native, tmp_path / "pe-vit-t.safetensors")
    pe = enc.build_encoder("pe-vit-t", tmp_path)
    grid = pe_native["pos_embed"][:, 1:].reshape(1, 24, 24, -1).permute(0, 3, 1, 2)
    resized = torch.nn.functional.interpolate(grid, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(pe.network.pos_embed[:, 1:], resized.flatten(2).transpose(1, 2))
    torch.testing.assert_close(pe.network.pos_embed[:, :1], pe_native["pos_embed"][:, :1])


def test_batchnorm_folding_keeps_the_efficientnet_function():
    import copy

    import timm

    from repabench.encoders.cnn import fold_batchnorm

    torch.manual_seed(0)
    net = timm.create_model("tf_efficientnet_lite0").eval()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.5)
    folded = fold_batchnorm(copy.deepcopy(net))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), net(x), atol=1e-4, rtol=1e-4)
