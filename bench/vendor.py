"""Copy the pure-Python packages that the GPU check needs and the GPU machine may lack into bench/vendor/.

    python bench/vendor.py [--dest bench/vendor]     # `make gpu-vendor`; run with the project's .venv

The GPU machine's Python has torch, accelerate, timm and transformers (and what they pull in: numpy, pyyaml,
tqdm, packaging, ...) but not pytest. This copies pytest and its requirements (pluggy, iniconfig, pygments,
packaging) from the running interpreter's installation, with their .dist-info, into an ignored folder that the
`run` tool carries (carry: ["bench/vendor"]); gpu_check.sh puts it on PYTHONPATH only when `import pytest` fails.
Compiled packages are refused: they would not match the other machine's Python.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import shutil
import sys
from pathlib import Path

PACKAGES = ["pytest", "pluggy", "iniconfig", "pygments", "packaging"]
# needed by pytest on Python < 3.11 only; copied when installed here
OPTIONAL = ["exceptiongroup", "tomli"]


def copy_distribution(name: str, dest: Path) -> int:
    dist = metadata.distribution(name)
    copied = 0
    for file in dist.files or []:
        parts = Path(file).parts
        if parts[0] == ".." or "__pycache__" in parts or file.suffix in (".pyc",):
            continue  # scripts outside site-packages, byte code
        if file.suffix in (".so", ".pyd"):
            raise SystemExit(f"{name} has compiled file {file}: it cannot be vendored for another Python")
        source = Path(dist.locate_file(file))
        if not source.is_file():
            continue
        target = dest / file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        copied += 1
    return copied


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, default=Path(__file__).resolve().parent / "vendor")
    args = parser.parse_args()
    if args.dest.exists():
        shutil.rmtree(args.dest)
    args.dest.mkdir(parents=True)
    for name in PACKAGES + OPTIONAL:
        try:
            count = copy_distribution(name, args.dest)
        except metadata.PackageNotFoundError:
            if name in OPTIONAL:
                continue
            raise SystemExit(f"{name} is not installed in {sys.executable}; run `make install` first")
        print(f"vendored {name} {metadata.version(name)} ({count} files) -> {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
