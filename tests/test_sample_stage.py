"""The `sample` and `export_npz` stages end to end on a tiny SiT-T/2 and the PCA demo autoencoder:
world-size independence (1 vs 2 gloo processes), resume after a kill, and the ADM npz export."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from repabench.atomic import read_json, write_json
from repabench.sit import build_sit, generator_kwargs
from repabench.vae import PCAAutoencoder

REPO = Path(__file__).resolve().parent.parent
NUM_CLASSES = 7


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A checkpoint of a randomly perturbed SiT-T/2 (so that the velocity is not zero), latent stats and a PCA AE."""
    root = tmp_path_factory.mktemp("sample_inputs")
    torch.manual_seed(0)
    model = build_sit("SiT-T/2", input_size=16, in_channels=4, num_classes=NUM_CLASSES)
    state = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() and "pos_embed" not in k else v
             for k, v in model.state_dict().items()}
    stats = {"bias": [0.1, -0.2, 0.0, 0.3], "scale": [1.5, 2.0, 1.0, 0.5], "mode": "data"}
    ckpt = {"ema": state, "model": {"name": "SiT-T/2", "kwargs": generator_kwargs(model, 0.1)}, "step": 100,
            "run": {"model": "sit-t-2", "encoder": "dinov2-vit-b", "method": "irepa"}, "latent_stats": stats}
    torch.save(ckpt, root / "0000100.pt")
    write_json(root / "stats.json", stats)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(16, 128, 128, 3), dtype=np.uint8)
    PCAAutoencoder.fit(images, channels=4).save(root / "ae.pt", meta={})
    return root


def _params(n, shard, batch, steps=4, labels="uniform", mode="sde"):
    return json.dumps({"sampler": {"name": "tiny", "mode": mode, "steps": steps},
                       "sample": {"n_samples": n, "shard_size": shard, "batch_size": batch, "labels": labels,
                                  "precision": "fp32", "seed": 0}})


def _command(inputs, out_dir, params):
    return [sys.executable, "-m", "repabench", "sample", "--checkpoint", str(inputs / "0000100.pt"),
            "--latent-stats", str(inputs / "stats.json"), "--autoencoder-kind", "pca",
            "--autoencoder", str(inputs / "ae.pt"), "--out-dir", str(out_dir), "--params", params,
            "--device", "cpu", "--threads", "1"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                               "MASTER_PORT"}}
    env.update({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra})
    return env


def _run(inputs, out_dir, params, **env):
    result = subprocess.run(_command(inputs, out_dir, params), cwd=REPO, env=_env(**env), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _shard_digests(out_dir):
    manifest = read_json(Path(out_dir) / "manifest.json")
    return [(s["start"], s["count"], s["sha256"], s["labels_sha256"]) for s in manifest["shards"]]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_one_and_two_processes_give_identical_images(inputs, tmp_path):
    params = _params(n=20, shard=6, batch=4)
    _run(inputs, tmp_path / "w1", params)
    port = str(_free_port())
    procs = [subprocess.Popen(_command(inputs, tmp_path / "w2", params), cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                                       MASTER_PORT=port))
             for r in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    assert _shard_digests(tmp_path / "w1") == _shard_digests(tmp_path / "w2")
    manifest = read_json(tmp_path / "w2" / "manifest.json")
    assert manifest["world_size"] == 2 and manifest["n_samples"] == 20
    assert manifest["run"] == {"model": "sit-t-2", "encoder": "dinov2-vit-b", "method": "irepa", "step": 100,
                               "sampler": "tiny"}
    assert manifest["labels"] == "uniform" and manifest["image_shape"] == [128, 128, 3]
    assert "provenance" in manifest and manifest["sampler"]["mode"] == "sde"
    images = np.load(tmp_path / "w1" / "shards" / "00000.npy")
    assert images.dtype == np.uint8 and images.std() > 1.0  # not a constant image

    out = tmp_path / "samples.npz"
    result = subprocess.run([sys.executable, "-m", "repabench", "export_npz", "--manifest",
                             str(tmp_path / "w2" / "manifest.json"), "--out", str(out)], cwd=REPO, env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with np.load(out) as data:
        assert data["arr_0"].shape == (20, 128, 128, 3)
        assert np.array_equal(data["arr_0"][:6], images)
        assert data["arr_1"].shape == (20,) and data["arr_1"].max() < NUM_CLASSES


def test_killed_generation_resumes_to_identical_shards(inputs, tmp_path):
    params = _params(n=36, shard=6, batch=6, steps=16)
    _run(inputs, tmp_path / "whole", params)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_command(inputs, out, params), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "shards" / "00001.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(p.name for p in (out / "shards").glob("*.json"))
    assert not (out / "manifest.json").exists()
    assert 2 <= len(finished) < 6, f"the job was not killed mid-run ({finished})"
    before = {name: (out / "shards" / name).stat().st_mtime_ns for name in finished}

    result = _run(inputs, out, params)
    assert f"{6 - len(finished)} of its 6 shards to generate" in result.stderr
    assert all((out / "shards" / name).stat().st_mtime_ns == t for name, t in before.items())
    assert _shard_digests(out) == _shard_digests(tmp_path / "whole")
    assert not list((out / "shards").glob(".*"))  # no temporary files left behind


def test_bad_params_fail_early(inputs, tmp_path):
    from repabench.sample import sample_main

    args = _command(inputs, tmp_path / "x", json.dumps({"sampler": {"mode": "sde", "steps": 1}}))[4:]
    with pytest.raises(SystemExit, match="steps must be an integer >= 2"):
        sample_main(args)
    args = _command(inputs, tmp_path / "x", _params(4, 2, 2, labels="random"))[4:]
    with pytest.raises(SystemExit, match="labels"):
        sample_main(args)
    assert not (tmp_path / "x").exists()
