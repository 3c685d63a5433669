"""Correlation statistics against scipy, a hand-computed Fisher-z interval and Monte Carlo calibration."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import stats as sps

from repabench.atomic import write_json
from repabench.stats import (
    compare_to_lp,
    correlate_main,
    correlate_pair,
    fisher_ci,
    rowwise_pearson,
    williams_t,
)


def test_pearson_spearman_equal_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=12)
    y = -2 * x + rng.normal(size=12)
    res = correlate_pair(x, y, n_boot=500)
    assert res["pearson_r"] == pytest.approx(sps.pearsonr(x, y).statistic, abs=1e-12)
    assert res["pearson_p"] == pytest.approx(sps.pearsonr(x, y).pvalue, rel=1e-9)
    assert res["spearman_rho"] == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)
    assert res["spearman_p"] == pytest.approx(sps.spearmanr(x, y).pvalue, rel=1e-9)
    slope, intercept = np.polyfit(x, y, 1)
    assert res["slope"] == pytest.approx(slope) and res["intercept"] == pytest.approx(intercept)
    lo, hi = res["ci95_bootstrap"]
    assert lo < res["pearson_r"] < hi <= 1


def test_fisher_interval_by_hand():
    # r = 0.5, n = 28: z = atanh(0.5) = 0.549306, se = 1/5 = 0.2, z +- 1.959964*0.2 = 0.157313 .. 0.941299
    lo, hi = fisher_ci(0.5, 28)
    assert lo == pytest.approx(0.156024, abs=1e-5)  # tanh(0.157313)
    assert hi == pytest.approx(0.735818, abs=1e-5)  # tanh(0.941299) = (e^1.882598 - 1)/(e^1.882598 + 1)
    assert fisher_ci(0.5, 3) is None


def test_rowwise_pearson_matches_corrcoef_and_flags_constant_rows():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(5, 9)), rng.normal(size=(5, 9))
    x[2] = 0.1  # constant row
    got = rowwise_pearson(x, y)
    for i in (0, 1, 3, 4):
        assert got[i] == pytest.approx(np.corrcoef(x[i], y[i])[0, 1], abs=1e-12)
    assert np.isnan(got[2])


def test_williams_t_is_calibrated_and_has_power():
    """Under H0 (rho12 = rho13) the 5% test rejects about 5% of the time; under a large gap, nearly always."""
    rng = np.random.default_rng(2)
    n, reps = 25, 2000

    def rejection_rate(r12, r13, r23):
        cov = np.array([[1, r12, r13], [r12, 1, r23], [r13, r23, 1]])
        chol = np.linalg.cholesky(cov)
        hits = 0
        for _ in range(reps):
            data = rng.normal(size=(n, 3)) @ chol.T
            c = np.corrcoef(data.T)
            hits += williams_t(c[0, 1], c[0, 2], c[1, 2], n)[1] < 0.05
        return hits / reps

    assert 0.035 < rejection_rate(0.5, 0.5, 0.3) < 0.07
    assert rejection_rate(0.9, 0.2, 0.2) > 0.95


def test_compare_to_lp_prefers_the_predictive_metric():
    rng = np.random.default_rng(3)
    n = 20
    metric = rng.normal(size=n)
    lp = rng.normal(size=n)
    fid = -3 * metric + 0.3 * rng.normal(size=n)
    res = compare_to_lp(metric, lp, fid, n_boot=1000, seed=0)
    assert res["abs_r_diff"] == pytest.approx(abs(np.corrcoef(metric, fid)[0, 1]) - abs(np.corrcoef(lp, fid)[0, 1]))
    assert res["ci95_bootstrap"][0] > 0 and res["p_bootstrap_one_sided"] < 0.01
    assert res["williams_t"] > 0 and res["p_williams_one_sided"] < 0.01
    # swapping the roles flips the sign of t
    swapped = compare_to_lp(lp, metric, fid, n_boot=0, seed=0)
    assert swapped["williams_t"] == pytest.approx(-res["williams_t"])


def test_too_few_encoders_gives_null_with_reason():
    res = correlate_pair([1.0, 2.0], [3.0, 1.0])
    assert res["pearson_r"] is None and "at least 3" in res["reason"]


# ------------------------------------------------------------------------------------------ stage


def _write_inputs(tmp_path, encoders, fid_of, lp, spatial, steps=(200, 400), methods=("repa", "irepa")):
    evals, sp, pr = [], [], []
    for e in encoders:
        for method in methods:
            for step in steps:
                path = tmp_path / "eval" / e / method / f"{step:07d}.json"
                write_json(path, {"FID": fid_of(e, method, step), "sFID": 1.0,
                                  "run": {"model": "SiT-T/2", "encoder": e, "method": method,
                                          "step": f"{step:07d}", "sampler": "sde50"}})
                evals.append(str(path))
        sp_path = tmp_path / "spatial" / f"{e}.json"
        write_json(sp_path, {"encoder": e, **{k: {"mean": v, "ci95": [v, v]} for k, v in spatial[e].items()}})
        pr_path = tmp_path / "probe" / f"{e}.json"
        write_json(pr_path, {"encoder": e, "best_val_acc": lp[e]})
        sp.append(str(sp_path))
        pr.append(str(pr_path))
    return evals, sp, pr


def test_correlate_stage_end_to_end(tmp_path):
    rng = np.random.default_rng(4)
    encoders = [f"enc{i}-x-y" for i in range(7)]
    structure = {e: float(v) for e, v in zip(encoders, rng.uniform(0.05, 0.5, size=7))}
    lp = {e: float(v) for e, v in zip(encoders, rng.uniform(50, 85, size=7))}
    spatial = {e: {"LDS": structure[e], "CDS": structure[e] / 8 + 0.001 * rng.normal(),
                   "SRSS": structure[e] + 0.05 * rng.normal(), "RMSC": 0.3 + structure[e]} for e in encoders}
    spatial[encoders[3]]["SRSS"] = None  # no masks for one encoder: dropped from SRSS only
    noise = {e: float(rng.normal()) for e in encoders}

    def fid_of(e, method, step):
        return 45 - 50 * structure[e] + noise[e] - (3 if method == "irepa" else 0) - step / 100

    evals, sp, pr = _write_inputs(tmp_path, encoders, fid_of, lp, spatial)
    params = {"report": {"method": "repa", "step": None, "model": None, "bootstrap": 300},
              "models": ["SiT-T/2"], "encoders": encoders, "run_methods": ["repa", "irepa"], "sampler": "sde50"}
    table, out = tmp_path / "table.csv", tmp_path / "correlation.json"
    assert correlate_main(["--evals", *evals, "--spatial", *sp, "--probe", *pr, "--out-table", str(table),
                           "--out-json", str(out), "--params", json.dumps(params)]) == 0
    result = json.loads(out.read_text())
    assert result["setting"] == {"model": "sit-t-2", "method": "repa", "step": 400, "sampler": "sde50"}
    assert set(result["spatial_subsets"]) == set(encoders)  # these spatial files predate recorded subsets
    assert result["spatial_subsets"][encoders[0]] == {m: "not recorded" for m in ("LDS", "CDS", "SRSS", "RMSC")}

    rows = list(csv.DictReader(table.open()))
    assert [r["encoder"] for r in rows] == encoders
    column = "FID_sit-t-2_repa_400"
    assert {c["column"] for c in result["fid_columns"]} == {
        f"FID_sit-t-2_{m}_{s}" for m in ("repa", "irepa") for s in (200, 400)}
    assert rows[3]["SRSS"] == ""
    for name in ("LP", "LDS", "CDS", "SRSS", "RMSC"):
        pairs = [(float(r[name]), float(r[column])) for r in rows if r[name] != ""]
        x, y = map(np.array, zip(*pairs))
        res = result["predictors"][name]
        assert res["n"] == len(pairs) == (6 if name == "SRSS" else 7)
        assert res["pearson_r"] == pytest.approx(sps.pearsonr(x, y).statistic, abs=1e-12)
        assert res["spearman_rho"] == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)
        assert res["ci95_fisher"] == pytest.approx(fisher_ci(res["pearson_r"], len(pairs)))
    assert result["predictors"]["LDS"]["pearson_r"] < -0.9
    assert set(result["vs_lp"]) == {"LDS", "CDS", "SRSS", "RMSC"}

    assert len(result["by_setting"]) == 4
    at_200 = next(s for s in result["by_setting"] if s["method"] == "repa" and s["step"] == 200)
    fid_200 = np.array([fid_of(e, "repa", 200) for e in encoders])
    assert at_200["pearson_r"]["LDS"] == pytest.approx(
        sps.pearsonr([structure[e] for e in encoders], fid_200).statistic, abs=1e-12)

    changes = {(c["method"], c["step"]): c for c in result["methods_vs_baseline"]}
    assert set(changes) == {("irepa", 200), ("irepa", 400)}
    assert all(row["delta"] == pytest.approx(-3.0) for row in changes[("irepa", 400)]["rows"])
    assert changes[("irepa", 400)]["n_improved"] == 7


def test_correlate_stage_with_two_encoders_returns_nulls(tmp_path):
    encoders = ["a-b-c", "d-e-f"]
    spatial = {e: {"LDS": i + 0.1, "CDS": 0.01, "SRSS": 0.2, "RMSC": 0.5} for i, e in enumerate(encoders)}
    evals, sp, pr = _write_inputs(tmp_path, encoders, lambda e, m, s: 30.0 + len(e), {e: 60.0 for e in encoders},
                                  spatial, steps=(100,), methods=("repa",))
    out = tmp_path / "c.json"
    assert correlate_main(["--evals", *evals, "--spatial", *sp, "--probe", *pr, "--out-table",
                           str(tmp_path / "t.csv"), "--out-json", str(out),
                           "--params", json.dumps({"report": {"method": "repa", "bootstrap": 10}})]) == 0
    result = json.loads(out.read_text())
    for res in result["predictors"].values():
        assert res["pearson_r"] is None and res["reason"]
    assert result["methods_vs_baseline"] == []


def test_correlate_stage_names_a_missing_setting(tmp_path):
    encoders = ["a-b-c", "d-e-f", "g-h-i"]
    spatial = {e: {"LDS": 0.1, "CDS": 0.01, "SRSS": 0.2, "RMSC": 0.5} for e in encoders}
    evals, sp, pr = _write_inputs(tmp_path, encoders, lambda e, m, s: 30.0, {e: 60.0 for e in encoders},
                                  spatial, steps=(100,), methods=("repa",))
    with pytest.raises(SystemExit, match="report.step"):
        correlate_main(["--evals", *evals, "--spatial", *sp, "--probe", *pr, "--out-table", str(tmp_path / "t.csv"),
                        "--out-json", str(tmp_path / "c.json"),
                        "--params", json.dumps({"report": {"method": "repa", "step": 200}})])


def test_williams_t_needs_four_encoders():
    import math

    from repabench.stats import williams_t

    t, p = williams_t(0.5, 0.2, 0.1, 3)  # n - 3 = 0 degrees of freedom: undefined, not a crash
    assert math.isnan(t) and math.isnan(p)


def test_correlated_setting_defaults_to_the_first_model_and_method_and_the_last_step():
    from repabench.stats import correlated_setting

    fids = {(m, k, s): {"a": 1.0} for m in ("sit-b-2", "sit-s-2") for k in ("irepa", "repa") for s in (100, 300, 200)}
    # no report.method: the first method of the study, not a hard-coded name
    assert correlated_setting({}, ["SiT-S/2", "SiT-B/2"], ["irepa", "repa"], fids) == ("sit-s-2", "irepa", 300)
    report = {"model": "SiT-B/2", "method": "repa", "step": 200}
    assert correlated_setting(report, ["SiT-S/2"], ["irepa"], fids) == ("sit-b-2", "repa", 200)
    with pytest.raises(SystemExit, match="fix report.step"):
        correlated_setting({"step": 400}, ["SiT-S/2"], ["repa"], fids)
    with pytest.raises(SystemExit, match="fix report.model / report.method"):
        correlated_setting({"method": "conv_only"}, ["SiT-S/2"], ["repa"], fids)
