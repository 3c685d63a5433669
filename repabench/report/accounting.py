"""The report's accounting sections: what produced the results (code versions, hardware, weights, sampler
settings, configuration, input files) and what they cost (hours per stage and per encoder from the benchmarks)."""

from __future__ import annotations

import json
from typing import Any, Mapping

from repabench.report.figures import compute_figure
from repabench.report.model import Figure, Inputs, Section, Setting, Table, fixed, fmt_value, is_finite


def _hardware(prov: Mapping[str, Any]) -> dict[str, str]:
    device = prov.get("device") or {}
    return {"device": str(device.get("device", "?")), "gpu": str(device.get("gpu", "–")),
            "gpus": str(device.get("gpu_count", "–")), "host": str(device.get("host", "?")),
            "torch": str(device.get("torch", "?")), "cpu threads": str(device.get("cpu_threads", "?"))}


def provenance_section(inputs: Inputs, setting: Setting) -> Section:
    from repabench.provenance import code_version, params_hash

    section = Section("provenance", "Provenance")
    code = code_version()
    recorded: dict[tuple[str, str], set[str]] = {}
    sources = [("correlate", inputs.stats.get("provenance") or {})]
    sources += [("train " + "/".join(r["_key"].values()), r.get("provenance") or {}) for r in inputs.train_logs]
    sources += [(f"{p.get('stage', 'evaluate')}", p) for p in inputs.eval_provenance]
    for stage, prov in sources:
        if prov:
            stage_name = stage.split()[0]
            sha = str((prov.get("code") or {}).get("git_sha") or "unknown")
            recorded.setdefault((stage_name, sha), set()).add(stage)
    version_rows = [["report (now)", str(code.get("git_sha") or "unknown"), str(code.get("version")),
                     "yes" if code.get("git_dirty") else "no" if code.get("git_dirty") is not None else "?"]]
    version_rows += [[f"{stage} ({len(jobs)} result file(s))", sha, "", ""] for (stage, sha), jobs in sorted(recorded.items())]
    section.tables.append(Table("Code version", ["produced by", "git SHA", "package version", "uncommitted changes"],
                                version_rows))
    hardware: dict[tuple, list[str]] = {}
    for stage, prov in sources:
        if prov and prov.get("device"):
            hw = _hardware(prov)
            hardware.setdefault(tuple(hw.items()), []).append(stage.split()[0])
    if hardware:
        rows = [[", ".join(sorted(set(stages)))] + [v for _, v in key] for key, stages in hardware.items()]
        section.tables.append(Table("Hardware (from the provenance of the inputs)",
                                    ["stages", "device", "GPU", "GPUs", "host", "torch", "CPU threads"], rows))
    else:
        section.notes.append("No input carries a provenance block with device information.")
    if inputs.weights:
        section.tables.append(Table("Weight files (SHA-256 sidecars)", ["name", "sha256", "bytes", "source"],
                                    [[w.get("name", "?"), str(w.get("sha256", "?")), str(w.get("bytes", "–")),
                                      str(w.get("source", "–"))] for w in inputs.weights]))
    else:
        section.notes.append("No weight checksum sidecars (*.sha256.json) in the weights directory: the encoders "
                             "of this study use no fetched weights, or fetch_weights has not run.")
    samplers = inputs.params.get("samplers") or {}
    sample = inputs.params.get("sample") or {}
    sampler_rows = [[name, *(fmt_value(cfg.get(k)) for k in ("mode", "steps", "heun", "cfg_scale", "guidance_low",
                                                                "guidance_high")),
                     "yes" if name == setting.sampler else ""] for name, cfg in samplers.items()]
    if sampler_rows:
        section.tables.append(Table(
            "Sampler settings",
            ["sampler", "mode", "steps", "Heun", "CFG scale", "guidance low", "guidance high", "evaluated"],
            sampler_rows,
            note=f"{sample.get('n_samples', '?')} samples per checkpoint, labels {sample.get('labels', '?')}, "
                 f"seed {sample.get('seed', '?')}, precision {sample.get('precision', '?')}; reference "
                 f"{(inputs.params.get('evaluate') or {}).get('reference', '?')}."))
    section.blocks.append((f"Configuration given to the report (params hash {params_hash(inputs.params)})",
                           json.dumps(inputs.params, indent=2, sort_keys=True)))
    section.blocks.append(("Input files", "\n".join(inputs.input_paths)))
    return section


def compute_section(inputs: Inputs) -> Section:
    section = Section("compute", "Compute: GPU- and CPU-hours per stage and per encoder")
    bench = inputs.benchmarks
    if bench.empty:
        section.notes.append("No Snakemake benchmark files under the benchmarks directory (stages run outside "
                             "Snakemake, or the rules declare no `benchmark:`).")
        return section
    bench = bench.assign(wall_hours=bench["wall_s"] / 3600, cpu_hours=bench["cpu_s"] / 3600,
                         gpu_hours=bench["wall_s"] * bench["gpus"] / 3600)
    unit = "gpu_hours" if bench["gpu_hours"].sum() > 0 else "wall_hours"
    by_stage = bench.groupby("rule", sort=False).agg(jobs=("job", "size"), wall_hours=("wall_hours", "sum"),
                                                     cpu_hours=("cpu_hours", "sum"), gpu_hours=("gpu_hours", "sum"),
                                                     max_rss_mb=("max_rss_mb", "max"))
    by_stage = by_stage.sort_values("wall_hours", ascending=False)
    encoded = bench.dropna(subset=["encoder"])
    order = [e for e in inputs.params.get("encoders") or [] if e in set(encoded["encoder"])]
    order += sorted(set(encoded["encoder"]) - set(order))
    by_encoder = encoded.pivot_table(index="encoder", columns="rule", values=unit, aggfunc="sum").reindex(order)
    totals = encoded.groupby("encoder").agg(wall_hours=("wall_hours", "sum"), cpu_hours=("cpu_hours", "sum"),
                                            gpu_hours=("gpu_hours", "sum"), jobs=("job", "size")).reindex(order)
    section.figures.append(Figure(
        "compute", "Compute per stage and per encoder",
        f"{unit.replace('_', ' ').capitalize()} per Snakemake rule and per encoder (stacked by rule), summed over jobs "
        "(shown in minutes when under an hour).",
        compute_figure(by_stage, by_encoder, unit)))
    fmt_h = lambda v: f"{v:.4f}" if is_finite(v) else "–"  # noqa: E731
    section.tables.append(Table("Per stage", ["rule", "jobs", "wall hours", "CPU hours", "GPU hours", "max RSS (MB)"],
                                [[rule, str(int(r["jobs"])), fmt_h(r["wall_hours"]), fmt_h(r["cpu_hours"]),
                                  fmt_h(r["gpu_hours"]), fixed(r["max_rss_mb"], 0)] for rule, r in by_stage.iterrows()]))
    if not totals.empty:
        section.tables.append(Table("Per encoder (all of its jobs)", ["encoder", "jobs", "wall hours", "CPU hours",
                                                                      "GPU hours"],
                                    [[e, str(int(r["jobs"])), fmt_h(r["wall_hours"]), fmt_h(r["cpu_hours"]),
                                      fmt_h(r["gpu_hours"])] for e, r in totals.iterrows()]))
    if unit == "wall_hours":
        section.notes.append("The study ran on the CPU (or declares no GPUs): GPU-hours are zero; wall-clock hours "
                             "are shown instead.")
    return section


