"""The `published` source end to end: a tiny synthetic bundle in the upstream layout (.test/make_published_bundle.py)
is fetched from a local mirror, imported, sampled, evaluated and correlated, and the report puts the bundle's
"authors'" numbers beside ours; plus the plan of the real preset config/published.yaml."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workflow_copy import copy_repo, job_counts, snakemake  # noqa: E402

pytestmark = pytest.mark.slow
CONFIG = ".test/config/published.yaml"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("published") / "repo")
    subprocess.run([sys.executable, ".test/make_published_bundle.py", ".test/published"], cwd=repo, check=True,
                   capture_output=True, env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"})
    snakemake(repo, "-c2", "--configfile", CONFIG, timeout=900)
    return repo, yaml.safe_load((repo / CONFIG).read_text())


def _cells(html: str, anchor: str) -> list[list[str]]:
    section = html[html.index(f'id="{anchor}"'):]
    section = section[:section.index("</section>")]
    rows = re.findall(r"<tr>(.*?)</tr>", section, flags=re.S)
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r, flags=re.S)]
            for r in rows]


def test_nothing_is_trained_or_extracted_and_every_import_ran(study):
    repo, config = study
    logs = repo / "results/logs"
    assert not (logs / "train").exists() and not (logs / "extract_features").exists()
    assert not (logs / "linear_probe").exists()
    for encoder in config["encoders"]:
        ckpt = repo / f"results/train/sit-t-2/{encoder}/repa/checkpoints/0000004.pt"
        assert ckpt.is_file() and (repo / f"results/spatial/{encoder}.json").is_file()
        log = json.loads((repo / f"results/train/sit-t-2/{encoder}/repa/log.json").read_text())
        assert log["source"] == "published" and log["imported"][0]["sha256"]
    receipts = list((repo / "results/published/fetched").rglob("*.json"))
    assert receipts and all(json.loads(p.read_text())["sha256"] for p in receipts)


def test_report_shows_the_authors_numbers_beside_ours(study):
    repo, config = study
    html = (repo / "results/report/report.html").read_text()
    rows = {r[0]: r for r in _cells(html, "published-runs") if len(r) == 10 and r[1] == "REPA"}
    assert sorted(rows) == sorted(config["encoders"])
    for encoder in config["encoders"]:
        with (repo / config["published"]["root"] / config["published"]["paper_fid"][encoder]).open() as handle:
            theirs = next(float(r["FID"]) for r in csv.DictReader(handle) if int(r["Steps"]) == 4)
        with (repo / f"results/eval/sit-t-2/{encoder}/repa/sde4.csv").open() as handle:
            ours = float(next(csv.DictReader(handle))["FID"])
        row = rows[encoder]
        assert row[2] == f"{theirs:.2f}" and row[3] == f"{ours:.2f}"
        assert row[4] == f"{ours - theirs:+.2f}"  # ours - theirs
    correlation = json.loads((repo / "results/correlate/correlation.json").read_text())
    r_rows = {r[0]: r for r in _cells(html, "published-runs") if len(r) == 5 and r[0] in {"LP", "LDS", "RMSC"}}
    ours_r = correlation["predictors"]["RMSC"]["pearson_r"]
    assert r_rows["RMSC"][1] == "-0.888" and r_rows["RMSC"][3] == f"{ours_r - -0.888:+.3f}"
    from pypdf import PdfReader

    text = "".join(page.extract_text() or "" for page in PdfReader(str(repo / "results/report/report.pdf")).pages)
    assert "authors' checkpoints" in text


def test_the_paper_preset_plans_import_sample_evaluate_report(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    run = snakemake(repo, "-n", "--configfile", "config/published.yaml", timeout=300)
    counts = job_counts(run.stdout)
    config = yaml.safe_load((repo / "config/published.yaml").read_text())
    runs = len(config["encoders"]) * len(config["run_methods"])
    assert counts["import_checkpoints"] == runs and counts["sample"] == runs and counts["evaluate"] == runs
    assert counts["import_features"] == counts["spatial_metrics"] == len(config["encoders"])
    assert counts["report"] == 1 and counts["correlate"] == 1 and counts["paper_numbers"] == 1
    assert "train" not in counts and "extract_features" not in counts and "cache_latents" not in counts
