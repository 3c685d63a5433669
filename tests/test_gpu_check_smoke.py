"""`bash bench/gpu_check.sh --smoke`: every part runs on the CPU at tiny sizes, as on a Python that has only the GPU
machine's packages (tests/gpu_machine_site: no scipy, snakemake, ..., pytest only from a vendored copy), and writes
its JSON with provenance and sane numbers, and the Markdown table."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PARTS = ["1_gpu_tests", "2_train", "3_sample", "4_adm", "5_spatial", "5_features"]


def positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    vendor = tmp / "vendor"
    subprocess.run([sys.executable, str(REPO / "bench" / "vendor.py"), "--dest", str(vendor)], check=True,
                   capture_output=True, timeout=60)
    out = tmp / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "GPU_CHECK_VENDOR": str(vendor),
           "GPU_CHECK_WORK": str(tmp / "work"), "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": str(REPO / "tests" / "gpu_machine_site")}
    result = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--smoke"], cwd=tmp, env=env,
                            capture_output=True, text=True, timeout=300)
    return result, out


def test_every_part_succeeds_within_its_cap(smoke):
    result, out = smoke
    logs = "\n".join(f"--- {p}.log\n{(out / f'{p}.log').read_text()[-3000:]}" for p in PARTS
                     if (out / f"{p}.log").is_file())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + logs
    assert "pytest from" in result.stdout  # the vendored pytest was used: the machine's Python has none
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["ok"] and summary["mode"] == "smoke"
    assert [p["part"] for p in summary["parts"]] == PARTS
    for part in summary["parts"]:
        assert part["status"] == "ok" and part["exit_code"] == 0 and 0 < part["seconds"] <= part["cap_s"], part
    assert sum(p["seconds"] for p in summary["parts"]) < 180  # the smoke run's promise: under 3 minutes


def test_every_json_has_provenance_and_sane_numbers(smoke):
    _, out = smoke
    data = {part: json.loads((out / f"{part}.json").read_text()) for part in PARTS}
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    for part, d in data.items():
        assert d["complete"] is True, part
        assert d["commit"] == commit and d["device_type"] == "cpu" and d["torch"] and d["date"].endswith("Z"), part
        assert "cuda" in d

    tests = data["1_gpu_tests"]
    assert tests["counts"]["skipped"] == len(tests["tests"]) > 0  # no CUDA: every GPU test collected and skipped
    assert tests["counts"]["failed"] == tests["counts"]["error"] == 0

    records = data["2_train"]["records"]
    assert {(r["model"], r["method"]) for r in records} == {("SiT-T/2", "irepa"), ("SiT-T/2", "repa")}
    for record in records:
        assert positive(record["flops_per_image"]["total"])
        runs = {(r["setting"], r["batch"], bool(r.get("largest"))): r for r in record["runs"]}
        assert set(runs) == {("baseline", 2, False), ("optimised", 2, False), ("baseline", 4, True),
                             ("optimised", 4, True)}
        for run in runs.values():
            assert positive(run["images_per_s"]) and positive(run["peak_gib"]) and positive(run["step_ms"])
            # MFU against the nominal 1 TFLOP/s of the smoke run: images/s x FLOP per image / 1e12
            assert run["mfu"] == pytest.approx(run["images_per_s"] * record["flops_per_image"]["total"] / 1e12)

    sample = data["3_sample"]
    assert sample["extrapolated_from_steps"] == 4 and sample["steps"] == 8
    for setting in ("baseline", "optimised"):
        run = sample[setting]
        assert positive(run["images_per_s"]) and positive(run["mfu"])
        assert run["hours_per_50k"] == pytest.approx(50000 / run["images_per_s"] / 3600)
    tol = sample["tolerance"]
    assert tol["fp32_batch_change"]["max_abs_latent_diff"] < 1e-4  # image i's noise does not depend on the batch
    assert 0 < tol["bf16_vs_fp32"]["max_abs_latent_diff"] < 0.5

    adm = data["4_adm"]
    assert adm["extrapolated"] == {"from_images": 8, "to_images": 16, "how": adm["extrapolated"]["how"]}
    for run in adm["runs"].values():
        assert run["images"] == 16 and run["measured_images"] == 8
        assert run["features_s"] == pytest.approx(2 * run["features_measured_s"])
        assert run["total_s"] == pytest.approx(run["features_s"] + run["statistics_fid_s"] + run["pr_s"])
        assert positive(run["end_to_end_img_s"]) and math.isfinite(run["FID"])
    assert adm["max_pool_difference"] < 1e-4 and adm["fid_method"] == "eigh"

    spatial = data["5_spatial"]
    assert positive(spatial["batched"]["images_per_s"]) and positive(spatial["baseline"]["images_per_s"])
    assert spatial["max_abs_difference"] < 1e-4  # batched metrics = the per-image loop

    (features,) = data["5_features"]["records"]
    assert positive(features["settings"]["baseline"]["images_per_s"])
    assert positive(features["settings"]["optimised"]["images_per_s"])
    assert features["tolerance"]["cosine_min"] > 0.99


def test_markdown_table_has_every_section_and_row(smoke):
    _, out = smoke
    table = (out / "gpu_table.md").read_text()
    assert "SMOKE" in table
    for heading in ("## Parts", "## 0. GPU tests", "## 1. Training", "## 2. Generation", "## 3. ADM",
                    "## 4. Spatial metrics and feature extraction"):
        assert heading in table
    assert "No results" not in table
    rows = [line for line in table.splitlines() if line.startswith("| cpu")]
    # tests 1, training 2 methods x 2 batches, sampling 1, ADM 1, spatial 1, features 1
    assert len(rows) == 1 + 4 + 1 + 1 + 1 + 1
    assert "EXTRAPOLATED from 8 measured" in table and "(largest)" in table


@pytest.fixture()
def bench_train(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import bench_train

    return bench_train


def test_largest_batch_from_activation_memory(bench_train):
    # 14 GiB resident (weights, EMA, optimizer), 30 GiB peak at batch 32 -> 0.5 GiB per image;
    # 0.9 x 141 GiB = 126.9 GiB -> (126.9 - 14) / 0.5 = 225.8 images -> 224 (multiple of 16)
    measured = {"peak_gib": 30.0, "resident_gib": 14.0}
    assert bench_train.batch_ceiling(measured, 32, 141.0, 0.9, 16) == 224
    assert bench_train.batch_ceiling(measured, 32, 141.0, 0.9, 100) == 200
    assert bench_train.batch_ceiling(measured, 32, 20.0, 0.9, 16) == 32  # never below the batch that ran


def test_runner_skips_what_the_budget_cannot_hold(bench_train, monkeypatch):
    calls = []

    def fake_run_one(args, model, encoder, method, setting, batch, device, flops):
        calls.append(batch)  # every run: 30 s wall, of which 10 steps of 1 s
        return {"images_per_s": 1.0, "wall_s": 30.0, "step_ms": 1000.0}, flops

    monkeypatch.setattr(bench_train, "run_one", fake_run_one)
    args = type("Args", (), {"budget_s": 150.0, "warmup": 2, "steps": 8})()
    runner = bench_train.Runner(args, None, None)
    setting = bench_train.Setting("optimised", "bf16", True, True, True, True)
    assert runner.needed_s(setting, 32) == 0  # nothing known yet
    assert "skipped" not in runner.run("m", None, None, setting, 32, None)[0]
    # fixed 30 - 10 x 1 = 20 s, 1/32 s per image and step: batch 256 needs 20 + 10 x 256 / 32 = 100 s
    assert runner.needed_s(setting, 256) == pytest.approx(100.0)
    assert "skipped" not in runner.run("m", None, None, setting, 256, None)[0]  # 100 s < ~150 s left
    runner.budget.seconds = 90.0
    assert runner.run("m", None, None, setting, 256, None)[0] == {"skipped": "time budget"}  # 100 s > ~90 s
    assert "skipped" not in runner.run("m", None, None, setting, 128, None)[0]  # 20 + 40 = 60 s < ~90 s
    baseline = bench_train.Setting("baseline", "fp32", False, False, False, False)
    assert "skipped" not in runner.run("m", None, None, baseline, 256, None)[0]  # per setting: nothing known yet
    assert calls == [32, 256, 128, 256]
