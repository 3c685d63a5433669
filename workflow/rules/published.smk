# The `published` source: the authors' files (HF REPA-E/iREPA-collections) fetched into resources/published/ and
# imported into the workflow's own files, so sample, evaluate, spatial_metrics, correlate and report run unchanged.
# Wiring only; logic in repabench.published_files (fetch) and repabench.upstream (importers).
# With published.enabled the import rules win over train / extract_features / linear_probe / latent_stats.

if PUBLISHED_ON:
    if PUBLISHED["probe"] == "published":

        ruleorder: import_probe > linear_probe

    if PUBLISHED["features"]:

        ruleorder: import_features > extract_features

    ruleorder: import_checkpoints > train
    ruleorder: import_latent_stats > latent_stats

    localrules:
        fetch_published,

    rule fetch_published:
        output:
            "results/published/fetched/{path}.json",
        wildcard_constraints:
            path=".+",
        log:
            "results/logs/fetch_published/{path}.log",
        params:
            root=PUBLISHED_ROOT,
            repo=PUBLISHED["repo"],
            revision=PUBLISHED["revision"],
            mirror=lambda wc: f"--mirror {PUBLISHED['mirror']}" if PUBLISHED["mirror"] else "",
            folder=lambda wc: "--folder" if wc.path in _published_folders() else "",
            sha256=lambda wc: f"--sha256 {PUBLISHED['sha256'][wc.path]}" if wc.path in PUBLISHED["sha256"] else "",
        resources:
            mem_mb=2000,
            runtime=240,
        conda:
            "../../envs/repabench.yaml"
        shell:
            "python -m repabench fetch_published --path {wildcards.path:q} --root {params.root:q} "
            "--repo {params.repo} --revision {params.revision} {params.mirror} {params.folder} {params.sha256} "
            "--receipt {output:q} > {log} 2>&1"

    rule import_latent_stats:
        input:
            published_receipt(PUBLISHED["latent_stats"]),
        output:
            "results/latents/stats.json",
        log:
            "results/logs/import_latent_stats/import_latent_stats.log",
        params:
            source=published_file(PUBLISHED["latent_stats"]),
        conda:
            "../../envs/repabench.yaml"
        shell:
            "python -m repabench import_latent_stats --source {params.source:q} --out {output:q} > {log} 2>&1"

    rule import_checkpoints:
        input:
            receipts=lambda wc: [published_receipt(p) for p in published_run_checkpoints(wc)],
            latent_stats="results/latents/stats.json",
        output:
            checkpoints=expand("results/train/{{model}}/{{encoder}}/{{method}}/checkpoints/{step}.pt", step=STEPS),
            log="results/train/{model}/{encoder}/{method}/log.json",
        log:
            "results/logs/import_checkpoints/{model}/{encoder}/{method}.log",
        params:
            jobs=lambda wc, output: " && ".join(
                f"python -m repabench import_checkpoint --source {published_file(src)} --out {dst} "
                f"--model {wc.model} --encoder {wc.encoder} --method-name {wc.method} --step {int(step)} "
                f"--latent-stats results/latents/stats.json --params '{stage_params(method=config['methods'][wc.method])}'"
                for src, dst, step in zip(published_run_checkpoints(wc), output.checkpoints, STEPS)
            ),
        resources:
            mem_mb=16000,
            runtime=60,
        conda:
            "../../envs/repabench.yaml"
        shell:
            "( {params.jobs} && python -m repabench import_run_log --checkpoints {output.checkpoints} "
            "--out {output.log} ) > {log} 2>&1"

    if PUBLISHED["features"]:

        rule import_features:
            input:
                features=lambda wc: published_receipt(PUBLISHED["features"].format(encoder=wc.encoder)),
                masks=[published_receipt(PUBLISHED["masks"])] if PUBLISHED["masks"] else [],
            output:
                directory("results/features/{encoder}/heldout"),
            log:
                "results/logs/import_features/{encoder}.log",
            params:
                source=lambda wc: published_file(PUBLISHED["features"].format(encoder=wc.encoder)),
                masks=f"--masks {published_file(PUBLISHED['masks'])}" if PUBLISHED["masks"] else "",
            resources:
                mem_mb=64000,
                runtime=60,
            conda:
                "../../envs/repabench.yaml"
            shell:
                "python -m repabench import_features --source {params.source:q} {params.masks} "
                "--encoder {wildcards.encoder} --out {output:q} > {log} 2>&1"

    if PUBLISHED["probe"] == "published":

        rule import_probe:
            input:
                lambda wc: published_receipt(PUBLISHED["lp"].format(encoder=wc.encoder)),
            output:
                "results/probe/{encoder}.json",
            log:
                "results/logs/import_probe/{encoder}.log",
            params:
                source=lambda wc: published_file(PUBLISHED["lp"].format(encoder=wc.encoder)),
            conda:
                "../../envs/repabench.yaml"
            shell:
                "python -m repabench import_probe --source {params.source:q} --encoder {wildcards.encoder} "
                "--out {output:q} > {log} 2>&1"

    rule paper_numbers:
        input:
            fid=[published_receipt(PUBLISHED["paper_fid"][e]) for e in ENCODERS if e in PUBLISHED["paper_fid"]],
            lp=[published_receipt(PUBLISHED["lp"].format(encoder=e)) for e in ENCODERS],
        output:
            "results/published/paper_numbers.json",
        log:
            "results/logs/paper_numbers/paper_numbers.log",
        params:
            fid=" ".join(f"{e}={published_file(PUBLISHED['paper_fid'][e])}" for e in ENCODERS
                         if e in PUBLISHED["paper_fid"]),
            lp=" ".join(f"{e}={published_file(PUBLISHED['lp'].format(encoder=e))}" for e in ENCODERS),
            step=PUBLISHED["paper_step"],
        conda:
            "../../envs/repabench.yaml"
        shell:
            "python -m repabench paper_numbers --fid {params.fid} --lp {params.lp} --step {params.step} "
            "--out {output:q} > {log} 2>&1"
