"""The report's figures (matplotlib, Agg): each function returns a matplotlib figure; the stage renders it as
PNG, inlines it in the HTML and adds it to the PDF."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from repabench import published
from repabench.columns import PREDICTORS
from repabench.report.model import Setting, display_model, is_finite, method_label

if TYPE_CHECKING:
    from repabench.report.correlation import Correlation

AXIS_LABELS = {
    "LP": "Linear-probe top-1 accuracy (%)",
    "LDS": "LDS (cosine, near minus far)",
    "CDS": "CDS (cosine decay per grid step)",
    "SRSS": "SRSS (cosine, fg-near minus bg-far)",
    "RMSC": "RMSC (RMS token contrast, unitless)",
    "FID": "FID (lower is better)",
}


def pyplot():
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
    plt = pyplot()
    cmap = plt.get_cmap("tab10" if len(encoders) <= 10 else "tab20")
    return {e: cmap(i % cmap.N) for i, e in enumerate(encoders)}


def method_colors(methods: Sequence[str]) -> dict[str, Any]:
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
    return {m: palette[i % len(palette)] for i, m in enumerate(methods)}


def shorten(encoder: str, width: int = 22) -> str:
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
    plt = pyplot()
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
            ax.annotate(shorten(row["encoder"], 30), (row[name], row["FID"]), xytext=(4, 3), textcoords="offset points",
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
    ax.bar(pos + 0.2, paper, 0.4, color="0.7", label=f"paper ({published.N_ENCODERS_LABEL}, {published.SETTING['model']})")
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
    plt = pyplot()
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
            if not (is_finite(row["FID_base"]) and is_finite(row["FID"])):
                continue
            ax.plot([row["FID_base"], row["FID"]], [y, y], color="0.6", linewidth=1.5, zorder=1)
            ax.annotate(f"{row['delta']:+.2f}", (max(row["FID_base"], row["FID"]), y), xytext=(6, -3),
                        textcoords="offset points", fontsize=8,
                        color="#2a7a2a" if row["delta"] < 0 else "#b22222")
        ax.scatter(part["FID_base"], ypos, s=50, color=colors[baseline], zorder=3,
                   label=method_label(params, baseline))
        ax.scatter(part["FID"], ypos, s=50, color=colors[method], marker="D", zorder=3,
                   label=method_label(params, method))
        ax.set_yticks(ypos, [shorten(e, 32) for e in encoders])
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
    plt = pyplot()
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
        ax.set_title(shorten(encoder, 34))
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
    plt = pyplot()
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
    plt = pyplot()
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
    handles = [Line2D([], [], color=colors.get(e, "0.3"), label=shorten(e, 30)) for e in shown]
    handles += [Line2D([], [], color="black", linestyle=styles[m], label=f"method: {m}") for m in methods
                if m in styles]
    fig.legend(handles=handles, loc="outside right center", fontsize=7 if len(handles) > 14 else 8,
               ncols=2 if len(handles) > 24 else 1)
    fig.suptitle("Training losses (window means from the training logs)", fontsize=12)
    return fig


def compute_figure(by_stage: pd.DataFrame, by_encoder: pd.DataFrame, unit: str):
    """Hours per stage and per encoder (stacked by stage) from Snakemake benchmark files."""
    plt = pyplot()
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
        names = [shorten(e, 28) for e in by_encoder.index][::-1]
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


