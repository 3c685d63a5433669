"""The `report` stage: `python -m repabench report` with every input the report rule declares."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from repabench.report.assembly import write_report
from repabench.report.inputs import (encoder_order, eval_provenances, read_benchmarks, read_curves, read_table,
                                     read_train_logs, read_weight_sidecars)
from repabench.report.model import Inputs

log = logging.getLogger("repabench.report")

FILE_LISTS = {  # the optional inputs, each a list of files the report rule declares
    "--curves": "per-run CSVs results/eval/{model}/{encoder}/{method}/{sampler}.csv",
    "--evals": "per-checkpoint eval JSONs of the runs (their provenance: hardware, sampler)",
    "--train-logs": "results/train/{model}/{encoder}/{method}/log.json",
    "--benchmarks": "Snakemake benchmark TSVs of the study's jobs as RULE[:ENCODER]=FILE",
    "--weights": "weight files of the study; their *.sha256.json sidecars are shown",
    "--features": "held-out feature stores results/features/{encoder}/heldout (spatial-norm figure)",
    "--published-numbers": "the authors' per-encoder numbers (paper_numbers stage) when checkpoints are imported",
}


def _rule_gpus(text: str) -> dict[str, int]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--rule-gpus: not JSON ({exc}); pass {{rule: GPUs per job}}") from None
    if not isinstance(value, dict) or not all(isinstance(n, int) for n in value.values()):
        raise SystemExit(f"--rule-gpus: expected {{rule: GPUs per job}}, got {text!r}")
    return value


def report_main(argv: list[str]) -> int:
    from repabench.integrity import read_result as read_json
    from repabench.stage import parse_stage, stage_parser
    from repabench.stats import ReportConfig

    parser = stage_parser("report", "render the HTML and PDF report from the correlation table and statistics")
    parser.add_argument("--table", required=True, help="results/correlate/table.csv")
    parser.add_argument("--stats", required=True, help="results/correlate/correlation.json")
    for flag, help_text in FILE_LISTS.items():
        parser.add_argument(flag, nargs="*", default=[], help=help_text)
    parser.add_argument("--rule-gpus", default="{}", help="JSON {rule: GPUs each of its jobs requests}")
    parser.add_argument("--out-html", required=True)
    parser.add_argument("--out-pdf", required=True)
    parser.add_argument("--figures-dir", required=True, help="directory for the figures as PNG files")
    args, config, _, _ = parse_stage(parser, argv, {"report": ReportConfig, "sampler": str})
    params = config.raw
    try:
        stats = read_json(args.stats)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"--stats: {exc}") from None
    if not isinstance(stats, dict):
        raise SystemExit(f"--stats {args.stats}: expected a JSON object; rerun the correlate stage")
    table = read_table(args.table, stats.get("fid_columns"))
    curves = read_curves(args.curves)
    inputs = Inputs(
        params=params,
        table=table,
        stats=stats,
        curves=curves,
        train_logs=read_train_logs(args.train_logs),
        benchmarks=read_benchmarks(args.benchmarks, _rule_gpus(args.rule_gpus)),
        weights=read_weight_sidecars(args.weights),
        eval_provenance=eval_provenances(args.evals),
        input_paths=[args.table, args.stats, *args.curves, *args.train_logs, *args.published_numbers],
        published_numbers=read_json(args.published_numbers[0]) if args.published_numbers else {},
        features={Path(path).parent.name: path for path in args.features},
    )
    log.info("report: %d table rows, %d encoders, %d curve rows, %d training logs, %d benchmark files, %d weights",
             len(table), len(encoder_order(params, table, curves)), len(curves), len(inputs.train_logs),
             len(inputs.benchmarks), len(inputs.weights))
    pages, figures = write_report(inputs, Path(args.out_html), Path(args.out_pdf), Path(args.figures_dir))
    log.info("wrote %s, %s (%d pages) and %d figures in %s", args.out_html, args.out_pdf, pages, figures,
             args.figures_dir)
    return 0
