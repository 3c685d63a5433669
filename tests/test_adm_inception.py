"""ADMInception against torch-fidelity's reference path and NVlabs' TorchScript network on real photos."""

from __future__ import annotations

import importlib.util
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from repabench.adm.inception import (ADMInception, convert_nvlabs_state, load_inception, load_state, read_state,
                                     tf1_resize_bilinear)
from repabench.weights import WeightError

FID_HELPER = "inception-2015-12-05-fid-helper.pt"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tests must not download anything")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture(scope="session")
def photos() -> np.ndarray:
    """6 of foolbox's 20 ImageNet photos (512 px JPEGs), resized to 96 px: Inception runs at ~5 img/s on 2 cores."""
    spec = importlib.util.find_spec("foolbox")  # do not import foolbox (it needs eagerpy)
    if spec is None:
        pytest.skip("foolbox is not installed (make install)")
    files = sorted(Path(list(spec.submodule_search_locations)[0], "data").glob("imagenet_*.jpg"))
    assert len(files) == 20
    return np.stack([np.asarray(Image.open(f).convert("RGB").resize((96, 96), Image.BICUBIC)) for f in files[::4][:6]])


def _nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------------------------
# TF1 resize


def _tf1_resize_bruteforce(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 ResizeBilinear (align_corners=False, no half-pixel centres), one pixel at a time in float32."""
    in_h, in_w = image.shape[-2:]
    sy, sx = np.float32(in_h / out_h), np.float32(in_w / out_w)
    out = np.zeros(image.shape[:-2] + (out_h, out_w), dtype=np.float32)
    for y in range(out_h):
        fy = np.float32(y) * sy
        y0 = int(np.floor(fy))
        y1, dy = min(y0 + 1, in_h - 1), np.float32(fy - y0)
        for x in range(out_w):
            fx = np.float32(x) * sx
            x0 = int(np.floor(fx))
            x1, dx = min(x0 + 1, in_w - 1), np.float32(fx - x0)
            top = image[..., y0, x0] + (image[..., y0, x1] - image[..., y0, x0]) * dx
            bottom = image[..., y1, x0] + (image[..., y1, x1] - image[..., y1, x0]) * dx
            out[..., y, x] = top + (bottom - top) * dy
    return out


def test_tf1_resize_matches_bruteforce():
    rng = np.random.default_rng(0)
    image = (rng.random((2, 3, 5, 7)) * 255).astype(np.float32)
    for size in [(11, 9), (3, 4), (299, 299)]:
        got = tf1_resize_bilinear(torch.from_numpy(image), size).numpy()
        np.testing.assert_array_equal(got, _tf1_resize_bruteforce(image, *size))


@pytest.mark.parametrize("shape", [(2, 3, 128, 128), (1, 3, 256, 256), (1, 3, 32, 48), (1, 3, 512, 400)])
def test_tf1_resize_equals_torch_fidelity_exactly(shape):
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    x = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(1)).float()
    want = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    assert torch.equal(tf1_resize_bilinear(x, (299, 299)), want)


def test_tf1_resize_differs_from_half_pixel_resize():
    """The test above can fail: PyTorch's own bilinear resize (half-pixel centres) is not TF1's."""
    x = torch.randint(0, 256, (1, 3, 64, 64), generator=torch.Generator().manual_seed(2)).float()
    torch_resize = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    assert (tf1_resize_bilinear(x, (299, 299)) - torch_resize).abs().max() > 1


# ----------------------------------------------------------------------------------------------
# Network and weights


def test_random_init_shapes_and_no_logits_without_fc():
    model = ADMInception()
    with torch.inference_mode():
        out = model(torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8))
    assert out["pool"].shape == (1, 2048) and out["spatial"].shape == (1, 2023)
    assert "logits_unbiased" not in out
    with pytest.raises(ValueError, match="uint8"):
        model(torch.zeros(1, 3, 8, 8))


def test_weights_are_verified(tmp_path):
    bad = tmp_path / FID_HELPER
    bad.write_bytes(b"not the weights")
    with pytest.raises(WeightError, match="SHA-256"):
        load_inception(bad)
    with pytest.raises(WeightError, match="missing"):
        load_inception(tmp_path / "absent.pth")


def test_conversion_covers_every_tensor(fid_helper_weights):
    state = read_state(fid_helper_weights)
    model = load_state(ADMInception(), state)
    assert not model.has_logits
    own = {k for k in ADMInception().state_dict() if not k.endswith("num_batches_tracked")}
    assert own - set(state) == {"fc.weight", "fc.bias"}
    with pytest.raises(ValueError, match="unexpected tensor"):
        convert_nvlabs_state({"net.layers.mixed_11.conv.weight": torch.zeros(1)})


@pytest.fixture(scope="session")
def torch_fidelity_features(fid_helper_weights, photos, tmp_path_factory):
    """torch-fidelity's `inception-v3-compat` extractor (its reference path), offline with the converted weights."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    state = read_state(fid_helper_weights)
    rng = torch.Generator().manual_seed(3)
    state["fc.weight"] = torch.randn(1008, 2048, generator=rng) * 0.05  # the file has none; random but shared
    state["fc.bias"] = torch.zeros(1008)
    path = tmp_path_factory.mktemp("tfid") / "converted.pth"
    torch.save(state, path)
    extractor = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                            feature_extractor_weights_path=str(path))
    tap = {}
    hook = extractor.Mixed_6d.branch1x1.register_forward_hook(
        lambda module, args, out: tap.__setitem__("spatial", out[:, :7].permute(0, 2, 3, 1).reshape(len(out), -1)))
    with torch.inference_mode():
        pool, logits = extractor(_nchw(photos))
    hook.remove()
    return {"pool": pool, "spatial": tap["spatial"], "logits_unbiased": logits, "state": state}


@pytest.mark.parametrize("channels_last", [False, True])
def test_features_match_torch_fidelity_on_real_photos(fid_helper_weights, photos, torch_fidelity_features,
                                                      channels_last):
    model = load_inception(fid_helper_weights, channels_last=channels_last)
    with torch.inference_mode():
        ours = model(_nchw(photos))
    tolerance = 1e-4 if channels_last else 1e-5  # a different conv algorithm reorders float sums
    for key in ("pool", "spatial"):
        np.testing.assert_allclose(ours[key].numpy(), torch_fidelity_features[key].numpy(), rtol=0, atol=tolerance)
    assert ours["pool"].abs().mean() > 0.1  # real features, not zeros


def test_logits_match_torch_fidelity(photos, torch_fidelity_features):
    model = load_state(ADMInception(), torch_fidelity_features["state"])
    assert model.has_logits
    with torch.inference_mode():
        logits = model(_nchw(photos[:2]))["logits_unbiased"]
    np.testing.assert_allclose(logits.numpy(), torch_fidelity_features["logits_unbiased"][:2].numpy(),
                               rtol=0, atol=1e-5)


def test_pool_matches_nvlabs_torchscript(fid_helper_weights, photos, torch_fidelity_features):
    """A second, independent network: the TorchScript module itself, fed our TF1-resized, scaled input."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(fid_helper_weights), map_location="cpu").eval()
    x = tf1_resize_bilinear(_nchw(photos[:2]).float(), (299, 299))
    with torch.inference_mode():
        pool = scripted((x - 128) / 128)
    np.testing.assert_allclose(pool.numpy(), torch_fidelity_features["pool"][:2].numpy(), rtol=0, atol=1e-5)


def test_fused_bn_is_close(fid_helper_weights, photos, torch_fidelity_features):
    model = load_inception(fid_helper_weights, fuse=True)
    with torch.inference_mode():
        pool = model(_nchw(photos[:2]))["pool"]
    np.testing.assert_allclose(pool.numpy(), torch_fidelity_features["pool"][:2].numpy(), rtol=0, atol=1e-4)
