"""Typed config sections: the schema's defaults are the dataclasses' defaults, and reading a section is strict.

The oracle for the defaults is Snakemake's own `validate`, which fills an empty config from the schema exactly as
the workflow does before any job runs; the section objects must come out equal to their no-argument defaults."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from repabench.adm.stages import EvaluateConfig
from repabench.align import Method
from repabench.data import DataConfig, DemoSetConfig
from repabench.encoders.extract import FeaturesConfig
from repabench.probe import ProbeConfig
from repabench.sample import SampleConfig, SamplerSettings
from repabench.sections import ConfigSectionError
from repabench.spatial import SpatialConfig
from repabench.stats import ReportConfig
from repabench.train import TrainConfig
from repabench.vae import VaeConfig

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
SECTIONS = {"data": DataConfig, "vae": VaeConfig, "train": TrainConfig, "sample": SampleConfig,
            "evaluate": EvaluateConfig, "spatial": SpatialConfig, "features": FeaturesConfig, "probe": ProbeConfig,
            "report": ReportConfig}
# sections no stage reads: the Snakefile resolves their paths and files and passes the stages those
WORKFLOW_SECTIONS = {"resources", "published"}
MINIMAL = {"name": "x", "encoders": ["pixels-classic-raw"], "models": ["SiT-S/2"],
           "methods": {"repa": {"projector": "mlp"}}, "samplers": {"s": {"mode": "sde", "steps": 2}}}


@pytest.fixture(scope="module")
def filled():
    config = copy.deepcopy(MINIMAL)
    validate(config, str(SCHEMA))
    return config


def test_every_section_of_the_schema_has_a_typed_object_or_is_the_workflows():
    properties = yaml.safe_load(SCHEMA.read_text())["properties"]
    sections = {k for k, v in properties.items() if v.get("type") == "object" and "properties" in v}
    assert sections == set(SECTIONS) | WORKFLOW_SECTIONS


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_an_empty_section_filled_by_the_workflow_equals_the_dataclass_defaults(filled, name):
    cls = SECTIONS[name]
    assert cls.from_config(filled[name]) == cls()
    fields = {f.name for f in dataclasses.fields(cls)}
    assert fields | set(cls.WORKFLOW_KEYS) == set(filled[name]) | _no_default_keys(name)


def _no_default_keys(name: str) -> set[str]:
    """Keys the schema declares without a default (absent = the class's stated meaning)."""
    properties = yaml.safe_load(SCHEMA.read_text())["properties"][name]["properties"]
    return {k for k, v in properties.items() if "default" not in v}


def test_named_entries_filled_by_the_workflow_equal_the_dataclass_defaults(filled):
    assert Method.from_config(filled["methods"]["repa"]) == Method("mlp")
    assert SamplerSettings.from_config(filled["samplers"]["s"]) == SamplerSettings("sde", 2)
    assert DataConfig().demo == DemoSetConfig() == DemoSetConfig.from_config(filled["data"]["demo"])


def test_every_preset_reads_into_the_section_objects():
    for preset in sorted((REPO / "config").glob("*.yaml")) + [REPO / ".test/config/config.yaml"]:
        config = yaml.safe_load(preset.read_text())
        validate(config, str(SCHEMA))
        for name, cls in SECTIONS.items():
            section = cls.from_config(config[name])
            for key, value in config[name].items():
                if key in cls.WORKFLOW_KEYS:
                    continue
                got = getattr(section, key)
                if dataclasses.is_dataclass(got):
                    got = dataclasses.asdict(got)
                assert (list(got) if isinstance(got, tuple) else got) == value, f"{preset.name}: {name}.{key}"
        for entry, settings in config["samplers"].items():
            assert SamplerSettings.from_config(settings, f"samplers.{entry}").steps == settings["steps"]
        for entry, method in config["methods"].items():
            assert Method.from_config(method, f"methods.{entry}").projector == method["projector"]


def test_unknown_key_names_the_key_and_the_allowed_ones():
    with pytest.raises(ConfigSectionError) as err:
        ProbeConfig.from_config({"epoch": 3})
    message = str(err.value)
    assert "probe" in message and "'epoch'" in message and "'epochs'" in message and "'lrs'" in message


def test_workflow_keys_stay_out_of_the_stage_objects():
    train = TrainConfig.from_config({"gpus": 4, "time_budget_min": 30})
    assert train == TrainConfig()
    assert not {"gpus", "time_budget_min"} & {f.name for f in dataclasses.fields(TrainConfig)}
    assert SampleConfig.from_config({"gpus": 2}) == SampleConfig()


def test_a_required_key_missing_is_an_error():
    with pytest.raises(ConfigSectionError, match="projector"):
        Method.from_config({"coeff": 1.0}, "methods.repa")
    with pytest.raises(ConfigSectionError, match="mode"):
        SamplerSettings.from_config({"steps": 4})


def test_stages_take_the_section_nested_under_its_name_only(tmp_path):
    from repabench.spatial import spatial_metrics_main

    argv = ["--features", str(tmp_path), "--encoder", "e", "--out", str(tmp_path / "s.json"), "--device", "cpu"]
    with pytest.raises(SystemExit, match="bootstrap"):  # a bare section: its keys are not config keys
        spatial_metrics_main([*argv, "--params", json.dumps({"bootstrap": 10})])
    with pytest.raises(SystemExit, match="lds_farr"):
        spatial_metrics_main([*argv, "--params", json.dumps({"spatial": {"lds_farr": 3}})])


def test_the_harness_returns_args_typed_config_device_and_seed():
    from repabench.stage import parse_stage, stage_parser

    parser = stage_parser("probe_like", "test", device=True)
    parser.add_argument("--out")
    args, config, device, seed = parse_stage(
        parser, ["--out", "o", "--device", "cpu", "--params", json.dumps({"probe": {"epochs": 3}, "seed": 7})],
        {"probe": ProbeConfig, "seed": int})
    assert args.out == "o" and str(device) == "cpu" and seed == 7
    assert config.probe == ProbeConfig(epochs=3) and config.raw == {"probe": {"epochs": 3}, "seed": 7}
    _, config, device, seed = parse_stage(stage_parser("no_params", "test"), [], {"probe": ProbeConfig, "seed": int})
    assert device is None and seed == yaml.safe_load(SCHEMA.read_text())["properties"]["seed"]["default"]
    assert config.probe == ProbeConfig()
