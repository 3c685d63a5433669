# Generation: per (run, checkpoint step, sampler setting), sharded and resumable. A SiT checkpoint's latents are
# decoded by the autoencoder; a JiT's samples are pixels already (no VAE input).
# The manifest is the declared output; shards/ beside it is not (Snakemake would delete it on failure), so a
# killed or timed-out job resumes from its complete shards when it is retried.


rule sample:
    input:
        unpack(sample_decoder_inputs),
        checkpoint="results/train/{model}/{encoder}/{method}/checkpoints/{step}.pt",
    output:
        manifest="results/samples/{model}/{encoder}/{method}/{step}/{sampler}/manifest.json",
    log:
        "results/logs/sample/{model}/{encoder}/{method}/{step}/{sampler}.log",
    benchmark:
        "results/benchmarks/sample/{model}/{encoder}/{method}/{step}/{sampler}.tsv"
    params:
        p=sample_stage_params,
        launcher=sample_launcher,
        out_dir=subpath(output.manifest, parent=True),
        decoder_args=sample_decoder_args,
        device=DEVICE,
    threads: 8 if USE_GPU else 1
    resources:
        gpu=gpus(config["sample"]["gpus"]),
        mem_mb=32000 if USE_GPU else 3000,
        runtime=sample_runtime,
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python {params.launcher} repabench sample --checkpoint {input.checkpoint:q} {params.decoder_args}"
        " --out-dir {params.out_dir:q} --params {params.p:q} --device {params.device} --threads {threads}"
        " > {log} 2>&1"


# Optional target: the ADM evaluator's .npz layout (arr_0 uint8 NHWC, arr_1 labels) for the original TF evaluator.
rule export_npz:
    input:
        manifest="results/samples/{model}/{encoder}/{method}/{step}/{sampler}/manifest.json",
    output:
        npz="results/samples/{model}/{encoder}/{method}/{step}/{sampler}.npz",
    log:
        "results/logs/export_npz/{model}/{encoder}/{method}/{step}/{sampler}.log",
    benchmark:
        "results/benchmarks/export_npz/{model}/{encoder}/{method}/{step}/{sampler}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python -m repabench export_npz --manifest {input.manifest:q} --out {output.npz:q} > {log} 2>&1"
