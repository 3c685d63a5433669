"""Bad inputs stop with a message that names the problem and the fix, and nothing computed is lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from repabench import weights
from repabench.store import Store, StoreError, write_store

REPO = Path(__file__).resolve().parents[1]


def test_corrupt_weight_file_is_refused_and_kept(tmp_path):
    spec = weights.WEIGHTS["efficientnet-lite0.pth"]
    path = weights.fetch(spec, tmp_path)
    assert weights.verified_path(path) == path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte
    path.write_bytes(bytes(data))
    with pytest.raises(weights.WeightError) as err:
        weights.verified_path(path)
    message = str(err.value)
    assert str(path) in message and "fetch_weights" in message and "does not match" in message
    assert path.exists() and weights.sidecar(path).exists()  # nothing deleted behind the user's back


def test_truncated_latent_store_is_refused_and_siblings_kept(tmp_path):
    rng = np.random.default_rng(0)
    moments = rng.standard_normal((6, 8, 4, 4)).astype(np.float32)
    labels = np.arange(6, dtype=np.int64)
    store = write_store(tmp_path / "latents" / "train", {"moments": moments, "labels": labels})
    other = write_store(tmp_path / "latents" / "heldout", {"moments": moments, "labels": labels})
    shard = store / "moments.npy"
    shard.write_bytes(shard.read_bytes()[:-100])  # a copy or write cut short
    with pytest.raises(StoreError) as err:
        Store(store)
    message = str(err.value)
    assert "moments.npy" in message and "truncated" in message and "rerun" in message
    np.testing.assert_array_equal(Store(other, verify=True)["moments"], moments)  # the other split is intact
    assert (store / "labels.npy").exists()


def test_half_written_sample_shard_is_redone_not_trusted(tmp_path):
    from repabench.sample import load_samples, plan_shards, shard_is_complete, write_shard

    shards = plan_shards(8, 4)
    images = np.full((4, 8, 8, 3), 7, np.uint8)
    for shard in shards:
        write_shard(tmp_path, shard, images, np.zeros(4, np.int64), key="k")
    assert all(shard_is_complete(tmp_path, s, "k") for s in shards)
    half = tmp_path / shards[1].images_file
    half.write_bytes(half.read_bytes()[: half.stat().st_size // 2])
    assert shard_is_complete(tmp_path, shards[0], "k")  # the finished shard is kept and skipped on rerun
    assert not shard_is_complete(tmp_path, shards[1], "k")  # the half-written one is regenerated
    manifest = {"n_samples": 8, "shards": [
        {"file": s.images_file, "labels_file": s.labels_file, "start": s.start, "count": s.count,
         "sha256": "0" * 64} for s in shards]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError) as err:
        load_samples(tmp_path / "manifest.json", verify=True)
    assert "rerun sample" in str(err.value) and shards[0].images_file in str(err.value)


@pytest.mark.slow
def test_config_with_unknown_encoder_stops_before_any_job(tmp_path):
    overlay = tmp_path / "bad.yaml"
    overlay.write_text(yaml.safe_dump({"encoders": ["pixels-classic-raw", "dinov9-vit-z"]}))
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", ".test/config/config.yaml",
                          str(overlay)], cwd=REPO, capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "dinov9-vit-z" in out and "encoders" in out
    assert "Building DAG" not in out or "Job stats" not in out  # stopped at config validation, nothing scheduled
