"""Report sections on what the numbers resolve: learning against the untrained generator, the FID noise floor
of every comparison, the controlled comparison of each encoder with its spatial variants, and the verdict.

Everything here is read from correlation.json (the correlate stage computes it, repabench.verdict); this module
only lays it out.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from repabench.columns import PREDICTORS
from repabench.report.model import (PREDICTOR_DIGITS, Inputs, Section, Setting, Table, display_model, fixed, is_finite,
                                    method_label)
from repabench.sizes import model_slug
from repabench.verdict import Z95


def fid_with_interval(fid: Any, sd: Any) -> str:
    """"312.4 ± 6.1" (half-width of the 95% interval), or the bare FID when its noise is unknown."""
    if not is_finite(fid):
        return "–"
    return f"{float(fid):.2f} ± {Z95 * float(sd):.2f}" if is_finite(sd) else f"{float(fid):.2f}"


def noise_lookup(stats: Mapping[str, Any]) -> dict[tuple[str, str, int, str], float | None]:
    """(model key, method, step, encoder) -> SD of that FID's sampling noise."""
    return {(model_slug(r["model"]), str(r["method"]), int(r["step"]), str(r["encoder"])): r.get("sd")
            for r in stats.get("fid_noise") or []}


def _resolved(flag: Any) -> str:
    return {True: "yes", False: "no (within the floor)"}.get(flag, "– (no noise estimate)")


def verdict_lines(stats: Mapping[str, Any]) -> list[str]:
    """The report's summary, from the computed verdict (empty when correlate predates it)."""
    verdict = stats.get("verdict")
    if not verdict:
        return []
    lines = [f"Do the spatial metrics predict FID better than linear probing, at this scale? "
             f"{verdict['answer'].capitalize()}: {verdict['why']}."]
    learning = stats.get("learning") or []
    if learning:
        beat = sum(bool(r["beats_untrained"]) for r in learning)
        lines.append(f"Learning: {beat} of {len(learning)} trained checkpoints beat the untrained generator by more "
                     "than their noise floor.")
    for row in stats.get("controls") or []:
        lines.append("Control: " + row["summary"] + ".")
    return lines


def noise_section(inputs: Inputs, setting: Setting, methods: Sequence[str]) -> Section:
    stats = inputs.stats
    section = Section("noise", "Learning and the noise floor")
    floor = stats.get("noise_floor")
    if not floor:
        section.notes.append("The statistics file holds no noise-floor analysis (an older correlate stage, or eval "
                             "files without FID_noise); rerun evaluate and correlate.")
        return section
    section.paragraphs.append(
        "Every FID carries the SD of its own sampling noise: a bootstrap over the generated samples with the "
        "reference statistics fixed (evaluate.fid_bootstrap resamples); ± is the half-width of the 95% interval. "
        "A difference counts as resolved when it exceeds 1.96·sqrt(sd_a² + sd_b²).")
    pairs = floor.get("setting_pairs") or {}
    if pairs.get("n_pairs"):
        section.paragraphs.append(
            f"Across encoders ({setting.describe()}): {pairs['n_resolved']} of {pairs['n_pairs']} encoder pairs "
            f"differ in FID beyond the floor (FID range {pairs['fid_range']:.2f}, median SD {pairs['median_sd']:.2f}); "
            "a correlation across encoders rests on these differences.")
    untrained = stats.get("untrained") or {}
    learning = stats.get("learning") or []
    if not untrained:
        section.notes.append("No untrained baseline (report.untrained_baseline is false, or the runs are imported).")
    else:
        for model, value in untrained.items():
            section.paragraphs.append(f"The untrained generator ({display_model(model)} at initialisation) scores FID "
                                      f"{fid_with_interval(value['fid'], value['sd'])}.")
        rows = [[r["encoder"], method_label(inputs.params, r["method"]), f"{r['step']:,}",
                 fid_with_interval(r["fid"], r["sd"]), f"{r['delta']:+.2f}", fixed(r["floor"], 2),
                 "yes" if r["beats_untrained"] else "no"]
                for r in learning]
        beat = sum(bool(r["beats_untrained"]) for r in learning)
        section.paragraphs.append(f"{beat} of {len(learning)} trained checkpoints beat the untrained generator "
                                  "beyond the floor.")
        section.tables.append(Table("Each checkpoint against the untrained generator",
                                    ["encoder", "method", "step", "FID ± 95%", "change vs untrained", "floor",
                                     "beats untrained"], rows))
    for block in stats.get("methods_vs_baseline_floor") or []:
        if model_slug(block["model"]) != setting.model_key or block["step"] != setting.step:
            continue
        label, base = method_label(inputs.params, block["method"]), method_label(inputs.params, block["baseline"])
        rows = [[r["encoder"], fid_with_interval(r["fid_baseline"], r["sd_baseline"]), fid_with_interval(r["fid"], r["sd"]),
                 f"{r['delta']:+.2f}", fixed(r["floor"], 2), _resolved(r["resolved"])] for r in block["rows"]]
        section.paragraphs.append(
            f"{label} against {base} at step {block['step']:,}: better beyond the floor for "
            f"{block['n_resolved_better']} of {len(block['rows'])} encoders, worse for {block['n_resolved_worse']}.")
        section.tables.append(Table(f"{label} versus {base}: FID change and its floor",
                                    ["encoder", f"FID {base}", f"FID {label}", "change", "floor", "resolved"], rows))
    return section


def controls_section(inputs: Inputs, setting: Setting, methods: Sequence[str]) -> Section:
    stats = inputs.stats
    section = Section("controls", "Controlled comparison: the same global information, another spatial structure")
    controls = stats.get("controls")
    section.paragraphs.append(
        "Each variant is computed from its encoder's own tokens: `_shuffled` permutes the patch tokens by one fixed "
        "permutation of the grid (mean-pooled features, and so LP, are bit-identical; spatial self-similarity is "
        "destroyed); `_global` replaces every token by the image's mean token (global information only, LDS = CDS "
        "= 0); `_local` subtracts the mean token (spatial contrasts kept, the global component removed, LP at "
        "chance). If spatial structure is what REPA transfers, `_shuffled` and `_global` should be worse targets "
        "than the original although LP does not change.")
    if not controls:
        section.notes.append("No encoder of this study has a variant beside it; add e.g. `<encoder>_shuffled` and "
                             "`<encoder>_global` to `encoders` for this section.")
        return section
    predictors = PREDICTORS
    header = ["encoder", *predictors] + [f"FID {method_label(inputs.params, m)} ± 95%" for m in methods]
    for row in controls:
        cells = []
        for which, name in ((0, row["base"]), (1, row["variant"])):
            values = [fixed(row["predictors"][p][which], PREDICTOR_DIGITS[p]) for p in predictors]
            fids = []
            for method in methods:
                m = row["methods"].get(method)
                fids.append(fid_with_interval(m["fid_base" if which == 0 else "fid_variant"],
                                              m["sd_base" if which == 0 else "sd_variant"]) if m else "–")
            cells.append([name, *values, *fids])
        change = ["change", *[""] * len(predictors)]
        for method in methods:
            m = row["methods"].get(method)
            change.append(f"{m['delta']:+.2f} ({'resolved' if m['resolved'] else 'within floor ' + fixed(m['floor'], 2)})"
                          if m else "–")
        cells.append(change)
        section.tables.append(Table(f"{row['variant']} ({row['kind']}) against {row['base']}", header, cells,
                                    note=row["summary"]))
    return section
