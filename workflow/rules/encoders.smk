# Encoder weights (fetched once, checksummed) and patch-token extraction. Wiring only; logic in repabench.encoders.

import re

from repabench.encoders import weight_names
from repabench.weights import WEIGHTS

WEIGHTS_DIR = config["resources"]["weights_dir"]
_SNAPSHOT_WEIGHTS = sorted(n for n, s in WEIGHTS.items() if s.source.startswith("hfrepo:"))
_FILE_WEIGHTS = sorted(n for n in WEIGHTS if n not in _SNAPSHOT_WEIGHTS)


def encoder_weight_files(encoder):
    """Weight files/snapshots of an encoder under the weights dir ([] for random-init and classical ones)."""
    return [f"{WEIGHTS_DIR}/{name}" for name in weight_names(encoder)]


# Weights are fetched where the network is (the submit node on clusters), then every job runs air-gapped.
localrules:
    fetch_weights,
    fetch_weight_snapshot,


rule fetch_weights:
    output:
        f"{WEIGHTS_DIR}/{{weight}}",
    wildcard_constraints:
        weight="|".join(map(re.escape, _FILE_WEIGHTS)),
    log:
        "results/logs/fetch_weights/{weight}.log",
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../../envs/repabench.yaml"
    shell:
        "{PYTHON} -m repabench fetch_weights --name {wildcards.weight} --out-dir {WEIGHTS_DIR} > {log} 2>&1"


rule fetch_weight_snapshot:
    output:
        directory(f"{WEIGHTS_DIR}/{{weight}}"),
    wildcard_constraints:
        weight="|".join(map(re.escape, _SNAPSHOT_WEIGHTS)),
    log:
        "results/logs/fetch_weights/{weight}.log",
    resources:
        mem_mb=4000,
        runtime=240,
    conda:
        "../../envs/repabench.yaml"
    shell:
        "{PYTHON} -m repabench fetch_weights --name {wildcards.weight} --out-dir {WEIGHTS_DIR} > {log} 2>&1"


rule extract_features:
    input:
        images="results/data/{split}",
        weights=lambda wildcards: encoder_weight_files(wildcards.encoder),
    output:
        directory("results/features/{encoder}/{split}"),
    log:
        "results/logs/extract_features/{encoder}/{split}.log",
    benchmark:
        "results/benchmarks/extract_features/{encoder}/{split}.tsv"
    params:
        p=stage_params("features"),
        device=DEVICE,
        tokens=lambda wildcards: "--pooled-only" if wildcards.split == "train" else "",
    threads: 2
    resources:
        gpu=gpus(1),
        mem_mb=24000,
        runtime=240,
    conda:
        "../../envs/repabench.yaml"
    shell:
        "{PYTHON} -m repabench extract_features --images {input.images} --out {output} "
        "--encoder {wildcards.encoder} --weights-dir {WEIGHTS_DIR} --device {params.device} "
        "{params.tokens} --params {params.p:q} --threads {threads} > {log} 2>&1"
