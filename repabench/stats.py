"""Correlation statistics across encoders: does LP accuracy or spatial structure predict FID?

For each predictor (LP, LDS, CDS, SRSS, RMSC) against FID at one (model, method, step): Pearson r
with a Fisher-z interval and a bootstrap interval over encoders, Spearman rho, and whether each
spatial metric predicts FID better than LP does, by a paired bootstrap of |r| differences and by
Williams' t for two dependent correlations that share FID. Plus r at every (model, method, step)
present and each method's FID change against the baseline method, per encoder.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import stats as sps

from repabench.columns import PREDICTORS, SPATIAL
from repabench.sections import config_section
from repabench.sizes import model_slug
from repabench.stage import StageParams, parse_stage, stage_parser

log = logging.getLogger("repabench.stats")

MIN_ENCODERS = 3


def fisher_ci(r: float, n: int, level: float = 0.95) -> list[float] | None:
    """Fisher-z interval tanh(atanh(r) +- z / sqrt(n - 3)); needs n >= 4."""
    if n < 4 or not np.isfinite(r):
        return None
    if abs(r) >= 1:
        return [float(r), float(r)]
    z = math.atanh(r)
    half = sps.norm.ppf(0.5 + level / 2) / math.sqrt(n - 3)
    return [math.tanh(z - half), math.tanh(z + half)]


def rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of x, y [B, n]; NaN where a row is constant."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    denom = np.sqrt((xc**2).sum(1) * (yc**2).sum(1))
    constant = (np.ptp(x, axis=1) == 0) | (np.ptp(y, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(1) / denom
    r[constant] = np.nan
    return np.clip(r, -1.0, 1.0)


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def percentile_ci(values: np.ndarray, level: float = 0.95) -> list[float] | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    alpha = (1 - level) / 2
    return [float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))]


def williams_t(r12: float, r13: float, r23: float, n: int) -> tuple[float, float]:
    """Williams' t (Steiger 1980, eq. 7) for H0: rho12 = rho13, variables 2 and 3 correlated (r23).

    Returns (t, two-sided p) with n - 3 degrees of freedom.
    """
    if n < 4:
        return float("nan"), float("nan")
    det = 1 - r12**2 - r13**2 - r23**2 + 2 * r12 * r13 * r23
    rbar = (r12 + r13) / 2
    denom = 2 * (n - 1) / (n - 3) * det + rbar**2 * (1 - r23) ** 3
    if denom <= 0:
        return float("nan"), float("nan")
    t = (r12 - r13) * math.sqrt((n - 1) * (1 + r23) / denom)
    return t, float(2 * sps.t.sf(abs(t), n - 3))


def correlate_pair(x: Sequence[float], y: Sequence[float], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Pearson r (Fisher-z and bootstrap intervals), Spearman rho and the least-squares line of y on x."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = int(x.size)
    result: dict[str, Any] = {
        "n": n, "pearson_r": None, "pearson_p": None, "ci95_fisher": None, "ci95_bootstrap": None,
        "spearman_rho": None, "spearman_p": None, "slope": None, "intercept": None, "reason": None,
    }
    if n < MIN_ENCODERS:
        result["reason"] = f"{n} encoders with both values; a correlation needs at least {MIN_ENCODERS}"
        return result
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        result["reason"] = "one of the two variables is constant across encoders"
        return result
    pearson = sps.pearsonr(x, y)
    spearman = sps.spearmanr(x, y)
    r = float(pearson.statistic)
    slope, intercept = np.polyfit(x, y, 1)
    result.update(
        pearson_r=r, pearson_p=float(pearson.pvalue), ci95_fisher=fisher_ci(r, n),
        spearman_rho=float(spearman.statistic), spearman_p=float(spearman.pvalue),
        slope=float(slope), intercept=float(intercept),
    )
    if n_boot > 0:
        idx = bootstrap_indices(n, n_boot, seed)
        result["ci95_bootstrap"] = percentile_ci(rowwise_pearson(x[idx], y[idx]))
    if n < 4:
        result["reason"] = "the Fisher-z interval needs at least 4 encoders"
    return result


def compare_to_lp(metric: np.ndarray, lp: np.ndarray, fid: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """Does |r(metric, FID)| exceed |r(LP, FID)|? Paired bootstrap over encoders and Williams' t."""
    n = int(fid.size)
    out: dict[str, Any] = {"n": n, "abs_r_metric": None, "abs_r_lp": None, "abs_r_diff": None,
                           "ci95_bootstrap": None, "p_bootstrap_one_sided": None,
                           "williams_t": None, "p_williams_two_sided": None, "p_williams_one_sided": None,
                           "reason": None}
    if n < MIN_ENCODERS or min(np.ptp(metric), np.ptp(lp), np.ptp(fid)) == 0:
        out["reason"] = f"needs at least {MIN_ENCODERS} encoders with LP, the metric and FID, none constant"
        return out
    r_m = float(np.corrcoef(metric, fid)[0, 1])
    r_l = float(np.corrcoef(lp, fid)[0, 1])
    r_ml = float(np.corrcoef(metric, lp)[0, 1])
    out.update(abs_r_metric=abs(r_m), abs_r_lp=abs(r_l), abs_r_diff=abs(r_m) - abs(r_l))
    if n_boot > 0:
        idx = bootstrap_indices(n, n_boot, seed)
        diff = np.abs(rowwise_pearson(metric[idx], fid[idx])) - np.abs(rowwise_pearson(lp[idx], fid[idx]))
        diff = diff[np.isfinite(diff)]
        if diff.size:
            out["ci95_bootstrap"] = percentile_ci(diff)
            out["p_bootstrap_one_sided"] = float(np.mean(diff <= 0))
    # Flip each predictor so that it correlates positively with FID; then |r| comparisons are r comparisons.
    aligned_ml = math.copysign(1, r_m) * math.copysign(1, r_l) * r_ml
    t, p_two = williams_t(abs(r_m), abs(r_l), aligned_ml, n)
    if np.isfinite(t):
        out.update(williams_t=t, p_williams_two_sided=p_two, p_williams_one_sided=float(sps.t.sf(t, n - 3)))
    else:
        out["reason"] = "Williams' t needs at least 4 encoders"
    return out


# ----------------------------------------------------------------------------------------------
# Gathering the inputs


def _finite(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return v if math.isfinite(v) else float("nan")


def load_fids(paths: Sequence[str], sampler: str | None, with_sd: bool = False) -> dict[tuple[str, str, int], dict]:
    """{(model slug, method, step): {encoder: FID}} from eval JSONs (their "run" block names the run);
    with_sd: {encoder: (FID, SD of its sampling noise or None)}."""
    from repabench.integrity import read_result as read_json

    fids: dict[tuple[str, str, int], dict[str, float]] = {}
    samplers = set()
    for path in paths:
        data = read_json(path)
        run = data.get("run")
        if not isinstance(run, dict) or not {"model", "encoder", "method", "step"} <= set(run):
            raise SystemExit(f"{path}: no 'run' block with model, encoder, method and step; rerun evaluate")
        if "FID" not in data:
            raise SystemExit(f"{path}: no FID value; rerun evaluate")
        if sampler is not None and run.get("sampler", sampler) != sampler:
            continue
        samplers.add(run.get("sampler"))
        key = (model_slug(run["model"]), str(run["method"]), int(run["step"]))
        fid = _finite(data["FID"])
        if with_sd:
            noise = data.get("FID_noise") or {}
            sd = _finite(noise.get("sd"))
            fid = (fid, sd if math.isfinite(sd) else None)
        fids.setdefault(key, {})[str(run["encoder"])] = fid
    if sampler is None and len(samplers) > 1:
        raise SystemExit(f"eval files mix samplers {sorted(map(str, samplers))}; pass `sampler` in --params")
    return fids


def load_predictors(spatial_paths: Sequence[str], probe_paths: Sequence[str]) -> dict[str, dict[str, float]]:
    """{encoder: {LP, LDS, CDS, SRSS, RMSC}} (NaN where a value is missing)."""
    from repabench.integrity import read_result as read_json

    table: dict[str, dict[str, float]] = {}
    for path in spatial_paths:
        data = read_json(path)
        row = table.setdefault(str(data.get("encoder") or Path(path).stem), {})
        for name in SPATIAL:
            entry = data.get(name)
            row[name] = _finite(entry.get("mean") if isinstance(entry, dict) else entry)
    for path in probe_paths:
        data = read_json(path)
        if "best_val_acc" not in data:
            raise SystemExit(f"{path}: no best_val_acc; rerun linear_probe")
        table.setdefault(str(data.get("encoder") or Path(path).stem), {})["LP"] = _finite(data["best_val_acc"])
    for row in table.values():
        for name in PREDICTORS:
            row.setdefault(name, float("nan"))
    return table


def load_subsets(spatial_paths: Sequence[str]) -> dict[str, dict[str, str]]:
    """{encoder: {metric: the images its mean is over}} as the spatial_metrics stage recorded it."""
    from repabench.atomic import read_json

    out: dict[str, dict[str, str]] = {}
    for path in spatial_paths:
        data = read_json(path)
        subsets = data.get("subsets")
        if subsets is None:  # written before subsets were recorded
            n = data.get("n_images")
            subsets = {name: (f"{'mask-filtered' if data.get('masked') else 'all'} images ({n})" if n else
                              "not recorded") for name in SPATIAL}
        out[str(data.get("encoder") or Path(path).stem)] = {name: str(subsets.get(name, "not recorded"))
                                                              for name in SPATIAL}
    return out


def _order(items, preferred: Sequence[str] | None) -> list:
    preferred = list(preferred or [])
    return [p for p in preferred if p in items] + sorted(i for i in items if i not in preferred)


# ----------------------------------------------------------------------------------------------
# The analysis


def correlate_setting(encoders: Sequence[str], predictors: dict[str, dict[str, float]], fid: dict[str, float],
                      n_boot: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"predictors": {}, "vs_lp": {}}
    y_all = np.array([fid.get(e, np.nan) for e in encoders])
    columns = {name: np.array([predictors.get(e, {}).get(name, np.nan) for e in encoders]) for name in PREDICTORS}
    for name in PREDICTORS:
        ok = np.isfinite(columns[name]) & np.isfinite(y_all)
        res = correlate_pair(columns[name][ok], y_all[ok], n_boot, seed)
        res["encoders"] = [e for e, k in zip(encoders, ok) if k]
        out["predictors"][name] = res
    for name in SPATIAL:
        ok = np.isfinite(columns[name]) & np.isfinite(columns["LP"]) & np.isfinite(y_all)
        out["vs_lp"][name] = compare_to_lp(columns[name][ok], columns["LP"][ok], y_all[ok], n_boot, seed)
    return out


def method_changes(fids, encoders, baseline: str) -> list[dict[str, Any]]:
    """Every other method's FID and change against the baseline method, per (model, step) and encoder."""
    out = []
    for (model, method, step), values in sorted(fids.items()):
        if method == baseline or (model, baseline, step) not in fids:
            continue
        base = fids[(model, baseline, step)]
        rows = []
        for e in encoders:
            if e in values and e in base and np.isfinite(values[e]) and np.isfinite(base[e]):
                rows.append({"encoder": e, "fid_baseline": base[e], "fid": values[e], "delta": values[e] - base[e]})
        if rows:
            deltas = [r["delta"] for r in rows]
            out.append({"model": model, "step": step, "method": method, "baseline": baseline, "rows": rows,
                        "mean_delta": float(np.mean(deltas)), "n_improved": int(sum(d < 0 for d in deltas))})
    return out


def correlated_setting(report: dict[str, Any], models: Sequence[str], methods: Sequence[str],
                       fids: dict[tuple[str, str, int], Any]) -> tuple[str, str, int]:
    """The (model slug, method, step) whose FIDs are correlated, and the method every other one is compared with:
    report.model, else the first model; report.method, else the first method; report.step, else the last step
    evaluated for that pair. The one resolution of the study: the report reads it from correlation.json."""
    model = model_slug(report.get("model") or models[0])
    method = str(report.get("method") or methods[0])
    steps = sorted(k[2] for k in fids if k[:2] == (model, method))
    if not steps:
        raise SystemExit(
            f"no FID for model {model!r} with method {method!r} in the eval files (present: "
            f"{', '.join('/'.join(map(str, k)) for k in sorted(fids))}); fix report.model / report.method"
        )
    step = int(report["step"]) if report.get("step") is not None else steps[-1]
    if (model, method, step) not in fids:
        raise SystemExit(f"no FID at step {step} for {model}/{method} (present: {steps}); fix report.step")
    return model, method, step


def fid_column(model: str, method: str, step: int) -> str:
    return f"FID_{model}_{method}_{step}"


def write_table(path: str, encoders, predictors, fids, settings) -> list[dict[str, Any]]:
    from repabench.atomic import atomic_path

    columns = [{"column": fid_column(*s), "model": s[0], "method": s[1], "step": s[2]} for s in settings]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["encoder", *PREDICTORS, *(c["column"] for c in columns)])
        for e in encoders:
            row = predictors.get(e, {})
            cells = [row.get(name, float("nan")) for name in PREDICTORS]
            cells += [fids[s].get(e, float("nan")) for s in settings]
            writer.writerow([e, *("" if not np.isfinite(v) else repr(float(v)) for v in cells)])
    return columns


@config_section("report")
class ReportConfig:
    """The `report` section: the correlated setting (method, step, model; None = the last checkpoint, the first
    model), the bootstrap, and what the report shows."""

    method: str
    step: int | None
    model: str | None
    bootstrap: int
    title: str
    untrained_baseline: bool


CORRELATE_PARAMS = {"report": ReportConfig, "seed": int, "name": str, "models": list, "encoders": list,
                    "run_methods": list, "sampler": str}


def correlate_main(argv: list[str]) -> int:
    parser = stage_parser("correlate", "correlation of LP accuracy and spatial metrics with FID across encoders")
    parser.add_argument("--evals", nargs="+", required=True, help="eval JSONs (results/eval/.../{sampler}.json)")
    parser.add_argument("--spatial", nargs="+", required=True, help="results/spatial/{encoder}.json")
    parser.add_argument("--probe", nargs="+", required=True, help="results/probe/{encoder}.json")
    parser.add_argument("--untrained", nargs="*", default=[],
                        help="eval JSONs of the untrained generator (one per model): the learning baseline")
    parser.add_argument("--out-table", required=True, help="per-encoder CSV")
    parser.add_argument("--out-json", required=True, help="correlation statistics JSON")
    args, config, _, seed = parse_stage(parser, argv, CORRELATE_PARAMS)
    correlate(args.evals, args.spatial, args.probe, args.untrained, args.out_table, args.out_json, config, seed)
    return 0


def correlate(evals: Sequence[str], spatial: Sequence[str], probe: Sequence[str], untrained: Sequence[str],
              out_table: str | Path, out_json: str | Path, config: StageParams, seed: int) -> dict[str, Any]:
    """The per-encoder table and the correlation statistics of the setting `config.report` picks (returned);
    `config` also names the study's models, encoders, methods and the evaluation sampler."""
    from repabench.atomic import write_json
    from repabench.provenance import provenance

    report = config.report
    n_boot = report.bootstrap

    fids = load_fids(evals, config.sampler)
    predictors = load_predictors(spatial, probe)
    if not fids:
        raise SystemExit("no FID values in the eval files (for the chosen sampler); run evaluate first")
    encoders = _order({e for v in fids.values() for e in v} | set(predictors), config.encoders)
    model_order = [model_slug(m) for m in config.models or []]
    method_order = list(config.run_methods or [])
    models = _order({k[0] for k in fids}, model_order)
    methods = _order({k[1] for k in fids}, method_order)
    settings = sorted(fids, key=lambda k: (models.index(k[0]), methods.index(k[1]), k[2]))

    # the raw section: correlated_setting resolves an absent key itself (the first model / method / last step)
    model, method, step = correlated_setting(config.raw.get("report") or {}, model_order or models,
                                             method_order or methods, fids)

    columns = write_table(out_table, encoders, predictors, fids, settings)
    chosen = correlate_setting(encoders, predictors, fids[(model, method, step)], n_boot, seed)
    by_setting = []
    for s in settings:
        res = correlate_setting(encoders, predictors, fids[s], 0, seed)
        by_setting.append({
            "model": s[0], "method": s[1], "step": s[2],
            "n": {k: v["n"] for k, v in res["predictors"].items()},
            "pearson_r": {k: v["pearson_r"] for k, v in res["predictors"].items()},
            "ci95_fisher": {k: v["ci95_fisher"] for k, v in res["predictors"].items()},
            "spearman_rho": {k: v["spearman_rho"] for k, v in res["predictors"].items()},
        })
    noisy = load_fids(evals, config.sampler, with_sd=True)
    floors = noise_analysis(noisy, load_fids(untrained, config.sampler, with_sd=True) if untrained
                            else {}, predictors, encoders, methods, (model, method, step), n_boot, seed)
    result = {
        "name": config.name,
        "setting": {"model": model, "method": method, "step": step, "sampler": config.sampler},
        "encoders": encoders,
        "n_encoders": len([e for e in encoders if np.isfinite(fids[(model, method, step)].get(e, np.nan))]),
        "fid_columns": columns,
        **chosen,
        "by_setting": by_setting,
        **floors,
        "methods_vs_baseline": method_changes(fids, encoders, method),
        "spatial_subsets": load_subsets(spatial),
        "notes": {
            "ci95_fisher": "tanh(atanh(r) +- 1.96/sqrt(n-3))",
            "ci95_bootstrap": f"percentile interval of r over {n_boot} resamples of encoders (seed {seed})",
            "vs_lp": "abs_r_diff = |r(metric,FID)| - |r(LP,FID)|; paired bootstrap on the same resamples; "
                     "Williams' t (Steiger 1980) on sign-aligned predictors, one-sided p for |r_metric| > |r_LP|",
        },
        "provenance": provenance("correlate", config.raw, [*evals, *spatial, *probe, *untrained],
                                 "cpu", seed=seed),
    }
    result = _nan_to_none(result)
    write_json(out_json, result)
    for name, res in chosen["predictors"].items():
        log.info("%s vs FID (%s/%s/%d): n=%d r=%s", name, model, method, step, res["n"], res["pearson_r"])
    return result


def noise_analysis(noisy, untrained_fids, predictors, encoders, methods, setting, n_boot: int,
                   seed: int) -> dict[str, Any]:
    """The noise-floor blocks of correlation.json (repabench.verdict): learning, pairs, methods, controls, verdict."""
    from repabench import verdict as V

    model, method, step = setting
    untrained = {m: next(iter(by_encoder.values())) for (m, _, _), by_encoder in untrained_fids.items() if by_encoder}
    pairs = V.resolved_pairs(noisy[setting])
    advantage = V.spatial_advantage(predictors, noisy[setting], n_boot, seed)
    return {
        "noise_floor": {"setting_pairs": pairs, "z": V.Z95,
                        "rule": "a difference is resolved when |delta| > 1.96 * sqrt(sd_a^2 + sd_b^2), sd from "
                                "each FID's bootstrap over its generated samples"},
        "fid_noise": [{"model": m, "method": k, "step": st, "encoder": e, "fid": v[0], "sd": v[1]}
                      for (m, k, st), by_encoder in sorted(noisy.items()) for e, v in by_encoder.items()],
        "learning": V.learning(noisy, untrained),
        "untrained": {m: {"fid": v[0], "sd": v[1]} for m, v in untrained.items()},
        "methods_vs_baseline_floor": V.method_differences(noisy, encoders, method),
        "controls": V.controls(encoders, predictors, noisy, model, step, methods),
        "spatial_advantage": advantage,
        "verdict": V.verdict(advantage, pairs),
    }


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
