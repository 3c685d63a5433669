"""`python -m repabench.driver <snakemake arguments>`: Snakemake, without the SLURM executor on local runs.

Snakemake imports every installed executor plugin when it starts, to register their options. The SLURM plugin
(2.8.0) runs `scontrol show config` while it is imported, on any machine with SLURM binaries on PATH; without a
slurm.conf that is a DNS query for the controller, even for `snakemake -n`. This driver leaves that plugin out
unless the command selects SLURM (`--executor slurm`, or a profile that names or sets it), and is otherwise
plain Snakemake. `make demo`, `make dryrun` and `make lint` use it.
"""

from __future__ import annotations

import os
import pkgutil
import sys
from pathlib import Path
from typing import Mapping, Sequence

SLURM_PLUGIN = "snakemake_executor_plugin_slurm"
_PROFILE_OPTIONS = ("--profile", "--workflow-profile")


def _option_values(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    values = []
    for i, token in enumerate(argv):
        for name in names:
            if token == name and i + 1 < len(argv):
                values.append(argv[i + 1])
            elif token.startswith(name + "="):
                values.append(token.split("=", 1)[1])
    return values


def _profile_sets_slurm(profile: str) -> bool:
    candidates = [Path(profile), Path("profiles") / profile, Path.home() / ".config" / "snakemake" / profile]
    for folder in candidates:
        for name in ("config.yaml", "config.v9+.yaml", "config.v8+.yaml"):
            config = folder / name
            if config.is_file():
                import yaml

                try:
                    settings = yaml.safe_load(config.read_text()) or {}
                except yaml.YAMLError:
                    return True  # let Snakemake report the broken profile with every plugin available
                return isinstance(settings, dict) and settings.get("executor") == "slurm"
    return False


def selects_slurm(argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this Snakemake command may run on SLURM (then the plugin is loaded as usual)."""
    executors = _option_values(argv, ("--executor", "-e"))
    profiles = _option_values(argv, _PROFILE_OPTIONS)
    if environ.get("SNAKEMAKE_PROFILE"):
        profiles.append(environ["SNAKEMAKE_PROFILE"])
    if any(e.startswith("slurm") for e in executors):
        return True
    return any("slurm" in p or _profile_sets_slurm(p) for p in profiles)


def _without_slurm_plugin(iter_modules):
    def iter_modules_without_slurm(*args, **kwargs):
        return (m for m in iter_modules(*args, **kwargs) if m.name != SLURM_PLUGIN)

    return iter_modules_without_slurm


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not selects_slurm(argv):
        pkgutil.iter_modules = _without_slurm_plugin(pkgutil.iter_modules)
    from snakemake.cli import main as snakemake_main

    sys.argv = ["snakemake", *argv]
    return snakemake_main(argv)


if __name__ == "__main__":
    sys.exit(main())
