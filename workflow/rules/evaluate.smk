# ADM-exact evaluation: reference statistics, per-checkpoint metrics, per-run CSV. Wiring only; logic in repabench.adm.


rule reference_stats:
    input:
        source=reference_source,
        weights=inception_weights(),
    output:
        "results/reference/{reference}.npz",
    wildcard_constraints:
        reference="adm|heldout",
    log:
        "results/logs/reference_stats/{reference}.log",
    benchmark:
        "results/benchmarks/reference_stats/{reference}.tsv"
    params:
        p=stage_params("evaluate"),
        device=DEVICE,
    threads: evaluate_threads()
    resources:
        gpu=gpus(1),
        mem_mb=32000 if USE_GPU else 4000,
        runtime=60,
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python -m repabench reference_stats --source {input.source:q} --inception-weights {input.weights:q}"
        " --out {output:q} --params {params.p:q} --device {params.device} --threads {threads} > {log} 2>&1"


rule evaluate:
    input:
        samples="results/samples/{model}/{encoder}/{method}/{step}/{sampler}/manifest.json",
        reference=f"results/reference/{config['evaluate']['reference']}.npz",
        weights=inception_weights(),
    output:
        "results/eval/{model}/{encoder}/{method}/{step}/{sampler}.json",
    log:
        "results/logs/evaluate/{model}/{encoder}/{method}/{step}/{sampler}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}/{encoder}/{method}/{step}/{sampler}.tsv"
    params:
        p=stage_params("evaluate"),
        device=DEVICE,
    threads: evaluate_threads()
    resources:
        gpu=gpus(1),
        mem_mb=32000 if USE_GPU else 4000,
        runtime=60 if USE_GPU else 30,
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python -m repabench evaluate --samples {input.samples:q} --reference {input.reference:q}"
        " --inception-weights {input.weights:q} --out {output:q} --params {params.p:q} --verify"
        " --device {params.device} --threads {threads} > {log} 2>&1"


rule collect_metrics:
    input:
        expand("results/eval/{{model}}/{{encoder}}/{{method}}/{step}/{{sampler}}.json", step=STEPS),
    output:
        "results/eval/{model}/{encoder}/{method}/{sampler}.csv",
    log:
        "results/logs/collect_metrics/{model}/{encoder}/{method}/{sampler}.log",
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python -m repabench collect_metrics --metrics {input:q} --out {output:q} > {log} 2>&1"


# The ADM reference batch is fetched (and checksummed) only when the configured path carries its own name;
# any other path must be provided by the user.
if ADM_REFERENCE and os.path.basename(ADM_REFERENCE) == ADM_REFERENCE_NAME:

    rule fetch_adm_reference:
        output:
            ADM_REFERENCE,
        log:
            "results/logs/fetch_weights/adm_reference.log",
        params:
            name=ADM_REFERENCE_NAME,
            out_dir=subpath(output[0], parent=True),
        resources:
            mem_mb=4000,
            runtime=120,
        conda:
            "../../envs/repabench.yaml"
        shell:
            "python -m repabench fetch_weights --name {params.name} --out-dir {params.out_dir} > {log} 2>&1"
