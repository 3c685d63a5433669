"""Part 1 of the GPU check: the GPU tests (`pytest -m gpu` over tests/test_*_gpu.py) with their outcomes as JSON.

    python bench/gpu_tests.py --json bench/out/1_gpu_tests.json [-- extra pytest arguments]

Only the *_gpu.py test files are collected: the other test modules import the workflow's pins (snakemake, ...)
that the GPU machine lacks. pytest's own output goes to stdout (gpu_check.sh keeps it in a log); the JSON holds
the counts per outcome, each test's outcome and duration, and the failure texts. Without CUDA every test skips.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import common


def count(tests: dict[str, dict]) -> dict[str, int]:
    return {k: sum(1 for t in tests.values() if t["outcome"] == k) for k in ("passed", "failed", "error", "skipped")}


class Outcomes:
    """A pytest plugin that records every test's outcome (a failing set-up or teardown counts as an error) and
    rewrites the JSON after each one, so that a run stopped by its time cap keeps what finished."""

    def __init__(self, out: common.ResultFile) -> None:
        self.out = out
        self.tests: dict[str, dict] = {}

    def pytest_runtest_logfinish(self, nodeid, location) -> None:
        self.out.update(counts=count(self.tests), tests=self.tests)

    def pytest_runtest_logreport(self, report) -> None:
        entry = self.tests.setdefault(report.nodeid, {"outcome": "passed", "duration_s": 0.0})
        entry["duration_s"] += report.duration
        if report.when == "call" or report.outcome != "passed":
            if report.outcome == "failed":
                entry["outcome"] = "failed" if report.when == "call" else "error"
                entry["message"] = str(report.longrepr)[-4000:]
            elif report.outcome == "skipped" and entry["outcome"] == "passed":
                entry["outcome"] = "skipped"
                entry["message"] = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.tests[report.nodeid] = {"outcome": "error", "duration_s": 0.0, "message": str(report.longrepr)[-4000:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = parser.parse_args()
    import pytest  # here: gpu_check.sh puts the vendored copy on the path when the machine has none

    device = common.resolve_device("auto")
    out = common.ResultFile(args.json, "gpu_tests", device, args)
    files = sorted(str(p.relative_to(common.REPO)) for p in (common.REPO / "tests").glob("test_*_gpu.py"))
    outcomes = Outcomes(out)
    began = time.perf_counter()
    exit_code = pytest.main(["-m", "gpu", "-v", "-rA", "-p", "no:cacheprovider", *files, *args.pytest_args],
                            plugins=[outcomes])
    counts = count(outcomes.tests)
    out.finish(pytest=pytest.__version__, files=files, cuda_available=torch.cuda.is_available(),
               exit_code=int(exit_code), seconds=time.perf_counter() - began, counts=counts, tests=outcomes.tests)
    print(f"gpu tests: {counts} (pytest exit code {int(exit_code)})")
    # 5 = nothing collected/selected: not a failure of the check, the counts say what ran
    return 0 if int(exit_code) in (0, 5) else 1


if __name__ == "__main__":
    sys.exit(main())
