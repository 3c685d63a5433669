"""The report's correlation section and its one-paragraph answer: the statistics of the correlate stage
(`repabench.stats`), laid out beside the paper's. Nothing here computes a statistic."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd

from repabench import published
from repabench.columns import PREDICTORS, SPATIAL
from repabench.report.figures import correlation_figure
from repabench.report.inputs import setting_rows
from repabench.report.model import (Figure, Inputs, Section, Setting, Table, as_interval, display_model,
                                    fmt_value, is_finite)


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
    note: str = ""

    @property
    def paper_r(self) -> float | None:
        return published.CORRELATION_R.get(self.predictor)


def correlations(stats: Mapping[str, Any], rows: pd.DataFrame) -> list[Correlation]:
    """Pearson/Spearman of each predictor against FID, as the correlate stage computed them (its `predictors`
    block, keys of `repabench.stats.correlate_pair`); `rows` only count the encoders a predictor lacks a block for."""
    blocks = stats.get("predictors") if isinstance(stats.get("predictors"), Mapping) else {}
    result = []
    for name in PREDICTORS:
        block = blocks.get(name) if isinstance(blocks.get(name), Mapping) else {}
        n = int(block["n"]) if block.get("n") is not None else (
            len(rows[[name, "FID"]].dropna()) if name in rows.columns else 0)
        r = block.get("pearson_r")
        entry = Correlation(
            predictor=name,
            n=n,
            r=float(r) if is_finite(r) else None,
            fisher_ci=as_interval(block.get("ci95_fisher")),
            bootstrap_ci=as_interval(block.get("ci95_bootstrap")),
            p_value=block.get("pearson_p"),
            spearman=block.get("spearman_rho"),
            spearman_p=block.get("spearman_p"),
            note=str(block.get("reason") or ""),
        )
        if entry.r is None and not entry.note:
            entry.note = (f"undefined: {n} encoder(s) with a value" if n < 3 else
                          "undefined: no variation across encoders")
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
        diff, ci = entry.get("abs_r_diff"), as_interval(entry.get("ci95_bootstrap"))
        if ci and ci[0] > 0:
            verdict = "yes"
        elif ci and ci[1] < 0:
            verdict = "no, LP is"
        elif is_finite(diff):
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


def across_table(stats: Mapping[str, Any], setting: Setting) -> pd.DataFrame:
    """Pearson r of each predictor against FID at every (model, step) of the correlated method: the statistics
    file's `by_setting`."""
    records = []
    for entry in stats.get("by_setting") or []:
        if not isinstance(entry, Mapping) or str(entry.get("method")) != setting.method:
            continue
        for name in PREDICTORS:
            r = (entry.get("pearson_r") or {}).get(name)
            records.append({"model": display_model(entry["model"]), "step": entry.get("step"),
                            "predictor": name, "n": int((entry.get("n") or {}).get(name) or 0),
                            "r": float(r) if is_finite(r) else math.nan,
                            "ci": as_interval((entry.get("ci95_fisher") or {}).get(name))})
    return pd.DataFrame(records, columns=["model", "step", "predictor", "n", "r", "ci"])


def _paper_spatial_range() -> str:
    values = [abs(published.CORRELATION_R[name]) for name in SPATIAL]
    return f"{min(values):.2f}–{max(values):.2f}"


def correlation_sentences(corr: Sequence[Correlation]) -> list[str]:
    """The study's question answered in two sentences from our r values."""
    by_name = {c.predictor: c for c in corr}
    lp = by_name["LP"]
    spatial = [c for c in corr if c.predictor in SPATIAL and c.r is not None]
    if lp.r is None or not spatial:
        return ["Too few encoders with both a FID and the metrics to answer the question yet."]
    best = max(spatial, key=lambda c: abs(c.r))
    beats = [c.predictor for c in spatial if abs(c.r) > abs(lp.r)]
    paper_lp = abs(published.CORRELATION_R["LP"])
    text = [f"Linear-probe accuracy: |r| = {abs(lp.r):.2f} (paper {paper_lp:.2f}). Spatial metrics: |r| from "
            f"{min(abs(c.r) for c in spatial):.2f} to {abs(best.r):.2f} (paper {_paper_spatial_range()}); the "
            f"strongest is {best.predictor}."]
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


