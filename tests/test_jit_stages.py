"""JiT as a generator family of the stages: the model name selects it, `train` trains it on the image store (no
latents), its checkpoint records the family and objective, `sample` rebuilds it and samples pixels (no VAE) into the
same shards and manifest; SiT checkpoints and samplers are refused where they do not fit."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train_support import RESOLUTION, jit_argv, make_data, train_argv, train_in_process  # noqa: E402

from repabench.sample import SampleConfig, SamplerSettings, generate, load_samples
from repabench.sit import load_generator
from repabench.sizes import JIT_CONFIGS, MODEL_CONFIGS, model_family, model_name, model_slug

SHORT = {"steps": 4, "checkpoint_steps": [4], "state_every": 2}


def test_names_slugs_and_families():
    assert model_slug("JiT-B/16") == "jit-b-16" and model_name("jit-b-16") == "JiT-B/16"
    assert all(model_name(model_slug(n)) == n for n in [*MODEL_CONFIGS, *JIT_CONFIGS])
    assert model_family("JiT-T/16") == model_family("jit-t-16") == "jit"
    assert model_family("SiT-B/2") == model_family("sit-b-2") == "sit"
    with pytest.raises(ValueError, match="unknown model"):
        model_slug("JiT-S/16")  # JiT has no S size


def test_jit_sizes_are_the_upstream_table():
    """docs/upstream-facts.md §10 (JiT `model_jit.py`), written out independently of repabench.sizes."""
    table = {"B": (12, 768, 12, 128, 4), "L": (24, 1024, 16, 128, 8), "H": (32, 1280, 16, 256, 10)}
    for size, (depth, width, heads, bottleneck, start) in table.items():
        for patch in (16, 32):
            cfg = JIT_CONFIGS[f"JiT-{size}/{patch}"]
            assert (cfg["depth"], cfg["hidden_size"], cfg["num_heads"], cfg["bottleneck_dim"],
                    cfg["in_context_len"], cfg["in_context_start"], cfg["patch_size"]) == (
                        depth, width, heads, bottleneck, 32, start, patch)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("jit-stage")
    data = make_data(root)
    assert train_in_process(jit_argv(data, root / "out", root / "state", train=SHORT)) == 0
    return data, root


def test_a_jit_run_trains_on_the_images_and_records_its_family(trained):
    data, root = trained
    ckpt = torch.load(root / "out" / "checkpoints" / "0000004.pt", weights_only=True)
    assert ckpt["model"] == {"family": "jit", "name": "JiT-T/8",
                             "kwargs": {"input_size": RESOLUTION, "num_classes": 3}}
    assert ckpt["objective"] == {"p_mean": -0.8, "p_std": 0.8, "t_eps": 0.05, "noise_scale": 1.0,
                                 "label_drop_prob": 0.1}
    assert "latent_stats" not in ckpt and not any(k.startswith("projectors.") for k in ckpt["ema"])
    log = json.loads((root / "out" / "log.json").read_text())
    assert log["run"]["model"] == "jit-t-8"
    assert all(np.isfinite(e["loss"]) and e["align"] != 0 for e in log["entries"])
    assert log["provenance"]["params"]["jit"]["hflip"] is True
    assert "latents" not in log["provenance"]["params"]["data"]
    model, meta = load_generator(root / "out" / "checkpoints" / "0000004.pt")
    assert type(model).__name__ == "JiT" and not model.training


def test_a_sit_run_still_needs_its_latents(trained):
    data, root = trained
    argv = train_argv(data, root / "sit", root / "sit-state", train=SHORT)
    at = argv.index("--latents")
    del argv[at:at + 2]
    with pytest.raises(SystemExit, match="--latents and --latent-stats are required"):
        train_in_process(argv)


def test_a_flip_with_cached_targets_is_refused(trained):
    data, root = trained
    argv = jit_argv(data, root / "c", root / "c-state", train={**SHORT, "cache_targets": True})
    with pytest.raises(SystemExit, match="train.jit.hflip"):
        train_in_process(argv)


def test_a_jit_checkpoint_samples_pixels_without_a_vae(trained, tmp_path):
    data, root = trained
    ckpt = root / "out" / "checkpoints" / "0000004.pt"
    config = replace(SampleConfig(), n_samples=6, shard_size=4, batch_size=4, labels="balanced", compile=False)
    settings = SamplerSettings("jit", 3, heun=True, cfg_scale=1.5, guidance_low=0.1)
    manifest = json.loads(generate(ckpt, None, None, None, tmp_path / "s", settings, config, "jit3",
                                   device="cpu").read_text())
    assert manifest["image_shape"] == [RESOLUTION, RESOLUTION, 3] and manifest["n_samples"] == 6
    assert set(manifest["weights"]) == {"checkpoint"}
    images, labels = load_samples(tmp_path / "s" / "manifest.json", verify=True)
    assert sum(len(i) for i in images) == 6 and np.concatenate(labels).tolist() == [0, 1, 2, 0, 1, 2]

    # the same images as jit_sample on the same per-image noise: the stage adds only sharding and quantisation
    from repabench.jit import jit_sample
    from repabench.sample import ImageNoise, to_uint8

    model, meta = load_generator(ckpt)
    noise = ImageNoise([0, 1, 2, 3], 0, (3, RESOLUTION, RESOLUTION), torch.device("cpu")).draw()
    expected = to_uint8(jit_sample(model, noise, torch.tensor([0, 1, 2, 0]), settings.jit(meta["objective"]), 3))
    assert np.array_equal(np.asarray(images[0]), expected)

    with pytest.raises(SystemExit, match="mode: jit"):
        generate(ckpt, None, None, None, tmp_path / "sde", SamplerSettings("sde", 4), config, device="cpu")
