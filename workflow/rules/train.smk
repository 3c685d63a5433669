# SiT training with REPA / iREPA: one job per (model, encoder, method). Wiring only; logic in repabench.train.
#
# Declared outputs are the EMA checkpoints and the run log. The resumable state lives in
# results/state/train/<params-hash>/ (not an output, so a failed or timed-out job keeps it): the trainer resumes
# from it by itself and exits 75 when it stops before its time budget (SLURM runtime minus a margin, or
# train.time_budget_min), so the profile's `retries` resubmits the job and it continues.
#
# More than one GPU: accelerate launch, one process per GPU. Several nodes (by hand, outside Snakemake):
#   accelerate launch --num_machines M --machine_rank $SLURM_NODEID --main_process_ip <node0> \
#     --main_process_port 29500 --num_processes $((M*G)) -m repabench train <same arguments>


def train_launcher():
    """Plain python for one process; accelerate launch with one process per GPU (resources.gpu) otherwise."""
    if gpus(config["train"]["gpus"]) > 1:
        return (f"{PYTHON} -m accelerate.commands.launch --multi_gpu --num_machines 1 --main_process_port 0 "
                "--dynamo_backend no --num_processes {resources.gpu}")
    return PYTHON


def train_weight_inputs(wildcards):
    """Weight files of the target encoder, when the encoder rules provide a helper for them."""
    helper = globals().get("encoder_weight_files")
    return helper(wildcards.encoder) if helper else []


def train_threads():
    n = gpus(config["train"]["gpus"])
    return 8 * n if n else 1  # the CPU demo runs two single-thread trainings side by side on 2 cores


rule train:
    input:
        images="results/data/train",
        latents=ancient("results/latents/train"),
        stats="results/latents/stats.json",
        weights=train_weight_inputs,
    output:
        checkpoints=expand("results/train/{{model}}/{{encoder}}/{{method}}/checkpoints/{step}.pt", step=STEPS),
        log="results/train/{model}/{encoder}/{method}/log.json",
    log:
        "results/logs/train/{model}/{encoder}/{method}.log",
    benchmark:
        "results/benchmarks/train/{model}/{encoder}/{method}.tsv"
    params:
        p=lambda wc: stage_params("train", "seed", method=config["methods"][wc.method]),
        model=lambda wc: model_name(wc.model),
        out_dir=lambda wc: f"results/train/{wc.model}/{wc.encoder}/{wc.method}",
        weights_dir=config["resources"]["weights_dir"],
        device=DEVICE,
    threads: train_threads()
    resources:
        gpu=gpus(config["train"]["gpus"]),
        mem_mb=lambda wc, attempt: 4000 if not USE_GPU else 64000 * max(1, config["train"]["gpus"]),
        runtime=lambda wc, attempt: 30 if not USE_GPU else min(720 * attempt, 2880),
    conda:
        "../../envs/repabench.yaml"
    shell:
        train_launcher() + " -m repabench train --images {input.images} --latents {input.latents} "
        "--latent-stats {input.stats} --encoder {wildcards.encoder} --weights-dir {params.weights_dir} "
        "--model {params.model:q} --method-name {wildcards.method} --params {params.p:q} "
        "--out-dir {params.out_dir} --state-root results/state/train --job-runtime-min {resources.runtime} "
        "--device {params.device} --threads {threads} > {log} 2>&1"
