"""bench/bench_precision.py's measurements against oracles that hold whatever the GPU: mantissa widths and the
closed form of the Frechet distance of a pure mean shift. (The fp16-vs-bf16 FD itself needs a GPU run.)"""

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import bench_precision

    return bench_precision


def test_target_error_follows_the_mantissa_widths(bench):
    """bf16 keeps 8 significant bits, fp16 11: its rounding error is ~2^3 = 8 times larger."""
    from repabench.align import Method
    from repabench.encoders import build_encoder

    images, _ = bench.synthetic_set(4, 8)
    encoder = build_encoder("effnetlite-cnn-lite0", grid=4)
    method = Method.from_config({**bench.IREPA, "encoder_depth": 2})
    errors = bench.target_error(encoder, images, 4, method, torch.device("cpu"))
    assert 0 < errors["fp16"] < errors["bf16"]
    assert 3 < errors["bf16"] / errors["fp16"] < 30


def test_fd_latent_is_zero_for_the_same_set_and_the_squared_shift_for_a_moved_one(bench):
    gen = torch.Generator().manual_seed(0)
    reference = torch.randn(400, 4, 2, 2, generator=gen)
    assert bench.fd_latent(reference, reference, 6) == pytest.approx(0.0, abs=1e-8)
    shift = torch.randn(1, 4, 2, 2, generator=gen)
    projection = torch.randn(16, 6, generator=torch.Generator().manual_seed(99)) / 4.0  # the bench's fixed one
    expected = float(((shift.flatten(1) @ projection) ** 2).sum())
    assert bench.fd_latent(reference + shift, reference, 6) == pytest.approx(expected, rel=1e-6)


def test_synthetic_set_is_deterministic_and_unit_scale(bench):
    images, latents = bench.synthetic_set(16, 4)
    again, _ = bench.synthetic_set(16, 4)
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.uint8 and latents.shape == (16, 4, 4, 4)
    assert torch.equal(images, again)
    assert latents.mean().abs() < 1e-5 and (latents.std() - 1).abs() < 1e-5
