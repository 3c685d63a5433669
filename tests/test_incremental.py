"""Incremental reruns, dry-run based: what Snakemake schedules after a change to a finished `.test` workflow.

The finished state comes from a run with a stub `python -m repabench` that only writes the declared outputs
(tests/workflow_copy.py), so Snakemake's metadata (params, code, input sets) is real and the run takes seconds.
The commands a user types are the same (see docs/cluster.md):
    snakemake -n --configfile config/paper.yaml overlay.yaml    # what a config change reruns
    snakemake results/eval/sit-xl-2/<encoder>/repa/...json      # one encoder's chain only
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workflow_copy import copy_repo, job_counts, snakemake  # noqa: E402

pytestmark = pytest.mark.slow

BASE = ".test/config/config.yaml"
# the aggregate every run and encoder feeds (per-run CSVs and the report hang off it one step further)
TARGET = "results/correlate/table.csv"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("incremental") / "repo", stub=True)
    snakemake(repo, "-c2", "-q", configfiles=[BASE, "--", TARGET], timeout=900)
    config = yaml.safe_load((repo / BASE).read_text())
    assert job_counts(dry_run(repo, [BASE]).stdout) == {}, "the stub run left work undone"
    return repo, config


def dry_run(repo, configfiles, *extra):
    return snakemake(repo, "-n", *extra, configfiles=configfiles + ["--"] + [TARGET])


def overlay(repo: Path, name: str, content: dict) -> str:
    path = repo / ".test" / "config" / name
    path.write_text(yaml.safe_dump(content))
    return str(path.relative_to(repo))


def test_adding_an_encoder_schedules_only_its_chain_and_the_aggregate(finished):
    repo, config = finished
    new = "inception-cnn-2015_randinit"  # random init: no weights to fetch
    assert new not in config["encoders"]
    extra = overlay(repo, "add-encoder.yaml", {"encoders": config["encoders"] + [new]})
    out = dry_run(repo, [BASE, extra]).stdout
    methods = len(config["methods"])
    steps = len(config["train"]["checkpoint_steps"])
    assert job_counts(out) == {
        "extract_features": 2,  # train + heldout split
        "spatial_metrics": 1,
        "linear_probe": 1,
        "train": methods,
        "sample": methods * steps,
        "evaluate": methods * steps,
        "correlate": 1,
    }, out[-3000:]
    for old in config["encoders"]:
        assert f"/{old}/" not in "".join(line for line in out.splitlines() if line.strip().startswith("output:"))


def test_changing_one_method_parameter_reruns_only_its_runs(finished):
    repo, config = finished
    encoders, steps = len(config["encoders"]), len(config["train"]["checkpoint_steps"])
    irepa = dict(config["methods"]["irepa"], alpha=config["methods"]["irepa"]["alpha"] / 2)
    extra = overlay(repo, "alpha.yaml", {"methods": {"irepa": irepa}})
    out = dry_run(repo, [BASE, extra]).stdout
    assert job_counts(out) == {
        "train": encoders,
        "sample": encoders * steps,
        "evaluate": encoders * steps,
        "correlate": 1,
    }, out[-3000:]
    assert "params have changed since last execution" in out
    outputs = [line for line in out.splitlines() if line.strip().startswith("output:")]
    assert not [line for line in outputs if "/repa/" in line], "runs of the unchanged method were rescheduled"


def test_editing_library_code_reruns_nothing(finished):
    repo, _ = finished
    for module in ("train.py", "sample.py", "spatial.py", "store.py"):
        path = repo / "repabench" / module
        path.write_text(path.read_text() + "\n# an edit that must not invalidate any result\n")
    out = dry_run(repo, [BASE]).stdout
    assert job_counts(out) == {}, out[-3000:]
    assert "Nothing to be done" in out
