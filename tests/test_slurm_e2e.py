"""The `.test` workflow through `snakemake --profile slurm` on a real one-node SLURM (tests/slurm_harness.py).

What it shows:
* the profile resolves from the repository root (`--profile slurm`) and what reaches `sbatch` per rule:
  partition, GPUs (with the GRES type), CPUs, memory and a runtime that grows with the attempt
  (read back from slurmctld with `scontrol show job`);
* a training job stopped by its time limit is resubmitted by the profile's `retries` and continues from its
  saved state under results/state/train/<hash>/, which survives.

SLURM's time limit sends SIGTERM to the job's processes; a real 1-minute limit would cost a minute, so the test
gives attempt 1 a 1-minute runtime and delivers that SIGTERM itself as soon as the trainer has saved its first
state. The trainer must then save and exit 75; the profile's retries resubmit it with attempt 2 (10 minutes).

Cost on the 2-core CI machine: a few minutes (each SLURM job starts Snakemake twice, and the plugin polls
squeue with growing intervals). Rules that run one after another are grouped into single SLURM jobs
(`--groups`) to keep the number of polling rounds small; `train` is submitted alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_harness import REPO, LocalSlurm, skip_reason  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
MODEL, ENCODER, METHOD = "sit-t-2", "pixels-classic-raw", "repa"
RUN = f"{MODEL}/{ENCODER}/{METHOD}"
OVERLAY = {
    "encoders": [ENCODER],
    "run_methods": [METHOD],
    "train": {"steps": 48, "checkpoint_steps": [24, 48], "state_every": 4},
}
GROUPS = {
    "prepare_images": "data", "fit_autoencoder": "data", "cache_latents": "data", "latent_stats": "data",
    "reference_stats": "data",
    "extract_features": "analysis", "spatial_metrics": "analysis", "linear_probe": "analysis",
    "sample": "generate", "export_npz": "generate", "evaluate": "generate", "collect_metrics": "generate",
    "correlate": "generate", "report": "generate",
}
IGNORE = shutil.ignore_patterns(".venv", "results", "resources", ".snakemake", ".git", "__pycache__",
                                ".pytest_cache", ".stamps", "bench", "*.egg-info")


def copy_repo(dest: Path) -> Path:
    shutil.copytree(REPO, dest, symlinks=True, ignore=IGNORE)
    (dest / ".test" / "config" / "slurm-overlay.yaml").write_text(yaml.safe_dump(OVERLAY))
    # the real profile with one change: train gets 1 minute on attempt 1 and a (fake) GPU. A CLI
    # --set-resources would replace the profile's whole set-resources table, so the test edits a copy.
    profile = yaml.safe_load((dest / "profiles/slurm/config.yaml").read_text())
    profile["set-resources"]["train"].update(runtime="1 if attempt == 1 else 10", gpu=1)
    # the CPU config requests 0 GPUs for sample; with the profile's gpu_model the jobstep's srun then asks for a
    # GRES the job lacks ("Step requested GRES but job doesn't have GRES"): give it a fake GPU like train
    profile["set-resources"]["sample"]["gpu"] = 1
    for rule in GROUPS:  # a group job needs one partition and one GPU type for all its rules
        profile["set-resources"].setdefault(rule, {}).update(slurm_partition="gpu", gpu_model="h100")
    (dest / "slurm-test").mkdir()
    (dest / "slurm-test" / "config.yaml").write_text(yaml.safe_dump(profile))
    return dest


def memory_mb(text: str) -> float:
    units = {"M": 1, "G": 1024, "T": 1024 * 1024}
    return float(text[:-1]) * units[text[-1]]


def targets(repo: Path, configfiles: list[str]) -> list[str]:
    """The whole workflow once every rule exists; until then the chain that exists (train -> sample)."""
    dry = subprocess.run([*SNAKEMAKE, "-n", "-q", "--configfile", *configfiles], cwd=repo, capture_output=True,
                         text=True)
    if dry.returncode == 0:
        return ["all"]
    step = f"{max(OVERLAY['train']['checkpoint_steps']):07d}"
    return [f"results/train/{RUN}/checkpoints/{step}.pt", f"results/samples/{RUN}/{step}/sde8/manifest.json"]


def trainer_pids(repo: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if b"repabench" in argv and b"train" in argv and cwd == str(repo):
            pids.append(int(proc.name))
    return pids


class TimeLimitAtFirstState(threading.Thread):
    """Sends the trainer the SIGTERM of a SLURM time limit once it has saved a resumable state."""

    def __init__(self, repo: Path):
        super().__init__(daemon=True)
        self.repo, self.done, self.sent = repo, threading.Event(), None

    def run(self) -> None:
        while not self.done.is_set():
            states = list((self.repo / "results/state/train").glob("*/state.pt"))
            pids = trainer_pids(self.repo)
            if states and pids:
                for pid in pids:
                    os.kill(pid, signal.SIGTERM)
                self.sent = time.time()
                return
            time.sleep(0.2)


def test_test_config_through_slurm_profile(tmp_path):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    repo = copy_repo(tmp_path / "repo")
    configfiles = [".test/config/config.yaml", ".test/config/slurm-overlay.yaml"]
    goal = targets(repo, configfiles)
    with LocalSlurm(tmp_path / "slurm") as cluster:
        killer = TimeLimitAtFirstState(repo)
        killer.start()
        cmd = [*SNAKEMAKE, "--profile", "slurm-test", "--configfile", *configfiles,
               "--slurm-no-account", "--slurm-status-command", "squeue",
               "--slurm-init-seconds-before-status-checks", "1",
               "--groups", *[f"{rule}={group}" for rule, group in GROUPS.items()],
               "--group-components", "data=100", "analysis=100", "generate=100",
               "--", *goal]
        started = time.time()
        run = subprocess.run(cmd, cwd=repo, env=cluster.env(), capture_output=True, text=True, timeout=900)
        killer.done.set()
        jobs = cluster.jobs()
        log = run.stdout + run.stderr
        assert run.returncode == 0, f"snakemake failed after {time.time() - started:.0f}s:\n{log[-6000:]}\n" \
                                    f"{cluster.logs()}"

    assert "Using profiles slurm-test" in log  # a profile name resolved from the repository root
    assert killer.sent is not None, "the trainer finished before the simulated time limit; raise train.steps"

    train_jobs = [j for j in jobs if j.get("Comment", "").startswith("rule_train")]
    assert len(train_jobs) == 2, [j.get("Comment") for j in jobs]
    first, second = sorted(train_jobs, key=lambda j: int(j["JobId"]))
    # the trainer's exit 75 fails the job (FAILED), or the 1-minute limit struck first on a slow machine (TIMEOUT)
    assert first["JobState"] in {"FAILED", "TIMEOUT"}
    assert second["JobState"] == "COMPLETED"
    assert (first["TimeLimit"], second["TimeLimit"]) == ("00:01:00", "00:10:00")  # runtime grows with attempt
    for job in train_jobs:  # the profile's train resources, unshrunk by the global GPU cap
        assert job["Partition"] == "gpu"
        assert job["TresPerJob"] == "gres:gpu:h100:1"
        assert int(job["NumCPUs"]) == 8  # cpus_per_gpu: 8
        assert memory_mb(job["MinMemoryNode"]) == 480000

    data = [j for j in jobs if j.get("Comment", "").startswith("rule_data_")]  # the plugin names group jobs so
    assert data, [j.get("Comment") for j in jobs]
    assert all(j["JobState"] == "COMPLETED" for j in jobs if j not in train_jobs)
    assert any(j.get("TresPerJob") == "gres:gpu:h100:1" for j in data)  # cache_latents asks for a GPU

    # the state survived every attempt, and the second attempt continued from it
    state_dirs = list((repo / "results/state/train").glob("*/state.pt"))
    assert len(state_dirs) == 1
    history = json.loads((repo / f"results/train/{RUN}/log.json").read_text())
    segments = history["segments"]
    assert len(segments) >= 2, segments
    assert segments[0]["start_step"] == 0 and 0 < segments[0]["end_step"] < OVERLAY["train"]["steps"]
    assert segments[1]["start_step"] == segments[0]["end_step"]
    assert segments[-1]["end_step"] == OVERLAY["train"]["steps"]
    for step in OVERLAY["train"]["checkpoint_steps"]:
        assert (repo / f"results/train/{RUN}/checkpoints/{step:07d}.pt").is_file()
