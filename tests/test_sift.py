"""Upstream's Kornia `sift-*` baseline (docs/upstream-facts.md §4.2): dense SIFT on grey at one keypoint per token.

The oracle is written from the spec, one keypoint at a time: grey = 0.299 R + 0.587 G + 0.114 B of x / 255, the
keypoint's local affine frame written out by hand (centre (8 + 16 c, 8 + 16 r), scale 16, orientation 0), then
Kornia's orienter (patch 20), 41-px patch, descriptor with 4x4x8 bins clipped at 0.2 and no RootSIFT, L2 norm.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import repabench.encoders as enc

NAME = "sift-upstream-g16_d128"


def _oracle(images: torch.Tensor, grid: int) -> torch.Tensor:
    import kornia.feature as kf

    side = 16 * grid
    x = F.interpolate(images.float(), size=(side, side), mode="bilinear", align_corners=False)
    x = x / 255.0
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    orienter = kf.LAFOrienter(20)
    describe = kf.SIFTDescriptor(41, num_ang_bins=8, num_spatial_bins=4, rootsift=False, clipval=0.2)
    out = torch.zeros(images.shape[0], grid * grid, 128)
    for b in range(images.shape[0]):
        for r in range(grid):
            for c in range(grid):
                laf = torch.tensor([[[[16.0, 0.0, 8.0 + 16 * c], [0.0, 16.0, 8.0 + 16 * r]]]])
                laf = orienter(laf, grey[b:b + 1])
                patch = kf.extract_patches_from_pyramid(grey[b:b + 1], laf, PS=41)[0]
                d = describe(patch)[0]
                out[b, r * grid + c] = d / d.norm().clamp_min(1e-12)
    return out


def test_sift_tokens_match_the_per_keypoint_oracle():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 48, 48), dtype=torch.uint8, generator=gen)  # resized to 32 px, grid 2
    encoder = enc.build_encoder(NAME)
    got = encoder(images, grid=2)
    assert got.shape == (2, 4, 128) and not encoder.pretrained and enc.weight_names(NAME) == []
    torch.testing.assert_close(got, _oracle(images, 2), atol=2e-5, rtol=1e-4)


def test_sift_tokens_are_row_major_and_local():
    """A small textured blob on a flat image changes exactly the tokens whose keypoint support (centre +- scale 16)
    overlaps it, in row-major token order; every descriptor is non-negative with unit norm."""
    flat = torch.full((1, 3, 64, 64), 128, dtype=torch.uint8)
    image = flat.clone()
    y0, y1, x0, x1 = 6, 11, 22, 27  # around (x=24, y=8), the centre of token (row 0, col 1)
    image[0, :, y0:y1, x0:x1] = torch.randint(0, 256, (3, y1 - y0, x1 - x0), dtype=torch.uint8,
                                              generator=torch.Generator().manual_seed(1))
    encoder = enc.build_encoder(NAME)
    tokens, reference = encoder(image, grid=4)[0], encoder(flat, grid=4)[0]
    changed = {(i // 4, i % 4) for i in range(16) if (tokens[i] - reference[i]).abs().max() > 1e-4}

    def reaches(centre, lo, hi):
        return centre - 16 <= hi - 1 and centre + 16 >= lo

    expected = {(r, c) for r in range(4) for c in range(4)
                if reaches(8 + 16 * r, y0, y1) and reaches(8 + 16 * c, x0, x1)}
    assert changed == expected == {(r, c) for r in (0, 1) for c in (0, 1, 2)}
    assert (tokens >= 0).all()
    np.testing.assert_allclose(tokens.norm(dim=-1).numpy(), 1.0, atol=1e-5)


def test_sift_is_a_baseline_without_weights():
    spec = enc.encoder_spec(NAME)
    assert spec.family == "sift" and spec.embed_dim == 128
    with pytest.raises(ValueError, match="no weights"):
        enc.validate_encoder_name(f"{NAME}_randinit")
