"""MeanFlow as a generator family of the stages: the model name (MF-*) selects it, `train` trains it on the latents
with meanflow_loss (train.meanflow), its checkpoint records the family and objective, `sample` rebuilds it and
samples with meanflow_sample (mode: meanflow, 1 NFE or more) through the VAE into the same shards and manifest;
samplers of other families are refused."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train_support import CLASSES, LATENT, make_data, train_in_process  # noqa: E402
from test_train_support import mf_argv as mf_train_argv  # noqa: E402

from repabench.meanflow import MeanFlowObjective, MeanFlowSiT, meanflow_sample
from repabench.sample import ImageNoise, SampleConfig, SamplerSettings, generate, latents_to_images, load_samples
from repabench.samplers import family_mode_mismatch
from repabench.sit import load_generator
from repabench.sizes import MEANFLOW_CONFIGS, MODEL_CONFIGS, model_family, model_name, model_slug
from repabench.vae import PCAAutoencoder

SHORT = {"steps": 4, "checkpoint_steps": [4], "state_every": 2}
OBJECTIVE = {"ratio_r_not_t": 0.5, "p_mean": -0.2}  # not the defaults, so that the checkpoint shows they arrived


def mf_argv(paths, out, state_root, train=None):
    """A short MF-T/2 run with a non-default objective."""
    return mf_train_argv(paths, out, state_root, train={**SHORT, "meanflow": OBJECTIVE, **(train or {})})


def test_names_slugs_and_families():
    assert model_slug("MF-B/2") == "mf-b-2" and model_name("mf-b-2") == "MF-B/2"
    assert all(model_name(model_slug(n)) == n for n in MEANFLOW_CONFIGS)
    assert model_family("MF-T/2") == model_family("mf-t-2") == "meanflow"
    assert model_family("SiT-B/2") == "sit"
    with pytest.raises(ValueError, match="unknown model"):
        model_slug("MF-H/2")


def test_mf_b2_is_sit_b2s_size():
    """MeanFlow's Table 2b model is SiT-B/2 (upstream-spec §9.4): depth 12, width 768, 12 heads, patch 2."""
    cfg = MEANFLOW_CONFIGS["MF-B/2"]
    assert (cfg["depth"], cfg["hidden_size"], cfg["num_heads"], cfg["patch_size"]) == (12, 768, 12, 2)
    assert set(MEANFLOW_CONFIGS) == {n.replace("SiT-", "MF-") for n in MODEL_CONFIGS}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("mf-stage")
    data = make_data(root)
    assert train_in_process(mf_argv(data, root / "out", root / "state")) == 0
    return data, root


def test_a_meanflow_run_trains_on_the_latents_and_records_its_family(trained):
    data, root = trained
    ckpt = torch.load(root / "out" / "checkpoints" / "0000004.pt", weights_only=True)
    assert ckpt["model"]["family"] == "meanflow" and ckpt["model"]["name"] == "MF-T/2"
    assert ckpt["model"]["kwargs"] == {"input_size": LATENT, "in_channels": 4, "num_classes": CLASSES}
    assert ckpt["objective"] == dataclasses.asdict(MeanFlowObjective(**OBJECTIVE))
    assert "latent_stats" in ckpt and not any(k.startswith("projectors.") for k in ckpt["ema"])
    assert any(k.startswith("h_embedder.") for k in ckpt["ema"])  # the interval embedder of u(z, r, t)
    log = json.loads((root / "out" / "log.json").read_text())
    assert log["run"]["model"] == "mf-t-2"
    assert all(np.isfinite(e["loss"]) and e["align"] != 0 for e in log["entries"])
    params = log["provenance"]["params"]
    assert params["meanflow"]["ratio_r_not_t"] == 0.5 and "jit" not in params
    assert "latents" in params["data"]
    model, _ = load_generator(root / "out" / "checkpoints" / "0000004.pt")
    assert isinstance(model, MeanFlowSiT) and not model.training


def test_the_objective_changes_the_state_hash(trained):
    """Two runs that differ only in train.meanflow must not share a state directory."""
    data, root = trained
    argv = mf_argv(data, root / "b", root / "state", train={"meanflow": {"ratio_r_not_t": 0.0}, "steps": 1,
                                                             "checkpoint_steps": [1]})
    assert train_in_process(argv) == 0
    assert len([p for p in (root / "state").iterdir() if p.is_dir()]) == 2


def test_an_unknown_meanflow_key_is_refused_naming_it(trained, tmp_path):
    data, _ = trained
    argv = mf_argv(data, tmp_path / "o", tmp_path / "s", train={"meanflow": {"ratio": 0.5}})
    with pytest.raises(SystemExit, match=r"meanflow.*ratio"):
        train_in_process(argv)


def test_a_meanflow_run_needs_its_latents(trained, tmp_path):
    data, _ = trained
    argv = mf_argv(data, tmp_path / "o", tmp_path / "s")
    at = argv.index("--latents")
    del argv[at:at + 2]
    with pytest.raises(SystemExit, match="--latents and --latent-stats are required"):
        train_in_process(argv)


@pytest.fixture(scope="module")
def autoencoder(trained):
    _, root = trained
    images = np.random.default_rng(0).integers(0, 256, size=(16, 64, 64, 3), dtype=np.uint8)
    PCAAutoencoder.fit(images, channels=4).save(root / "ae.pt", meta={})
    return root / "ae.pt"


@pytest.mark.parametrize("steps, cfg_scale", [(1, 1.0), (2, 2.0)])
def test_a_meanflow_checkpoint_samples_as_meanflow_sample(trained, autoencoder, tmp_path, steps, cfg_scale):
    data, root = trained
    ckpt = root / "out" / "checkpoints" / "0000004.pt"
    config = replace(SampleConfig(), n_samples=6, shard_size=4, batch_size=4, labels="balanced", compile=False)
    settings = SamplerSettings("meanflow", steps, heun=False, cfg_scale=cfg_scale, guidance_low=0.0,
                               guidance_high=1.0)
    manifest = json.loads(generate(ckpt, data["stats"], "pca", autoencoder, tmp_path / "s", settings, config,
                                   f"mf{steps}", device="cpu").read_text())
    assert manifest["n_samples"] == 6 and {"checkpoint", "latent_stats", "autoencoder"} <= set(manifest["weights"])
    images, labels = load_samples(tmp_path / "s" / "manifest.json", verify=True)
    assert np.concatenate(labels).tolist() == [0, 1, 2, 0, 1, 2]

    # the stage adds only sharding, decoding and quantisation to meanflow_sample on the same per-image noise
    model, _ = load_generator(ckpt)
    stats = json.loads(data["stats"].read_text())
    noise = ImageNoise([0, 1, 2, 3], 0, (4, LATENT, LATENT), torch.device("cpu")).draw()
    z = meanflow_sample(model, noise.float(), torch.tensor([0, 1, 2, 0]), steps, cfg_scale, CLASSES).double()
    expected = latents_to_images(PCAAutoencoder.load(autoencoder).decode, z,
                                 torch.tensor(stats["bias"], dtype=torch.float64),
                                 torch.tensor(stats["scale"], dtype=torch.float64))
    assert np.array_equal(np.asarray(images[0]), expected)

    with pytest.raises(SystemExit, match="mode: sde"):
        generate(ckpt, data["stats"], "pca", autoencoder, tmp_path / "sde", SamplerSettings("sde", 4), config,
                 device="cpu")


def test_samplers_of_one_family_are_refused_for_another():
    assert family_mode_mismatch("meanflow", "meanflow") is None and family_mode_mismatch("sit", "ode") is None
    assert "MeanFlow runs" in family_mode_mismatch("sit", "meanflow")
    assert "JiT runs" in family_mode_mismatch("meanflow", "jit")
    with pytest.raises(ValueError, match="steps must be an integer >= 2"):
        SamplerSettings("ode", 1)
    SamplerSettings("meanflow", 1)  # one NFE is MeanFlow's point


def test_the_untrained_meanflow_generator_loads(trained, tmp_path):
    from repabench.untrained import untrained_checkpoint

    data, _ = trained
    ckpt = untrained_checkpoint(data["images"], data["latents"], data["stats"], "MF-T/2", 0, 0.1)
    assert ckpt["model"]["family"] == "meanflow" and ckpt["objective"] == dataclasses.asdict(MeanFlowObjective())
    torch.save(ckpt, tmp_path / "u.pt")
    model, _ = load_generator(tmp_path / "u.pt")
    assert isinstance(model, MeanFlowSiT)
