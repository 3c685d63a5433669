"""The stage harness: what every `python -m repabench <stage>` command shares.

A stage's command line is `stage_parser(...)` plus its own paths; `parse_stage` parses it, sets up logging and
threads, reads `--params` (the config sections the rule passes, nested under their names, as JSON or a file) into
the sections' typed objects, and resolves the device and the seed. The stage's work is a library function that
takes those objects, so it runs from Python the same way.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from repabench.sections import ConfigSectionError, config_keys, top_level_default

log = logging.getLogger("repabench")


def read_params(text: str | None) -> dict[str, Any]:
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


def stage_parser(prog: str, description: str, device: bool = False,
                 required: Mapping[str, str | None] | None = None) -> argparse.ArgumentParser:
    """The common options, `--device` when the stage computes on one, and the stage's `required` options
    (flag -> help text or None), in the order given."""
    parser = argparse.ArgumentParser(prog=f"python -m repabench {prog}", description=description)
    for flag, text in (required or {}).items():
        parser.add_argument(flag, required=True, help=text)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all)")
    parser.add_argument("--log-level", default=os.environ.get("REPABENCH_LOG", "INFO"))
    if device:
        parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda or cuda:N")
    return parser


def setup_logging(args: argparse.Namespace) -> None:
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(int(args.threads))
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))


def resolve_device(name: str | None = "auto") -> Any:
    import torch

    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
    return torch.device(name)


@dataclass(frozen=True)
class StageParams:
    """The `--params` of a stage: `raw` as received (what provenance hashes) and each key read into its type."""

    raw: Mapping[str, Any]
    values: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None


def read_stage_params(raw: Mapping[str, Any], expected: Mapping[str, Any]) -> StageParams:
    """Each key of `expected` -> a section class (with `from_config`; absent = its defaults) or a converter
    (absent = the schema's top-level default, else None). Other config keys are ignored (sections the stage
    does not read); a key that is not in the config either is an error naming the allowed ones."""
    unknown = sorted(set(raw) - set(expected) - set(config_keys()))
    if unknown:
        raise SystemExit(f"--params: unknown key(s) {unknown}; allowed: {sorted(expected)}")
    values: dict[str, Any] = {}
    try:
        for key, kind in expected.items():
            if hasattr(kind, "from_config"):
                values[key] = kind.from_config(raw.get(key), key)
            elif key in raw:
                values[key] = kind(raw[key]) if raw[key] is not None else None
            else:
                values[key] = _top_level_default_or_none(key)
    except ConfigSectionError as exc:
        raise SystemExit(f"--params: {exc}") from exc
    return StageParams(raw=dict(raw), values=values)


def _top_level_default_or_none(key: str) -> Any:
    try:
        return top_level_default(key)
    except KeyError:
        return None


def parse_stage(parser: argparse.ArgumentParser, argv: list[str], params: Mapping[str, type | Callable] | None = None,
                ) -> tuple[argparse.Namespace, StageParams, Any, int | None]:
    """(args, config, device, seed) of a stage command line; `params` declares what `--params` holds.

    The device is None for stages without `--device`; the seed is `config.seed` (None when not declared)."""
    if params:
        layout = ", ".join(f'"{k}": {{...}}' if hasattr(v, "from_config") else f'"{k}": ...' for k, v in params.items())
        parser.add_argument("--params", default=None,
                            help=f"JSON or a JSON/YAML file: {{{layout}}} (an absent section: its defaults)")
    args = parser.parse_args(argv)
    setup_logging(args)
    config = read_stage_params(read_params(args.params), params) if params else StageParams({}, {})
    device = resolve_device(args.device) if hasattr(args, "device") else None
    seed = config.values.get("seed")
    return args, config, device, None if seed is None else int(seed)
