# Config validation, target lists, wildcard constraints and path helpers shared by every rule file.

import json
import os
import re
import sys

from snakemake.utils import validate

from repabench.encoders import weight_names
from repabench.sizes import LATENT_FAMILIES, model_config, model_family, model_name, model_slug
from repabench.weight_catalog import WEIGHTS
from repabench.masks import archive_name


validate(config, schema="../schemas/config.schema.yaml")

# Jobs call `python -m repabench`: the interpreter running Snakemake comes first on PATH (its venv), unless a
# conda environment (--sdm conda) is activated for the job, which then puts its own python first.
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])


envvars:
    "PATH",


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
    from repabench.config_checks import check_batch_fits

    try:
        check_batch_fits(config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if config["report"]["step"] is not None and config["report"]["step"] not in train["checkpoint_steps"]:
        raise ConfigError(
            f"report.step: {config['report']['step']} is not one of train.checkpoint_steps {train['checkpoint_steps']}"
        )
    if config["data"].get("mask_source") and config["data"]["source"] != "imagefolder":
        raise ConfigError("data.mask_source: ImageNet-S masks pair with ImageNet val images; set data.source to "
                          "imagefolder or drop data.mask_source")
    if config["data"].get("mask_source") and config["published"]["enabled"]:
        raise ConfigError("data.mask_source: the published study brings its own masks (published.masks); "
                          "drop data.mask_source")
    if config["data"]["source"] == "imagefolder" and not config["data"]["root"]:
        raise ConfigError("data.root: must point at the ImageNet-style folder tree when data.source is imagefolder")
    if "none" in methods:
        raise ConfigError("methods: `none` is reserved for the untrained baseline; rename that method")
    if "untrained" in config["encoders"]:
        raise ConfigError("encoders: `untrained` is reserved for the untrained baseline")
    from repabench.encoders import validate_encoder_name

    for encoder in config["encoders"]:
        try:
            validate_encoder_name(encoder)
        except ValueError as exc:
            raise ConfigError(f"encoders: {exc}") from None
    from repabench.sections import section_properties

    # Snakemake's validate fills no defaults inside the named entries of `methods`; take the schema's
    default_depth = section_properties("methods.*")["encoder_depth"]["default"]
    for model in config["models"]:
        try:
            size = model_config(model)
        except ValueError as exc:
            raise ConfigError(f"models: {exc}") from None
        depth = size["depth"]
        if model_family(model) == "jit":
            _check_jit(model, size)
        _check_family_sampler(model)
        for name in config["run_methods"]:
            if methods[name].get("encoder_depth", default_depth) > depth:
                raise ConfigError(
                    f"methods.{name}.encoder_depth = {methods[name]['encoder_depth']} exceeds the "
                    f"{depth} blocks of {model}"
                )


def _check_jit(model, size):
    """A JiT trains on pixels: its patch grid must tile the images."""
    resolution, patch = config["data"]["resolution"], size["patch_size"]
    if resolution % patch:
        raise ConfigError(f"models: {model} needs data.resolution divisible by its patch size {patch}, "
                          f"got {resolution}")


# per family: the `sample` key naming its runs' sampler, the sampler modes it samples with, its `train` objective key
FAMILY_SAMPLING = {
    "sit": ("sampler", ("sde", "ode"), None),
    "jit": ("jit_sampler", ("jit",), "jit"),
    "meanflow": ("mf_sampler", ("meanflow",), "meanflow"),
}


def _check_family_sampler(model):
    """Each family's runs sample with the `samplers` entry its `sample` key names, of one of its modes."""
    family = model_family(model)
    key, modes, _ = FAMILY_SAMPLING[family]
    name = config["sample"].get(key)
    kind = {"jit": "a JiT", "meanflow": "a MeanFlow model"}.get(family)
    if name is None:
        raise ConfigError(f"sample.{key}: {model} is {kind}; name the `samplers` entry (mode: {modes[0]}) that "
                          "samples and evaluates its runs")
    if name not in config["samplers"]:
        raise ConfigError(f"sample.{key}: {name!r} must be an entry of `samplers` with mode: {' or '.join(modes)} "
                          f"(known: {', '.join(config['samplers'])})")
    mode = config["samplers"][name]["mode"]
    if mode not in modes:
        if family == "sit":
            raise ConfigError(f"sample.sampler: {name!r} has mode: {mode}, which samples "
                              f"{'JiT' if mode == 'jit' else 'MeanFlow'} runs only; name an sde or ode entry for "
                              "the SiT models")
        raise ConfigError(f"sample.{key}: {name!r} must be an entry of `samplers` with mode: {' or '.join(modes)} "
                          f"(known: {', '.join(config['samplers'])})")


def _check_end_to_end():
    """REPA-E methods (end_to_end: true) tune the VAE under a SiT on one process, outside fp16's GradScaler."""
    tuned = [name for name in config["run_methods"] if config["methods"][name].get("end_to_end")]
    if not tuned:
        return
    train = config["train"]
    problems = []
    if not any(model_family(m) == "sit" for m in config["models"]):
        problems.append("no SiT in `models` (only a SiT trains on a VAE's latents); add one")
    if train["mixed_precision"] == "fp16":
        problems.append("train.mixed_precision fp16: use bf16 or no (the VAE update is outside the GradScaler)")
    if train["gpus"] > 1:
        problems.append("train.gpus > 1: end-to-end runs train on one process (the VAE's gradients are not "
                        "all-reduced); set train.gpus: 1")
    if config["published"]["enabled"]:
        problems.append("published.enabled: imported checkpoints are not end-to-end runs")
    for name in tuned:
        if config["methods"][name].get("coeff", 0.5) <= 0:
            problems.append(f"methods.{name}.coeff must be > 0 (REPA-E aligns the SiT and the VAE)")
    if problems:
        raise ConfigError(f"end_to_end methods {tuned}: " + "; ".join(problems))


_check_config()
_check_end_to_end()


MODELS = [model_slug(m) for m in config["models"]]
FAMILY = {model_slug(m): model_family(m) for m in config["models"]}  # slug -> "sit" | "jit" | "meanflow"
LATENT_MODELS = [m for m in MODELS if FAMILY[m] in LATENT_FAMILIES]  # the models that need the VAE / latent stages
ENCODERS = list(config["encoders"])
METHODS = list(config["run_methods"])
SAMPLER = config["sample"]["sampler"]


def sampler_of(model):
    """The sampler a model's runs are sampled and evaluated with (JiT: sample.jit_sampler, MeanFlow:
    sample.mf_sampler)."""
    return config["sample"].get(FAMILY_SAMPLING[model_family(model)][0])


# the sampler of the model whose FIDs are correlated (report.model, else the first of `models`)
REPORT_SAMPLER = sampler_of(model_slug(config["report"].get("model") or config["models"][0]))
STEPS = [f"{s:07d}" for s in sorted(config["train"]["checkpoint_steps"])]
MASK_SOURCE = config["data"].get("mask_source")
SPATIAL_SPLIT = "masked" if MASK_SOURCE else "heldout"  # the image set of the spatial metrics
DEVICE = config["device"]
USE_GPU = DEVICE != "cpu"


# The untrained generator (train.smk's `untrained` rule) is one more "run" of every model, so that sample and
# evaluate serve it unchanged: results/train/{model}/untrained/none/checkpoints/0000000.pt.
UNTRAINED_ENCODER, UNTRAINED_METHOD, UNTRAINED_STEP = "untrained", "none", "0000000"
ENCODER_PATTERN = "|".join(map(re.escape, ENCODERS))
METHOD_PATTERN = "|".join(map(re.escape, config["methods"]))


wildcard_constraints:
    model="|".join(map(re.escape, MODELS)),
    encoder="|".join([ENCODER_PATTERN, UNTRAINED_ENCODER]),
    method="|".join([METHOD_PATTERN, UNTRAINED_METHOD]),
    sampler="|".join(map(re.escape, config["samplers"])),
    step=r"\d{7}",
    split="train|heldout|masked",


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


def end_to_end(method):
    """Whether a method is REPA-E's (the VAE is tuned with the SiT; SiT models only)."""
    return bool(config["methods"].get(method, {}).get("end_to_end"))


def run_dirs():
    return [f"{m}/{e}/{k}" for m in MODELS for e in ENCODERS for k in METHODS
            if FAMILY[m] == "sit" or not end_to_end(k)]


def run_curves():
    """results/eval/{run}/{sampler}.csv of every run, each with its model's sampler."""
    return [f"results/eval/{run}/{sampler_of(run.split('/')[0])}.csv" for run in run_dirs()]


def final_targets():
    return ["results/report/report.html", "results/report/report.pdf"]


# --- used by encoders.smk ------------------------------------------------------------------------


WEIGHTS_DIR = config["resources"]["weights_dir"]
ADM_REFERENCE_NAME = "VIRTUAL_imagenet256_labeled.npz"  # fetched by evaluate.smk to resources.adm_reference
_SNAPSHOT_WEIGHTS = sorted(n for n, s in WEIGHTS.items() if s.source.startswith("hfrepo:"))
_FILE_WEIGHTS = sorted(n for n in WEIGHTS if n not in _SNAPSHOT_WEIGHTS and n != ADM_REFERENCE_NAME)


def encoder_weight_files(encoder):
    """Weight files/snapshots of an encoder under the weights dir ([] for random-init and classical ones)."""
    return [f"{WEIGHTS_DIR}/{name}" for name in weight_names(encoder)]


def encoder_weights(wildcards):
    """Input function: the weight files of the rule's {encoder}."""
    return encoder_weight_files(wildcards.encoder)


def mask_archive():
    """The fetched ImageNet-S release the masked split is built from ([] without data.mask_source)."""
    return [f"{WEIGHTS_DIR}/{archive_name(MASK_SOURCE)}"] if MASK_SOURCE else []


def weights_dir_of(wildcards, input):
    """The folder of the encoder's weight inputs (any folder for encoders without weights)."""
    return os.path.dirname(input.weights[0]) if input.weights else WEIGHTS_DIR


# --- used by train.smk ---------------------------------------------------------------------------


def latent_inputs(wildcards):
    """The latent store and its statistics of a SiT or MeanFlow run; none for a JiT (it trains on the images)."""
    if FAMILY[wildcards.model] not in LATENT_FAMILIES:
        return {}
    if end_to_end(getattr(wildcards, "method", "")):  # REPA-E: the images, the VAE to tune, its BN start
        return {"stats": "results/latents/stats.json", "autoencoder": autoencoder_path()}
    return {"latents": ancient("results/latents/train"), "stats": "results/latents/stats.json"}


def latent_args(wildcards, input):
    if "autoencoder" in input.keys():
        return (f"--latent-stats {input.stats} --autoencoder {input.autoencoder} "
                f"--autoencoder-kind {config['vae']['kind']}")
    return f"--latents {input.latents} --latent-stats {input.stats}" if "latents" in input.keys() else ""


def train_stage_params(wildcards, method=None):
    """The train section with the objective key of the run's family only (`train.jit` for JiT, `train.meanflow`
    for MeanFlow), so SiT runs' params stay as they were."""
    train = dict(config["train"])
    for family, (_, _, objective_key) in FAMILY_SAMPLING.items():
        if objective_key and family != FAMILY[wildcards.model]:
            train.pop(objective_key, None)
    if not end_to_end(method):
        train.pop("end_to_end", None)
    extra = {"method": config["methods"][method]} if method else {}
    return json.dumps({"train": train, "seed": config["seed"], **extra}, sort_keys=True)


def accelerate_launcher(resources, *flags):
    """`-m` for one process; accelerate launch with one process per requested GPU otherwise."""
    if resources.gpu > 1:
        return " ".join(["-m accelerate.commands.launch --multi_gpu --num_machines 1 --dynamo_backend no",
                         f"--num_processes {resources.gpu}", *flags, "-m"])
    return "-m"


def train_launcher(wildcards, resources):
    return accelerate_launcher(resources, "--main_process_port 0")


def train_threads():
    n = gpus(config["train"]["gpus"])
    return 8 * n if n else 1  # the CPU demo runs two single-thread trainings side by side on 2 cores


# --- used by sample.smk --------------------------------------------------------------------------


def sample_stage_params(wildcards):
    sampler = dict(config["samplers"][wildcards.sampler], name=wildcards.sampler)
    return stage_params("sample", sampler=sampler)


def sample_decoder_inputs(wildcards):
    """The latent stats and autoencoder a SiT or MeanFlow checkpoint decodes with; none for a JiT (it samples
    pixels) or a REPA-E run (its checkpoint holds the tuned decoder and its BatchNorm statistics)."""
    if FAMILY[wildcards.model] not in LATENT_FAMILIES or end_to_end(wildcards.method):
        return {}
    return {"latent_stats": "results/latents/stats.json", "autoencoder": autoencoder_path()}


def sample_decoder_args(wildcards, input):
    if "autoencoder" not in input.keys():
        return ""
    return (f"--latent-stats {input.latent_stats} --autoencoder-kind {config['vae']['kind']} "
            f"--autoencoder {input.autoencoder}")


def sample_launcher(wildcards, resources):
    return accelerate_launcher(resources, "--main_process_port 0 --mixed_precision no")


def sample_runtime(wildcards, attempt):
    """Minutes per attempt; a retry resumes from the finished shards, so later attempts only add time."""
    return 30 * attempt if not USE_GPU else 240 * attempt


# --- used by evaluate.smk ------------------------------------------------------------------------


INCEPTION_WEIGHTS = {
    "torch-fidelity": "pt_inception-2015-12-05-6726825d.pth",
    "fid-helper": "inception-2015-12-05-fid-helper.pt",
}
ADM_REFERENCE = config["resources"]["adm_reference"]


def inception_weights():
    return f"{WEIGHTS_DIR}/{INCEPTION_WEIGHTS[config['evaluate']['inception']]}"


def reference_source(wildcards):
    if wildcards.reference == "heldout":
        return "results/data/heldout"
    if not ADM_REFERENCE:
        raise ConfigError("resources.adm_reference: set the path of VIRTUAL_imagenet256_labeled.npz "
                          "or use evaluate.reference: heldout")
    return ADM_REFERENCE


def evaluate_threads():
    return 8 if USE_GPU else 2


# --- used by report.smk --------------------------------------------------------------------------


def eval_jsons():
    return [f"results/eval/{run}/{step}/{sampler_of(run.split('/')[0])}.json" for run in run_dirs() for step in STEPS]


def untrained_eval_jsons():
    """The learning baseline of every model (report.untrained_baseline; none for imported checkpoints)."""
    if not config["report"]["untrained_baseline"] or PUBLISHED_ON:
        return []
    return [f"results/eval/{model}/{UNTRAINED_ENCODER}/{UNTRAINED_METHOD}/{UNTRAINED_STEP}/{sampler_of(model)}.json"
            for model in MODELS]


def report_params():
    """The config the report renders, and no more: an edit elsewhere (an untrained method, another sampler,
    training or data settings, which reach the report through their results) does not rerun it."""
    return stage_params(
        "report", "name", "run_methods", "models", "encoders", "sample", "evaluate",
        methods={name: config["methods"][name] for name in METHODS},
        samplers={name: config["samplers"][name] for name in sorted({sampler_of(m) for m in MODELS})},
    )


def report_benchmark_jobs():
    """{benchmark file: (name of its rule, encoder or None)} for every benchmarked job of the report's DAG."""
    jobs = {}

    def add(rule_name, job, encoder=None):
        jobs[f"results/benchmarks/{rule_name}/{job}.tsv"] = (rule_name, encoder)

    for path in eval_jsons() + untrained_eval_jsons():
        job = path.removeprefix("results/eval/").removesuffix(".json")
        encoder = job.split("/")[1]
        for rule_name in ("sample", "evaluate"):
            add(rule_name, job, encoder if encoder in ENCODERS else None)
    add("reference_stats", config["evaluate"]["reference"])
    probe_imported = PUBLISHED_ON and PUBLISHED["probe"] == "published"
    features_imported = PUBLISHED_ON and bool(PUBLISHED["features"])
    for encoder in ENCODERS:
        add("spatial_metrics", encoder, encoder)
        if not probe_imported:
            add("linear_probe", encoder, encoder)
            add("extract_features", f"{encoder}/train", encoder)
        if not features_imported:
            add("extract_features", f"{encoder}/heldout", encoder)
    if not PUBLISHED_ON:
        for run in run_dirs():
            add("train", run, run.split("/")[1])
        for split in ("train", "heldout"):
            add("prepare_images", split)
        if LATENT_MODELS:  # a JiT-only study has no latents
            add("cache_latents", "train")
    return jobs


def report_benchmarks():
    """The report's --benchmarks: RULE[:ENCODER]=FILE for each benchmark file."""
    return " ".join(f"{rule_name}:{encoder}={path}" if encoder else f"{rule_name}={path}"
                    for path, (rule_name, encoder) in report_benchmark_jobs().items())


def report_rule_gpus():
    """The report's --rule-gpus: {name: GPUs per job (the `resources: gpu` it declares)}."""
    gpus = {}
    for rule_name in sorted({rule_name for rule_name, _ in report_benchmark_jobs().values()}):
        resources = getattr(rules, rule_name).rule.resources
        gpus[rule_name] = int(resources["gpu"].value) if "gpu" in resources else 0
    return json.dumps(gpus)


def report_weights():
    """The weight files whose checksums the report lists: Inception's, and the encoders' where features are
    extracted here (not imported)."""
    files = {inception_weights()}
    if not (PUBLISHED_ON and PUBLISHED["features"] and PUBLISHED["probe"] == "published"):
        files.update(f for encoder in ENCODERS for f in encoder_weight_files(encoder))
    return sorted(files)


# --- used by published.smk (and report.smk) ------------------------------------------------------


PUBLISHED = config["published"]
PUBLISHED_ON = PUBLISHED["enabled"]
PUBLISHED_ROOT = PUBLISHED["root"]


def published_receipt(path):
    """The fetch receipt (declared output of fetch_published) of a path in the repository."""
    return f"results/published/fetched/{path}.json"


def published_file(path):
    return f"{PUBLISHED_ROOT}/{path}"


def published_checkpoint_path(model, encoder, method, step):
    key = f"{model}/{encoder}/{method}/{step}"
    if key in PUBLISHED["checkpoints"]:
        return PUBLISHED["checkpoints"][key]
    return PUBLISHED["checkpoint"].format(model=model, encoder=encoder, method=method, step=step)


def published_run_checkpoints(wildcards):
    return [published_checkpoint_path(wildcards.model, wildcards.encoder, wildcards.method, s) for s in STEPS]


def published_numbers_file():
    """Input of the report: the authors' own per-encoder numbers ([] when the study does not import them)."""
    return ["results/published/paper_numbers.json"] if PUBLISHED_ON else []


def _published_folders():
    return {PUBLISHED["masks"]} if PUBLISHED["masks"] else set()
