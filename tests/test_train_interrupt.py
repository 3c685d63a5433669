"""Interruptions of the real stage process: SIGKILL loses at most the steps since the last state, SIGTERM stops
cleanly with exit 75 and loses nothing; in both cases a rerun completes with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import repabench.train as train
from test_train_support import jit_argv, make_data, mf_argv, repae_argv, train_argv, train_in_process as run_in_process

SCRIPT = Path(__file__).resolve().parent / "test_train_support.py"
LONG = {"steps": 60, "checkpoint_steps": [30, 60], "state_every": 5, "log_every": 10}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("interrupt-data"))




@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """The uninterrupted run, in process."""
    root = tmp_path_factory.mktemp("straight")
    assert run_in_process(train_argv(data, root / "out", root / "state", train=LONG)) == 0
    return torch.load(root / "out" / "checkpoints" / "0000060.pt", weights_only=True)


def start(argv):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, str(SCRIPT), *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for_state(proc, state_root, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(state_root.glob("*/state.pt")):
            return next(state_root.glob("*/state.pt"))
        if proc.poll() is not None:
            pytest.fail(f"training ended before any state was saved:\n{proc.stdout.read()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no training state appeared")


def assert_same_ema(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_interrupted_run_resumes_to_the_same_weights(data, tmp_path, straight, sig):
    argv = train_argv(data, tmp_path / "out", tmp_path / "state", train=LONG)
    proc = start(argv)
    state_file = wait_for_state(proc, tmp_path / "state")
    proc.send_signal(sig)
    output = proc.communicate(timeout=120)[0]
    saved = torch.load(state_file, map_location="cpu", weights_only=True)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        assert saved["step"] % LONG["state_every"] == 0 or saved["step"] in LONG["checkpoint_steps"]
    else:
        assert proc.returncode == train.EXIT_RESUBMIT, output
        assert saved["history"]["segments"][-1]["stopped"] == "SIGTERM"
    assert 0 < saved["step"] < LONG["steps"], "the signal should arrive mid-run"
    assert not (tmp_path / "out" / "log.json").exists()

    assert run_in_process(argv) == 0  # the rerun of the same command
    segments = json.loads((tmp_path / "out" / "log.json").read_text())["segments"]
    assert segments[-1]["start_step"] == saved["step"] and segments[-1]["end_step"] == LONG["steps"]
    final = torch.load(tmp_path / "out" / "checkpoints" / "0000060.pt", weights_only=True)
    # bitwise: the state holds every random stream and the batch order is a function of the step
    assert_same_ema(final["ema"], straight["ema"])


def uninterrupted(argv_of, data, root):
    """The final checkpoint of a run straight through, in process."""
    assert run_in_process(argv_of(data, root / "out", root / "state", train=LONG)) == 0
    return torch.load(root / "out" / "checkpoints" / "0000060.pt", weights_only=True)


def killed_mid_run_then_rerun(argv, root):
    """SIGKILL the run once its first state is saved, rerun it in process: (the state it resumed, its final
    checkpoint)."""
    proc = start(argv)
    state_file = wait_for_state(proc, root / "state")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=120)
    saved = torch.load(state_file, map_location="cpu", weights_only=True)
    assert proc.returncode == -signal.SIGKILL and 0 < saved["step"] < LONG["steps"]
    assert run_in_process(argv) == 0
    return saved, torch.load(root / "out" / "checkpoints" / "0000060.pt", weights_only=True)


# the other generator families: their argv builder and model name
FAMILY_RUNS = {"jit": (jit_argv, "JiT-T/8"), "meanflow": (mf_argv, "MF-T/2")}


@pytest.fixture(scope="module", params=list(FAMILY_RUNS))
def straight_family(request, data, tmp_path_factory):
    """The uninterrupted run of a family (JiT: pixels, random flips, x-prediction; MeanFlow: (r, t) draws, JVP
    target), in process."""
    family = request.param
    return family, uninterrupted(FAMILY_RUNS[family][0], data, tmp_path_factory.mktemp(f"straight-{family}"))


def test_jit_and_meanflow_runs_resumed_after_sigkill_equal_the_uninterrupted_ones(data, tmp_path, straight_family):
    """As for SiT: each family's loss, label dropout, time draws and flips draw from the RNG the state holds."""
    family, straight = straight_family
    make_argv, name = FAMILY_RUNS[family]
    _, final = killed_mid_run_then_rerun(make_argv(data, tmp_path / "out", tmp_path / "state", train=LONG), tmp_path)
    assert final["model"]["family"] == family and final["model"]["name"] == name
    assert_same_ema(final["ema"], straight["ema"])


@pytest.fixture(scope="module")
def straight_repae(data, tmp_path_factory):
    """The uninterrupted end-to-end (REPA-E) run: the PCA autoencoder tuned with the SiT, in process."""
    return uninterrupted(repae_argv, data, tmp_path_factory.mktemp("straight-repae"))


def test_end_to_end_run_resumed_after_sigkill_equals_the_uninterrupted_one(data, tmp_path, straight_repae):
    """The state holds the VAE, its optimiser and the BatchNorm statistics (online and EMA): all bitwise."""
    saved, final = killed_mid_run_then_rerun(repae_argv(data, tmp_path / "out", tmp_path / "state", train=LONG),
                                             tmp_path)
    assert set(saved["end_to_end"]) == {"autoencoder", "optimizer", "bn", "ema_bn"}
    assert_same_ema(final["ema"], straight_repae["ema"])
    assert_same_ema(final["autoencoder"]["state"], straight_repae["autoencoder"]["state"])
    assert final["latent_stats"] == straight_repae["latent_stats"]
    start_pca = torch.load(data["autoencoder"], weights_only=True)
    assert not torch.equal(final["autoencoder"]["state"]["decoder.bias"], start_pca["mean"])  # it was tuned
    assert final["latent_stats"]["bias"] != [0.1, 0.0, -0.1, 0.0]  # the BatchNorm moved off its start


def test_two_process_run(data, tmp_path):
    """The multi-process code path on CPU (gloo, launched by torchrun as `accelerate launch --cpu` runs a single
    process): split batch, stop-flag all-reduce, RNG of every rank gathered into the state."""
    argv = train_argv(data, tmp_path / "out", tmp_path / "state",
                      train={"steps": 4, "checkpoint_steps": [4], "state_every": 2})
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT)]
    done = subprocess.run([*launch, *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = torch.load(next((tmp_path / "state").glob("*/state.pt")), map_location="cpu", weights_only=True)
    assert saved["world_size"] == 2 and len(saved["rng"]) == 2 and saved["step"] == 4
    assert not torch.equal(saved["rng"][0]["cpu"], saved["rng"][1]["cpu"])  # seed + process index
    assert json.loads((tmp_path / "out" / "log.json").read_text())["segments"][0]["processes"] == 2
