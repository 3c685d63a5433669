"""No corrupted, NaN or hand-edited input reaches the report silently (issue 19): each broken input is refused
with a message that names the file and the fix."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from repabench.atomic import atomic_path, write_json
from repabench.integrity import IntegrityError
from repabench.provenance import provenance, sha256_file
from repabench.store import Store, StoreError, write_store

REPO = Path(__file__).resolve().parents[1]


def overwrite_array(store: Path, name: str, values: np.ndarray, *, fix_manifest: bool) -> Path:
    """Replace an array's file by one of the same size; `fix_manifest` also records its new SHA-256, as a writer
    that produced those values itself would have."""
    file = store / f"{name}.npy"
    size = file.stat().st_size
    np.save(file, values)
    assert file.stat().st_size == size
    if fix_manifest:
        manifest = json.loads((store / "manifest.json").read_text())
        manifest["arrays"][name]["sha256"] = sha256_file(file)
        write_json(store / "manifest.json", manifest)
    return file


# ---------------------------------------------------------------------------------------------------------------
# 1. a corrupt sample shard: evaluate refuses it (its default, and the rule passes --verify)


def test_evaluate_refuses_a_corrupt_shard(tmp_path):
    from repabench.adm import stages as S
    from repabench.adm.images import SAMPLES_FORMAT, ImageSetError
    from repabench.weights import sidecar

    weights = tmp_path / "inception.pt"
    weights.write_bytes(b"stand-in weights: the refusal comes before the network is loaded")
    write_json(sidecar(weights), {"name": weights.name, "sha256": sha256_file(weights), "bytes": weights.stat().st_size})
    reference = tmp_path / "reference.npz"
    S.write_reference(reference, {k: np.zeros(2) for k in ("mu", "sigma", "mu_s", "sigma_s", "pool")},
                      {"format": S.REFERENCE_FORMAT, "inception": {"name": weights.name, "sha256": sha256_file(weights)},
                       "n_images": 8, "key": "k", "statistics": "test"})
    samples = tmp_path / "samples"
    (samples / "shards").mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    np.save(samples / "shards/00000.npy", images)
    write_json(samples / "manifest.json", {"format": SAMPLES_FORMAT, "n_samples": 8, "shards": [
        {"file": "shards/00000.npy", "start": 0, "count": 8, "sha256": sha256_file(samples / "shards/00000.npy")}]})
    shard = samples / "shards/00000.npy"
    data = bytearray(shard.read_bytes())
    data[-500:] = np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes()  # same size
    shard.write_bytes(bytes(data))

    argv = ["--samples", str(samples), "--reference", str(reference), "--inception-weights", str(weights),
            "--out", str(tmp_path / "eval.json"), "--device", "cpu"]
    with pytest.raises(ImageSetError) as err:
        S.evaluate_main(argv)  # without --verify: checking is the default
    assert str(shard) in str(err.value) and "SHA-256" in str(err.value) and "rerun the sample stage" in str(err.value)
    assert not (tmp_path / "eval.json").exists()


# ---------------------------------------------------------------------------------------------------------------
# 2. NaN latents / a diverging loss: train stops before any state or checkpoint


@pytest.fixture()
def train_data(tmp_path):
    from test_train_support import make_data

    return make_data(tmp_path / "data")


def run_train(argv):
    from test_train_support import train_in_process

    return train_in_process(argv)


def assert_nothing_saved(out: Path, state_root: Path):
    assert not list(state_root.glob("*/state.pt")) and not list(state_root.glob("*/checkpoints/*.pt"))
    assert not (out / "checkpoints").exists() and not (out / "log.json").exists()


@pytest.mark.parametrize("fix_manifest", [False, True], ids=["overwritten", "written-by-a-broken-encoder"])
def test_nan_latents_stop_training_before_any_step(train_data, tmp_path, fix_manifest):
    from test_train_support import train_argv

    moments = np.load(train_data["latents"] / "moments.npy")
    file = overwrite_array(train_data["latents"], "moments", np.full_like(moments, np.nan), fix_manifest=fix_manifest)
    with pytest.raises(SystemExit) as err:
        run_train(train_argv(train_data, tmp_path / "out", tmp_path / "state"))
    message = str(err.value.code)
    assert str(file) in message and "rerun" in message
    assert ("NaN" in message) if fix_manifest else ("SHA-256" in message)
    assert_nothing_saved(tmp_path / "out", tmp_path / "state")


def test_store_writer_refuses_nan(tmp_path):
    with pytest.raises(StoreError, match="NaN"):
        write_store(tmp_path / "latents", {"moments": np.array([[0.0, np.nan]], np.float32)})
    assert not list(tmp_path.iterdir())


def test_diverging_loss_writes_no_state_and_no_checkpoint(train_data, tmp_path):
    from test_train_support import train_argv

    train_data["stats"].write_text(json.dumps({"bias": [0.0] * 4, "scale": [1e30] * 4, "mode": "data"}))
    with pytest.raises(SystemExit) as err:
        run_train(train_argv(train_data, tmp_path / "out", tmp_path / "state"))
    message = str(err.value.code)
    assert "NaN/inf" in message and "no state was saved" in message and str(train_data["stats"]) in message
    assert_nothing_saved(tmp_path / "out", tmp_path / "state")


def test_sampler_refuses_nan_latents_from_a_broken_checkpoint(tmp_path):
    import repabench.sample as S

    gen = S.SamplingPlan(S.SamplerSettings("ode", 2), 6, 0, "uniform", "fp32", 3, 5, (2, 2, 2))
    calls = []

    def broken_velocity(x, t, y):  # finite for the first shard, NaN from the second on
        calls.append(1)
        return torch.full_like(x, float("nan")) if len(calls) > 2 else torch.zeros_like(x)

    with pytest.raises(SystemExit) as err:
        S.generate_shards(tmp_path, broken_velocity, lambda z: torch.tanh(z[:, :1].repeat(1, 3, 2, 2)), gen, "k",
                          torch.zeros(2), torch.ones(2), torch.device("cpu"), batch_size=3)
    assert "NaN/inf latents" in str(err.value.code) and str(tmp_path / "shards/00001.npy") in str(err.value.code)
    assert (tmp_path / "shards/00000.npy").exists() and not (tmp_path / "shards/00001.npy").exists()


# ---------------------------------------------------------------------------------------------------------------
# 3. NaN features: spatial_metrics and linear_probe refuse them


@pytest.fixture()
def nan_features(tmp_path):
    rng = np.random.default_rng(0)
    paths = {}
    for split, n in (("train", 24), ("heldout", 16)):
        tokens = rng.standard_normal((n, 16, 8)).astype(np.float32)
        path = write_store(tmp_path / "features" / split, {"tokens": tokens, "labels": np.arange(n) % 3,
                                                          "masks": np.ones((n, 16, 16), bool)})
        tokens[n // 2] = np.nan  # one broken image
        paths[split] = (path, overwrite_array(path, "tokens", tokens, fix_manifest=True))
    return paths


def test_spatial_metrics_refuse_nan_features(nan_features, tmp_path, capsys):
    from repabench.cli import main

    store, file = nan_features["heldout"]
    out = tmp_path / "spatial.json"
    assert main(["spatial_metrics", "--features", str(store), "--encoder", "e", "--out", str(out),
                 "--device", "cpu"]) == 1
    message = capsys.readouterr().err
    assert str(file) in message and "NaN" in message and "row 8" in message and "rerun" in message
    assert not out.exists()


def test_linear_probe_refuses_nan_features(nan_features, tmp_path):
    from repabench.probe import linear_probe_main

    (train, file), (val, _) = nan_features["train"], nan_features["heldout"]
    with pytest.raises(StoreError) as err:
        linear_probe_main(["--train", str(train), "--val", str(val), "--encoder", "e", "--out",
                           str(tmp_path / "probe.json"), "--device", "cpu", "--params", '{"probe": {"epochs": 1}}'])
    assert str(file) in str(err.value) and "NaN" in str(err.value)
    assert not (tmp_path / "probe.json").exists()


def test_a_verified_store_is_read_once_until_it_changes(tmp_path, monkeypatch):
    import repabench.store as store_module

    path = write_store(tmp_path / "s", {"x": np.ones((4, 3), np.float32)})
    Store(path, verify=True)
    hashed = []
    monkeypatch.setattr(store_module, "sha256_file", lambda p: hashed.append(Path(p).name) or sha256_file(p))
    Store(path, verify=True)
    assert "x.npy" not in hashed  # remembered beside the store, outside it
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "x.npy"]
    overwrite_array(path, "x", np.full((4, 3), 2, np.float32), fix_manifest=False)
    with pytest.raises(StoreError, match="SHA-256"):
        Store(path, verify=True)


# ---------------------------------------------------------------------------------------------------------------
# 4. a hand-edited result JSON: correlate (and collect_metrics) refuse it


def test_correlate_refuses_an_edited_eval_json(tmp_path):
    from repabench.adm.stages import collect_csv
    from repabench.stats import correlate_main

    evals, spatial, probe = [], [], []
    for i, encoder in enumerate(["a-b-c", "d-e-f", "g-h-i"]):
        path = tmp_path / "eval" / encoder / "0000100" / "sde.json"
        write_json(path, {"FID": 30.0 + i, "run": {"model": "SiT-T/2", "encoder": encoder, "method": "repa",
                                                   "step": "0000100", "sampler": "sde"},
                          "provenance": provenance("evaluate", {"evaluate": {}}, [], "cpu")})
        evals.append(str(path))
        write_json(tmp_path / "spatial" / f"{encoder}.json",
                   {"encoder": encoder, "LDS": {"mean": 0.1 * i}, "provenance": provenance("spatial_metrics")})
        write_json(tmp_path / "probe" / f"{encoder}.json",
                   {"encoder": encoder, "best_val_acc": 50.0 + i, "provenance": provenance("linear_probe")})
        spatial.append(str(tmp_path / "spatial" / f"{encoder}.json"))
        probe.append(str(tmp_path / "probe" / f"{encoder}.json"))
    argv = ["--evals", *evals, "--spatial", *spatial, "--probe", *probe, "--out-table", str(tmp_path / "t.csv"),
            "--out-json", str(tmp_path / "c.json"), "--params", json.dumps({"report": {"method": "repa",
                                                                                       "bootstrap": 10}})]
    assert correlate_main(argv) == 0  # sealed files read back intact

    edited = json.loads(Path(evals[1]).read_text())
    edited["FID"] = 1.0
    Path(evals[1]).write_text(json.dumps(edited, indent=2))
    for call in (lambda: correlate_main(argv), lambda: collect_csv([evals[1]])):
        with pytest.raises(IntegrityError) as err:
            call()
        message = str(err.value)
        assert evals[1] in message and "`evaluate`" in message and f"snakemake --force {evals[1]}" in message


# ---------------------------------------------------------------------------------------------------------------
# 5. a truncated training state names the file and says to delete it


def test_truncated_training_state_names_the_file_and_the_fix(train_data, tmp_path):
    from test_train_support import train_argv

    state_dir = tmp_path / "state" / "explicit"
    state_dir.mkdir(parents=True)
    buffer = tmp_path / "full.pt"
    torch.save({"format": "repabench-train-state-v1", "step": 2, "model": {"w": torch.zeros(1000)}}, buffer)
    state = state_dir / "state.pt"
    state.write_bytes(buffer.read_bytes()[: buffer.stat().st_size // 2])
    with pytest.raises(SystemExit) as err:
        run_train(train_argv(train_data, tmp_path / "out", tmp_path / "state", extra=("--state-dir", str(state_dir))))
    message = str(err.value.code)
    assert str(state) in message and f"rm {state}" in message and "Delete it" in message
    assert state.exists()  # nothing deleted behind the user's back


# ---------------------------------------------------------------------------------------------------------------
# 6. identical runs record identical input hashes


def test_identical_runs_record_identical_input_hashes(tmp_path, monkeypatch):
    import repabench.provenance as P
    from repabench.vae import latent_stats_main

    moments = np.random.default_rng(0).standard_normal((16, 8, 4, 4)).astype(np.float32)
    params = json.dumps({"vae": {"latent_norm": "data", "channels": 4}, "seed": 0})
    stats = []
    for run, when in enumerate(("2026-01-01T00:00:00", "2026-01-02T12:34:56")):
        monkeypatch.setattr(P, "_dt", _Clock(when))
        store = write_store(tmp_path / f"run{run}" / "latents", {"moments": moments, "labels": np.zeros(16, np.int64)},
                            {"provenance": P.provenance("cache_latents", {"vae": {}}, [])})
        assert latent_stats_main(["--latents", str(store), "--out", str(tmp_path / f"run{run}" / "stats.json"),
                                  "--params", params]) == 0
        stats.append(json.loads((tmp_path / f"run{run}" / "stats.json").read_text()))
    manifests = [json.loads((tmp_path / f"run{r}" / "latents" / "manifest.json").read_text()) for r in (0, 1)]
    assert manifests[0]["provenance"]["created"] != manifests[1]["provenance"]["created"]
    hashes = [s["provenance"]["inputs"][0]["content_sha256"] for s in stats]
    assert hashes[0] == hashes[1]
    # and the hash is of the content: other latents, another hash
    other = write_store(tmp_path / "other", {"moments": moments + 1, "labels": np.zeros(16, np.int64)},
                        {"provenance": P.provenance("cache_latents", {"vae": {}}, [])})
    assert P.provenance("x", {}, [other])["inputs"][0]["content_sha256"] != hashes[0]


def test_reference_statistics_are_identified_by_their_arrays(tmp_path):
    from repabench.adm.stages import write_reference

    arrays = {"mu": np.arange(3.0), "sigma": np.eye(3)}
    for name, speed, shift in (("a", 10.0, 0), ("b", 12.5, 0), ("c", 10.0, 1)):
        write_reference(tmp_path / f"{name}.npz", {k: v + shift for k, v in arrays.items()},
                        {"format": "f", "images_per_second": speed, "provenance": {"created": name}})
    ids = {n: provenance("x", {}, [tmp_path / f"{n}.npz"])["inputs"][0]["content_sha256"] for n in "abc"}
    assert ids["a"] == ids["b"] != ids["c"]


class _Clock:
    """Stands in for the datetime module in repabench.provenance: a fixed `now()`."""

    timezone = __import__("datetime").timezone

    def __init__(self, when: str):
        import datetime

        self.datetime = type("D", (), {"now": staticmethod(lambda tz=None: datetime.datetime.fromisoformat(when))})


# ---------------------------------------------------------------------------------------------------------------
# 7. an oversized batch is refused by the config check; 8. a local dry run starts no scontrol


def test_batch_larger_than_the_training_set_is_refused(tmp_path):
    from repabench.config_checks import check_batch_fits

    config = {"data": {"source": "demo", "demo": {"n_train": 96}}, "train": {"global_batch": 128},
              "published": {"enabled": False}}
    with pytest.raises(ValueError, match=r"train.global_batch = 128 exceeds the 96 training images"):
        check_batch_fits(config)
    check_batch_fits({**config, "train": {"global_batch": 96}})
    folder = {**config, "data": {"source": "imagefolder"}}
    check_batch_fits(folder, tmp_path / "data" / "train")  # not prepared yet: the train stage checks it
    write_store(tmp_path / "data" / "train", {"labels": np.zeros(100, np.int64)})
    with pytest.raises(ValueError, match="exceeds the 100 training images"):
        check_batch_fits(folder, tmp_path / "data" / "train")


def _fake_slurm_tools(folder: Path) -> Path:
    """sinfo/sacct/squeue/scontrol stand-ins that record every call (a machine with SLURM installed)."""
    folder.mkdir()
    calls = folder / "calls"
    for tool in ("sinfo", "sacct", "squeue", "scontrol"):
        script = folder / tool
        script.write_text(f"#!/bin/sh\necho \"{tool} $*\" >> {calls}\nexit 1\n")
        script.chmod(0o755)
    return calls


@pytest.mark.slow
def test_local_dry_run_starts_no_scontrol_and_verifies_shards(tmp_path):
    calls = _fake_slurm_tools(tmp_path / "bin")
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(REPO))
    env.pop("SNAKEMAKE_PROFILE", None)
    run = subprocess.run([sys.executable, "-m", "repabench.driver", "-n", "-p", "--forceall", "--configfile",
                          ".test/config/config.yaml", "--directory", str(tmp_path / "work"), "-s",
                          str(REPO / "Snakefile")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    recorded = calls.read_text() if calls.exists() else ""
    assert "scontrol" not in recorded, recorded
    evaluate = [line for line in run.stdout.splitlines() if "repabench evaluate" in line]
    assert evaluate and all("--verify" in line for line in evaluate)

    overlay = tmp_path / "big-batch.yaml"
    overlay.write_text(yaml.safe_dump({"train": {"global_batch": 512}}))
    refused = subprocess.run([sys.executable, "-m", "repabench.driver", "-n", "--configfile",
                              ".test/config/config.yaml", str(overlay)], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=300)
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "train.global_batch = 512 exceeds the 96 training images" in out
    assert "Job stats" not in out


def test_driver_keeps_the_slurm_plugin_for_slurm_runs(tmp_path):
    from repabench.driver import selects_slurm

    assert selects_slurm(["--profile", "slurm", "-n"], {})
    assert selects_slurm(["--executor", "slurm"], {}) and selects_slurm(["-e", "slurm"], {})
    assert selects_slurm(["-n"], {"SNAKEMAKE_PROFILE": "slurm"})
    site = tmp_path / "site-profile"
    site.mkdir()
    (site / "config.yaml").write_text("executor: slurm\njobs: 10\n")
    assert selects_slurm([f"--profile={site}"], {})
    assert not selects_slurm(["-n", "--cores", "2", "--configfile", ".test/config/config.yaml"], {})
    assert not selects_slurm(["--profile", str(REPO / "profiles" / "default")], {})


# ---------------------------------------------------------------------------------------------------------------
# 9. a full disk names the path


def test_full_disk_error_names_the_output(tmp_path, monkeypatch):
    target = tmp_path / "results" / "eval.json"
    with pytest.raises(OSError) as err:
        with atomic_path(target):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what write() raises: no file name
    assert err.value.errno == errno.ENOSPC
    assert str(target) in str(err.value) and "free space" in str(err.value)
    assert not target.exists() and not list(target.parent.iterdir())

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError, match=str(target)):
        write_json(target, {"FID": 1.0})
