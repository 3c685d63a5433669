"""Precision of each stage is what the preset says; the paper presets default to upstream's.

Upstream (docs/upstream-facts.md §2.4, §2.3, §5.2): training under fp16 autocast with a GradScaler, the encoder
targets under the same autocast, TF32 on; sampling in fp32 with TF32. bf16 is a named option (faster), recorded in
provenance.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch
import yaml

import repabench.train as train
from repabench import sample as S
from repabench.align import Method

REPO = Path(__file__).resolve().parent.parent
PAPER_PRESETS = ["config/paper.yaml", "config/ablation.yaml"]


def _validated(preset: str) -> dict:
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / preset).read_text())
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    return config


@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_paper_presets_train_and_sample_in_upstream_precision(preset):
    config = _validated(preset)
    cfg = train.TrainConfig.from_config(config["train"])
    assert (cfg.mixed_precision, cfg.tf32) == ("fp16", True)
    assert S.SampleConfig.from_config(config["sample"]).precision == "fp32"


def test_published_preset_samples_in_fp32():
    assert S.SampleConfig.from_config(_validated("config/published.yaml")["sample"]).precision == "fp32"


def test_defaults_are_upstream_precision():
    config = {"name": "x", "encoders": ["pixels-classic-raw"], "models": ["SiT-S/2"],
              "methods": {"repa": {"projector": "mlp"}}}
    from snakemake.utils import validate

    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    assert config["train"]["mixed_precision"] == "fp16" and config["train"]["tf32"] is True
    assert config["sample"]["precision"] == "fp32"
    assert train.TrainConfig().mixed_precision == "fp16" and S.SampleConfig().precision == "fp32"


def test_training_precision_per_device():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert [train.training_precision(p, cuda) for p in ("fp16", "bf16", "no")] == ["fp16", "bf16", "no"]
    assert [train.training_precision(p, cpu) for p in ("fp16", "bf16", "no")] == ["no", "no", "no"]
    with pytest.raises(ValueError, match="fp16"):
        train.training_precision("fp8", cuda)


class _AutocastRecorder(torch.nn.Module):
    """An 'encoder' that records whether it runs under autocast and in which dtype."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[bool, torch.dtype]] = []

    def forward(self, images, grid):
        self.seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return torch.randn(images.shape[0], grid * grid, 4)


@pytest.mark.parametrize("autocast, expected", [
    (lambda: torch.autocast("cpu", dtype=torch.bfloat16), (True, torch.bfloat16)),
    (contextlib.nullcontext, (False, None)),
])
def test_targets_run_under_the_training_autocast(autocast, expected):
    encoder = _AutocastRecorder()
    targets = train.AlignmentTargets([encoder], 2, Method("mlp"), torch.device("cpu"), autocast)
    (tokens,) = targets.compute(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    enabled, dtype = encoder.seen[-1]
    assert enabled is expected[0] and (expected[1] is None or dtype == expected[1])
    assert tokens.dtype == torch.float32


@pytest.mark.parametrize("precision, autocast", [("fp32", False), ("bf16", True)])
def test_sampler_evaluates_the_model_in_the_configured_precision(precision, autocast):
    seen = []

    def velocity(x, t, y):
        seen.append((torch.is_autocast_enabled("cpu"), x.dtype, t.dtype))
        return torch.zeros_like(x)

    x = torch.randn(2, 1, 2, 2, dtype=torch.float64)
    out = S.run_sampler(velocity, x, torch.tensor([0, 1]), S.SamplerSettings("ode", 2), None, null_class=10,
                        precision=precision)
    assert out.dtype == torch.float64  # the sampler state stays float64 either way
    assert seen and all(s == (autocast, torch.float32, torch.float32) for s in seen)


def test_train_provenance_records_requested_and_effective_precision(tmp_path, monkeypatch):
    from test_train_support import make_data, stand_in_builder, train_argv

    monkeypatch.setattr(train, "build_target_encoder", stand_in_builder)
    paths = make_data(tmp_path)
    argv = train_argv(paths, tmp_path / "out", tmp_path / "state",
                      train={"steps": 2, "checkpoint_steps": [2], "state_every": 2, "mixed_precision": "fp16"})
    assert train.train_main(argv) == 0
    provenance = json.loads((tmp_path / "out" / "log.json").read_text())["provenance"]
    assert provenance["precision_requested"] == "fp16"
    assert provenance["precision"] == provenance["targets_precision"] == "no"  # CPU: fp32, said so
    assert provenance["grad_scaler"] is False and provenance["tf32"] is False


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_training_autocast_and_grad_scaler_on_gpu():
    from accelerate import Accelerator

    accelerator = Accelerator(mixed_precision=train.training_precision("fp16", torch.device("cuda")))
    assert accelerator.scaler is not None
    with accelerator.autocast():
        out = torch.nn.Linear(8, 8).cuda()(torch.randn(2, 8, device="cuda"))
    assert out.dtype == torch.float16
