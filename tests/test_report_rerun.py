"""What a config edit reruns of the report, dry-run based on a finished stub `.test` workflow (as
tests/test_incremental.py): the report gets only the config it renders, so an edit of a method that is not
trained or of a sampler that is not evaluated leaves it alone, while an edit of what it shows reruns it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workflow_copy import copy_repo, job_counts, snakemake  # noqa: E402

pytestmark = pytest.mark.slow

BASE = ".test/config/config.yaml"
TARGET = "results/report/report.html"


def _overlay(repo: Path, name: str, content: dict) -> str:
    path = repo / ".test" / "config" / name
    path.write_text(yaml.safe_dump(content))
    return str(path.relative_to(repo))


def _spares(config: dict, *, coeff: float = 0.5, steps: int = 4) -> dict:
    """The .test study plus a method nobody trains and a sampler nobody evaluates."""
    return {
        "run_methods": list(config["methods"]),
        "methods": {"spare": dict(config["methods"]["repa"], coeff=coeff)},
        "samplers": {"spare_ode": {"mode": "ode", "steps": steps}},
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("report-rerun") / "repo", stub=True)
    config = yaml.safe_load((repo / BASE).read_text())
    spares = _overlay(repo, "spares.yaml", _spares(config))
    snakemake(repo, "-c2", "-q", configfiles=[BASE, spares, "--", TARGET], timeout=900)
    assert job_counts(_dry_run(repo, [BASE, spares]).stdout) == {}, "the stub run left work undone"
    return repo, config


def _dry_run(repo: Path, configfiles: list[str]):
    return snakemake(repo, "-n", configfiles=configfiles + ["--", TARGET])


def test_editing_an_untrained_method_or_an_unused_sampler_does_not_rerun_the_report(finished):
    repo, config = finished
    edited = _overlay(repo, "spares-edited.yaml", _spares(config, coeff=1.0, steps=6))
    out = _dry_run(repo, [BASE, edited]).stdout
    assert job_counts(out) == {}, out[-3000:]


def test_editing_what_the_report_shows_reruns_it(finished):
    repo, config = finished
    spares = _spares(config)
    retitled = _overlay(repo, "retitled.yaml", {**spares, "report": {**config["report"], "title": "Another title"}})
    out = _dry_run(repo, [BASE, retitled]).stdout
    assert job_counts(out) == {"correlate": 1, "report": 1}, out[-3000:]  # correlate records the report section
    assert "params have changed since last execution" in out
