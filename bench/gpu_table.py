"""The GPU check's results as Markdown tables (the sections of bench/RESULTS.md) and a summary JSON.

    python bench/gpu_table.py OUT [--mode full|smoke]

Reads what bench/gpu_check.sh left in OUT (parts.tsv and one JSON per part) and writes OUT/gpu_table.md and
OUT/gpu_check.json. Every row names its device, date, commit and torch / CUDA versions. A part that failed, ran
past its cap or left no JSON is said so in the status table; a run skipped by a time budget or out of memory is
said so in its row. Standard library only.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path
from typing import Any

PARTS = [("1_gpu_tests", "GPU tests (pytest -m gpu)"), ("2_train", "training throughput"),
         ("3_sample", "SDE-250 generation"), ("4_adm", "ADM evaluation"), ("5_spatial", "spatial metrics"),
         ("5_features", "feature extraction")]


def load(out: Path, part: str) -> dict[str, Any] | None:
    path = out / f"{part}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def num(value: Any, fmt: str = ".2f", scale: float = 1.0, suffix: str = "") -> str:
    if value is None or isinstance(value, bool):
        return "-"
    return f"{(value * scale if scale != 1.0 else value):{fmt}}{suffix}"


def provenance(data: dict[str, Any]) -> list[str]:
    cuda = data.get("cuda") or "none"
    return [data.get("device", "?"), data.get("date", "?"), data.get("commit", "?"),
            f"{data.get('torch', '?')} / {cuda}"]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


PROV = ["device", "date", "commit", "torch / CUDA"]


def count_key(data: Any, key: str) -> int:
    """How many measurement runs (dicts with a `setting`) in a JSON tree have `key` set."""
    if isinstance(data, dict):
        hit = "setting" in data and data.get(key) not in (None, False)
        return int(hit) + sum(count_key(v, key) for v in data.values())
    if isinstance(data, list):
        return sum(count_key(v, key) for v in data)
    return 0


def status_rows(out: Path) -> list[dict[str, Any]]:
    recorded = {}
    tsv = out / "parts.tsv"
    if tsv.is_file():
        with tsv.open() as f:
            recorded = {row["part"]: row for row in csv.DictReader(f, delimiter="\t")}
    rows = []
    for part, title in PARTS:
        row = recorded.get(part)
        data = load(out, part)
        entry = {"part": part, "title": title, "exit_code": None, "seconds": None, "cap_s": None,
                 "json": f"{part}.json" if data else None, "complete": bool(data and data.get("complete"))}
        if row:
            entry.update(exit_code=int(row["exit_code"]), seconds=float(row["seconds"]), cap_s=float(row["cap_s"]))
        if row is None:
            entry["status"] = "not run"
        elif entry["exit_code"] in (124, 137):
            entry["status"] = "time cap (partial results)" if data else "time cap (no results)"
        elif entry["exit_code"] != 0:
            entry["status"] = f"failed (exit {entry['exit_code']}, see {part}.log)"
        elif not data:
            entry["status"] = "no JSON"
        else:
            entry["status"] = "ok" if entry["complete"] else "incomplete JSON"
        if data:
            entry["skipped_runs"] = count_key(data, "skipped")
            entry["oom_runs"] = count_key(data, "oom")
            notes = [f"{entry[k]} {what}" for k, what in (("skipped_runs", "runs skipped (time budget)"),
                                                             ("oom_runs", "runs out of memory")) if entry[k]]
            if notes:
                entry["status"] += "; " + ", ".join(notes)
        rows.append(entry)
    return rows


def tests_section(data: dict[str, Any]) -> list[str]:
    counts = data.get("counts", {})
    rows = [[*provenance(data), counts.get("passed", 0), counts.get("failed", 0), counts.get("error", 0),
             counts.get("skipped", 0), num(data.get("seconds"), ".0f")]]
    lines = table([*PROV, "passed", "failed", "errors", "skipped", "s"], rows)
    bad = [name for name, t in data.get("tests", {}).items() if t["outcome"] in ("failed", "error")]
    if bad:
        lines += ["", "Failed: " + ", ".join(f"`{name}`" for name in bad)]
    return lines


def run_text(run: dict[str, Any] | None, key: str = "images_per_s", fmt: str = ".1f") -> str:
    if run is None:
        return "-"
    if run.get("oom"):
        return "OOM"
    if run.get("skipped"):
        return f"skipped ({run['skipped']})"
    return num(run.get(key), fmt)


def train_section(data: dict[str, Any]) -> list[str]:
    rows = []
    for record in data.get("records", []):
        by_batch: dict[tuple[int, bool], dict[str, dict]] = {}
        for run in record.get("runs", []):
            by_batch.setdefault((run["batch"], bool(run.get("largest"))), {})[run["setting"]] = run
        flops = (record.get("flops_per_image") or {}).get("total")
        for (batch, largest), runs in by_batch.items():
            base, opt = runs.get("baseline"), runs.get("optimised")
            ratio = "-"
            if base and opt and "images_per_s" in base and "images_per_s" in opt:
                ratio = f"{opt['images_per_s'] / base['images_per_s']:.2f}x"
            peak = opt if opt and "peak_gib" in opt else base
            rows.append([*provenance(data), record["model"], record["encoder"], record["method"],
                         f"{batch} (largest)" if largest else str(batch), run_text(base), run_text(opt), ratio,
                         num((opt or {}).get("mfu"), ".1f", 100, "%"), num((peak or {}).get("peak_gib"), ".1f"),
                         num(flops, ".0f", 1e-9)])
    header = [*PROV, "model", "encoder", "method", "batch", "baseline img/s", "optimised img/s", "ratio",
              "MFU (optimised)", "peak GiB", "GFLOP/img"]
    note = [f"MFU against {num(data.get('peak_tflops'), 'g')} TFLOP/s bf16 dense. Baseline: "
            f"{data.get('settings', {}).get('baseline', '-')}; optimised: {data.get('settings', {}).get('optimised', '-')}."
            " 'largest' = the batch estimated from the memory of the batch-32 run and then run."]
    return table(header, rows) + [""] + note


def sample_section(data: dict[str, Any]) -> list[str]:
    base, opt = data.get("baseline") or {}, data.get("optimised") or {}
    tol = (data.get("tolerance") or {}).get("bf16_vs_fp32") or {}
    ratio = num(data.get("speedup"), ".2f", suffix="x")
    tolerance = "-"
    if tol:
        tolerance = (f"max abs dz {tol['max_abs_latent_diff']:.2e}, uint8 changed "
                     f"{100 * tol['uint8_values_changed']:.2f}%, max abs d uint8 {tol['max_abs_uint8_diff']}")
    steps = data.get("steps")
    extrapolated = data.get("extrapolated_from_steps")
    rows = [[*provenance(data), f"{data.get('model', '?')}, SDE {steps}"
             + (f" (timed over {extrapolated} steps, scaled)" if extrapolated else ""),
             base.get("batch", "-"), num(base.get("images_per_s"), ".3f"), opt.get("batch", "-"),
             num(opt.get("images_per_s"), ".3f"), ratio, num(opt.get("mfu"), ".1f", 100, "%"),
             num(opt.get("hours_per_50k"), ".2f"), tolerance]]
    return table([*PROV, "sampler", "baseline batch", "baseline img/s", "optimised batch", "optimised img/s",
                  "ratio", "MFU", "h per 50k", "tolerance (bf16 vs fp32)"], rows)


def adm_section(data: dict[str, Any]) -> list[str]:
    runs = data.get("runs", {})
    base, opt = runs.get("baseline") or {}, runs.get("optimised") or {}
    extrapolated = data.get("extrapolated")
    images = f"{data.get('n', '?')}" + (f" (EXTRAPOLATED from {extrapolated['from_images']} measured)"
                                        if extrapolated else "")
    rows = [[*provenance(data), images, num(base.get("total_s"), ".1f"), num(opt.get("total_s"), ".1f"),
             num(data.get("ratio_end_to_end"), ".2f", suffix="x"), num(opt.get("features_img_s"), ".0f"),
             num(data.get("max_pool_difference"), ".1e"), data.get("fid_method", "-")]]
    return table([*PROV, "samples", "baseline end-to-end s", "optimised end-to-end s", "ratio",
                  "features img/s", "max pool diff", "FID via"], rows)


def spatial_features_section(spatial: dict[str, Any] | None, features: dict[str, Any] | None) -> list[str]:
    rows = []
    if spatial:
        rows.append([*provenance(spatial), f"LDS/CDS/SRSS/RMSC, {spatial.get('images')} x {spatial.get('tokens')} x "
                     f"{spatial.get('dim')} (baseline: per-image loop on {spatial.get('baseline', {}).get('images')})",
                     num(spatial.get("baseline", {}).get("images_per_s"), ".1f"),
                     num(spatial.get("batched", {}).get("images_per_s"), ".1f"),
                     num(spatial.get("speedup"), ".1f", suffix="x"),
                     f"max abs diff {num(spatial.get('max_abs_difference'), '.1e')}"])
    for record in (features or {}).get("records", []):
        settings = record.get("settings", {})
        tol = record.get("tolerance")
        rows.append([*provenance(features), f"features {record['encoder']}, {record.get('resolution')} px, "
                     f"{record.get('images')} images", run_text(settings.get("baseline") or settings.get("demo")),
                     run_text(settings.get("optimised")), num(record.get("speedup"), ".2f", suffix="x"),
                     f"cosine min {tol['cosine_min']:.5f}" if tol else "-"])
    return table([*PROV, "benchmark", "baseline img/s", "optimised img/s", "ratio", "tolerance"], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--mode", choices=["full", "smoke"], default="full")
    args = parser.parse_args()
    out = args.out
    if not out.is_dir():
        raise SystemExit(f"{out} is not a folder; give the OUT of bench/gpu_check.sh")
    status = status_rows(out)
    title = ("# GPU check: SMOKE run (CPU, tiny sizes; checks the code paths, not figures for RESULTS.md)"
             if args.mode == "smoke" else "# GPU check: measured figures (`make gpu-check`)")
    lines = [title, "", "## Parts", ""]
    lines += table(["part", "status", "exit code", "seconds", "cap s"],
                   [[f"{s['part']} ({s['title']})", s["status"], num(s["exit_code"], "d"), num(s["seconds"], ".1f"),
                     num(s["cap_s"], ".0f")] for s in status])
    sections = [("1_gpu_tests", "## 0. GPU tests", tests_section),
                ("2_train", "## 1. Training images/s (one GPU)", train_section),
                ("3_sample", "## 2. Generation (SDE, no CFG)", sample_section),
                ("4_adm", "## 3. ADM evaluation", adm_section)]
    for part, heading, render in sections:
        data = load(out, part)
        lines += ["", heading, ""]
        lines += render(data) if data else [f"No results ({part}.json missing)."]
    lines += ["", "## 4. Spatial metrics and feature extraction", ""]
    spatial, features = load(out, "5_spatial"), load(out, "5_features")
    lines += spatial_features_section(spatial, features) if (spatial or features) else ["No results."]
    tmp = out / ".gpu_table.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out / "gpu_table.md")
    summary = {"mode": args.mode, "ok": all(s["status"].startswith("ok") for s in status), "parts": status,
               "table": "gpu_table.md"}
    tmp = out / ".gpu_check.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, out / "gpu_check.json")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
