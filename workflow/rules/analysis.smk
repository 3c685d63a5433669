# Encoder analysis: spatial-structure metrics (held-out features + masks) and the linear probe (train -> held-out).


rule spatial_metrics:
    input:
        features=f"results/features/{{encoder}}/{SPATIAL_SPLIT}",
    output:
        "results/spatial/{encoder}.json",
    log:
        "results/logs/spatial_metrics/{encoder}.log",
    benchmark:
        "results/benchmarks/spatial_metrics/{encoder}.tsv"
    params:
        p=stage_params("spatial", "seed"),
        device=DEVICE,
    threads: 2
    resources:
        gpu=gpus(1),
        mem_mb=16000,
        runtime=60,
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python -m repabench spatial_metrics --features {input.features} --encoder {wildcards.encoder} "
        "--out {output} --device {params.device} --threads {threads} --params {params.p:q} > {log} 2>&1"


rule linear_probe:
    input:
        train="results/features/{encoder}/train",
        val="results/features/{encoder}/heldout",
    output:
        "results/probe/{encoder}.json",
    log:
        "results/logs/linear_probe/{encoder}.log",
    benchmark:
        "results/benchmarks/linear_probe/{encoder}.tsv"
    params:
        p=stage_params("probe", "seed"),
        device=DEVICE,
    threads: 2
    resources:
        gpu=gpus(1),
        mem_mb=32000,
        runtime=240,
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python -m repabench linear_probe --train {input.train} --val {input.val} --encoder {wildcards.encoder} "
        "--out {output} --device {params.device} --threads {threads} --params {params.p:q} > {log} 2>&1"
