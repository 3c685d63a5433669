# Aggregation: correlation statistics across encoders, then the HTML/PDF report.


rule correlate:
    input:
        evals=eval_jsons(),
        spatial=expand("results/spatial/{encoder}.json", encoder=ENCODERS),
        probe=expand("results/probe/{encoder}.json", encoder=ENCODERS),
        untrained=untrained_eval_jsons(),
    output:
        table="results/correlate/table.csv",
        stats="results/correlate/correlation.json",
    log:
        "results/logs/correlate/correlate.log",
    params:
        p=stage_params("report", "name", "run_methods", "models", "encoders", sampler=REPORT_SAMPLER),
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python -m repabench correlate --evals {input.evals} --spatial {input.spatial} "
        "--probe {input.probe} --untrained {input.untrained} --out-table {output.table} --out-json {output.stats} "
        "--params {params.p:q} > {log} 2>&1"


rule report:
    input:
        table="results/correlate/table.csv",
        stats="results/correlate/correlation.json",
        curves=run_curves(),
        evals=eval_jsons(),
        train_logs=expand("results/train/{run}/log.json", run=run_dirs()),
        benchmarks=list(report_benchmark_jobs()),
        weights=report_weights(),
        published=published_numbers_file(),
        features=expand("results/features/{encoder}/heldout", encoder=ENCODERS),
    output:
        html=report(
            "results/report/report.html",
            caption="../report/report_html.rst",
            category="Final report",
        ),
        pdf=report(
            "results/report/report.pdf",
            caption="../report/report_pdf.rst",
            category="Final report",
        ),
        figures=report(
            directory("results/report/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{name}"},
        ),
    log:
        "results/logs/report/report.log",
    params:
        p=report_params(),
        benchmarks=report_benchmarks(),
        rule_gpus=report_rule_gpus(),
    conda:
        "../../envs/repabench.yaml"
    shell:
        "python -m repabench report --table {input.table} --stats {input.stats} --curves {input.curves} "
        "--evals {input.evals} --train-logs {input.train_logs} --benchmarks {params.benchmarks} "
        "--rule-gpus {params.rule_gpus:q} --weights {input.weights} --out-html {output.html} "
        "--out-pdf {output.pdf} "
        "--figures-dir {output.figures} --published-numbers {input.published} --features {input.features} "
        "--params {params.p:q} > {log} 2>&1"
