"""REPA-E's end-to-end step (repabench.end_to_end) against independent oracles: brute-force BatchNorm statistics,
the gradient routing of each loss, the PCA autoencoder it starts from, the tuned decoder's round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repabench.align import denoising_loss, interpolant
from repabench.end_to_end import (EndToEnd, EndToEndConfig, LatentBatchNorm, TrainablePCA, TrainableSDVAE,
                                  autoencoder_record, kl_to_standard_normal, tuned_decoder)
from repabench.sit import ProjectorConfig, build_sit
from repabench.vae import PCAAutoencoder

CHANNELS, RES, GRID = 4, 32, 2  # 32 px images -> 4x4 latents -> SiT-T/2's 2x2 tokens


def _tiny_sdvae() -> TrainableSDVAE:
    from diffusers import AutoencoderKL

    return TrainableSDVAE(AutoencoderKL(in_channels=3, out_channels=3, latent_channels=CHANNELS, layers_per_block=1,
                                        norm_num_groups=8, block_out_channels=[8, 8, 8, 8],
                                        down_block_types=["DownEncoderBlock2D"] * 4,
                                        up_block_types=["UpDecoderBlock2D"] * 4))


def _pca() -> TrainablePCA:
    torch.manual_seed(1)
    images = torch.randint(0, 256, (16, RES, RES, 3), dtype=torch.uint8).numpy()
    pca = PCAAutoencoder.fit(images, CHANNELS)
    return TrainablePCA(pca.mean, pca.components)


def _setup(autoencoder):
    torch.manual_seed(0)
    sit = build_sit("SiT-T/2", RES // 8, in_channels=CHANNELS, num_classes=3,
                    projectors=[ProjectorConfig("mlp", 16, hidden=32)], encoder_depth=1)
    with torch.no_grad():  # adaLN-Zero and the zero final layer would make every first-step gradient vanish
        for p in sit.parameters():
            p.add_(0.05 * torch.randn_like(p))
    e2e = EndToEnd(autoencoder, [0.0] * CHANNELS, [1.0] * CHANNELS, EndToEndConfig(), (0.9, 0.999), 1e-8, 0.0)
    images = torch.randint(0, 256, (4, 3, RES, RES), dtype=torch.float32)
    labels = torch.tensor([0, 1, 2, 0])
    targets = [torch.randn(4, GRID * GRID, 16)]
    return sit, e2e, images, labels, targets


def _grads(module):
    return [p.grad for p in module.parameters()]


def _all_zero(grads):
    return all(g is None or bool((g == 0).all()) for g in grads)


def test_batchnorm_matches_brute_force_statistics():
    torch.manual_seed(0)
    z = torch.randn(6, CHANNELS, 5, 5) * torch.tensor([1.0, 2.0, 0.5, 3.0]).view(1, -1, 1, 1) + 0.7
    bias, scale = [0.1, -0.2, 0.3, 0.0], [1.0, 0.5, 2.0, 0.25]
    bn = LatentBatchNorm(CHANNELS, momentum=0.1, eps=1e-4)
    bn.start_from(bias, scale)
    assert np.allclose(bn.running_var.numpy(), 1 / np.array(scale) ** 2)
    out = bn.train()(z)
    x = z.double().numpy()
    mean = x.mean(axis=(0, 2, 3))
    var_biased = x.var(axis=(0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    expect = (x - mean[None, :, None, None]) / np.sqrt(var_biased[None, :, None, None] + 1e-4)
    assert np.allclose(out.numpy(), expect, atol=1e-5)
    assert np.allclose(bn.running_mean.numpy(), 0.9 * np.array(bias) + 0.1 * mean, atol=1e-6)
    unbiased = var_biased * n / (n - 1)
    assert np.allclose(bn.running_var.numpy(), 0.9 / np.array(scale) ** 2 + 0.1 * unbiased, atol=1e-5)
    stats = bn.latent_stats()
    assert np.allclose(stats["scale"], 1 / np.sqrt(bn.running_var.numpy()), rtol=1e-6)
    evaluated = bn.eval()(z).numpy()
    rm, rv = bn.running_mean.numpy(), bn.running_var.numpy()
    assert np.allclose(evaluated, (x - rm[None, :, None, None]) / np.sqrt(rv[None, :, None, None] + 1e-4), atol=1e-5)


@pytest.mark.parametrize("make", [_pca, _tiny_sdvae], ids=["pca", "sd-vae"])
def test_gradient_routing(make):
    sit, e2e, images, labels, targets = _setup(make())
    vae = e2e.autoencoder
    x = images / 127.5 - 1
    mean, logvar = vae.posterior(x)
    z = mean if logvar is None else mean + (0.5 * logvar).exp() * torch.randn_like(mean)
    t, noise = torch.rand(4), torch.randn_like(z)

    # the diffusion loss, on the stop-gradient latents: SiT gradients, none in the VAE
    x_t, v = interpolant(e2e.bn(z.detach()), noise, t)
    velocity, _ = sit(x_t, t, labels)
    denoising_loss(velocity, v).backward(retain_graph=True)
    assert _all_zero(_grads(vae))
    assert not _all_zero(_grads(sit))
    sit.zero_grad(set_to_none=True)

    # the alignment loss through the frozen SiT: VAE encoder gradients, none in the decoder or the SiT
    e2e.alignment_through(sit, z, t, noise, labels, targets).backward(retain_graph=True)
    encoder = vae.encoder if isinstance(vae, TrainablePCA) else vae.vae.encoder
    decoder = vae.decoder if isinstance(vae, TrainablePCA) else vae.vae.decoder
    assert not _all_zero(_grads(encoder))
    assert _all_zero(_grads(decoder))
    assert _all_zero(_grads(sit))
    assert all(p.requires_grad for p in sit.parameters() if p is not sit.pos_embed)
    vae.zero_grad(set_to_none=True)

    # the regulariser reaches the decoder (and the encoder)
    recon = vae.decode(z)
    torch.nn.functional.l1_loss(recon, x).backward()
    assert not _all_zero(_grads(decoder)) and not _all_zero(_grads(encoder))


def test_vae_update_moves_the_vae_only_and_feeds_the_sit_detached_latents():
    sit, e2e, images, labels, targets = _setup(_pca())
    sit_before = [p.detach().clone() for p in sit.parameters()]
    vae_before = [p.detach().clone() for p in e2e.autoencoder.parameters()]
    mean_before = e2e.bn.running_mean.clone()
    batch = e2e.vae_update(sit, images, labels, targets, vae_align_coeff=1.5, weighting="uniform", path="linear")
    assert all(torch.equal(a, b) for a, b in zip(sit_before, sit.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(vae_before, e2e.autoencoder.parameters()))
    assert not batch.x0.requires_grad and batch.x0.shape == (4, CHANNELS, RES // 8, RES // 8)
    assert not torch.equal(mean_before, e2e.bn.running_mean)  # the SiT's batch updated the running statistics
    assert float(batch.metrics["vae_align"]) != 0.0


def test_trainable_pca_starts_at_the_fitted_pca():
    torch.manual_seed(2)
    images = torch.randint(0, 256, (8, RES, RES, 3), dtype=torch.uint8)
    pca = PCAAutoencoder.fit(images.numpy(), CHANNELS)
    trainable = TrainablePCA(pca.mean, pca.components)
    nchw = images.permute(0, 3, 1, 2)
    reference = pca.encode_moments(nchw)[:, :CHANNELS]
    with torch.no_grad():
        mean, logvar = trainable.posterior(nchw.float() / 127.5 - 1)
        assert logvar is None
        assert torch.allclose(mean, reference, atol=1e-4)
        assert torch.allclose(trainable.decode(mean).clamp(-1, 1), pca.decode(reference), atol=1e-4)


@pytest.mark.parametrize("make", [_pca, _tiny_sdvae], ids=["pca", "sd-vae"])
def test_tuned_decoder_round_trip(make):
    vae = make()
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.01)
    z = torch.randn(2, CHANNELS, 4, 4)
    rebuilt = tuned_decoder(autoencoder_record(vae))
    with torch.no_grad():
        assert torch.equal(rebuilt.decode(z), vae.eval().decode(z))


def test_kl_matches_the_gaussian_formula():
    mean, logvar = torch.randn(3, 2, 2, 2), torch.randn(3, 2, 2, 2)
    dist = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    expect = torch.distributions.kl_divergence(dist, torch.distributions.Normal(0.0, 1.0)).flatten(1).sum(1).mean()
    assert torch.allclose(kl_to_standard_normal(mean, logvar), expect, atol=1e-5)
