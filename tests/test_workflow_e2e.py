"""The whole chain on the `.test` config, for real: images -> latents -> training -> samples -> FID, features ->
spatial metrics and probes -> correlation -> report; then the report's content is checked against the tables."""

from __future__ import annotations

import base64
import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workflow_copy import copy_repo, job_counts, snakemake  # noqa: E402

pytestmark = pytest.mark.slow
CONFIG = ".test/config/config.yaml"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("e2e") / "repo")
    snakemake(repo, "-c2", "--configfile", CONFIG, timeout=1500)
    return repo, yaml.safe_load((repo / CONFIG).read_text())


def read_table(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_report_has_every_encoder_and_the_figures(study):
    repo, config = study
    html = (repo / "results/report/report.html").read_text()
    for encoder in config["encoders"]:
        assert re.search(rf"<td[^>]*>\s*{re.escape(encoder)}\s*</td>", html), f"no table row for {encoder}"
    images = re.findall(r'<img[^>]+src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) >= 4, "the HTML must embed its figures"
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data in images)
    assert not re.search(r'<(img|script|link)[^>]+(src|href)="https?://', html)
    figures = sorted(p.name for p in (repo / "results/report/figures").glob("*.png"))
    assert "correlation.png" in figures and len(figures) >= 4

    from pypdf import PdfReader

    pdf = PdfReader(str(repo / "results/report/report.pdf"))
    assert len(pdf.pages) >= 4
    text = "".join(page.extract_text() or "" for page in pdf.pages)
    for encoder in config["encoders"]:
        assert encoder in text


def test_correlations_equal_scipy_on_the_table(study):
    repo, config = study
    table = read_table(repo / "results/correlate/table.csv")
    assert sorted(row["encoder"] for row in table) == sorted(config["encoders"])
    result = json.loads((repo / "results/correlate/correlation.json").read_text())
    step = max(config["train"]["checkpoint_steps"])
    fid_column = f"FID_sit-t-2_{config['report']['method']}_{step}"
    fid = np.array([float(row[fid_column]) for row in table])
    html = (repo / "results/report/report.html").read_text()
    checked = 0
    for predictor in ("LP", "LDS", "CDS", "SRSS", "RMSC"):
        x = np.array([float(row[predictor]) for row in table])
        entry = result["predictors"][predictor]
        if np.ptp(x) == 0 or np.ptp(fid) == 0:
            continue
        expected = sps.pearsonr(x, fid)
        assert entry["n"] == len(table)
        assert entry["pearson_r"] == pytest.approx(expected.statistic, abs=1e-9), predictor
        assert entry["pearson_p"] == pytest.approx(expected.pvalue, abs=1e-9), predictor
        assert entry["spearman_rho"] == pytest.approx(sps.spearmanr(x, fid).statistic, abs=1e-9), predictor
        z, half = np.arctanh(expected.statistic), 1.959963984540054 / np.sqrt(len(table) - 3)
        assert entry["ci95_fisher"] == pytest.approx([np.tanh(z - half), np.tanh(z + half)], abs=1e-9)
        assert f"<td>{expected.statistic:.3f}</td>" in html, f"r of {predictor} not shown in the report"
        checked += 1
    assert checked >= 4


def test_evaluation_csvs_and_provenance(study):
    repo, config = study
    steps = sorted(config["train"]["checkpoint_steps"])
    for encoder in config["encoders"]:
        for method in config["methods"]:
            rows = read_table(repo / f"results/eval/sit-t-2/{encoder}/{method}/{config['sample']['sampler']}.csv")
            assert [int(r["Steps"]) for r in rows] == steps
            assert list(rows[0]) == ["Steps", "FID", "sFID", "IS", "Precision", "Recall"]
            assert all(np.isfinite(float(r["FID"])) and float(r["FID"]) > 0 for r in rows)
    result = json.loads(next((repo / "results/eval").rglob("*.json")).read_text())
    assert {"code", "params_hash", "inputs", "device"} <= set(result["provenance"])


def test_nothing_left_to_do_and_adding_an_encoder_runs_only_its_chain(study):
    repo, config = study
    assert job_counts(snakemake(repo, "-n", "--configfile", CONFIG).stdout) == {}
    extra = repo / ".test/config/add.yaml"
    new = "effnetlite-cnn-lite1_randinit"  # random init: no weights to fetch
    assert new not in config["encoders"]
    text = (repo / CONFIG).read_text().replace("  - pixels-classic-raw\n", f"  - pixels-classic-raw\n  - {new}\n")
    extra.write_text(text)
    counts = job_counts(snakemake(repo, "-n", "--configfile", str(extra.relative_to(repo))).stdout)
    methods, steps = len(config["methods"]), len(config["train"]["checkpoint_steps"])
    assert counts == {
        "extract_features": 2, "spatial_metrics": 1, "linear_probe": 1, "train": methods,
        "sample": methods * steps, "evaluate": methods * steps, "collect_metrics": methods,
        "correlate": 1, "report": 1, "all": 1,
    }, counts


FAMILIES_OVERLAY = ".test/config/families.yaml"


def test_a_tiny_jit_and_meanflow_join_the_chain_and_the_report(study):
    """Last (it rewrites the report): the families overlay trains, samples and evaluates JiT-T/16 on the images
    already there (no latent or VAE job for it) and MF-T/2 on the latents already there (1-NFE MeanFlow sampler),
    and the report's curves show them beside SiT-T/2."""
    repo, config = study
    plan = snakemake(repo, "-n", "--configfile", CONFIG, FAMILIES_OVERLAY).stdout
    counts = job_counts(plan)
    assert not {"cache_latents", "fit_autoencoder", "latent_stats", "extract_features"} & set(counts), counts
    # JiT-T/16 and MF-T/2 with repa, and SiT-T/2 with the overlay's end-to-end `repae` (which skips the others)
    assert counts["train"] == 3 * len(config["encoders"]) and counts["untrained"] == 2, counts
    snakemake(repo, "-c2", "--configfile", CONFIG, FAMILIES_OVERLAY, timeout=900)
    steps = sorted(config["train"]["checkpoint_steps"])
    for model, sampler in (("jit-t-16", "jit8"), ("mf-t-2", "mf1")):
        for encoder in config["encoders"]:
            rows = read_table(repo / f"results/eval/{model}/{encoder}/repa/{sampler}.csv")
            assert [int(r["Steps"]) for r in rows] == steps
            assert all(np.isfinite(float(r["FID"])) and float(r["FID"]) > 0 for r in rows)
    manifest = json.loads(next((repo / "results/samples/jit-t-16").rglob("manifest.json")).read_text())
    assert manifest["image_shape"] == [128, 128, 3] and set(manifest["weights"]) == {"checkpoint"}
    manifest = json.loads(next((repo / "results/samples/mf-t-2").rglob("manifest.json")).read_text())
    assert manifest["image_shape"] == [128, 128, 3] and "autoencoder" in manifest["weights"]
    html = (repo / "results/report/report.html").read_text()
    assert "JiT-T/16" in html or "jit-t-16" in html
    assert "MF-T/2" in html or "mf-t-2" in html


def test_the_overlay_repae_run_tunes_its_vae_and_reaches_the_report(study):
    """After the overlay run above: SiT-T/2 + REPA-E trained on the images with the PCA autoencoder tuned, its
    checkpoint carries the tuned decoder and BatchNorm stats, sampling needed nothing else, the report shows it."""
    repo, config = study
    steps = sorted(config["train"]["checkpoint_steps"])
    for encoder in config["encoders"]:
        rows = read_table(repo / f"results/eval/sit-t-2/{encoder}/repae/sde8.csv")
        assert [int(r["Steps"]) for r in rows] == steps
        assert all(np.isfinite(float(r["FID"])) and float(r["FID"]) > 0 for r in rows)
    assert not (repo / "results/train/jit-t-16" / config["encoders"][0] / "repae").exists()
    run = f"sit-t-2/{config['encoders'][0]}/repae"
    log = json.loads((repo / f"results/train/{run}/log.json").read_text())
    assert log["provenance"]["params"]["method"]["end_to_end"] is True
    assert all(np.isfinite(e["vae_loss"]) for e in log["entries"])
    manifest = json.loads(next((repo / f"results/samples/{run}").rglob("manifest.json")).read_text())
    assert set(manifest["weights"]) == {"checkpoint"}
    assert "REPA-E" in (repo / "results/report/report.html").read_text()
