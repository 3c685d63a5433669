"""What the numbers resolve: FID differences against their noise floor, and the study's answer computed from them.

Every FID carries the SD of its own sampling noise (the evaluate stage's bootstrap over generated samples).
A difference of two FIDs is *resolved* when it exceeds its floor, Z95 * sqrt(sd_a^2 + sd_b^2). On top:

* learning: each run against the untrained generator (the same architecture at initialisation);
* methods: each method against the baseline method, per encoder;
* controls: each `<encoder>_<variant>` against its `<encoder>` (same LP by construction for `_shuffled`);
* the verdict: do the spatial metrics predict FID better than linear probing? The mean over spatial metrics of
  |r(metric, FID)| - |r(LP, FID)|, with an interval from resampling encoders *and* redrawing every FID from its
  noise; "yes"/"no" only when that interval excludes 0 and some pair of encoders differs beyond the floor,
  else "not resolved at this scale".
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Mapping, Sequence

import numpy as np

from repabench.columns import SPATIAL
from repabench.encoders.catalog import VARIANTS

Z95 = 1.959963984540054
MIN_ENCODERS = 4
NOT_RESOLVED = "not resolved at this scale"


def difference(fid: float, sd: float | None, base: float, base_sd: float | None) -> dict[str, Any]:
    """fid - base with its noise floor; `resolved` is None when either SD is unknown."""
    delta = float(fid) - float(base)
    if sd is None or base_sd is None or not (math.isfinite(sd) and math.isfinite(base_sd)):
        return {"delta": delta, "floor": None, "resolved": None}
    floor = Z95 * math.hypot(float(sd), float(base_sd))
    return {"delta": delta, "floor": floor, "resolved": abs(delta) > floor}


def learning(fids: Mapping[tuple[str, str, int], Mapping[str, tuple[float, float | None]]],
             untrained: Mapping[str, tuple[float, float | None]]) -> list[dict[str, Any]]:
    """Each run at each step against the untrained generator of its model: trained must be lower, resolved."""
    rows = []
    for (model, method, step), by_encoder in sorted(fids.items()):
        if model not in untrained:
            continue
        base, base_sd = untrained[model]
        for encoder, (fid, sd) in by_encoder.items():
            diff = difference(fid, sd, base, base_sd)
            rows.append({"model": model, "method": method, "step": step, "encoder": encoder, "fid": fid, "sd": sd,
                         "untrained_fid": base, "untrained_sd": base_sd, **diff,
                         "beats_untrained": bool(diff["delta"] < 0 and diff["resolved"])})
    return rows


def resolved_pairs(by_encoder: Mapping[str, tuple[float, float | None]]) -> dict[str, Any]:
    """How many encoder pairs differ in FID beyond their floor (what an across-encoder correlation rests on)."""
    names = [e for e, (fid, sd) in by_encoder.items() if math.isfinite(fid) and sd is not None]
    pairs = list(itertools.combinations(names, 2))
    resolved = [p for p in pairs if difference(by_encoder[p[0]][0], by_encoder[p[0]][1],
                                               by_encoder[p[1]][0], by_encoder[p[1]][1])["resolved"]]
    return {"n_pairs": len(pairs), "n_resolved": len(resolved),
            "fid_range": (float(np.ptp([by_encoder[e][0] for e in names])) if names else None),
            "median_sd": float(np.median([by_encoder[e][1] for e in names])) if names else None}


def _abs_r(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|Pearson r| of each row pair [B, n]; NaN for constant rows."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(-1) / np.sqrt((xc**2).sum(-1) * (yc**2).sum(-1))
    return np.abs(r)


def spatial_advantage(predictors: Mapping[str, Mapping[str, float]],
                      by_encoder: Mapping[str, tuple[float, float | None]], n_boot: int, seed: int) -> dict[str, Any]:
    """mean_S |r(S, FID)| - |r(LP, FID)| over the spatial metrics S present for every encoder, with a 95%
    interval over resampled encoders and FIDs redrawn from N(FID, sd^2)."""
    encoders = [e for e, (fid, sd) in by_encoder.items()
                if math.isfinite(fid) and sd is not None and math.isfinite(predictors.get(e, {}).get("LP", math.nan))]
    metrics = [m for m in SPATIAL if encoders and all(math.isfinite(predictors[e].get(m, math.nan)) for e in encoders)]
    out: dict[str, Any] = {"n_encoders": len(encoders), "metrics": metrics, "estimate": None, "ci95": None,
                           "per_metric": {}, "n_boot": n_boot, "seed": seed}
    if len(encoders) < MIN_ENCODERS or not metrics or n_boot < 2:
        out["reason"] = (f"{len(encoders)} encoders with FID, its noise and LP (at least {MIN_ENCODERS} needed)"
                         if len(encoders) < MIN_ENCODERS else "no spatial metric for every encoder")
        return out
    fid = np.array([by_encoder[e][0] for e in encoders])
    sd = np.array([by_encoder[e][1] for e in encoders])
    lp = np.array([predictors[e]["LP"] for e in encoders])
    spatial = {m: np.array([predictors[e][m] for e in encoders]) for m in metrics}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(encoders), size=(n_boot, len(encoders)))
    noisy = fid[idx] + rng.standard_normal(idx.shape) * sd[idx]
    lp_r = _abs_r(lp[None], fid[None])[0]
    boot_lp = _abs_r(lp[idx], noisy)
    per_metric, boot = {}, []
    for m in metrics:
        r = _abs_r(spatial[m][None], fid[None])[0]
        b = _abs_r(spatial[m][idx], noisy)
        per_metric[m] = {"abs_r": float(r), "abs_r_minus_lp": float(r - lp_r),
                         "ci95": _percentiles(b - boot_lp)}
        boot.append(b)
    diff = np.mean(boot, axis=0) - boot_lp
    out.update(estimate=float(np.mean([per_metric[m]["abs_r"] for m in metrics]) - lp_r), abs_r_lp=float(lp_r),
               ci95=_percentiles(diff), per_metric=per_metric)
    return out


def _percentiles(values: np.ndarray) -> list[float] | None:
    values = values[np.isfinite(values)]
    if values.size < 2:
        return None
    return [float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))]


def verdict(advantage: Mapping[str, Any], pairs: Mapping[str, Any]) -> dict[str, Any]:
    """The study's question answered from the numbers: yes / no / not resolved at this scale, and why."""
    ci = advantage.get("ci95")
    if ci is None:
        return {"answer": NOT_RESOLVED, "why": advantage.get("reason") or "no interval could be computed"}
    if not pairs.get("n_resolved"):
        return {"answer": NOT_RESOLVED,
                "why": f"no pair of the {advantage['n_encoders']} encoders differs in FID beyond the noise floor "
                       f"(FID range {pairs.get('fid_range') or 0:.2f}, median SD {pairs.get('median_sd') or 0:.2f})"}
    text = (f"mean |r| of the spatial metrics minus |r| of LP = {advantage['estimate']:+.2f}, 95% interval "
            f"[{ci[0]:+.2f}, {ci[1]:+.2f}] (encoders resampled, FIDs redrawn from their noise); "
            f"{pairs['n_resolved']} of {pairs['n_pairs']} encoder pairs differ beyond the floor")
    if ci[0] > 0:
        return {"answer": "yes", "why": text}
    if ci[1] < 0:
        return {"answer": "no", "why": text}
    return {"answer": NOT_RESOLVED, "why": text}


def variant_pairs(encoders: Sequence[str]) -> list[tuple[str, str, str]]:
    """(base, variant encoder, variant suffix) for every `<base>_<variant>` whose base is also in the study."""
    out = []
    for name in encoders:
        for suffix in VARIANTS:
            if name.endswith(suffix) and name[: -len(suffix)] in encoders:
                out.append((name[: -len(suffix)], name, suffix))
    return out


def controls(encoders: Sequence[str], predictors: Mapping[str, Mapping[str, float]],
             fids: Mapping[tuple[str, str, int], Mapping[str, tuple[float, float | None]]],
             model: str, step: int, methods: Sequence[str]) -> list[dict[str, Any]]:
    """Each original/variant pair: the predictors of both, and per method the FID change with its floor."""
    out = []
    for base, variant, suffix in variant_pairs(encoders):
        row: dict[str, Any] = {"base": base, "variant": variant, "kind": suffix.lstrip("_"),
                               "predictors": {k: [predictors.get(base, {}).get(k), predictors.get(variant, {}).get(k)]
                                              for k in ("LP", *SPATIAL)},
                               "methods": {}}
        for method in methods:
            values = fids.get((model, method, step), {})
            if base in values and variant in values:
                (f0, s0), (f1, s1) = values[base], values[variant]
                row["methods"][method] = {"fid_base": f0, "sd_base": s0, "fid_variant": f1, "sd_variant": s1,
                                          **difference(f1, s1, f0, s0)}
        row["summary"] = control_summary(row, methods)
        out.append(row)
    return out


def control_summary(row: Mapping[str, Any], methods: Sequence[str]) -> str:
    """One line computed from a control's numbers."""
    lp0, lp1 = row["predictors"]["LP"]
    lds0, lds1 = row["predictors"]["LDS"]
    parts = []
    if lp0 is not None and lp1 is not None and math.isfinite(lp0) and math.isfinite(lp1):
        parts.append("LP unchanged" if abs(lp1 - lp0) < 1e-9 else f"LP {lp0:.1f} -> {lp1:.1f}")
    if lds0 is not None and lds1 is not None and math.isfinite(lds0) and math.isfinite(lds1):
        parts.append(f"LDS {lds0:.3f} -> {lds1:.3f}")
    for method in methods:
        m = row["methods"].get(method)
        if not m:
            continue
        if m["resolved"] is None:
            parts.append(f"{method}: FID {m['delta']:+.2f} (no noise estimate)")
        elif m["resolved"]:
            parts.append(f"{method}: FID {'worse' if m['delta'] > 0 else 'better'} by {abs(m['delta']):.2f} "
                         f"(beyond the floor {m['floor']:.2f})")
        else:
            parts.append(f"{method}: FID change {m['delta']:+.2f} within the floor {m['floor']:.2f} (not resolved)")
    return f"{row['variant']} vs {row['base']}: " + "; ".join(parts)


def method_differences(fids, encoders: Sequence[str], baseline: str) -> list[dict[str, Any]]:
    """Every other method against the baseline method per (model, step) and encoder, with floors."""
    out = []
    for (model, method, step), values in sorted(fids.items()):
        base = fids.get((model, baseline, step))
        if method == baseline or base is None:
            continue
        rows = [{"encoder": e, "fid_baseline": base[e][0], "sd_baseline": base[e][1], "fid": values[e][0],
                 "sd": values[e][1], **difference(values[e][0], values[e][1], base[e][0], base[e][1])}
                for e in encoders if e in values and e in base]
        if rows:
            out.append({"model": model, "method": method, "step": step, "baseline": baseline, "rows": rows,
                        "n_resolved_better": sum(bool(r["resolved"]) and r["delta"] < 0 for r in rows),
                        "n_resolved_worse": sum(bool(r["resolved"]) and r["delta"] > 0 for r in rows)})
    return out
