"""REPA-E runs through the train and sample stages: what the checkpoint records, that sampling decodes with the
checkpoint's tuned decoder, and the clear errors of impossible set-ups."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train_support import METHOD_IREPAE, jit_argv, make_data, repae_argv, train_in_process  # noqa: E402

from repabench.end_to_end import UPSTREAM_DEFAULTS  # noqa: E402
from repabench.sample import SampleConfig, SamplerSettings, generate, load_samples  # noqa: E402

SHORT = {"steps": 4, "checkpoint_steps": [4], "state_every": 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("repae-stage")
    data = make_data(root)
    assert train_in_process(repae_argv(data, root / "out", root / "state", train=SHORT)) == 0
    return data, root


def test_the_checkpoint_carries_the_tuned_vae_and_batchnorm_stats(trained):
    data, root = trained
    ckpt = torch.load(root / "out" / "checkpoints" / "0000004.pt", weights_only=True)
    assert ckpt["autoencoder"]["kind"] == "pca" and ckpt["latent_stats"]["mode"] == "batchnorm"
    assert ckpt["method"]["end_to_end"] is True and ckpt["method"]["vae_align_coeff"] == 1.5
    assert ckpt["end_to_end"]["upstream_defaults"]["vae_align_proj_coeff"] == UPSTREAM_DEFAULTS["vae_align_proj_coeff"]
    log = json.loads((root / "out" / "log.json").read_text())
    assert all(np.isfinite(e["vae_loss"]) and e["vae_align"] != 0 for e in log["entries"])
    params = log["provenance"]["params"]
    assert params["end_to_end"]["vae"] == "pca" and "latents" not in params["data"]
    assert log["provenance"]["end_to_end"]["kl_weight"] == 1e-6


def test_sampling_decodes_with_the_tuned_decoder(trained, tmp_path):
    """Oracle: a tuned decoder edited to output one constant colour makes every generated pixel that colour, which
    the original PCA decoder (and --autoencoder, not passed) could not produce."""
    data, root = trained
    ckpt = torch.load(root / "out" / "checkpoints" / "0000004.pt", weights_only=True)
    state = ckpt["autoencoder"]["state"]
    state["decoder.weight"].zero_()
    state["decoder.bias"].fill_(0.5)
    edited = tmp_path / "edited.pt"
    torch.save(ckpt, edited)
    config = replace(SampleConfig(), n_samples=4, shard_size=4, batch_size=4, labels="balanced", compile=False)
    manifest = json.loads(generate(edited, None, None, None, tmp_path / "s", SamplerSettings("sde", 3), config,
                                   "sde3", device="cpu").read_text())
    assert set(manifest["weights"]) == {"checkpoint"}
    images, _ = load_samples(tmp_path / "s" / "manifest.json", verify=True)
    expect = int(255 * (0.5 + 1) / 2)  # to_uint8's truncation of x = 0.5
    assert np.all(np.concatenate(images) == expect)


def test_impossible_end_to_end_runs_are_refused(trained):
    data, root = trained
    with pytest.raises(SystemExit, match="has no VAE"):
        train_in_process(jit_argv(data, root / "j", root / "j-state", method=METHOD_IREPAE, train=SHORT))
    argv = repae_argv(data, root / "n", root / "n-state", train=SHORT)
    argv[argv.index("--autoencoder-kind") + 1 - 1:argv.index("--autoencoder-kind") + 2] = []
    with pytest.raises(SystemExit, match="--autoencoder-kind"):
        train_in_process(argv)


def test_table_2a_sits_beside_our_end_to_end_runs():
    import pandas as pd

    from repabench import published
    from repabench.report.results import repae_table

    defs = {"repae": {"projector": "mlp", "end_to_end": True}, "irepae": {"projector": "conv",
            "spatial_norm": "zscore", "end_to_end": True}, "irepa": {"projector": "conv", "spatial_norm": "zscore"}}
    ours = {("pe-vit-g", "irepae"): pd.Series({"IS": 3.25, "FID": 301.5, "sFID": 40.0, "Precision": 0.1,
                                                "Recall": 0.05})}
    table = repae_table(defs, ["pe-vit-g", "effnetlite-cnn-lite0"], ["irepa", "repae", "irepae"], ours)
    assert [row[:3] for row in table.rows] == [["pe-vit-g", "repae", "REPA-E"], ["pe-vit-g", "irepae", "iREPA-E"]]
    assert table.rows[1][3:] == ["80.0 / 3.2", "16.40 / 301.50", "5.40 / 40.00", "0.667 / 0.100", "0.616 / 0.050"]
    assert table.rows[0][4] == f"{published.REPAE_TABLE['REPA-E']['pe-vit-g'][1]:.2f} / –"
    assert repae_table(defs, ["effnetlite-cnn-lite0"], ["repae"], {}) is None
