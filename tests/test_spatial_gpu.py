"""Spatial metrics on CUDA agree with the CPU path (the brute-force oracle tests run on the CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repabench.spatial import SpatialConfig, spatial_metrics

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("side", [8, 16])
def test_cuda_matches_cpu(side):
    rng = np.random.default_rng(side)
    tokens = (rng.normal(size=(300, side * side, 96)) + rng.normal(size=(1, 1, 96))).astype(np.float16)
    masks = rng.random((300, side * side)) < 0.4
    cpu = spatial_metrics(tokens, masks, SpatialConfig(), device="cpu")
    gpu = spatial_metrics(torch.from_numpy(tokens).cuda(), masks, SpatialConfig(), device="cuda", chunk=64)
    for name in ("LDS", "CDS", "SRSS", "RMSC"):
        np.testing.assert_allclose(gpu[name], cpu[name], atol=1e-5, equal_nan=True, err_msg=name)
