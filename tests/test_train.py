"""Trainer: EMA update, exact resume, parameter-hash refusal, checkpoints and log, time budget."""

from __future__ import annotations

import json

import pytest
import torch

import repabench.train as train
from repabench.sit import load_generator
from test_train_support import METHOD_IREPA, StandInEncoder, make_data, stand_in_builder, train_argv


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("train-data"))


@pytest.fixture(autouse=True)
def stand_in(monkeypatch):
    monkeypatch.setattr(train, "build_target_encoder", stand_in_builder)
    threads = torch.get_num_threads()  # the stage's --threads 1 must not leak into other tests
    yield
    torch.set_num_threads(threads)


def state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def only_state_dir(root):
    dirs = [p for p in root.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_ema_update_against_formula():
    torch.manual_seed(0)
    model, ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in ema.parameters()]
    train.ema_update(ema, model, 0.9)
    for old, new, p in zip(before, ema.parameters(), model.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * p.detach())
    train.ema_update(ema, model, 0.0)  # decay 0 = exact copy (upstream initialisation)
    for new, p in zip(ema.parameters(), model.parameters()):
        assert torch.equal(new, p)


def test_batches_are_a_function_of_step(data):
    a = train.StepBatches(data["images"], data["latents"], seed=0, global_batch=8, rank=0, world=1, need_images=True)
    b = train.StepBatches(data["images"], data["latents"], seed=0, global_batch=8, rank=0, world=1, need_images=True)
    assert torch.equal(a[7]["index"], b[7]["index"]) and a[7]["image"].shape == (8, 3, 32, 32)
    epoch = torch.cat([a[s]["index"] for s in range(6)])  # 48 images / 8 = 6 steps per epoch, no repeats
    assert sorted(epoch.tolist()) == list(range(48))
    halves = [train.StepBatches(data["images"], data["latents"], 0, 8, r, 2, False)[3]["index"] for r in (0, 1)]
    assert sorted(torch.cat(halves).tolist()) == sorted(a[3]["index"].tolist())  # ranks split the global batch


@pytest.mark.parametrize("cache", [False, True])
def test_resume_gives_identical_weights(data, tmp_path, cache):
    """8 steps straight == 4 steps, stop, resume to 8: bitwise on CPU (same ops, same thread count, full state)."""
    straight = tmp_path / "straight"
    assert train.train_main(train_argv(data, straight / "out", straight / "state", train={"cache_targets": cache})) == 0
    split = tmp_path / "split"
    args = dict(train={"cache_targets": cache, "steps": 4, "checkpoint_steps": [4]})
    assert train.train_main(train_argv(data, split / "out", split / "state", **args)) == 0
    assert train.train_main(train_argv(data, split / "out", split / "state", train={"cache_targets": cache})) == 0
    # `steps` is not part of the hash: the second call resumed the first call's state
    a, b = state(only_state_dir(straight / "state") / "state.pt"), state(only_state_dir(split / "state") / "state.pt")
    assert a["step"] == b["step"] == 8
    for key in ("model", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    ca = torch.load(straight / "out" / "checkpoints" / "0000008.pt", weights_only=True)
    cb = torch.load(split / "out" / "checkpoints" / "0000008.pt", weights_only=True)
    assert all(torch.equal(ca["ema"][k], cb["ema"][k]) for k in ca["ema"])
    assert [e["loss"] for e in json.loads((straight / "out" / "log.json").read_text())["entries"]] == \
        [e["loss"] for e in json.loads((split / "out" / "log.json").read_text())["entries"]]


def test_outputs_checkpoint_and_log(data, tmp_path):
    assert train.train_main(train_argv(data, tmp_path / "out", tmp_path / "state")) == 0
    ckpt_path = tmp_path / "out" / "checkpoints" / "0000004.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert not any(k.startswith("projectors.") for k in ckpt["ema"])
    assert ckpt["run"] == {"model": "sit-t-2", "encoder": "stand-in-enc", "method": "irepa"}
    assert ckpt["step"] == 4 and ckpt["latent_stats"]["scale"] == [1.5, 1.0, 1.0, 2.0]
    assert ckpt["provenance"]["stage"] == "train" and ckpt["method"]["kernel"] == 3
    model, meta = load_generator(ckpt_path)
    assert meta["step"] == 4 and not model.training
    out = model(torch.randn(2, 4, 8, 8), torch.rand(2), torch.tensor([0, 3]))  # null class = num_classes
    assert out.shape == (2, 4, 8, 8)
    log = json.loads((tmp_path / "out" / "log.json").read_text())
    assert [e["step"] for e in log["entries"]] == [2, 4, 6, 8]
    for key in ("loss", "denoise", "align", "grad_norm", "images_per_s", "peak_memory_mb"):
        assert key in log["entries"][0]
    assert -1.0 <= log["entries"][-1]["align"] <= 1.0 and "provenance" in log
    # the state dir keeps the checkpoints and the parameters; a rerun is a no-op that republishes outputs
    sdir = only_state_dir(tmp_path / "state")
    assert (sdir / "checkpoints" / "0000008.pt").exists() and (sdir / "params.json").exists()
    (tmp_path / "out" / "checkpoints" / "0000004.pt").unlink()  # as Snakemake does after a failed job
    assert train.train_main(train_argv(data, tmp_path / "out", tmp_path / "state")) == 0
    assert ckpt_path.exists()


def test_loss_decreases_on_tiny_data(data, tmp_path):
    argv = train_argv(data, tmp_path / "out", tmp_path / "state",
                      train={"steps": 60, "checkpoint_steps": [60], "state_every": 60, "log_every": 10,
                             "cache_targets": True})
    assert train.train_main(argv) == 0
    entries = json.loads((tmp_path / "out" / "log.json").read_text())["entries"]
    assert entries[-1]["denoise"] < entries[0]["denoise"]
    assert entries[-1]["align"] < entries[0]["align"] - 0.1  # projector learns to match the targets


def test_different_parameters_get_a_different_state_and_explicit_mismatch_is_refused(data, tmp_path):
    assert train.train_main(train_argv(data, tmp_path / "a", tmp_path / "state", train={"steps": 4,
                                                                                          "checkpoint_steps": [4]})) == 0
    sdir = only_state_dir(tmp_path / "state")
    other = {**METHOD_IREPA, "alpha": 0.8}
    assert train.train_main(train_argv(data, tmp_path / "b", tmp_path / "state", method=other,
                                       train={"steps": 2, "checkpoint_steps": [2]})) == 0
    assert len([p for p in (tmp_path / "state").iterdir() if p.is_dir()]) == 2  # keyed by the parameter hash
    before = {p.name: p.read_bytes() for p in sdir.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit, match="different parameters"):
        train.train_main(train_argv(data, tmp_path / "c", tmp_path / "state", method=other,
                                    extra=["--state-dir", str(sdir)]))
    assert {p.name: p.read_bytes() for p in sdir.rglob("*") if p.is_file()} == before  # nothing lost or touched


def test_checkpoint_step_before_resumed_state_is_an_error(data, tmp_path):
    assert train.train_main(train_argv(data, tmp_path / "o", tmp_path / "s", train={"steps": 4,
                                                                                      "checkpoint_steps": [4]})) == 0
    with pytest.raises(SystemExit, match="never written"):
        train.train_main(train_argv(data, tmp_path / "o", tmp_path / "s", train={"checkpoint_steps": [2, 8]}))


def test_time_budget_stops_with_75_and_rerun_completes(data, tmp_path):
    argv = train_argv(data, tmp_path / "out", tmp_path / "state", extra=["--time-budget-min", "0"])
    assert train.train_main(argv) == train.EXIT_RESUBMIT
    st = state(only_state_dir(tmp_path / "state") / "state.pt")
    assert st["step"] == 1 and st["history"]["segments"][0]["stopped"] == "time budget"
    assert not (tmp_path / "out" / "log.json").exists()
    assert train.train_main(train_argv(data, tmp_path / "out", tmp_path / "state")) == 0
    log = json.loads((tmp_path / "out" / "log.json").read_text())
    assert log["step"] == 8 and len(log["segments"]) == 2


def test_bad_inputs_fail_early_with_a_clear_message(data, tmp_path):
    with pytest.raises(SystemExit, match="checkpoint_steps"):
        train.train_main(train_argv(data, tmp_path / "o", tmp_path / "s", train={"checkpoint_steps": [9]}))
    with pytest.raises(SystemExit, match="encoder_depth"):
        train.train_main(train_argv(data, tmp_path / "o", tmp_path / "s", method={**METHOD_IREPA, "encoder_depth": 9}))
    with pytest.raises(SystemExit, match="global_batch"):
        train.train_main(train_argv(data, tmp_path / "o", tmp_path / "s", train={"global_batch": 64}))
    bad = dict(data, stats=tmp_path / "stats.json")
    bad["stats"].write_text(json.dumps({"bias": [0.0], "scale": [1.0]}))
    with pytest.raises(SystemExit, match="latent channels"):
        train.train_main(train_argv(bad, tmp_path / "o", tmp_path / "s"))


def test_stand_in_matches_encoder_interface():
    enc = StandInEncoder()
    assert enc(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), 4).shape == (2, 16, enc.embed_dim)


def test_warmup_lr_is_linear_from_zero_then_constant():
    assert [train.warmup_lr(1e-3, s, 4) for s in range(6)] == [0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3]
    assert train.warmup_lr(1e-3, 0, 0) == 1e-3  # 0 = no warm-up: the first update already has the full lr


@pytest.mark.parametrize("warmup", [0, 4])
def test_the_first_warmup_update_leaves_the_weights_as_initialised(data, tmp_path, warmup):
    """JiT's per-iteration warm-up starts at lr 0: with no weight decay the first update changes nothing (the EMA at
    decay 0 is the model), while without warm-up it does; warm-up 0 leaves the run's hash as before the option."""
    settings = {"steps": 1, "checkpoint_steps": [1], "state_every": 1, "ema_decay": 0.0, "weight_decay": 0.0}
    argv = train_argv(data, tmp_path / "out", tmp_path / "state", train={**settings, "warmup_steps": warmup})
    initial = train.Trainer(train.parse_run(argv)).net.state_dict()
    assert train.train_main(argv) == 0
    ema = torch.load(tmp_path / "out" / "checkpoints" / "0000001.pt", weights_only=True)["ema"]
    unchanged = all(torch.equal(ema[k], initial[k]) for k in ema)
    assert unchanged == (warmup > 0)
    trajectory = train.parse_run(argv).train.trajectory()
    assert ("warmup_steps" in trajectory) == (warmup > 0)
