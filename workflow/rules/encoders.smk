# Encoder weights (fetched once, checksummed) and patch-token extraction. Wiring only; logic in repabench.encoders.


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
    params:
        weights_dir=subpath(output[0], parent=True),
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python -m repabench fetch_weights --name {wildcards.weight} --out-dir {params.weights_dir} > {log} 2>&1"


rule fetch_weight_snapshot:
    output:
        directory(f"{WEIGHTS_DIR}/{{weight}}"),
    wildcard_constraints:
        weight="|".join(map(re.escape, _SNAPSHOT_WEIGHTS)),
    log:
        "results/logs/fetch_weights/{weight}.log",
    params:
        weights_dir=subpath(output[0], parent=True),
    resources:
        mem_mb=4000,
        runtime=240,
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python -m repabench fetch_weights --name {wildcards.weight} --out-dir {params.weights_dir} > {log} 2>&1"


rule extract_features:
    input:
        images="results/data/{split}",
        weights=encoder_weights,
    output:
        directory("results/features/{encoder}/{split}"),
    log:
        "results/logs/extract_features/{encoder}/{split}.log",
    benchmark:
        "results/benchmarks/extract_features/{encoder}/{split}.tsv"
    params:
        p=stage_params("features"),
        device=DEVICE,
        weights_dir=weights_dir_of,
        tokens=lambda wildcards: "--pooled-only" if wildcards.split == "train" else "",
    threads: 2
    resources:
        gpu=gpus(1),
        mem_mb=24000,
        runtime=240,
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python -m repabench extract_features --images {input.images} --out {output} "
        "--encoder {wildcards.encoder} --weights-dir {params.weights_dir} --device {params.device} "
        "{params.tokens} --params {params.p:q} --threads {threads} > {log} 2>&1"
