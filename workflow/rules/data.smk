# Images -> (demo autoencoder) -> latents -> latent statistics.


rule prepare_images:
    output:
        directory("results/data/{split}"),
    wildcard_constraints:
        split="train|heldout",
    log:
        "results/logs/prepare_images/{split}.log",
    benchmark:
        "results/benchmarks/prepare_images/{split}.tsv"
    params:
        p=stage_params("data", "seed"),
    threads: 4
    resources:
        mem_mb=8000,
        runtime=240,
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python -m repabench prepare_images --split {wildcards.split} --out {output} "
        "--params {params.p:q} --threads {threads} > {log} 2>&1"


rule prepare_masked_images:
    input:
        archive=mask_archive(),
    output:
        directory("results/data/masked"),
    log:
        "results/logs/prepare_images/masked.log",
    benchmark:
        "results/benchmarks/prepare_images/masked.tsv"
    params:
        p=stage_params("data", "seed"),
    threads: 4
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python -m repabench prepare_images --split masked --mask-archive {input.archive} --out {output} "
        "--params {params.p:q} --threads {threads} > {log} 2>&1"


rule fit_autoencoder:
    input:
        "results/data/train",
    output:
        "results/vae/autoencoder.pt",
    log:
        "results/logs/fit_autoencoder/fit_autoencoder.log",
    params:
        p=stage_params("vae", "seed"),
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python -m repabench fit_autoencoder --images {input} --out {output} --params {params.p:q} > {log} 2>&1"


rule cache_latents:
    input:
        images="results/data/{split}",
        autoencoder=autoencoder_path(),
    output:
        directory("results/latents/{split}"),
    log:
        "results/logs/cache_latents/{split}.log",
    benchmark:
        "results/benchmarks/cache_latents/{split}.tsv"
    params:
        p=stage_params("vae"),
        device=DEVICE,
    threads: 2
    resources:
        gpu=gpus(1),
        mem_mb=16000,
        runtime=600,
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python -m repabench cache_latents --images {input.images} --autoencoder {input.autoencoder} "
        "--out {output} --params {params.p:q} --device {params.device} --threads {threads} > {log} 2>&1"


rule latent_stats:
    input:
        "results/latents/train",
    output:
        "results/latents/stats.json",
    log:
        "results/logs/latent_stats/latent_stats.log",
    params:
        p=stage_params("vae", "seed"),
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python -m repabench latent_stats --latents {input} --out {output} --params {params.p:q} > {log} 2>&1"
