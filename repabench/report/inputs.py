"""The report's inputs, each a file the report rule declares: the correlation table, per-run metric curves,
training logs, benchmark TSVs (described by the workflow), weight checksum sidecars, evaluation provenance."""

from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from repabench.columns import CURVE_COLUMNS, PREDICTORS
from repabench.report.model import Setting
from repabench.sizes import model_slug

log = logging.getLogger("repabench.report")


_TABLE_ALIASES = {
    "encoder": "encoder", "model": "model", "method": "method", "step": "step", "steps": "step",
    "sampler": "sampler", "fid": "FID", "sfid": "sFID", "is": "IS", "precision": "Precision", "recall": "Recall",
    "lp": "LP", "lp_acc": "LP", "lp_accuracy": "LP", "best_val_acc": "LP", "lds": "LDS", "cds": "CDS",
    "srss": "SRSS", "rmsc": "RMSC",
}


_FID_COLUMN = re.compile(r"^FID_(?P<model>[^_]+)_(?P<method>.+)_(?P<step>\d+)$")


def read_table(path: str | os.PathLike, fid_columns: Sequence[Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """The correlation table in long form: one row per (encoder, model, method, step) with the predictors.

    `repabench.stats` writes it wide (one row per encoder, a column FID_<model>_<method>_<step> per setting,
    described by `fid_columns` of the statistics file); a long table with model/method/step/FID columns is
    read as it is.
    """
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"--table {path} does not exist; run the correlate stage first")
    table = pd.read_csv(path)
    table = table.rename(columns={c: _TABLE_ALIASES.get(str(c).strip().lower(), c) for c in table.columns})
    if "encoder" not in table.columns:
        raise SystemExit(f"{path}: no `encoder` column (has {list(table.columns)}); rerun the correlate stage")
    table["encoder"] = table["encoder"].astype(str)
    if "FID" not in table.columns:
        table = _melt_fid_columns(table, fid_columns or [], path)
    if "model" in table.columns:
        table["model_key"] = table["model"].map(model_slug)
    if "step" in table.columns:
        table["step"] = pd.to_numeric(table["step"], errors="coerce").astype("Int64")
    for column in ("FID", "sFID", "IS", "Precision", "Recall", *PREDICTORS):
        if column in table.columns:
            table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def _melt_fid_columns(table: pd.DataFrame, fid_columns: Sequence[Mapping[str, Any]], path: Path) -> pd.DataFrame:
    described = {str(c["column"]): c for c in fid_columns if isinstance(c, Mapping) and "column" in c}
    settings = {}
    for column in table.columns:
        if column in described:
            entry = described[column]
            settings[column] = (str(entry["model"]), str(entry["method"]), int(entry["step"]))
        elif (match := _FID_COLUMN.match(str(column))):
            settings[column] = (match["model"], match["method"], int(match["step"]))
    if not settings:
        raise SystemExit(f"{path}: no FID column (neither `FID` nor FID_<model>_<method>_<step>); "
                         "rerun the correlate stage")
    keep = [c for c in table.columns if c not in settings]
    frames = [table[keep].assign(model=m, method=k, step=s, FID=table[column])
              for column, (m, k, s) in settings.items()]
    return pd.concat(frames, ignore_index=True)


def read_curves(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Per-run CSVs at results/eval/{model}/{encoder}/{method}/{sampler}.csv, stacked with the run's keys."""
    frames = []
    for item in paths:
        path = Path(item)
        if not path.is_file():
            raise SystemExit(f"--curves: {path} does not exist; run collect_metrics for that run first")
        parts = path.parts
        if len(parts) < 4:
            raise SystemExit(f"--curves: {path} is not of the form .../{{model}}/{{encoder}}/{{method}}/{{sampler}}.csv")
        frame = pd.read_csv(path)
        if "Steps" not in frame.columns or "FID" not in frame.columns:
            raise SystemExit(f"{path}: needs the columns Steps and FID (has {list(frame.columns)})")
        frame = frame.assign(model=parts[-4], encoder=parts[-3], method=parts[-2], sampler=path.stem)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["model", "encoder", "method", "sampler", *CURVE_COLUMNS])
    curves = pd.concat(frames, ignore_index=True)
    curves["model_key"] = curves["model"].map(model_slug)
    return curves


def read_train_logs(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    logs = []
    for item in paths:
        path = Path(item)
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("training log %s unreadable (%s); left out of the report", path, exc)
            continue
        from repabench.integrity import check_seal

        check_seal(record, path)
        parts = path.parts
        run = record.get("run") or {}
        record["_key"] = {
            "model": run.get("model", parts[-4] if len(parts) >= 4 else "?"),
            "encoder": run.get("encoder", parts[-3] if len(parts) >= 3 else "?"),
            "method": run.get("method", parts[-2] if len(parts) >= 2 else "?"),
        }
        record["_path"] = str(path)
        logs.append(record)
    return logs


def read_benchmarks(items: Iterable[str], rule_gpus: Mapping[str, int]) -> pd.DataFrame:
    """One row per benchmark TSV, each given as RULE[:ENCODER]=FILE (the rule that wrote it, the encoder its job
    serves): seconds and memory from the file, GPUs from the rule's request (`rule_gpus`)."""
    columns = ["rule", "job", "encoder", "wall_s", "cpu_s", "max_rss_mb", "gpus"]
    declared = []
    for item in items:
        job, sep, path = str(item).partition("=")
        rule, _, encoder = job.partition(":")
        if not sep or not rule or not path:
            raise SystemExit(f"--benchmarks: {item!r} is not RULE[:ENCODER]=FILE")
        if rule not in rule_gpus:
            raise SystemExit(f"--benchmarks: rule {rule!r} of {path} has no GPU count in --rule-gpus; add it")
        declared.append((Path(path), rule, encoder or None))
    rows = []
    for path, rule, encoder in sorted(declared, key=lambda d: d[0].parts):
        try:
            frame = pd.read_csv(path, sep="\t")
        except FileNotFoundError:
            raise SystemExit(f"--benchmarks: {path} does not exist; run its {rule} job through Snakemake") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            log.warning("benchmark %s unreadable (%s); skipped", path, exc)
            continue
        if "s" not in frame.columns or frame.empty:
            log.warning("benchmark %s has no `s` column; skipped", path)
            continue
        rows.append({
            "rule": rule,
            "job": str(path),
            "encoder": encoder,
            "wall_s": float(pd.to_numeric(frame["s"], errors="coerce").mean()),
            "cpu_s": float(pd.to_numeric(frame["cpu_time"], errors="coerce").mean()) if "cpu_time" in frame else math.nan,
            "max_rss_mb": float(pd.to_numeric(frame["max_rss"], errors="coerce").max()) if "max_rss" in frame else math.nan,
            "gpus": int(rule_gpus[rule]),
        })
    return pd.DataFrame(rows, columns=columns)


def read_weight_sidecars(weights: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """The checksum sidecar `<weight>.sha256.json` that fetch_weights writes beside each weight file."""
    records = []
    for path in sorted({Path(w).with_name(Path(w).name + ".sha256.json") for w in weights}, key=lambda p: p.name):
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            record = {"name": path.name, "sha256": "(no sidecar: rerun fetch_weights)"}
        except (OSError, json.JSONDecodeError):
            record = {"name": path.name, "sha256": "(unreadable sidecar)"}
        record.setdefault("name", path.name.removesuffix(".sha256.json"))
        records.append(record)
    return records


def eval_provenances(eval_paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Provenance of the per-checkpoint evaluation JSONs (hardware, sampler settings)."""
    found = []
    for path in eval_paths:
        try:
            prov = json.loads(Path(path).read_text()).get("provenance")
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        if prov:
            found.append(prov)
    return found


def setting_rows(table: pd.DataFrame, setting: Setting, *, model_key: str | None = None,
                 method: str | None = None, step: int | None = None) -> pd.DataFrame:
    """Rows of the table for one (model, method, step); columns the table lacks do not filter."""
    rows = table
    if "model_key" in rows.columns:
        rows = rows[rows["model_key"] == (model_key or setting.model_key)]
    if "method" in rows.columns:
        rows = rows[rows["method"] == (method or setting.method)]
    wanted_step = step if step is not None else setting.step
    if "step" in rows.columns and wanted_step is not None:
        rows = rows[rows["step"] == wanted_step]
    return rows.drop_duplicates(subset=["encoder"], keep="last")


def encoder_order(params: Mapping[str, Any], *frames: pd.DataFrame) -> list[str]:
    order = list(params.get("encoders") or [])
    for frame in frames:
        if "encoder" in frame.columns:
            order += [e for e in frame["encoder"].astype(str).unique() if e not in order]
    return order


def method_order(params: Mapping[str, Any], *frames: pd.DataFrame) -> list[str]:
    order = list(params.get("run_methods") or params.get("methods") or [])
    for frame in frames:
        if "method" in frame.columns:
            order += [m for m in frame["method"].astype(str).unique() if m not in order]
    return order


