import json

import numpy as np
import pytest
import torch

from repabench.store import Store, write_store
from repabench.vae import SD_VAE_CONFIG, SD_VAE_SCALE, PCAAutoencoder, SDVAE, cache_latents_main, \
    latent_statistics, load_autoencoder, psnr


def as_nchw(images):
    return torch.from_numpy(np.array(images)).permute(0, 3, 1, 2)


def test_pca_round_trip_psnr_on_heldout(demo_stores):
    train, heldout = Store(demo_stores / "train"), Store(demo_stores / "heldout")
    ae = PCAAutoencoder.fit(train["images"], channels=4)
    x = as_nchw(heldout["images"])
    moments = ae.encode_moments(x)
    assert moments.shape == (32, 8, 16, 16)
    assert torch.all(moments[:, 4:] == 0)  # deterministic encoder: zero posterior std
    value = psnr(ae.decode(moments[:, :4]), x.float() / 127.5 - 1)
    assert value > 19.0, f"demo autoencoder round trip {value:.2f} dB (stated: > 19 dB at 4 channels, 128 px)"


def test_pca_decoder_is_exact_on_its_latent_space(demo_stores):
    ae = PCAAutoencoder.fit(Store(demo_stores / "train")["images"], channels=4)
    z = torch.randn(2, 4, 4, 4) * 0.1
    back = ae.encode_moments(((ae.decode(z) + 1) * 127.5))[:, :4]
    torch.testing.assert_close(back, z, atol=1e-4, rtol=0)


def test_pca_save_load(tmp_path, demo_stores):
    ae = PCAAutoencoder.fit(Store(demo_stores / "train")["images"], channels=4)
    ae.save(tmp_path / "ae.pt", {"k": 1})
    loaded = load_autoencoder("pca", tmp_path / "ae.pt")
    torch.testing.assert_close(loaded.components, ae.components)
    with pytest.raises(FileNotFoundError, match="snakemake"):
        load_autoencoder("pca", tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="unknown autoencoder kind"):
        load_autoencoder("taesd", None)


def test_sd_vae_wrapper_on_random_init_real_config():
    vae = SDVAE.load(None)  # random init of the sd-vae-ft-mse architecture
    assert sum(p.numel() for p in vae.parameters()) == 83_653_863
    assert SD_VAE_CONFIG["block_out_channels"] == [128, 256, 512, 512]
    torch.manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    moments = vae.encode_moments(x)
    assert moments.shape == (2, 8, 4, 4)
    with torch.no_grad():
        dist = vae.vae.encode(x.float() / 127.5 - 1).latent_dist
    torch.testing.assert_close(moments[:, :4], dist.mean)  # mean first ...
    torch.testing.assert_close(moments[:, 4:], dist.std)   # ... then std
    assert vae.decode(moments[:, :4]).shape == (2, 3, 32, 32)


def test_latent_statistics_match_numpy():
    rng = np.random.default_rng(0)
    mean = rng.normal(2.0, 3.0, (50, 4, 4, 4)).astype(np.float32)
    moments = np.concatenate([mean, np.zeros_like(mean)], 1)
    stats = latent_statistics(moments, "data", 4, chunk=7)
    np.testing.assert_allclose(stats["bias"], mean.mean((0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(stats["scale"], 1 / mean.std((0, 2, 3)), rtol=1e-4)
    constant = latent_statistics(moments, "constant", 4)
    assert constant["scale"] == [SD_VAE_SCALE] * 4 and constant["bias"] == [0.0] * 4


def test_cache_latents_stage_pairs_by_index(tmp_path, demo_stores):
    ae = PCAAutoencoder.fit(Store(demo_stores / "train")["images"], channels=4)
    ae.save(tmp_path / "ae.pt", {})
    params = json.dumps({"vae": {"kind": "pca", "channels": 4, "batch_size": 10, "latent_norm": "data"}})
    assert cache_latents_main(["--images", str(demo_stores / "heldout"), "--out", str(tmp_path / "lat"),
                               "--autoencoder", str(tmp_path / "ae.pt"), "--params", params, "--device", "cpu"]) == 0
    lat, images = Store(tmp_path / "lat"), Store(demo_stores / "heldout")
    np.testing.assert_array_equal(lat["labels"], images["labels"])
    torch.testing.assert_close(torch.from_numpy(np.array(lat["moments"][17:18])),
                               ae.encode_moments(as_nchw(images["images"][17:18])))
    assert lat.meta("provenance")["stage"] == "cache_latents"


def test_cache_latents_rejects_non_multiple_of_8(tmp_path, demo_stores):
    write_store(tmp_path / "odd", {"images": np.zeros((2, 30, 30, 3), np.uint8), "labels": np.zeros(2, np.int64)})
    ae = PCAAutoencoder.fit(Store(demo_stores / "train")["images"][:4], channels=4)
    ae.save(tmp_path / "ae.pt", {})
    params = json.dumps({"vae": {"kind": "pca", "channels": 4, "batch_size": 10}})
    with pytest.raises(SystemExit, match="multiple of 8"):
        cache_latents_main(["--images", str(tmp_path / "odd"), "--out", str(tmp_path / "lat"),
                            "--autoencoder", str(tmp_path / "ae.pt"), "--params", params, "--device", "cpu"])
    assert not (tmp_path / "lat").exists()
