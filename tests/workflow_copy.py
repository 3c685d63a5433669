"""A throw-away copy of the repository for workflow tests, optionally with a stub `python -m repabench`.

The stub writes every output a stage declares on its command line (`--out*`, `--out-dir`, `--figures-dir`)
without computing anything, so Snakemake records real metadata (params, code, input sets) for the whole DAG in
seconds; incremental-rerun tests then dry-run against it. Rules call `{PYTHON} -m repabench` from the
repository root, so the copy's `repabench/__main__.py` is the one that runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
IGNORE = shutil.ignore_patterns(".venv", "results", "resources", ".snakemake", ".git", "__pycache__",
                                ".pytest_cache", ".stamps", "bench", "*.egg-info")

STUB_MAIN = r'''
import json, sys
from pathlib import Path

argv = sys.argv[1:]
stage, rest = argv[0], argv[1:]

def values(flag):
    out, i = [], 0
    while i < len(rest):
        if rest[i] == flag:
            i += 1
            while i < len(rest) and not rest[i].startswith("--"):
                out.append(rest[i]); i += 1
        else:
            i += 1
    return out

def touch(path, directory=None):
    path = Path(path)
    if directory is None:
        directory = path.suffix == ""
    if directory:
        path.mkdir(parents=True, exist_ok=True)
        (path / "manifest.json").write_text("{}")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("stub\n")

for flag in [f for f in rest if f.startswith("--out") and f != "--out-dir"] + ["--figures-dir"]:
    for path in values(flag):
        touch(path, directory=True if flag == "--figures-dir" else None)
for out_dir in values("--out-dir"):
    if stage == "train":
        steps = json.loads(values("--params")[0])["train"]["checkpoint_steps"]
        for step in steps:
            touch(Path(out_dir, "checkpoints", f"{step:07d}.pt"))
        touch(Path(out_dir, "log.json"))
    elif stage == "sample":
        touch(Path(out_dir, "manifest.json"))
    elif stage == "fetch_weights":
        touch(Path(out_dir, values("--name")[0]), directory=False)
    else:
        touch(Path(out_dir), directory=True)
'''


def copy_repo(dest: Path, stub: bool = False) -> Path:
    shutil.copytree(REPO, dest, symlinks=True, ignore=IGNORE)
    if stub:
        (dest / "repabench" / "__main__.py").write_text(STUB_MAIN)
    return dest


def snakemake(repo: Path, *args: str, configfiles: list[str] | None = None, check: bool = True,
              timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, *args]
    if configfiles:
        cmd += ["--configfile", *configfiles]
    run = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=timeout)
    if check and run.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({run.returncode}):\n{(run.stdout + run.stderr)[-5000:]}")
    return run


def job_counts(dry_run_output: str) -> dict[str, int]:
    """The `Job stats` table of `snakemake -n` as {rule: count} (empty when nothing is to be done)."""
    counts: dict[str, int] = {}
    lines = dry_run_output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Job stats:"):
            for row in lines[i + 3:]:
                parts = row.split()
                if len(parts) != 2 or not parts[1].isdigit():
                    break
                if parts[0] != "total":
                    counts[parts[0]] = int(parts[1])
            break
    return counts
