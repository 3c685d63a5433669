"""The config contract: schema validation before any job, presets that dry-run, a lint-clean workflow."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
PRESETS = ["config/config.yaml", "config/paper.yaml", "config/ablation.yaml", "config/jit.yaml",
           "config/meanflow.yaml", ".test/config/config.yaml", "config/repae.yaml"]


def snakemake(*args, cwd=REPO):
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def run_with_overlay(tmp_path, overlay: dict, target="results/data/train"):
    """A real (not dry) run in an empty working directory with a bad overlay: must fail before any job."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(overlay))
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = snakemake(target, "-c1", "--directory", str(workdir), "--snakefile", str(REPO / "Snakefile"),
                       "--configfile", str(REPO / ".test/config/config.yaml"), str(bad))
    assert result.returncode != 0
    assert not (workdir / "results").exists(), "a rejected config must not write anything"
    return result.stdout + result.stderr


@pytest.mark.parametrize("overlay, message", [
    ({"train": {"steps": -5}}, r"-5 is less than the minimum of 1"),
    ({"trian": {"steps": 5}}, r"'trian' was unexpected"),
    ({"sample": {"labels": "random"}}, r"'random' is not one of \['uniform', 'balanced'\]"),
    ({"methods": {"irepa": {"projector": "conv", "kernel": 2}}}, r"2 is not one of \[1, 3, 5, 7\]"),
    ({"report": {"method": "nope"}}, r"report.method: 'nope' is not trained"),
    ({"train": {"steps": 8, "checkpoint_steps": [4, 16]}}, r"train.checkpoint_steps: \[16\] exceed train.steps"),
    ({"sample": {"sampler": "ode9"}}, r"sample.sampler: 'ode9' is not an entry of `samplers`"),
])
def test_bad_config_fails_naming_the_key_and_writes_nothing(tmp_path, overlay, message):
    import re

    output = run_with_overlay(tmp_path, overlay)
    assert re.search(message, output), output[-3000:]


def test_unknown_encoder_fails_listing_known_ones(tmp_path):
    output = run_with_overlay(tmp_path, {"encoders": ["dinov9-vit-b"]})
    assert "dinov9-vit-b" in output and "dinov2-vit-b" in output, output[-3000:]


def test_schema_fills_defaults():
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / ".test/config/config.yaml").read_text())
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    assert config["train"]["ema_decay"] == 0.9999 and config["train"]["grad_clip"] == 1.0
    assert config["methods"]["irepa"]["kernel"] == 3 and config["methods"]["repa"]["projector_dim"] == 64


def test_a_jit_only_study_schedules_no_vae_or_latent_stage():
    result = snakemake("-n", "--nolock", "--configfile", "config/jit.yaml")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    plan = result.stdout
    for rule in ("fit_autoencoder", "cache_latents", "latent_stats"):
        assert f"rule {rule}:" not in plan and f"localrule {rule}:" not in plan, rule
    assert "jit-b-16/pe-vit-g/jit_irepa" in plan and "/jit50/manifest.json" in plan


@pytest.mark.parametrize("overlay, message", [
    ({"models": ["JiT-T/16"]}, r"sample.jit_sampler: JiT-T/16 is a JiT"),
    ({"models": ["JiT-T/16"], "sample": {"jit_sampler": "sde8"}}, r"sample.jit_sampler: 'sde8' must be an entry"),
    ({"models": ["JiT-S/16"]}, r"'JiT-S/16' does not match"),
    ({"samplers": {"sde8": {"mode": "jit", "steps": 8}}}, r"sample.sampler: 'sde8' has mode: jit"),
])
def test_bad_jit_config_fails_naming_the_key(tmp_path, overlay, message):
    import re

    output = run_with_overlay(tmp_path, overlay)
    assert re.search(message, output), output[-3000:]


def test_the_meanflow_preset_plans_table_2b():
    """Table 2b: MF-B/2, WebSSL-1B and DINOv3-B, REPA and iREPA (4 runs), sampled on the SD-VAE latents."""
    result = snakemake("-n", "--nolock", "--configfile", "config/meanflow.yaml")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    plan = result.stdout
    for encoder in ("webssl-vit-dino1b_full2b_224", "dinov3-vit-b16"):
        for method in ("repa", "irepa"):
            assert f"mf-b-2/{encoder}/{method}" in plan
    assert "rule cache_latents:" in plan and "/mf1_cfg2/manifest.json" in plan


@pytest.mark.parametrize("overlay, message", [
    ({"models": ["MF-T/2"]}, r"sample.mf_sampler: MF-T/2 is a MeanFlow model"),
    ({"models": ["MF-T/2"], "sample": {"mf_sampler": "sde8"}}, r"sample.mf_sampler: 'sde8' must be an entry"),
    ({"samplers": {"sde8": {"mode": "meanflow", "steps": 1}}}, r"sample.sampler: 'sde8' has mode: meanflow"),
    ({"train": {"meanflow": {"ratio": 0.5}}}, r"'ratio' was unexpected"),
])
def test_bad_meanflow_config_fails_naming_the_key(tmp_path, overlay, message):
    import re

    output = run_with_overlay(tmp_path, overlay)
    assert re.search(message, output), output[-3000:]


def test_the_repae_preset_plans_table_2a():
    """Six end-to-end runs (3 encoders x REPA-E / iREPA-E) on the images: each train job reads the VAE it tunes and
    the latent statistics its BatchNorm starts from, never the latent store; sampling reads only the checkpoint."""
    result = snakemake("-n", "-p", "--nolock", "--forcerun", "train", "sample", "--configfile", "config/repae.yaml")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    trains = [line for line in result.stdout.splitlines() if "repabench train" in line]
    assert len(trains) == 6
    assert all("--autoencoder-kind sd-vae-ft-mse" in t and "--latents " not in t for t in trains)
    samples = [line for line in result.stdout.splitlines() if "repabench sample" in line and "/repae" in line]
    assert samples and all("--autoencoder" not in line for line in samples)


@pytest.mark.parametrize("overlay, message", [
    ({"methods": {"repa": {"projector": "mlp", "end_to_end": True}}, "train": {"mixed_precision": "fp16"}},
     r"end_to_end methods \['repa'\]: train.mixed_precision fp16"),
    ({"methods": {"repa": {"projector": "mlp", "end_to_end": True}}, "train": {"gpus": 2}}, r"train.gpus > 1"),
    ({"methods": {"repa": {"projector": "mlp", "end_to_end": True, "coeff": 0.0}}}, r"methods.repa.coeff must be > 0"),
    ({"methods": {"repa": {"projector": "mlp", "end_to_end": "yes"}}}, r"'yes' is not of type 'boolean'"),
])
def test_bad_end_to_end_config_fails_naming_the_key(tmp_path, overlay, message):
    import re

    output = run_with_overlay(tmp_path, overlay)
    assert re.search(message, output), output[-3000:]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_dry_runs(preset):
    result = snakemake("-n", "-q", "--nolock", "--configfile", preset)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


def test_paper_preset_is_the_study():
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    assert len(paper["encoders"]) == 27 and paper["models"] == ["SiT-XL/2"]
    assert paper["sample"]["n_samples"] == 50000 and paper["samplers"]["sde250"] == {
        "mode": "sde", "steps": 250, "cfg_scale": 1.0}
    assert 100000 in paper["train"]["checkpoint_steps"] and paper["report"] == {"method": "repa", "step": 100000}
    ablation = yaml.safe_load((REPO / "config/ablation.yaml").read_text())
    assert ablation["run_methods"] == ["repa", "conv_only", "spnorm_only", "irepa"]


def test_ablation_coefficient_of_the_partial_methods_is_a_written_assumption():
    """conv only / spatial norm only: 1.0 (an assumption upstream cannot express), 0.5 one uncommented line away."""
    text = (REPO / "config/ablation.yaml").read_text()
    ablation = yaml.safe_load(text)
    assert {name: ablation["methods"][name]["coeff"] for name in ("repa", "conv_only", "spnorm_only", "irepa")} == {
        "repa": 0.5, "conv_only": 1.0, "spnorm_only": 1.0, "irepa": 1.0}
    assert "ASSUMPTION" in text
    lines = text.splitlines()
    for method in ("conv_only", "spnorm_only"):
        start = lines.index(f"  {method}:")
        block = lines[start + 1:start + 9]
        i = next(k for k, line in enumerate(block) if line.strip().startswith("coeff: 1.0"))
        assert "assumption" in block[i]
        alternative = yaml.safe_load(block[i + 1].replace("# ", "", 1).split("#")[0])
        assert alternative == {"coeff": 0.5}
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Choices where upstream is ambiguous"):]
    assert "conv only" in section and "coeff: 0.5" in section


def test_lint():
    result = snakemake("--lint", "--configfile", ".test/config/config.yaml")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
