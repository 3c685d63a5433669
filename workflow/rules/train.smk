# Generator training with REPA / iREPA: one job per (model, encoder, method). Wiring only; logic in repabench.train.
# A SiT trains on the cached latents; a JiT (the model name says which) on the images only, so a JiT-only config
# schedules no VAE or latent stage.
#
# Declared outputs are the EMA checkpoints and the run log. The resumable state lives in
# results/state/train/<params-hash>/ (not an output, so a failed or timed-out job keeps it): the trainer resumes
# from it by itself and exits 75 when it stops before its time budget (SLURM runtime minus a margin, or
# train.time_budget_min), so the profile's `retries` resubmits the job and it continues.
#
# More than one GPU: accelerate launch, one process per GPU. Several nodes (by hand, outside Snakemake):
#   accelerate launch --num_machines M --machine_rank $SLURM_NODEID --main_process_ip <node0> \
#     --main_process_port 29500 --num_processes $((M*G)) -m repabench train <same arguments>


rule train:
    wildcard_constraints:
        encoder=ENCODER_PATTERN,
        method=METHOD_PATTERN,
    input:
        unpack(latent_inputs),
        images="results/data/train",
        weights=encoder_weights,
    output:
        checkpoints=expand("results/train/{{model}}/{{encoder}}/{{method}}/checkpoints/{step}.pt", step=STEPS),
        log="results/train/{model}/{encoder}/{method}/log.json",
    log:
        "results/logs/train/{model}/{encoder}/{method}.log",
    benchmark:
        "results/benchmarks/train/{model}/{encoder}/{method}.tsv"
    params:
        p=lambda wc: train_stage_params(wc, wc.method),
        latent_args=latent_args,
        model=lambda wc: model_name(wc.model),
        out_dir=lambda wc: f"results/train/{wc.model}/{wc.encoder}/{wc.method}",
        weights_dir=WEIGHTS_DIR,
        device=DEVICE,
        launcher=train_launcher,
    threads: train_threads()
    resources:
        gpu=gpus(config["train"]["gpus"]),
        mem_mb=lambda wc, attempt: 4000 if not USE_GPU else 64000 * max(1, config["train"]["gpus"]),
        runtime=lambda wc, attempt: 30 if not USE_GPU else min(720 * attempt, 2880),
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python {params.launcher} repabench train --images {input.images} {params.latent_args} "
        "--encoder {wildcards.encoder} --weights-dir {params.weights_dir} "
        "--model {params.model:q} --method-name {wildcards.method} --params {params.p:q} "
        "--out-dir {params.out_dir} --state-root results/state/train --job-runtime-min {resources.runtime} "
        "--device {params.device} --threads {threads} > {log} 2>&1"


# The generator at initialisation (the seed every run starts from): the baseline that shows what training bought.
rule untrained:
    input:
        unpack(latent_inputs),
        images="results/data/train",
    output:
        f"results/train/{{model}}/{UNTRAINED_ENCODER}/{UNTRAINED_METHOD}/checkpoints/{UNTRAINED_STEP}.pt",
    log:
        "results/logs/untrained/{model}.log",
    params:
        p=train_stage_params,
        latent_args=latent_args,
        model=lambda wc: model_name(wc.model),
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python -m repabench untrained --images {input.images} {params.latent_args} "
        "--model {params.model:q} --params {params.p:q} --out {output:q} > {log} 2>&1"
