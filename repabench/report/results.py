"""The report's result sections: per-encoder results, the methods against the baseline method, training
dynamics, the paper's numbers beside ours, and what the spatial normalisation does to the targets."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from repabench import published
from repabench.columns import PREDICTORS, SPATIAL
from repabench.report.controls import fid_with_interval, noise_lookup
from repabench.report.correlation import Correlation, across_table
from repabench.report.figures import across_figure, curves_figure, method_comparison_figure, training_figure
from repabench.report.inputs import setting_rows
from repabench.sizes import model_family
from repabench.report.model import (PREDICTOR_DIGITS, Figure, Inputs, Section, Setting, Table, display_model, fixed,
                                    fmt_value, is_finite, method_label)


def fid_rows(inputs: Inputs, setting: Setting) -> dict[tuple[str, str], pd.Series]:
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
                if is_finite(row.get("FID")):
                    found[(row["encoder"], method)] = row
    return found


def cell_value(found: Mapping[tuple[str, str], pd.Series], encoder: str, method: str, column: str) -> Any:
    row = found.get((encoder, method))
    return None if row is None else row.get(column)


def encoder_section(inputs: Inputs, setting: Setting, encoders: Sequence[str], methods: Sequence[str]) -> Section:
    section = Section("encoders", "Per-encoder results")
    fids = fid_rows(inputs, setting)
    noise = noise_lookup(inputs.stats)
    metrics = {}
    for encoder in encoders:
        part = inputs.table[inputs.table["encoder"] == encoder]
        metrics[encoder] = {m: (part[m].dropna().iloc[0] if m in part and part[m].notna().any() else None)
                            for m in PREDICTORS}
    columns = ["encoder", *PREDICTORS] + [f"FID {method_label(inputs.params, m)}" for m in methods]
    extra = [c for c in ("sFID", "IS", "Precision", "Recall")
             if any(is_finite(cell_value(fids, e, setting.method, c)) for e in encoders)]
    columns += [f"{c} {method_label(inputs.params, setting.method)}" for c in extra]
    rows = []
    for encoder in encoders:
        row = [encoder] + [fixed(metrics[encoder][m], PREDICTOR_DIGITS[m]) for m in PREDICTORS]
        row += [fid_with_interval(cell_value(fids, encoder, m, "FID"),
                                  noise.get((setting.model_key, m, setting.step, encoder))) for m in methods]
        row += [fixed(cell_value(fids, encoder, setting.method, c), 3 if c in ("Precision", "Recall") else 2)
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
    baseline = setting.method  # the method correlate compares every other one with (methods_vs_baseline)
    others = [m for m in methods if m != baseline]
    if not others:
        section.notes.append(f"Only one method ({', '.join(methods) or 'none'}) was trained: nothing to compare. "
                             "Add `irepa` to run_methods for this comparison.")
        return section
    fids = fid_rows(inputs, setting)
    records = []
    for method in others:
        for encoder in encoders:
            base = cell_value(fids, encoder, baseline, "FID")
            value = cell_value(fids, encoder, method, "FID")
            delta = float(value) - float(base) if is_finite(base) and is_finite(value) else math.nan
            records.append({"encoder": encoder, "method": method, "FID_base": float(base) if is_finite(base) else math.nan,
                            "FID": float(value) if is_finite(value) else math.nan, "delta": delta})
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
        pct = 100 * r["delta"] / r["FID_base"] if is_finite(r["delta"]) and r["FID_base"] else math.nan
        rows.append([r["encoder"], method_label(inputs.params, r["method"]), fixed(r["FID_base"], 2), fixed(r["FID"], 2),
                     fixed(r["delta"], 2) if not is_finite(r["delta"]) else f"{r['delta']:+.2f}",
                     f"{pct:+.1f}%" if is_finite(pct) else "–"])
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
    across = across_table(inputs.stats, setting)
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
        ["predictor", f"paper r ({published.N_ENCODERS_LABEL})", "our r", "our 95% CI (Fisher z)", "our n"],
        [[c.predictor, fmt_value(c.paper_r), fmt_value(c.r), fmt_value(c.fisher_ci, 2), str(c.n)] for c in corr]))
    fids = fid_rows(inputs, setting)
    lp = {e: inputs.table.loc[inputs.table["encoder"] == e, "LP"].dropna() for e in encoders} \
        if "LP" in inputs.table else {}
    shared = [e for e in encoders if published.published_encoder(e)]
    if shared:
        rows = []
        for encoder in shared:
            ref = published.published_encoder(encoder)
            ours_lp = lp.get(encoder)
            rows.append([encoder, ref.paper_name, fixed(ref.lp, 1),
                         fixed(ours_lp.iloc[0], 1) if ours_lp is not None and len(ours_lp) else "–",
                         fixed(ref.fid, 2), fixed(cell_value(fids, encoder, setting.method, "FID"), 2),
                         fixed(ref.inception_score, 1), fixed(cell_value(fids, encoder, setting.method, "IS"), 1),
                         ref.source + (f"; {ref.note}" if ref.note else "")])
        section.tables.append(Table(
            f"Per-encoder numbers: paper ({published.SETTING_LABEL}) versus ours",
            ["encoder", "paper name", "paper LP %", "our LP %", "paper FID", "our FID", "paper IS", "our IS",
             "source"], rows))
    else:
        section.notes.append("None of the configured encoders is among the paper's per-encoder numbers "
                             f"({', '.join(published.ENCODERS)}); only the r values compare.")
    ablation_rows = []
    defs = inputs.params.get("methods") or {}
    for method in methods:
        entry = defs.get(method) or {}
        if entry.get("end_to_end"):  # REPA-E runs compare with Table 2a (repae_table), not Table 3
            continue
        row = published.ablation_row(entry.get("projector", "mlp"), entry.get("spatial_norm", "none"))
        if row is None:
            continue
        for encoder in encoders:
            if encoder in row.results:
                fid, inception, sfid = row.results[encoder]
                ablation_rows.append([encoder, method_label(inputs.params, method), row.label, fixed(fid, 2),
                                      fixed(cell_value(fids, encoder, method, "FID"), 2), fixed(inception, 1),
                                      fixed(cell_value(fids, encoder, method, "IS"), 1), fixed(sfid, 2),
                                      fixed(cell_value(fids, encoder, method, "sFID"), 2)])
    if ablation_rows:
        section.tables.append(Table(
            f"Table 3 of the paper (iREPA components, {published.MODEL_STEPS_LABEL}) beside our runs",
            ["encoder", "our method", "paper row (matched by projector and spatial norm)", "paper FID", "our FID",
             "paper IS", "our IS", "paper sFID", "our sFID"], ablation_rows))
    else:
        section.notes.append("No configured (encoder, method) pair matches a cell of the paper's Table 3 "
                             f"(encoders {', '.join(published.ABLATION_ENCODERS)}).")
    if model_family(setting.model) == "meanflow":
        section.tables.extend(meanflow_table(inputs, setting, encoders, methods, fids))
    repae = repae_table(defs, encoders, methods, fids)
    if repae is not None:
        section.tables.append(repae)
    return section


def meanflow_table(inputs: Inputs, setting: Setting, encoders: Sequence[str], methods: Sequence[str],
                   fids: Mapping[tuple[str, str], pd.Series]) -> list[Table]:
    """Table 2b's cells of the report's MeanFlow runs at their sampler's NFE and CFG scale (none if none match)."""
    sampler = (inputs.params.get("samplers") or {}).get(setting.sampler) or {}
    nfe, cfg_scale = sampler.get("steps"), sampler.get("cfg_scale", 1.0)
    defs = inputs.params.get("methods") or {}
    rows = []
    for method in methods:
        entry = defs.get(method) or {}
        for encoder in encoders:
            cell = published.meanflow_result(encoder, entry.get("projector", "mlp"),
                                             entry.get("spatial_norm", "none"), nfe or 0, cfg_scale)
            if cell is not None:
                rows.append([encoder, method_label(inputs.params, method), fixed(cell[1], 1),
                             fixed(cell_value(fids, encoder, method, "FID"), 2), fixed(cell[0], 1),
                             fixed(cell_value(fids, encoder, method, "IS"), 1)])
    if not rows:
        return []
    return [Table(f"{published.MEANFLOW_SETTING_LABEL} beside our runs ({nfe} NFE, CFG {cfg_scale:g})",
                  ["encoder", "our method", "paper FID", "our FID", "paper IS", "our IS"], rows)]


def repae_table(defs: Mapping[str, Any], encoders: Sequence[str], methods: Sequence[str],
                fids: Mapping[tuple[str, str], pd.Series]) -> Table | None:
    """Table 2a (REPA-E / iREPA-E) beside our end-to-end runs, where encoder and method match a cell."""
    rows = []
    for method in methods:
        column = published.repae_column(defs.get(method) or {})
        for encoder in encoders if column else ():
            paper = published.REPAE_TABLE[column].get(encoder)
            if paper is not None:
                digits = {"IS": 1, "Precision": 3, "Recall": 3}
                rows.append([encoder, method, column] + [
                    f"{fixed(value, digits.get(name, 2))} / {fixed(cell_value(fids, encoder, method, name), digits.get(name, 2))}"
                    for name, value in zip(published.REPAE_COLUMNS, paper)])
    if not rows:
        return None
    return Table(f"Table 2a of the paper (end-to-end VAE tuning, {published.MODEL_STEPS_LABEL}): paper / ours",
                 ["encoder", "our method", "paper column", *published.REPAE_COLUMNS], rows)


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


