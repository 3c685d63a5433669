"""Shared command-line plumbing: stage parameters, threads, device, logging."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("repabench")


def load_params(text: str | None) -> dict[str, Any]:
    """Parameters given as inline JSON, or as a path to a JSON/YAML file."""
    if text is None or text == "":
        return {}
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"--params is not valid JSON: {exc}") from exc
    else:
        path = Path(text)
        if not path.is_file():
            raise SystemExit(f"--params: {path} is neither inline JSON nor an existing file")
        if path.suffix in {".yaml", ".yml"}:
            import yaml

            value = yaml.safe_load(path.read_text())
        else:
            value = json.loads(path.read_text())
    if not isinstance(value, dict):
        raise SystemExit("--params must be a JSON/YAML mapping")
    return value


def stage_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m repabench {prog}", description=description)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all)")
    parser.add_argument("--log-level", default=os.environ.get("REPABENCH_LOG", "INFO"))
    return parser


def setup(args: argparse.Namespace) -> None:
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(int(args.threads))
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))


def resolve_device(name: str | None = "auto") -> "Any":
    import torch

    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
    return torch.device(name)
