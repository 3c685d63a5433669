"""Report section for studies run on the authors' published checkpoints and features (`published` source).

Beside each of our numbers it puts the authors' own number for the same checkpoint or encoder (their published
`stats/fid/*.csv` and `stats/lp/*/metrics.json`, else the project-page values of `repabench.published`) and the
difference ours - theirs: our ADM-exact FID of their checkpoint against the FID they report, their LP accuracy,
and each predictor's Pearson r against the paper's.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from repabench import published
from repabench.report.correlation import Correlation
from repabench.report.model import Inputs, Section, Setting, Table, fixed, fmt_value, is_finite, method_label
from repabench.report.results import cell_value, fid_rows


def _diff(ours: Any, theirs: Any, digits: int) -> str:
    if not (is_finite(ours) and is_finite(theirs)):
        return "–"
    return f"{float(ours) - float(theirs):+.{digits}f}"


def _theirs(numbers: Mapping[str, Any], encoder: str, key: str) -> tuple[Any, str]:
    """The authors' value from their published files, else from the project page; with its source."""
    entry = (numbers.get("encoders") or {}).get(encoder) or {}
    if is_finite(entry.get(key)):
        return entry[key], "stats/fid" if key != "LP" else "stats/lp"
    ref = published.published_encoder(encoder)
    page = {"FID": getattr(ref, "fid", None), "IS": getattr(ref, "inception_score", None),
            "sFID": getattr(ref, "sfid", None), "LP": getattr(ref, "lp", None)}.get(key)
    return page, ("project page" if is_finite(page) else "")


def _ours(inputs: Inputs, setting: Setting, fids: Mapping[tuple[str, str], Any], encoder: str, method: str,
          column: str) -> Any:
    """Our value at the report's setting: the correlation table's row, else the run's metrics curve."""
    value = cell_value(fids, encoder, method, column)
    curves = inputs.curves
    if is_finite(value) or curves.empty or column not in curves:
        return value
    rows = curves[(curves["encoder"] == encoder) & (curves["method"] == method)
                  & (curves["model_key"] == setting.model_key)]
    if setting.step is not None:
        rows = rows[rows["Steps"] == setting.step]
    values = rows[column].dropna()
    return values.iloc[-1] if len(values) else None


def published_runs_section(inputs: Inputs, setting: Setting, encoders: Sequence[str], methods: Sequence[str],
                           corr: Sequence[Correlation]) -> Section:
    numbers = inputs.published_numbers
    section = Section("published-runs", "The authors' checkpoints: their numbers and ours")
    imported = [r for r in inputs.train_logs if r.get("source") == "published"]
    section.paragraphs.append(
        f"{len(imported)} runs use the authors' published checkpoints (imported, not trained here); their FID "
        f"is the authors' own value at {numbers.get('step', '?'):,} steps from their published files, ours is "
        f"ADM-exact evaluation of the same checkpoint ({setting.describe()}). Differences are ours - theirs.")
    fids = fid_rows(inputs, setting)
    rows = []
    for encoder in encoders:
        for method in methods:
            ours = {k: _ours(inputs, setting, fids, encoder, method, k) for k in ("FID", "sFID", "IS")}
            theirs, source = _theirs(numbers, encoder, "FID") if method == setting.method else (None, "")
            their_is, _ = _theirs(numbers, encoder, "IS") if method == setting.method else (None, "")
            if not any(is_finite(v) for v in (*ours.values(), theirs)):
                continue
            rows.append([encoder, method_label(inputs.params, method), fixed(theirs, 2), fixed(ours["FID"], 2),
                         _diff(ours["FID"], theirs, 2), fixed(their_is, 1), fixed(ours["IS"], 1),
                         _diff(ours["IS"], their_is, 1), fixed(ours["sFID"], 2), source or "–"])
    section.tables.append(Table(
        "FID of the published checkpoints: the authors' versus our ADM evaluation",
        ["encoder", "method", "their FID", "our FID", "Δ FID", "their IS", "our IS", "Δ IS", "our sFID",
         "their source"], rows,
        note="The authors' numbers are for the method the correlation uses (report.method)."))
    lp_rows = []
    table = inputs.table
    for encoder in encoders:
        ours = table.loc[table["encoder"] == encoder, "LP"].dropna() if "LP" in table else []
        ours_value = ours.iloc[0] if len(ours) else None
        theirs, source = _theirs(numbers, encoder, "LP")
        lp_rows.append([encoder, fixed(theirs, 1), fixed(ours_value, 1), _diff(ours_value, theirs, 1), source or "–"])
    section.tables.append(Table("Linear-probe accuracy (%): the authors' versus the study's", [
        "encoder", "their LP", "study LP", "Δ", "their source"], lp_rows,
        note="With published.probe = published the study's LP is the authors' file itself (Δ = 0 by design)."))
    section.tables.append(Table(
        f"Pearson r with FID: the paper ({published.N_ENCODERS_LABEL}) versus these encoders",
        ["predictor", "paper r", "our r", "Δ r", "our n"],
        [[c.predictor, fmt_value(c.paper_r), fmt_value(c.r), _diff(c.r, c.paper_r, 3), str(c.n)] for c in corr]))
    missing = [e for e in encoders if not is_finite(_theirs(numbers, e, "FID")[0])]
    if missing:
        section.notes.append(f"No published FID of the authors for {', '.join(missing)} "
                             "(add its stats/fid CSV to published.paper_fid).")
    return section
