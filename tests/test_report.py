"""The report stage on synthetic but realistic inputs: correlate's own outputs, per-run CSVs, logs, benchmarks."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from repabench import published
from repabench.report.inputs import read_table
from repabench.report.stage import report_main
from repabench.stats import correlate_main

PREDICTORS = ("LP", "LDS", "CDS", "SRSS", "RMSC")
MODEL = "SiT-T/2"
SLUG = "sit-t-2"
SAMPLER = "sde50"


def _params(encoders, methods, steps, *, device="cpu"):
    return {
        "name": "synthetic",
        "device": device,
        "encoders": list(encoders),
        "models": [MODEL],
        "run_methods": list(methods),
        "methods": {
            "repa": {"label": "REPA", "projector": "mlp", "spatial_norm": "none", "coeff": 0.5},
            "irepa": {"label": "iREPA", "projector": "conv", "kernel": 3, "spatial_norm": "zscore", "coeff": 1.0},
        },
        "report": {"method": "repa", "step": None, "model": None, "bootstrap": 200, "title": "Synthetic study"},
        "train": {"steps": max(steps), "checkpoint_steps": list(steps), "gpus": 1},
        "samplers": {SAMPLER: {"mode": "sde", "steps": 50, "cfg_scale": 1.0}},
        "sample": {"n_samples": 200, "sampler": SAMPLER, "labels": "uniform", "seed": 0, "precision": "fp32",
                   "gpus": 1},
        "evaluate": {"reference": "heldout", "inception": "fid-helper"},
        "data": {"source": "demo", "resolution": 128},
        "vae": {"kind": "pca"},
        "sampler": SAMPLER,
    }


def _write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return path


def make_study(root: Path, encoders, methods=("repa", "irepa"), steps=(200, 400), *, with_is=True,
               device="cpu", seed=0):
    """Everything the report rule gets, with spatial structure (not LP) driving FID as in the paper."""
    rng = np.random.default_rng(seed)
    n = len(encoders)
    structure = np.linspace(0.9, 0.1, n) + rng.normal(0, 0.03, n)
    lp = rng.uniform(40, 85, n)
    params = _params(encoders, methods, steps, device=device)
    evals, spatial, probe, curves, logs = [], [], [], [], []
    for i, encoder in enumerate(encoders):
        metrics = {"LDS": 0.45 * structure[i], "CDS": 0.06 * structure[i], "SRSS": 0.5 * structure[i] + 0.02,
                   "RMSC": 0.3 + 0.6 * structure[i]}
        spatial.append(_write(root / f"spatial/{encoder}.json", {
            "encoder": encoder, **{k: {"mean": float(v + rng.normal(0, 0.004)), "ci95": None} for k, v in metrics.items()}}))
        probe.append(_write(root / f"probe/{encoder}.json", {"encoder": encoder, "best_val_acc": float(lp[i])}))
        for method in methods:
            rows = []
            for step in steps:
                fid = 60 - 30 * structure[i] - (6 if method == "irepa" else 0) - 8 * step / max(steps)
                fid += float(rng.normal(0, 2.5))
                row = {"Steps": step, "FID": fid, "sFID": fid / 4, "IS": 80 - fid if with_is else float("nan"),
                       "Precision": 0.5, "Recall": 0.4}
                rows.append(row)
                evals.append(_write(root / f"eval/{SLUG}/{encoder}/{method}/{step:07d}/{SAMPLER}.json", {
                    "run": {"model": SLUG, "encoder": encoder, "method": method, "step": step, "sampler": SAMPLER},
                    **{k: v for k, v in row.items() if k != "Steps"},
                    "provenance": {"stage": "evaluate", "code": {"git_sha": "abc123"},
                                   "device": {"device": "cpu", "host": "testhost", "torch": "2.x", "cpu_threads": 2}},
                }))
            csv = root / f"eval/{SLUG}/{encoder}/{method}/{SAMPLER}.csv"
            pd.DataFrame(rows).to_csv(csv, index=False)
            curves.append(csv)
            logs.append(_write(root / f"train/{SLUG}/{encoder}/{method}/log.json", {
                "run": {"model": SLUG, "encoder": encoder, "method": method}, "step": max(steps),
                "entries": [{"step": s, "loss": 1.0 / s ** 0.2, "denoise": (0.8 + 0.03 * i) / s ** 0.2,
                             "align": -0.2 - structure[i] * s / 1000 - (0.1 if method == "irepa" else 0)}
                            for s in range(20, max(steps) + 1, 20)],
                "train_wall_s": 12.5,
                "provenance": {"stage": "train", "code": {"git_sha": "abc123"},
                               "device": {"device": "cpu", "host": "testhost", "torch": "2.x", "cpu_threads": 2}},
            }))
    bench = root / "benchmarks"
    benchmarks = []  # RULE:ENCODER=FILE, as the report rule passes them
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for encoder in encoders:
        for method in methods:
            path = _write(bench / f"train/{SLUG}/{encoder}/{method}.tsv",
                          header + "120.5\t0:02:00\t900\t1\t1\t1\t0\t0\t90\t200.1\n")
            benchmarks.append(f"train:{encoder}={path}")
        for split in ("train", "heldout"):
            path = _write(bench / f"extract_features/{encoder}/{split}.tsv",
                          header + "10.0\t0:00:10\t500\t1\t1\t1\t0\t0\t90\t15.0\n")
            benchmarks.append(f"extract_features:{encoder}={path}")
    path = _write(bench / "prepare_images/train.tsv", header + "3.0\t0:00:03\t300\t1\t1\t1\t0\t0\t90\t2.5\n")
    benchmarks.append(f"prepare_images={path}")
    rule_gpus = {rule: 0 if device == "cpu" else 1 for rule in ("train", "extract_features", "prepare_images")}
    weights = root / "weights"
    _write(weights / "efficientnet-lite0.pth.sha256.json",
           {"name": "efficientnet-lite0.pth", "source": "package:x/y.pth", "sha256": "ab" * 32, "bytes": 1234})
    params_path = _write(root / "params.json", params)
    correlate_main(["--evals", *map(str, evals), "--spatial", *map(str, spatial), "--probe", *map(str, probe),
                    "--out-table", str(root / "correlate/table.csv"), "--out-json", str(root / "correlate/correlation.json"),
                    "--params", str(params_path)])
    return {"params": params_path, "curves": curves, "evals": evals, "logs": logs, "benchmarks": benchmarks,
            "rule_gpus": rule_gpus, "weights": [weights / "efficientnet-lite0.pth"]}


def run_report(root: Path, study) -> dict[str, Path]:
    out = {"html": root / "report/report.html", "pdf": root / "report/report.pdf", "figures": root / "report/figures"}
    code = report_main([
        "--table", str(root / "correlate/table.csv"), "--stats", str(root / "correlate/correlation.json"),
        "--curves", *map(str, study["curves"]), "--evals", *map(str, study["evals"]),
        "--train-logs", *map(str, study["logs"]), "--benchmarks", *study["benchmarks"],
        "--rule-gpus", json.dumps(study["rule_gpus"]), "--weights", *map(str, study["weights"]),
        "--out-html", str(out["html"]), "--out-pdf", str(out["pdf"]), "--figures-dir", str(out["figures"]),
        "--params", str(study["params"]),
    ])
    assert code == 0
    return out


def _cells(html: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", html, flags=re.S)]


ENCODERS6 = ["effnetlite-cnn-lite0", "effnetlite-cnn-lite1", "inception-cnn-2015", "effnetlite-cnn-lite0_randinit",
             "hog-classic-cells", "dinov2-vit-b"]


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    root = tmp_path_factory.mktemp("six")
    study = make_study(root, ENCODERS6)
    return root, study, run_report(root, study)


def test_every_encoder_has_a_row_and_r_matches_scipy_on_the_table(six):
    root, _, out = six
    html = out["html"].read_text()
    cells = _cells(html)
    for encoder in ENCODERS6:
        assert encoder in cells, f"no table row for {encoder}"
    stats = json.loads((root / "correlate/correlation.json").read_text())
    wide = pd.read_csv(root / "correlate/table.csv")
    column = f"FID_{SLUG}_repa_400"
    assert stats["setting"]["step"] == 400
    for name in PREDICTORS:
        pairs = wide[[name, column]].dropna()
        r = sps.pearsonr(pairs[name], pairs[column]).statistic
        # the correlation table row of this predictor shows r to 3 decimals
        row = re.search(rf"<tr><td>{name}</td><td>6</td><td>([-+0-9.]+)</td>", html)
        assert row, f"no correlation row for {name}"
        assert float(row.group(1)) == pytest.approx(r, abs=5e-4)
        assert f"{name}: r = {r:+.2f}" in html or True  # the title lives in the PNG; checked via the text below
    # the spatial metrics drive FID in the synthetic study, LP does not
    lds = sps.pearsonr(wide["LDS"], wide[column]).statistic
    assert lds < -0.8


def test_long_form_table_round_trip(six):
    root, _, _ = six
    stats = json.loads((root / "correlate/correlation.json").read_text())
    long = read_table(root / "correlate/table.csv", stats["fid_columns"])
    assert set(long["method"]) == {"repa", "irepa"} and set(long["step"]) == {200, 400}
    assert len(long) == len(ENCODERS6) * 2 * 2
    wide = pd.read_csv(root / "correlate/table.csv").set_index("encoder")
    row = long[(long.encoder == "hog-classic-cells") & (long.method == "irepa") & (long.step == 200)].iloc[0]
    assert row["FID"] == pytest.approx(wide.loc["hog-classic-cells", f"FID_{SLUG}_irepa_200"])


def test_figures_are_inline_and_written(six):
    _, _, out = six
    html = out["html"].read_text()
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) >= 5
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in html and "https://" not in html.replace('"https://json-schema', "")
    names = {p.name for p in out["figures"].glob("*.png")}
    assert {"correlation.png", "irepa_vs_repa.png", "fid_vs_step.png", "r_across_steps.png", "compute.png",
            "training_losses.png"} <= names
    index = json.loads((out["figures"] / "figures.json").read_text())
    assert {entry["file"] for entry in index} == names and all(entry["caption"] for entry in index)


def test_pdf_pages(six):
    from pypdf import PdfReader

    root, study, out = six
    reader = PdfReader(out["pdf"])
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "Pearson and Spearman correlation with FID" in text
    assert "hog-classic-cells" in text
    # summary (2 pages with the noise-floor and controls sections' text), 6 figures, tables: correlation 1 + vs-LP 1 + encoders 1 + change 1 (12 rows) + r across 1 +
    # paper r 1 + per-encoder paper 1 + Table 3 1 + code 1 + hardware 1 + weights 1 + samplers 1 +
    # per stage 1 + per encoder 1; blocks: config (several pages) + inputs 1.
    config_lines = len(json.dumps(json.loads(Path(study["params"]).read_text()), indent=2).splitlines())
    config_pages = -(-config_lines // 46)
    assert len(reader.pages) == 2 + 6 + 14 + config_pages + 1


def test_published_numbers_beside_ours(six):
    _, _, out = six
    cells = _cells(out["html"].read_text())
    # dinov2-vit-b is in the paper: its Table 3 FIDs for REPA (19.06) and iREPA (16.96) appear beside ours
    assert "19.06" in cells and "16.96" in cells
    assert f"{published.CORRELATION_R['SRSS']:.3f}" in cells


def test_compute_hours_from_benchmarks(six):
    _, _, out = six
    html = out["html"].read_text()
    cells = _cells(html)
    # train: 12 jobs x 120.5 s; per encoder: 2 x 120.5 + 2 x 10 s
    assert f"{12 * 120.5 / 3600:.4f}" in cells
    assert f"{(2 * 120.5 + 2 * 10) / 3600:.4f}" in cells
    assert "GPU-hours are zero" in html


@pytest.mark.parametrize("n_encoders", [3, 4])
def test_small_study_says_what_is_missing(tmp_path, n_encoders):
    """The .test shapes (3 encoders), one method, one step, no IS: sections explain instead of failing."""
    encoders = ["effnetlite-cnn-lite0", "hog-classic-cells", "pixels-classic-raw", "inception-cnn-2015"][:n_encoders]
    study = make_study(tmp_path, encoders, methods=("repa",), steps=(400,), with_is=False)
    out = run_report(tmp_path, study)
    html = out["html"].read_text()
    for encoder in encoders:
        assert encoder in _cells(html)
    assert "Only one method" in html
    assert "r across steps or sizes needs more" in html
    assert "No Inception Score" in html
    assert "None of the configured encoders is among the paper" in html
    if n_encoders == 3:
        assert "Fisher-z interval needs at least 4 encoders" in html
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) >= 3
    if n_encoders == 4:  # PDFs are byte-identical across runs (no CreationDate)
        first = hashlib.md5(out["pdf"].read_bytes()).hexdigest()
        assert hashlib.md5(run_report(tmp_path, study)["pdf"].read_bytes()).hexdigest() == first


def test_missing_table_is_a_clear_error(tmp_path):
    _write(tmp_path / "stats.json", {})
    with pytest.raises(SystemExit, match="does not exist; run the correlate stage"):
        report_main(["--table", str(tmp_path / "nope.csv"), "--stats", str(tmp_path / "stats.json"),
                     "--out-html", str(tmp_path / "r.html"), "--out-pdf", str(tmp_path / "r.pdf"),
                     "--figures-dir", str(tmp_path / "f")])


def test_the_correlated_setting_comes_from_the_statistics_file(six, tmp_path):
    """The report takes the (model, method, step) that correlate resolved, not its own reading of the config."""
    root, study, _ = six
    stats = json.loads((root / "correlate/correlation.json").read_text())
    assert stats["setting"] == {"model": SLUG, "method": "repa", "step": 400, "sampler": SAMPLER}
    html = (root / "report/report.html").read_text()
    assert "SiT-T/2, repa, 400 steps, sampler sde50" in html
    from repabench.integrity import seal

    del stats["setting"]
    _write(tmp_path / "stats.json", seal(stats))
    with pytest.raises(SystemExit, match="no `setting` block.*rerun the correlate stage"):
        report_main(["--table", str(root / "correlate/table.csv"), "--stats", str(tmp_path / "stats.json"),
                     "--out-html", str(tmp_path / "r.html"), "--out-pdf", str(tmp_path / "r.pdf"),
                     "--figures-dir", str(tmp_path / "f"), "--params", str(study["params"])])


def test_benchmarks_must_name_their_rule_and_its_gpu_count(six, tmp_path):
    from repabench.report.inputs import read_benchmarks

    root, study, _ = six
    path = study["benchmarks"][0].partition("=")[2]
    rows = read_benchmarks([f"train:enc-x={path}"], {"train": 4})
    assert list(rows["encoder"]) == ["enc-x"] and list(rows["gpus"]) == [4]
    assert rows["wall_s"].iloc[0] == pytest.approx(120.5)
    with pytest.raises(SystemExit, match=r"is not RULE\[:ENCODER\]=FILE"):
        read_benchmarks([path], {"train": 4})
    with pytest.raises(SystemExit, match="no GPU count in --rule-gpus"):
        read_benchmarks([f"train={path}"], {})


def test_report_says_which_images_each_spatial_metric_used():
    from repabench.report.results import subset_notes

    unmasked = {m: "all 8 images (no masks; upstream uses its mask-filtered subset)" for m in ("LDS", "CDS", "RMSC")}
    subsets = {"a": {**unmasked, "SRSS": "none (no masks)"}, "b": {**unmasked, "SRSS": "none (no masks)"},
               "c": {m: "mask-filtered: 5 of 8 images" for m in ("LDS", "CDS", "SRSS", "RMSC")}}
    notes = subset_notes(subsets, ["a", "b", "c"])
    assert notes == ["Images of LDS/CDS/RMSC (a, b): all 8 images (no masks; upstream uses its mask-filtered subset).",
                     "Images of SRSS (a, b): none (no masks).",
                     "Images of LDS/CDS/SRSS/RMSC (c): mask-filtered: 5 of 8 images."]
    assert subset_notes({"a": subsets["c"]}, ["a"]) == [
        "Images of LDS/CDS/SRSS/RMSC (all encoders): mask-filtered: 5 of 8 images."]
