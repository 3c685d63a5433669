# Config validation, target lists, wildcard constraints and path helpers shared by every rule file.

import json
import re
import sys

from snakemake.utils import validate

from repabench.sizes import model_slug


validate(config, schema="../schemas/config.schema.yaml")

PYTHON = sys.executable


class ConfigError(ValueError):
    pass


def _check_config():
    """Cross-field checks the JSON schema cannot express; each message names the key and the fix."""
    methods = config["methods"]
    config.setdefault("run_methods", list(methods))
    for name in config["run_methods"]:
        if name not in methods:
            raise ConfigError(
                f"run_methods: {name!r} is not an entry of `methods` (known: {', '.join(methods)})"
            )
    if config["report"]["method"] not in config["run_methods"]:
        raise ConfigError(
            f"report.method: {config['report']['method']!r} is not trained; add it to run_methods "
            f"or pick one of {', '.join(config['run_methods'])}"
        )
    if config["sample"]["sampler"] not in config["samplers"]:
        raise ConfigError(
            f"sample.sampler: {config['sample']['sampler']!r} is not an entry of `samplers` "
            f"(known: {', '.join(config['samplers'])})"
        )
    train = config["train"]
    late = [s for s in train["checkpoint_steps"] if s > train["steps"]]
    if late:
        raise ConfigError(f"train.checkpoint_steps: {late} exceed train.steps = {train['steps']}")
    if train["gpus"] > 1 and train["global_batch"] % train["gpus"]:
        raise ConfigError(
            f"train.global_batch = {train['global_batch']} is not divisible by train.gpus = {train['gpus']}"
        )
    if config["report"]["step"] is not None and config["report"]["step"] not in train["checkpoint_steps"]:
        raise ConfigError(
            f"report.step: {config['report']['step']} is not one of train.checkpoint_steps {train['checkpoint_steps']}"
        )
    if config["data"]["source"] == "imagefolder" and not config["data"]["root"]:
        raise ConfigError("data.root: must point at the ImageNet-style folder tree when data.source is imagefolder")
    from repabench.encoders import validate_encoder_name

    for encoder in config["encoders"]:
        try:
            validate_encoder_name(encoder)
        except ValueError as exc:
            raise ConfigError(f"encoders: {exc}") from None
    from repabench.sizes import MODEL_CONFIGS

    for model in config["models"]:
        if model not in MODEL_CONFIGS:
            raise ConfigError(f"models: unknown model {model!r} (known: {', '.join(MODEL_CONFIGS)})")
        depth = MODEL_CONFIGS[model]["depth"]
        for name in config["run_methods"]:
            if methods[name].get("encoder_depth", 8) > depth:
                raise ConfigError(
                    f"methods.{name}.encoder_depth = {methods[name]['encoder_depth']} exceeds the "
                    f"{depth} blocks of {model}"
                )


_check_config()


MODEL_BY_SLUG = {model_slug(m): m for m in config["models"]}
MODELS = list(MODEL_BY_SLUG)
ENCODERS = list(config["encoders"])
METHODS = list(config["run_methods"])
SAMPLER = config["sample"]["sampler"]
STEPS = [f"{s:07d}" for s in sorted(config["train"]["checkpoint_steps"])]
SPLITS = ["train", "heldout"]
DEVICE = config["device"]
USE_GPU = DEVICE != "cpu"


wildcard_constraints:
    model="|".join(map(re.escape, MODELS)),
    encoder="|".join(map(re.escape, ENCODERS)),
    method="|".join(map(re.escape, config["methods"])),
    sampler="|".join(map(re.escape, config["samplers"])),
    step=r"\d{7}",
    split="train|heldout",


def model_name(slug):
    return MODEL_BY_SLUG[slug]


def stage_params(*sections, **extra):
    """JSON of the named config sections (plus extras): what a stage receives and what its provenance hashes."""
    params = {name: config[name] for name in sections}
    params.update(extra)
    return json.dumps(params, sort_keys=True)


def gpus(n):
    """GPU count to request: none when the study runs on the CPU."""
    return n if USE_GPU else 0


def autoencoder_path():
    if config["vae"]["kind"] == "pca":
        return "results/vae/autoencoder.pt"
    return f"{config['resources']['weights_dir']}/sd-vae-ft-mse"


def run_dirs():
    return [f"{m}/{e}/{k}" for m in MODELS for e in ENCODERS for k in METHODS]


def report_step():
    return f"{config['report']['step'] or max(config['train']['checkpoint_steps']):07d}"


def final_targets():
    return ["results/report/report.html", "results/report/report.pdf"]
