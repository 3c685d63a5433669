"""The report: one data model, rendered as a self-contained HTML page (Jinja2, inline PNG) and as a PDF.

Inputs are the correlation table and statistics of `repabench.stats`, the per-run FID-versus-step CSVs,
the training logs, Snakemake benchmark TSVs and the weight checksum sidecars. A section whose data are
missing (one method only, fewer than three encoders, no IS, no benchmark files, ...) says so instead of
failing; only a missing or malformed required input (table, statistics) is an error.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from repabench import published

log = logging.getLogger("repabench.report")

PREDICTORS = ("LP", "LDS", "CDS", "SRSS", "RMSC")
SPATIAL = ("LDS", "CDS", "SRSS", "RMSC")
AXIS_LABELS = {
    "LP": "Linear-probe top-1 accuracy (%)",
    "LDS": "LDS (cosine, near minus far)",
    "CDS": "CDS (cosine decay per grid step)",
    "SRSS": "SRSS (cosine, fg-near minus bg-far)",
    "RMSC": "RMSC (RMS token contrast, unitless)",
    "FID": "FID (lower is better)",
}
# Rules whose jobs hold GPUs when the study runs on CUDA; the value names the config key with the GPU count.
GPU_RULES: Mapping[str, tuple[str, str] | None] = {
    "train": ("train", "gpus"),
    "sample": ("sample", "gpus"),
    "evaluate": None,
    "reference_stats": None,
    "extract_features": None,
    "linear_probe": None,
    "spatial_metrics": None,
    "cache_latents": None,
}
CURVE_COLUMNS = ("Steps", "FID", "sFID", "IS", "Precision", "Recall")


# ------------------------------------------------------------------------------------------------------------
# reading the inputs


def canonical_model(name: Any) -> str:
    """SiT-B/2 and sit-b-2 compare equal (tables may hold either)."""
    return str(name).strip().lower().replace("/", "-")


def display_model(name: Any) -> str:
    """sit-b-2 -> SiT-B/2 for titles (the inverse of `repabench.sit.model_slug`, without importing torch)."""
    match = re.fullmatch(r"sit-([a-z]+)-(\d+)", canonical_model(name))
    return f"SiT-{match.group(1).upper()}/{match.group(2)}" if match else str(name)


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
        table["model_key"] = table["model"].map(canonical_model)
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
    curves["model_key"] = curves["model"].map(canonical_model)
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


def read_benchmarks(directory: str | os.PathLike | None, encoders: Sequence[str], params: Mapping[str, Any]
                    ) -> pd.DataFrame:
    """One row per benchmark TSV: rule, wildcard path, encoder (when the path names one), seconds, hours."""
    columns = ["rule", "job", "encoder", "wall_s", "cpu_s", "max_rss_mb", "gpus"]
    if directory is None or not Path(directory).is_dir():
        return pd.DataFrame(columns=columns)
    root = Path(directory)
    on_gpu = str(params.get("device", "auto")) != "cpu"
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        rel = path.relative_to(root)
        rule = rel.parts[0]
        wildcards = list(rel.with_suffix("").parts[1:])
        try:
            frame = pd.read_csv(path, sep="\t")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            log.warning("benchmark %s unreadable (%s); skipped", path, exc)
            continue
        if "s" not in frame.columns or frame.empty:
            log.warning("benchmark %s has no `s` column; skipped", path)
            continue
        encoder = next((w for w in wildcards if w in encoders), None)
        if encoder is None:  # wildcards joined into one file name, e.g. {encoder}_{split}
            encoder = next((e for e in sorted(encoders, key=len, reverse=True) if any(e in w for w in wildcards)), None)
        gpus = 0
        if on_gpu and rule in GPU_RULES:
            key = GPU_RULES[rule]
            gpus = int((params.get(key[0]) or {}).get(key[1], 1)) if key else 1
        rows.append({
            "rule": rule,
            "job": "/".join(wildcards) or "-",
            "encoder": encoder,
            "wall_s": float(pd.to_numeric(frame["s"], errors="coerce").mean()),
            "cpu_s": float(pd.to_numeric(frame["cpu_time"], errors="coerce").mean()) if "cpu_time" in frame else math.nan,
            "max_rss_mb": float(pd.to_numeric(frame["max_rss"], errors="coerce").max()) if "max_rss" in frame else math.nan,
            "gpus": gpus,
        })
    return pd.DataFrame(rows, columns=columns)


def read_weight_sidecars(directory: str | os.PathLike | None) -> list[dict[str, Any]]:
    if directory is None or not Path(directory).is_dir():
        return []
    records = []
    for path in sorted(Path(directory).glob("*.sha256.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            record = {"name": path.name, "sha256": "(unreadable sidecar)"}
        record.setdefault("name", path.name.removesuffix(".sha256.json"))
        records.append(record)
    return records


def eval_provenances(curve_paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Provenance of the per-checkpoint evaluation JSONs beside each run CSV (hardware, sampler settings)."""
    found = []
    for item in curve_paths:
        path = Path(item)
        for result in sorted(path.parent.glob(f"*/{path.stem}.json")):
            try:
                prov = json.loads(result.read_text()).get("provenance")
            except (OSError, json.JSONDecodeError, AttributeError):
                continue
            if prov:
                found.append(prov)
    return found


# ------------------------------------------------------------------------------------------------------------
# the correlation statistics of `repabench.stats`, checked against a direct computation on the table


def _interval(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_finite(v) for v in value):
        return float(value[0]), float(value[1])
    return None


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def fisher_interval(r: float, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """Fisher-z interval of a Pearson r (used only where the statistics file gives none)."""
    from scipy.stats import norm

    if n <= 3 or not _finite(r) or abs(r) >= 1:
        return None
    half = norm.ppf(0.5 + level / 2) / math.sqrt(n - 3)
    z = math.atanh(r)
    return math.tanh(z - half), math.tanh(z + half)


@dataclass
class Correlation:
    predictor: str
    n: int
    r: float | None
    fisher_ci: tuple[float, float] | None = None
    bootstrap_ci: tuple[float, float] | None = None
    p_value: float | None = None
    spearman: float | None = None
    spearman_p: float | None = None
    direct_r: float | None = None  # Pearson r recomputed here on the table rows of the setting
    note: str = ""

    @property
    def paper_r(self) -> float | None:
        return published.CORRELATION_R.get(self.predictor)


def correlations(stats: Mapping[str, Any], rows: pd.DataFrame) -> list[Correlation]:
    """Pearson/Spearman of each predictor against FID: the statistics file's `predictors` block (keys of
    `repabench.stats.correlate_pair`), each r checked against a direct computation on the table."""
    from scipy.stats import pearsonr

    blocks = stats.get("predictors") if isinstance(stats.get("predictors"), Mapping) else {}
    result = []
    for name in PREDICTORS:
        pairs = rows[[name, "FID"]].dropna() if name in rows.columns else pd.DataFrame(columns=[name, "FID"])
        n = len(pairs)
        direct = None
        if n >= 3 and pairs[name].std() > 0 and pairs["FID"].std() > 0:
            direct = float(pearsonr(pairs[name], pairs["FID"]).statistic)
        block = blocks.get(name) if isinstance(blocks.get(name), Mapping) else {}
        r = block.get("pearson_r")
        entry = Correlation(
            predictor=name,
            n=int(block.get("n") or n),
            r=float(r) if _finite(r) else None,
            fisher_ci=_interval(block.get("ci95_fisher")),
            bootstrap_ci=_interval(block.get("ci95_bootstrap")),
            p_value=block.get("pearson_p"),
            spearman=block.get("spearman_rho"),
            spearman_p=block.get("spearman_p"),
            direct_r=direct,
        )
        reason = block.get("reason")
        if reason:
            entry.note = str(reason)
        if entry.r is None and direct is not None:
            entry.r = direct
            entry.note = "r computed by the report (absent from the statistics file)"
        elif entry.r is not None and direct is not None and abs(entry.r - direct) > 1e-6:
            entry.note = f"statistics file r {entry.r:+.4f} differs from the table's {direct:+.4f}"
            log.warning("%s: %s", name, entry.note)
        if entry.r is None and not entry.note:
            entry.note = entry.note or (f"undefined: {n} encoder(s) with a value" if n < 3 else
                                        "undefined: no variation across encoders")
        if entry.fisher_ci is None and entry.r is not None:
            entry.fisher_ci = fisher_interval(entry.r, entry.n)
        result.append(entry)
    return result


VS_LP_COLUMNS = (  # (key in the statistics file, column title)
    ("n", "n"),
    ("abs_r_metric", "|r| metric"),
    ("abs_r_lp", "|r| LP"),
    ("abs_r_diff", "Δ|r|"),
    ("ci95_bootstrap", "Δ|r| 95% CI"),
    ("p_bootstrap_one_sided", "p boot."),
    ("williams_t", "Williams t"),
    ("p_williams_one_sided", "p Williams"),
    ("reason", "note"),
)


def spatial_vs_lp(stats: Mapping[str, Any]) -> Table | None:
    """The test of whether each spatial metric predicts FID better than linear probing does."""
    block = stats.get("vs_lp")
    if not isinstance(block, Mapping) or not block:
        return None
    rows = []
    for metric, entry in block.items():
        entry = entry if isinstance(entry, Mapping) else {}
        cells = [str(metric)] + [fmt_value(entry.get(key)) if key != "reason" else str(entry.get(key) or "")
                                 for key, _ in VS_LP_COLUMNS]
        diff, ci = entry.get("abs_r_diff"), _interval(entry.get("ci95_bootstrap"))
        if ci and ci[0] > 0:
            verdict = "yes"
        elif ci and ci[1] < 0:
            verdict = "no, LP is"
        elif _finite(diff):
            verdict = "not shown" if ci else ("higher |r|" if diff > 0 else "lower |r|")
        else:
            verdict = "–"
        rows.append(cells[:-1] + [verdict, cells[-1]])
    return Table("Do the spatial metrics predict FID better than linear probing?",
                 ["metric", *(title for _, title in VS_LP_COLUMNS[:-1]), "better than LP?", "note"], rows,
                 note="Paired over the same encoders: Δ|r| = |r(metric, FID)| − |r(LP, FID)| with its percentile "
                      "bootstrap interval over encoders and one-sided p (share of resamples with Δ|r| ≤ 0); Williams' t "
                      "for two dependent correlations sharing FID, one-sided p for |r metric| > |r LP|. "
                      "\"better than LP?\": yes when the bootstrap interval lies above 0.")


def fmt_value(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    interval = _interval(value)
    if interval:
        low, high = (round(v, digits) + 0.0 for v in interval)  # + 0.0 turns -0.0 into 0.0
        return f"[{low:+.{digits}f}, {high:+.{digits}f}]"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if _finite(value):
        number = float(value)
        if number != 0 and (abs(number) < 10 ** -digits or abs(number) >= 1e5):
            return f"{number:.{digits}g}"
        return f"{number:.{digits}f}"
    if isinstance(value, float):
        return "–"
    return str(value)


# ------------------------------------------------------------------------------------------------------------
# the setting whose FIDs are correlated, and the table rows that belong to it


@dataclass
class Setting:
    model: str
    method: str
    step: int | None
    sampler: str

    @property
    def model_key(self) -> str:
        return canonical_model(self.model)

    def describe(self) -> str:
        step = f"{self.step:,} steps" if self.step is not None else "last step"
        return f"{display_model(self.model)}, {self.method}, {step}, sampler {self.sampler}"


def resolve_setting(params: Mapping[str, Any], stats: Mapping[str, Any], table: pd.DataFrame) -> Setting:
    """The statistics file's own setting where it records one, else the config's `report` section."""
    report = params.get("report") or {}
    declared = stats.get("setting") if isinstance(stats.get("setting"), Mapping) else {}
    models = params.get("models") or (sorted(table["model"].unique()) if "model" in table else ["?"])
    model = declared.get("model") or report.get("model") or models[0]
    method = declared.get("method") or report.get("method") or (params.get("run_methods") or ["repa"])[0]
    step = declared.get("step") or report.get("step")
    if step is None:
        checkpoints = (params.get("train") or {}).get("checkpoint_steps")
        if checkpoints:
            step = max(checkpoints)
        elif "step" in table.columns and table["step"].notna().any():
            step = int(table["step"].max())
    sampler = declared.get("sampler") or params.get("sampler") or (params.get("sample") or {}).get("sampler", "?")
    return Setting(model=str(model), method=str(method), step=int(step) if step is not None else None,
                   sampler=str(sampler))


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


def method_label(params: Mapping[str, Any], method: str) -> str:
    entry = (params.get("methods") or {}).get(method) or {}
    return str(entry.get("label") or method)


def baseline_method(params: Mapping[str, Any], methods: Sequence[str]) -> str | None:
    """The plain REPA entry (MLP projector, no spatial norm) that iREPA variants are compared with."""
    defs = params.get("methods") or {}
    for name in methods:
        entry = defs.get(name) or {}
        if entry.get("projector", "mlp") == "mlp" and entry.get("spatial_norm", "none") == "none" and defs:
            return name
    return "repa" if "repa" in methods else (methods[0] if methods else None)


# ------------------------------------------------------------------------------------------------------------
# figures (matplotlib, Agg): each returns a Figure; the caller saves it as PNG, inlines it, adds it to the PDF


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
        "xtick.labelsize": 9, "ytick.labelsize": 9, "figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3,
        "svg.hashsalt": "repabench", "pdf.compression": 6,
        "axes.formatter.useoffset": False,  # FID axes read as plain numbers, not "+3.6e2" offsets
    })
    return plt


def encoder_colors(encoders: Sequence[str]) -> dict[str, Any]:
    plt = _plt()
    cmap = plt.get_cmap("tab10" if len(encoders) <= 10 else "tab20")
    return {e: cmap(i % cmap.N) for i, e in enumerate(encoders)}


def method_colors(methods: Sequence[str]) -> dict[str, Any]:
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
    return {m: palette[i % len(palette)] for i, m in enumerate(methods)}


def _short(encoder: str, width: int = 22) -> str:
    return encoder if len(encoder) <= width else encoder[: width - 1] + "…"


def _step_axis(ax) -> None:
    """Training steps as 50k, 100k, ... (not an offset multiplier) once they reach the thousands."""
    from matplotlib.ticker import FuncFormatter

    ax.set_xlabel("training step")
    if ax.get_xlim()[1] >= 2000:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k"))


def _ci_text(ci: tuple[float, float] | None) -> str:
    return f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""


def correlation_figure(rows: pd.DataFrame, corr: Sequence[Correlation], setting: Setting,
                       colors: Mapping[str, Any]):
    """The paper's five panels (x = LP or a spatial metric, y = FID, least-squares line, r with its 95% CI),
    plus a sixth panel comparing |r| with the paper's."""
    plt = _plt()
    fig, axes = plt.subplots(2, 3, figsize=(15, 9.4), layout="constrained")
    by_name = {c.predictor: c for c in corr}
    for ax, name in zip(axes.flat, PREDICTORS):
        pairs = rows[["encoder", name, "FID"]].dropna() if name in rows.columns else pd.DataFrame()
        ax.set_xlabel(AXIS_LABELS[name])
        ax.set_ylabel(AXIS_LABELS["FID"])
        if pairs.empty:
            ax.set_title(f"{name}: no values")
            ax.text(0.5, 0.5, f"{name} is missing for every encoder", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
            continue
        for _, row in pairs.iterrows():
            ax.scatter(row[name], row["FID"], s=46, color=colors.get(row["encoder"], "0.3"),
                       edgecolor="black", linewidth=0.5, zorder=3)
            ax.annotate(_short(row["encoder"], 30), (row[name], row["FID"]), xytext=(4, 3), textcoords="offset points",
                        fontsize=7, color="0.25")
        x, y = pairs[name].to_numpy(float), pairs["FID"].to_numpy(float)
        if len(pairs) >= 2 and np.ptp(x) > 0:
            slope, intercept = np.polyfit(x, y, 1)
            grid = np.linspace(x.min(), x.max(), 50)
            ax.plot(grid, slope * grid + intercept, color="#c44e52", linewidth=1.5, label="least-squares fit")
            pad = 0.08 * np.ptp(x)
            ax.set_xlim(x.min() - pad, x.max() + 2.5 * pad)  # room for the point labels on the right
        ax.margins(y=0.1)
        c = by_name[name]
        title = f"{name}: r = {c.r:+.2f}{_ci_text(c.fisher_ci)}" if c.r is not None else f"{name}: r undefined"
        paper = f"; paper r = {c.paper_r:+.2f}" if c.paper_r is not None else ""
        ax.set_title(f"{title}\n(n = {len(pairs)}{paper})", fontsize=10.5)
    _abs_r_panel(axes.flat[5], corr)
    fig.suptitle(f"Which encoder property predicts generation quality? FID of {setting.describe()}; "
                 f"95% Fisher-z intervals", fontsize=12)
    return fig


def _abs_r_panel(ax, corr: Sequence[Correlation]) -> None:
    names = [c.predictor for c in corr]
    ours = np.array([abs(c.r) if c.r is not None else np.nan for c in corr])
    paper = np.array([abs(c.paper_r) if c.paper_r is not None else np.nan for c in corr])
    pos = np.arange(len(names))
    err = np.full((2, len(names)), np.nan)
    for i, c in enumerate(corr):
        if c.r is not None and c.fisher_ci:
            lo, hi = sorted(abs(v) for v in c.fisher_ci) if c.fisher_ci[0] * c.fisher_ci[1] > 0 else (0.0, max(map(abs, c.fisher_ci)))
            err[:, i] = [max(abs(c.r) - lo, 0), max(hi - abs(c.r), 0)]
    ax.bar(pos - 0.2, np.nan_to_num(ours), 0.4, color="#4c72b0", label="ours (bar: 95% Fisher-z CI)")
    has_ci = np.isfinite(err).all(axis=0)
    if has_ci.any():
        ax.errorbar(pos[has_ci] - 0.2, ours[has_ci], yerr=err[:, has_ci], fmt="none", ecolor="black", capsize=3)
    ax.bar(pos + 0.2, paper, 0.4, color="0.7", label="paper (27 encoders, SiT-XL/2)")
    ax.set_xticks(pos, names)
    ax.set_ylim(0, 1.3)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("|Pearson r| with FID")
    ax.set_xlabel("predictor")
    ax.set_title("|r| per predictor (higher = better predictor)")
    ax.legend(loc="upper center", fontsize=8, ncols=2)


def method_comparison_figure(comparison: pd.DataFrame, params: Mapping[str, Any], baseline: str,
                             setting: Setting):
    """FID of the baseline and each other method per encoder (dumbbells), one panel per other method."""
    plt = _plt()
    others = [m for m in comparison["method"].unique()]
    encoders = list(dict.fromkeys(comparison["encoder"]))
    height = max(3.2, 0.42 * len(encoders) + 1.6)
    fig, axes = plt.subplots(1, len(others), figsize=(max(7.5, 5.6 * len(others)), height), layout="constrained",
                             squeeze=False)
    colors = method_colors([baseline, *others])
    for ax, method in zip(axes[0], others):
        part = comparison[comparison["method"] == method].set_index("encoder").reindex(encoders)
        ypos = np.arange(len(encoders))[::-1]
        for y, (encoder, row) in zip(ypos, part.iterrows()):
            if not (_finite(row["FID_base"]) and _finite(row["FID"])):
                continue
            ax.plot([row["FID_base"], row["FID"]], [y, y], color="0.6", linewidth=1.5, zorder=1)
            ax.annotate(f"{row['delta']:+.2f}", (max(row["FID_base"], row["FID"]), y), xytext=(6, -3),
                        textcoords="offset points", fontsize=8,
                        color="#2a7a2a" if row["delta"] < 0 else "#b22222")
        ax.scatter(part["FID_base"], ypos, s=50, color=colors[baseline], zorder=3,
                   label=method_label(params, baseline))
        ax.scatter(part["FID"], ypos, s=50, color=colors[method], marker="D", zorder=3,
                   label=method_label(params, method))
        ax.set_yticks(ypos, [_short(e, 32) for e in encoders])
        low = np.nanmin(part[["FID_base", "FID"]].to_numpy(float)) if part[["FID_base", "FID"]].notna().any().any() else 0
        high = np.nanmax(part[["FID_base", "FID"]].to_numpy(float)) if part[["FID_base", "FID"]].notna().any().any() else 1
        span = max(high - low, 1e-3)
        ax.set_xlim(low - 0.08 * span, high + 0.25 * span)
        ax.set_xlabel(AXIS_LABELS["FID"])
        ax.set_title(f"{method_label(params, method)} vs {method_label(params, baseline)}")

    handles, labels = [], []
    for ax in axes[0]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    fig.suptitle(f"FID change per encoder ({display_model(setting.model)}, {setting.step:,} steps; label = change, "
                 "negative = better)" if setting.step is not None else "FID change per encoder", fontsize=12)
    return fig


def curves_figure(curves: pd.DataFrame, encoders: Sequence[str], methods: Sequence[str],
                  params: Mapping[str, Any]):
    """FID versus training step: one panel per encoder, one line per method (line style per model)."""
    plt = _plt()
    n = len(encoders)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.1 * cols, 3.1 * rows + 0.8), layout="constrained",
                             sharey=True, squeeze=False)
    colors = method_colors(methods)
    styles = ["-", "--", ":", "-."]
    models = list(dict.fromkeys(curves["model"]))
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, encoder in zip(axes.flat, encoders):
        part = curves[curves["encoder"] == encoder]
        for method in methods:
            for k, model in enumerate(models):
                run = part[(part["method"] == method) & (part["model"] == model)].sort_values("Steps")
                if run.empty:
                    continue
                label = method_label(params, method) + (f" ({model})" if len(models) > 1 else "")
                ax.plot(run["Steps"], run["FID"], styles[k % len(styles)], marker="o", color=colors[method],
                        label=label)
        ax.set_title(_short(encoder, 34))
        ax.set_ylabel("FID")
        _step_axis(ax)
    handles, labels = [], []
    for ax in axes.flat[:n]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4))
    fig.suptitle("FID versus training step (lower is better)", fontsize=12)
    return fig


def across_figure(across: pd.DataFrame):
    """Pearson r of each predictor against FID as the training step (x) and model size (panel) change."""
    plt = _plt()
    models = list(dict.fromkeys(across["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(max(7.5, 5.5 * len(models)), 4.2), layout="constrained",
                             squeeze=False, sharey=True)
    palette = method_colors(PREDICTORS)
    for ax, model in zip(axes[0], models):
        part = across[across["model"] == model]
        for name in PREDICTORS:
            series = part[part["predictor"] == name].sort_values("step")
            if series["r"].notna().any():
                ax.plot(series["step"], series["r"], marker="o", color=palette[name], label=name,
                        linewidth=2.4 if name == "LP" else 1.5, linestyle="--" if name == "LP" else "-")
                ci = [c if c else (np.nan, np.nan) for c in series.get("ci", [None] * len(series))]
                lows, highs = np.array([c[0] for c in ci], float), np.array([c[1] for c in ci], float)
                if np.isfinite(lows).any():
                    ax.fill_between(series["step"].to_numpy(float), lows, highs, color=palette[name], alpha=0.12,
                                    linewidth=0)
        ax.axhline(0, color="0.5", linewidth=0.8)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("Pearson r with FID")
        ax.set_title(str(model))
        _step_axis(ax)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right center", title="predictor")
    fig.suptitle("How r moves across checkpoints and model sizes (band: 95% Fisher-z interval)", fontsize=12)
    return fig


def training_figure(train_logs: Sequence[Mapping[str, Any]], colors: Mapping[str, Any], methods: Sequence[str]):
    """Denoising and alignment loss over training, one line per run (colour = encoder, style = method)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4), layout="constrained")
    styles = {m: s for m, s in zip(methods, ["-", "--", ":", "-."] * 4)}
    for record in train_logs:
        entries = pd.DataFrame(record.get("entries") or [])
        if entries.empty or "step" not in entries:
            continue
        key = record["_key"]
        for ax, column in zip(axes, ("denoise", "align")):
            if column in entries:
                ax.plot(entries["step"], entries[column], styles.get(key["method"], "-"),
                        color=colors.get(key["encoder"], "0.3"), linewidth=1.2,
                        marker="o" if len(entries) < 12 else None, markersize=3)
    axes[0].set_title("denoising (flow-matching) loss")
    axes[0].set_ylabel("loss (MSE of velocity)")
    axes[1].set_title("alignment loss")
    axes[1].set_ylabel("loss (negative cosine similarity)")
    for ax in axes:
        _step_axis(ax)
    from matplotlib.lines import Line2D

    shown = list(dict.fromkeys(r["_key"]["encoder"] for r in train_logs))
    handles = [Line2D([], [], color=colors.get(e, "0.3"), label=_short(e, 30)) for e in shown]
    handles += [Line2D([], [], color="black", linestyle=styles[m], label=f"method: {m}") for m in methods
                if m in styles]
    fig.legend(handles=handles, loc="outside right center", fontsize=7 if len(handles) > 14 else 8,
               ncols=2 if len(handles) > 24 else 1)
    fig.suptitle("Training losses (window means from the training logs)", fontsize=12)
    return fig


def compute_figure(by_stage: pd.DataFrame, by_encoder: pd.DataFrame, unit: str):
    """Hours per stage and per encoder (stacked by stage) from Snakemake benchmark files."""
    plt = _plt()
    label = unit.replace("_", " ")
    if by_stage[unit].max() < 1:  # short studies read better in minutes
        by_stage = by_stage.assign(**{unit: by_stage[unit] * 60})
        by_encoder = by_encoder * 60
        label = label.replace("hours", "minutes")
    height = max(3.6, 0.32 * max(len(by_stage), len(by_encoder)) + 2.0)
    fig, axes = plt.subplots(1, 2, figsize=(14, height), layout="constrained")
    stages = list(by_stage.index)
    palette = dict(zip(stages, [plt.get_cmap("tab20")(i % 20) for i in range(len(stages))]))
    axes[0].barh(stages[::-1], by_stage[unit].to_numpy()[::-1], color=[palette[s] for s in stages[::-1]])
    axes[0].set_xlabel(label)
    axes[0].set_title("per stage (all jobs)")
    if not by_encoder.empty:
        left = np.zeros(len(by_encoder))
        names = [_short(e, 28) for e in by_encoder.index][::-1]
        for stage in [s for s in stages if s in by_encoder.columns]:
            values = by_encoder[stage].fillna(0).to_numpy()[::-1]
            axes[1].barh(names, values, left=left, color=palette[stage], label=stage)
            left += values
        fig.legend(*axes[1].get_legend_handles_labels(), loc="outside lower center", fontsize=8,
                   ncols=min(6, len(stages)), title="rule")
    else:
        axes[1].text(0.5, 0.5, "no benchmark file names an encoder", ha="center", va="center",
                     transform=axes[1].transAxes, color="0.4")
    axes[1].set_xlabel(label)
    axes[1].set_title("per encoder, stacked by stage")
    fig.suptitle("Compute from Snakemake benchmark files", fontsize=12)
    return fig


# ------------------------------------------------------------------------------------------------------------
# the report's data model: sections of paragraphs, tables, figures and preformatted blocks


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Figure:
    name: str  # file stem in the figures directory
    title: str
    caption: str
    figure: Any  # matplotlib Figure, closed after rendering
    png: bytes = b""

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class Section:
    anchor: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what is missing and why
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    blocks: list[tuple[str, str]] = field(default_factory=list)  # (title, preformatted text)


@dataclass
class Inputs:
    params: dict[str, Any]
    table: pd.DataFrame
    stats: dict[str, Any]
    curves: pd.DataFrame
    train_logs: list[dict[str, Any]]
    benchmarks: pd.DataFrame
    weights: list[dict[str, Any]]
    eval_provenance: list[dict[str, Any]]
    input_paths: list[str]
    published_numbers: dict[str, Any] = field(default_factory=dict)  # the authors' files (published source)
    features: dict[str, str] = field(default_factory=dict)  # encoder -> held-out feature store (spnorm figure)


def _fid_lookup(inputs: Inputs, setting: Setting) -> dict[tuple[str, str], pd.Series]:
    """(encoder, method) -> row with FID/sFID/IS/... at the setting's model and step: the table, else the curves."""
    found: dict[tuple[str, str], pd.Series] = {}
    curves = inputs.curves
    if not curves.empty:
        picked = curves[curves["model_key"] == setting.model_key]
        if setting.step is not None:
            picked = picked[picked["Steps"] == setting.step]
        for _, row in picked.iterrows():
            found[(row["encoder"], row["method"])] = row
    table = inputs.table
    if "method" in table.columns:
        for method in table["method"].unique():
            for _, row in setting_rows(table, setting, method=method).iterrows():
                if _finite(row.get("FID")):
                    found[(row["encoder"], method)] = row
    return found


def _value(found: Mapping[tuple[str, str], pd.Series], encoder: str, method: str, column: str) -> Any:
    row = found.get((encoder, method))
    return None if row is None else row.get(column)


def _num(value: Any, digits: int) -> str:
    return f"{float(value):.{digits}f}" if _finite(value) else "–"


def _metric_digits(name: str) -> int:
    return {"LP": 1, "LDS": 3, "CDS": 4, "SRSS": 3, "RMSC": 3}.get(name, 3)


def correlation_section(inputs: Inputs, setting: Setting, colors: Mapping[str, Any]) -> tuple[Section, list[Correlation]]:
    rows = setting_rows(inputs.table, setting)
    corr = correlations(inputs.stats, rows)
    section = Section("correlation", "Correlation of encoder properties with FID")
    section.paragraphs.append(
        f"Each point is one encoder; y is the FID of {setting.describe()}. Titles give Pearson r with its 95% "
        f"Fisher-z interval. The paper reports r over {published.SETTING['n_encoders']} encoders for "
        f"{published.SETTING['model']} + {published.SETTING['method']} at {published.SETTING['step']:,} steps.")
    if len(rows) < 3:
        section.notes.append(f"Only {len(rows)} encoder(s) have a FID for this setting: correlations need at least 3.")
    section.figures.append(Figure(
        "correlation", "Five-panel correlation figure",
        f"FID ({setting.describe()}) against linear-probe accuracy and the four spatial-structure metrics; "
        "red line: least-squares fit; title: Pearson r [95% Fisher-z CI]; last panel: |r| beside the paper's.",
        correlation_figure(rows, corr, setting, colors)))
    section.tables.append(Table(
        "Pearson and Spearman correlation with FID",
        ["predictor", "n", "Pearson r", "95% CI (Fisher z)", "95% CI (bootstrap over encoders)", "p", "Spearman ρ",
         "Spearman p", "paper r", "note"],
        [[c.predictor, str(c.n), fmt_value(c.r), fmt_value(c.fisher_ci, 2), fmt_value(c.bootstrap_ci, 2),
          fmt_value(c.p_value), fmt_value(c.spearman), fmt_value(c.spearman_p), fmt_value(c.paper_r), c.note]
         for c in corr],
        note="r < 0 means a higher value goes with a lower (better) FID."))
    test = spatial_vs_lp(inputs.stats)
    if test:
        section.tables.append(test)
    else:
        section.notes.append("The statistics file holds no spatial-versus-LP test (too few encoders or an older "
                             "correlate stage).")
    return section, corr


def encoder_section(inputs: Inputs, setting: Setting, encoders: Sequence[str], methods: Sequence[str]) -> Section:
    from repabench.report_controls import fid_with_interval, noise_lookup

    section = Section("encoders", "Per-encoder results")
    fids = _fid_lookup(inputs, setting)
    noise = noise_lookup(inputs.stats)
    metrics = {}
    for encoder in encoders:
        part = inputs.table[inputs.table["encoder"] == encoder]
        metrics[encoder] = {m: (part[m].dropna().iloc[0] if m in part and part[m].notna().any() else None)
                            for m in PREDICTORS}
    columns = ["encoder", *PREDICTORS] + [f"FID {method_label(inputs.params, m)}" for m in methods]
    extra = [c for c in ("sFID", "IS", "Precision", "Recall")
             if any(_finite(_value(fids, e, setting.method, c)) for e in encoders)]
    columns += [f"{c} {method_label(inputs.params, setting.method)}" for c in extra]
    rows = []
    for encoder in encoders:
        row = [encoder] + [_num(metrics[encoder][m], _metric_digits(m)) for m in PREDICTORS]
        row += [fid_with_interval(_value(fids, encoder, m, "FID"),
                                  noise.get((setting.model_key, m, setting.step, encoder))) for m in methods]
        row += [_num(_value(fids, encoder, setting.method, c), 3 if c in ("Precision", "Recall") else 2)
                for c in extra]
        rows.append(row)
    section.tables.append(Table(
        f"Encoders: properties and FID ({display_model(setting.model)}, step {setting.step})", columns, rows,
        note="LP: top-1 % of a linear probe on mean-pooled patch tokens; LDS/CDS/SRSS/RMSC: dataset means "
             "(higher = more spatial structure); FID ± half-width of its 95% interval (sampling noise); "
             "– = not available."))
    if "IS" not in extra:
        section.notes.append("No Inception Score in the evaluation (the fid-helper Inception weights have no logits); "
                             "IS columns are left out.")
    missing_srss = [e for e in encoders if metrics[e]["SRSS"] is None]
    if missing_srss:
        section.notes.append(f"SRSS is undefined for {len(missing_srss)} encoder(s) (no foreground masks).")
    section.notes.extend(subset_notes(inputs.stats.get("spatial_subsets") or {}, encoders))
    return section


def subset_notes(subsets: Mapping[str, Mapping[str, str]], encoders: Sequence[str]) -> list[str]:
    """One line per distinct image subset: which metric of which encoders it was computed on."""
    groups: dict[str, list[str]] = {}
    for encoder in encoders:
        for metric in SPATIAL:
            subset = subsets.get(encoder, {}).get(metric)
            if subset:
                groups.setdefault(subset, []).append(f"{metric} of {encoder}")
    notes = []
    for subset, uses in groups.items():
        metrics = sorted({use.split(" of ")[0] for use in uses}, key=SPATIAL.index)
        users = sorted({use.split(" of ")[1] for use in uses}, key=list(encoders).index)
        who = "all encoders" if len(users) == len(encoders) else ", ".join(users)
        notes.append(f"Images of {'/'.join(metrics)} ({who}): {subset}.")
    return notes


def method_section(inputs: Inputs, setting: Setting, encoders: Sequence[str], methods: Sequence[str]) -> Section:
    section = Section("methods", "iREPA versus REPA")
    baseline = baseline_method(inputs.params, methods)
    others = [m for m in methods if m != baseline]
    if not others or baseline is None:
        section.notes.append(f"Only one method ({', '.join(methods) or 'none'}) was trained: nothing to compare. "
                             "Add `irepa` to run_methods for this comparison.")
        return section
    fids = _fid_lookup(inputs, setting)
    records = []
    for method in others:
        for encoder in encoders:
            base = _value(fids, encoder, baseline, "FID")
            value = _value(fids, encoder, method, "FID")
            delta = float(value) - float(base) if _finite(base) and _finite(value) else math.nan
            records.append({"encoder": encoder, "method": method, "FID_base": float(base) if _finite(base) else math.nan,
                            "FID": float(value) if _finite(value) else math.nan, "delta": delta})
    comparison = pd.DataFrame(records)
    if comparison["delta"].notna().any():
        section.figures.append(Figure(
            "irepa_vs_repa", "iREPA versus REPA",
            f"FID per encoder with {method_label(inputs.params, baseline)} (circle) and each other method (diamond) "
            f"at {display_model(setting.model)}, step {setting.step}; the number is the change in FID.",
            method_comparison_figure(comparison, inputs.params, baseline, setting)))
    else:
        section.notes.append("No encoder has FIDs for both methods at this step.")
    rows = []
    for _, r in comparison.iterrows():
        pct = 100 * r["delta"] / r["FID_base"] if _finite(r["delta"]) and r["FID_base"] else math.nan
        rows.append([r["encoder"], method_label(inputs.params, r["method"]), _num(r["FID_base"], 2), _num(r["FID"], 2),
                     _num(r["delta"], 2) if not _finite(r["delta"]) else f"{r['delta']:+.2f}",
                     f"{pct:+.1f}%" if _finite(pct) else "–"])
    improved = comparison.dropna(subset=["delta"])
    summary = ", ".join(f"{method_label(inputs.params, m)} improves FID for {int((g['delta'] < 0).sum())} of {len(g)} "
                        f"encoders (median change {g['delta'].median():+.2f})"
                        for m, g in improved.groupby("method", sort=False))
    if summary:
        section.paragraphs.append(summary + ".")
    section.tables.append(Table(f"FID change against {method_label(inputs.params, baseline)}",
                                ["encoder", "method", f"FID {method_label(inputs.params, baseline)}", "FID",
                                 "change", "relative"], rows))
    return section


def across_table(inputs: Inputs, setting: Setting) -> pd.DataFrame:
    """Pearson r of each predictor against FID at every (model, step) of the correlated method: the statistics
    file's `by_setting`, else computed here from the table."""
    from scipy.stats import pearsonr

    by_setting = inputs.stats.get("by_setting")
    if isinstance(by_setting, list) and by_setting:
        records = []
        for entry in by_setting:
            if not isinstance(entry, Mapping) or str(entry.get("method")) != setting.method:
                continue
            for name in PREDICTORS:
                r = (entry.get("pearson_r") or {}).get(name)
                records.append({"model": display_model(entry.get("model", "?")), "step": entry.get("step"),
                                "predictor": name, "n": int((entry.get("n") or {}).get(name) or 0),
                                "r": float(r) if _finite(r) else math.nan,
                                "ci": _interval((entry.get("ci95_fisher") or {}).get(name))})
        if records:
            return pd.DataFrame(records)
    table = inputs.table
    if "method" in table.columns:
        table = table[table["method"] == setting.method]
    keys = [k for k in ("model", "step") if k in table.columns]
    if not keys:
        return pd.DataFrame(columns=["model", "step", "predictor", "n", "r"])
    records = []
    for group, part in table.groupby(keys, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        model = group[keys.index("model")] if "model" in keys else setting.model
        step = group[keys.index("step")] if "step" in keys else setting.step
        part = part.drop_duplicates(subset=["encoder"], keep="last")
        for name in PREDICTORS:
            pairs = part[[name, "FID"]].dropna() if name in part else pd.DataFrame()
            r = math.nan
            if len(pairs) >= 3 and pairs[name].std() > 0 and pairs["FID"].std() > 0:
                r = float(pearsonr(pairs[name], pairs["FID"]).statistic)
            records.append({"model": display_model(model), "step": int(step) if step is not None else None,
                            "predictor": name, "n": len(pairs), "r": r, "ci": fisher_interval(r, len(pairs))})
    return pd.DataFrame(records)


def dynamics_section(inputs: Inputs, setting: Setting, encoders: Sequence[str], methods: Sequence[str],
                     colors: Mapping[str, Any]) -> Section:
    section = Section("dynamics", "Training dynamics: FID over steps, r over steps and model sizes")
    curves = inputs.curves
    if curves.empty:
        section.notes.append("No per-run evaluation CSVs were given (--curves).")
    else:
        shown = [e for e in encoders if e in set(curves["encoder"])]
        section.figures.append(Figure(
            "fid_vs_step", "FID versus training step",
            "FID of every run at each evaluated checkpoint; one panel per encoder, one line per method.",
            curves_figure(curves, shown, [m for m in methods if m in set(curves["method"])], inputs.params)))
        if curves.groupby(["model", "encoder", "method"]).size().max() < 2:
            section.notes.append("Each run has a single evaluated checkpoint, so the curves are single points.")
    across = across_table(inputs, setting)
    combos = across[["model", "step"]].drop_duplicates() if not across.empty else across
    if len(combos) > 1:
        section.figures.append(Figure(
            "r_across_steps", "r across checkpoints and model sizes",
            f"Pearson r of each predictor against the FID of {method_label(inputs.params, setting.method)} at every "
            "evaluated checkpoint (x) and model size (panel); band: 95% Fisher-z interval.",
            across_figure(across)))
        wide = across.pivot_table(index=["model", "step"], columns="predictor", values="r", dropna=False)
        counts = across.groupby(["model", "step"])["n"].max()
        rows = [[str(m), f"{int(s):,}", str(int(counts.loc[(m, s)]))] +
                [fmt_value(wide.loc[(m, s)].get(p)) if p in wide.columns else "–" for p in PREDICTORS]
                for m, s in wide.index]
        section.tables.append(Table("Pearson r with FID per checkpoint and model size",
                                    ["model", "step", "n", *PREDICTORS], rows,
                                    note=f"Paper bounds across SiT-B/L/XL: LP |r| < "
                                         f"{published.ACROSS_SIZES_ABS_R['LP'][1]}, spatial |r| > "
                                         f"{published.ACROSS_SIZES_ABS_R['spatial'][1]}."))
    else:
        section.notes.append("One model size and one checkpoint in the table: r across steps or sizes needs more.")
    if any(record.get("entries") for record in inputs.train_logs):
        section.figures.append(Figure(
            "training_losses", "Training losses",
            "Denoising and alignment losses over training for every run (colour = encoder, line style = method).",
            training_figure(inputs.train_logs, colors, methods)))
    return section


def published_section(inputs: Inputs, setting: Setting, encoders: Sequence[str], methods: Sequence[str],
                      corr: Sequence[Correlation]) -> Section:
    section = Section("published", "Published numbers beside ours")
    paper = published.SETTING
    section.paragraphs.append(
        f"Paper setting: {paper['model']} + {paper['method']}, {paper['step']:,} steps, {paper['sampler']}. "
        f"Ours: {setting.describe()}. Absolute FIDs compare only when the settings match; the correlation signs "
        "and orderings are what a smaller study can reproduce.")
    section.tables.append(Table(
        "Pearson r with FID: paper versus ours",
        ["predictor", "paper r (27 encoders)", "our r", "our 95% CI (Fisher z)", "our n"],
        [[c.predictor, fmt_value(c.paper_r), fmt_value(c.r), fmt_value(c.fisher_ci, 2), str(c.n)] for c in corr]))
    fids = _fid_lookup(inputs, setting)
    lp = {e: inputs.table.loc[inputs.table["encoder"] == e, "LP"].dropna() for e in encoders} \
        if "LP" in inputs.table else {}
    shared = [e for e in encoders if published.published_encoder(e)]
    if shared:
        rows = []
        for encoder in shared:
            ref = published.published_encoder(encoder)
            ours_lp = lp.get(encoder)
            rows.append([encoder, ref.paper_name, _num(ref.lp, 1),
                         _num(ours_lp.iloc[0], 1) if ours_lp is not None and len(ours_lp) else "–",
                         _num(ref.fid, 2), _num(_value(fids, encoder, setting.method, "FID"), 2),
                         _num(ref.inception_score, 1), _num(_value(fids, encoder, setting.method, "IS"), 1),
                         ref.source + (f"; {ref.note}" if ref.note else "")])
        section.tables.append(Table(
            "Per-encoder numbers: paper (SiT-XL/2, REPA, 100K steps) versus ours",
            ["encoder", "paper name", "paper LP %", "our LP %", "paper FID", "our FID", "paper IS", "our IS",
             "source"], rows))
    else:
        section.notes.append("None of the configured encoders is among the paper's per-encoder numbers "
                             f"({', '.join(published.ENCODERS)}); only the r values compare.")
    ablation_rows = []
    defs = inputs.params.get("methods") or {}
    for method in methods:
        entry = defs.get(method) or {}
        row = published.ablation_row(entry.get("projector", "mlp"), entry.get("spatial_norm", "none"))
        if row is None:
            continue
        for encoder in encoders:
            if encoder in row.results:
                fid, inception, sfid = row.results[encoder]
                ablation_rows.append([encoder, method_label(inputs.params, method), row.label, _num(fid, 2),
                                      _num(_value(fids, encoder, method, "FID"), 2), _num(inception, 1),
                                      _num(_value(fids, encoder, method, "IS"), 1), _num(sfid, 2),
                                      _num(_value(fids, encoder, method, "sFID"), 2)])
    if ablation_rows:
        section.tables.append(Table(
            "Table 3 of the paper (iREPA components, SiT-XL/2, 100K steps) beside our runs",
            ["encoder", "our method", "paper row (matched by projector and spatial norm)", "paper FID", "our FID",
             "paper IS", "our IS", "paper sFID", "our sFID"], ablation_rows))
    else:
        section.notes.append("No configured (encoder, method) pair matches a cell of the paper's Table 3 "
                             f"(encoders {', '.join(published.ABLATION_ENCODERS)}).")
    return section


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
    fmt_h = lambda v: f"{v:.4f}" if _finite(v) else "–"  # noqa: E731
    section.tables.append(Table("Per stage", ["rule", "jobs", "wall hours", "CPU hours", "GPU hours", "max RSS (MB)"],
                                [[rule, str(int(r["jobs"])), fmt_h(r["wall_hours"]), fmt_h(r["cpu_hours"]),
                                  fmt_h(r["gpu_hours"]), _num(r["max_rss_mb"], 0)] for rule, r in by_stage.iterrows()]))
    if not totals.empty:
        section.tables.append(Table("Per encoder (all of its jobs)", ["encoder", "jobs", "wall hours", "CPU hours",
                                                                      "GPU hours"],
                                    [[e, str(int(r["jobs"])), fmt_h(r["wall_hours"]), fmt_h(r["cpu_hours"]),
                                      fmt_h(r["gpu_hours"])] for e, r in totals.iterrows()]))
    if unit == "wall_hours":
        section.notes.append("The study ran on the CPU (or declares no GPUs): GPU-hours are zero; wall-clock hours "
                             "are shown instead.")
    return section


def answer(corr: Sequence[Correlation]) -> list[str]:
    """The study's question answered in two sentences from our r values."""
    by_name = {c.predictor: c for c in corr}
    lp = by_name["LP"]
    spatial = [c for c in corr if c.predictor in SPATIAL and c.r is not None]
    if lp.r is None or not spatial:
        return ["Too few encoders with both a FID and the metrics to answer the question yet."]
    best = max(spatial, key=lambda c: abs(c.r))
    beats = [c.predictor for c in spatial if abs(c.r) > abs(lp.r)]
    text = [f"Linear-probe accuracy: |r| = {abs(lp.r):.2f} (paper 0.26). Spatial metrics: |r| from "
            f"{min(abs(c.r) for c in spatial):.2f} to {abs(best.r):.2f} (paper 0.85–0.89); the strongest is "
            f"{best.predictor}."]
    if len(beats) == len(spatial):
        text.append("Every spatial metric predicts FID more strongly than global semantics, as the paper reports.")
    elif beats:
        text.append(f"{', '.join(beats)} predict FID more strongly than linear probing; the others do not.")
    else:
        text.append("Here linear probing predicts FID at least as well as the spatial metrics, unlike the paper.")
    n = max(c.n for c in corr)
    if n < 10:
        text.append(f"With {n} encoders the intervals are wide; read the signs and orderings, not the magnitudes.")
    return text


def summary_lines(verdict: list[str], plain: list[str]) -> list[str]:
    """With a computed verdict, the plain answer keeps its numbers but not its sign-reading claim (the verdict
    decides whether the data resolve one)."""
    if not verdict or len(plain) < 2:
        return verdict + plain
    return verdict + [plain[0], *plain[2:]]


# ------------------------------------------------------------------------------------------------------------
# rendering: HTML (Jinja2, figures inline) and PDF (matplotlib PdfPages: figures plus table and text pages)

PAGE = (11.69, 8.27)  # A4 landscape, inches
TEXT_LINES_PER_PAGE = 46
TEXT_WIDTH = 125
CELL_CHARS = 72


def render_png(figure: Figure) -> None:
    buffer = io.BytesIO()
    figure.figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight", pad_inches=0.15)
    figure.png = buffer.getvalue()


def render_html(path: Path, context: Mapping[str, Any]) -> None:
    from importlib.resources import files

    import jinja2

    template_text = files("repabench").joinpath("templates/report.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    html = env.from_string(template_text).render(**context)
    from repabench.atomic import write_text

    write_text(path, html)


def _wrap(lines: Iterable[str], width: int = TEXT_WIDTH) -> list[str]:
    import textwrap

    out: list[str] = []
    for line in lines:
        out += textwrap.wrap(line, width, subsequent_indent="    ", replace_whitespace=False,
                             drop_whitespace=False) or [""]
    return out


def text_pages(title: str, lines: Sequence[str], *, mono: bool = False) -> Iterator[Any]:
    """Pages of wrapped text; the title repeats on continuation pages."""
    plt = _plt()
    wrapped = _wrap(lines, TEXT_WIDTH if not mono else 140)
    chunks = [wrapped[i:i + TEXT_LINES_PER_PAGE] for i in range(0, max(len(wrapped), 1), TEXT_LINES_PER_PAGE)]
    for k, chunk in enumerate(chunks):
        fig = plt.figure(figsize=PAGE)
        heading = title if k == 0 else f"{title} (continued)"
        fig.text(0.05, 0.95, heading, fontsize=14, weight="bold", va="top")
        fig.text(0.05, 0.89, "\n".join(chunk), fontsize=8.5 if mono else 10, va="top",
                 family="monospace" if mono else "sans-serif", linespacing=1.35)
        yield fig


def table_pages(title: str, table: Table) -> Iterator[Any]:
    """A table across as many landscape pages as its rows need (header repeated)."""
    plt = _plt()
    rows = [[cell if len(cell) <= CELL_CHARS else cell[: CELL_CHARS - 1] + "…" for cell in row] for row in table.rows]
    rows = rows or [["(no rows)"] + [""] * (len(table.columns) - 1)]
    widths = np.array([max([len(str(c)) for c in [table.columns[j]] + [r[j] for r in rows]] + [3])
                       for j in range(len(table.columns))], float)
    widths = np.minimum(widths, CELL_CHARS) + 2  # cell padding
    total_chars = widths.sum()
    font = float(np.clip(1300 / total_chars, 5.5, 10))
    # one character of the table font (bold headers included) is about 0.64 em wide
    scale = min(0.92, total_chars * font * 0.64 / 72 / PAGE[0])
    row_height = font * 2.0 / 72 / PAGE[1]
    per_page = max(5, int(0.76 / row_height) - 1)
    chunks = [rows[i:i + per_page] for i in range(0, len(rows), per_page)]
    for k, chunk in enumerate(chunks):
        fig = plt.figure(figsize=PAGE)
        suffix = f" (part {k + 1} of {len(chunks)})" if len(chunks) > 1 else ""
        fig.text(0.04, 0.95, f"{title}{suffix}", fontsize=13, weight="bold", va="top")
        fig.text(0.04, 0.905, table.title, fontsize=11, va="top")
        height = row_height * (len(chunk) + 1)
        ax = fig.add_axes([0.04, 0.86 - height, scale, height])
        ax.axis("off")
        mpl_table = ax.table(cellText=chunk, colLabels=table.columns, bbox=[0, 0, 1, 1], cellLoc="right",
                             colLoc="center", colWidths=list(widths / total_chars))
        mpl_table.auto_set_font_size(False)
        mpl_table.set_fontsize(font)
        for (r, c), cell in mpl_table.get_celld().items():
            cell.set_linewidth(0.4)
            if r == 0:
                cell.set_facecolor("#e8e8e8")
                cell.set_text_props(weight="bold")
            if c == 0 or len(cell.get_text().get_text()) > 30:
                cell.set_text_props(ha="left")
                cell.PAD = 0.02
        if table.note and k == len(chunks) - 1:
            fig.text(0.04, 0.86 - height - 0.02, "\n".join(_wrap([table.note], 150)), fontsize=9, va="top",
                     color="0.3")
        yield fig


def pdf_pages(context: Mapping[str, Any], sections: Sequence[Section]) -> Iterator[tuple[Any, bool]]:
    """(matplotlib figure, is_report_figure) for every PDF page, in order; text and table pages are made
    one at a time so that the caller can close each after saving it."""
    summary = [f"Study: {context['name']}", f"Correlated setting: {context['setting']}",
               f"Encoders: {context['n_encoders']}, methods: {context['n_methods']}, code: {context['code_sha']}", ""]
    summary += context["answer"] + [""]
    for section in sections:
        if section.paragraphs or section.notes:
            summary.append(f"{section.title}:")
            summary += [f"  {p}" for p in section.paragraphs] + [f"  Note: {n}" for n in section.notes]
    yield from ((p, False) for p in text_pages(context["title"], summary))
    for section in sections:
        yield from ((f.figure, True) for f in section.figures)
        for table in section.tables:
            yield from ((p, False) for p in table_pages(section.title, table))
        for title, text in section.blocks:
            yield from ((p, False) for p in text_pages(f"{section.title}: {title}", text.splitlines(), mono=True))


def render_pdf(path: Path, context: Mapping[str, Any], sections: Sequence[Section]) -> int:
    from matplotlib.backends.backend_pdf import PdfPages

    from repabench.atomic import atomic_path

    plt = _plt()
    count = 0
    with atomic_path(path) as tmp:
        metadata = {"Title": f"{context['title']} ({context['name']})", "Creator": "repabench report",
                    "CreationDate": None}
        with PdfPages(tmp, metadata=metadata) as pdf:
            for fig, is_report_figure in pdf_pages(context, sections):
                pdf.savefig(fig, bbox_inches="tight" if is_report_figure else None)
                count += 1
                if not is_report_figure:
                    plt.close(fig)
    return count


def write_figures(directory: Path, sections: Sequence[Section]) -> None:
    from repabench.atomic import atomic_path

    with atomic_path(directory, directory=True) as tmp:
        index = []
        for section in sections:
            for figure in section.figures:
                (tmp / f"{figure.name}.png").write_bytes(figure.png)
                index.append({"file": f"{figure.name}.png", "title": figure.title, "caption": figure.caption,
                              "section": section.title})
        (tmp / "figures.json").write_text(json.dumps(index, indent=2) + "\n")


# ------------------------------------------------------------------------------------------------------------
# the stage


def zscore_alpha(params: Mapping[str, Any]) -> float:
    """alpha of the first z-score method of the config (upstream LDM default 0.6 when none has one)."""
    for entry in (params.get("methods") or {}).values():
        if entry.get("spatial_norm") == "zscore":
            return float(entry.get("alpha", 0.6))
    return 0.6


def spatialnorm_section(inputs: Inputs, encoders: Sequence[str]) -> Section | None:
    from repabench.spnorm_viz import cosine_maps, first_image_tokens, spatialnorm_figure

    present = [e for e in encoders if e in inputs.features] or sorted(inputs.features)
    if not present:
        return None
    alpha = zscore_alpha(inputs.params)
    maps = {e: cosine_maps(first_image_tokens(inputs.features[e]), alpha) for e in present}
    section = Section("spatialnorm", "What the spatial normalisation does to the targets")
    section.figures.append(Figure(
        "spatialnorm", "Token similarity with and without spatial normalisation",
        "First held-out image: cosine similarity of every patch token to the centre token (red x), on the raw "
        f"encoder tokens and after iREPA's z-score over tokens (alpha {alpha:g}), as upstream's "
        "scripts/viz_spatialnorm.py shows it.", spatialnorm_figure(maps, alpha)))
    return section


def build_sections(inputs: Inputs) -> tuple[dict[str, Any], list[Section]]:
    from repabench.provenance import code_version

    setting = resolve_setting(inputs.params, inputs.stats, inputs.table)
    encoders = encoder_order(inputs.params, inputs.table, inputs.curves)
    methods = method_order(inputs.params, inputs.table, inputs.curves)
    if setting.method not in methods:
        raise SystemExit(f"report.method {setting.method!r} is not among the methods of the inputs ({methods}); "
                         "set report.method to a trained method")
    colors = encoder_colors(encoders)
    correlation, corr = correlation_section(inputs, setting, colors)
    from repabench.report_controls import controls_section, noise_section, verdict_lines

    sections = [
        correlation,
        noise_section(inputs, setting, methods),
        controls_section(inputs, setting, methods),
        encoder_section(inputs, setting, encoders, methods),
        method_section(inputs, setting, encoders, methods),
        dynamics_section(inputs, setting, encoders, methods, colors),
        published_section(inputs, setting, encoders, methods, corr),
        provenance_section(inputs, setting),
        compute_section(inputs),
    ]
    spatialnorm = spatialnorm_section(inputs, encoders)
    if spatialnorm is not None:
        sections.insert(2, spatialnorm)
    if inputs.published_numbers:
        from repabench.report_published_runs import published_runs_section

        sections.insert(7, published_runs_section(inputs, setting, encoders, methods, corr))
    report = inputs.params.get("report") or {}
    sha = code_version().get("git_sha")
    context = {
        "title": report.get("title") or "What matters for representation alignment",
        "name": inputs.params.get("name", "study"),
        "setting": setting.describe(),
        "n_encoders": len(encoders),
        "n_methods": len(methods),
        "code_sha": sha[:12] if sha else "unknown",
        "answer": summary_lines(verdict_lines(inputs.stats), answer(corr)),
        "sections": sections,
    }
    return context, sections


def report_main(argv: list[str]) -> int:
    from repabench.params import load_params, setup, stage_parser

    parser = stage_parser("report", "render the HTML and PDF report from the correlation table and statistics")
    parser.add_argument("--table", required=True, help="results/correlate/table.csv")
    parser.add_argument("--stats", required=True, help="results/correlate/correlation.json")
    parser.add_argument("--curves", nargs="*", default=[],
                        help="per-run CSVs results/eval/{model}/{encoder}/{method}/{sampler}.csv")
    parser.add_argument("--train-logs", nargs="*", default=[], help="results/train/{model}/{encoder}/{method}/log.json")
    parser.add_argument("--benchmarks-dir", default=None, help="Snakemake benchmark TSVs: <dir>/<rule>/<wildcards>.tsv")
    parser.add_argument("--weights-dir", default=None, help="weights with their *.sha256.json sidecars")
    parser.add_argument("--out-html", required=True)
    parser.add_argument("--out-pdf", required=True)
    parser.add_argument("--figures-dir", required=True, help="directory for the figures as PNG files")
    parser.add_argument("--params", default=None, help="config sections (JSON or file): report, models, encoders, ...")
    parser.add_argument("--features", nargs="*", default=[],
                        help="held-out feature stores results/features/{encoder}/heldout (spatial-norm figure)")
    parser.add_argument("--published-numbers", nargs="*", default=[],
                        help="the authors' per-encoder numbers (paper_numbers stage) when checkpoints are imported")
    args = parser.parse_args(argv)
    setup(args)
    params = load_params(args.params)
    from repabench.integrity import read_result as read_json

    try:
        stats = read_json(args.stats)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"--stats: {exc}") from None
    if not isinstance(stats, dict):
        raise SystemExit(f"--stats {args.stats}: expected a JSON object; rerun the correlate stage")
    table = read_table(args.table, stats.get("fid_columns"))
    curves = read_curves(args.curves)
    encoders = encoder_order(params, table, curves)
    inputs = Inputs(
        params=params,
        table=table,
        stats=stats,
        curves=curves,
        train_logs=read_train_logs(args.train_logs),
        benchmarks=read_benchmarks(args.benchmarks_dir, encoders, params),
        weights=read_weight_sidecars(args.weights_dir),
        eval_provenance=eval_provenances(args.curves),
        input_paths=[args.table, args.stats, *args.curves, *args.train_logs, *args.published_numbers],
        published_numbers=read_json(args.published_numbers[0]) if args.published_numbers else {},
        features={Path(path).parent.name: path for path in args.features},
    )
    log.info("report: %d table rows, %d encoders, %d curve rows, %d training logs, %d benchmark files, %d weights",
             len(table), len(encoders), len(curves), len(inputs.train_logs), len(inputs.benchmarks),
             len(inputs.weights))
    context, sections = build_sections(inputs)
    for section in sections:
        for figure in section.figures:
            render_png(figure)
    write_figures(Path(args.figures_dir), sections)
    render_html(Path(args.out_html), context)
    pages = render_pdf(Path(args.out_pdf), context, sections)
    plt = _plt()
    for section in sections:
        for figure in section.figures:
            plt.close(figure.figure)
    log.info("wrote %s, %s (%d pages) and %d figures in %s", args.out_html, args.out_pdf, pages,
             sum(len(s.figures) for s in sections), args.figures_dir)
    return 0
