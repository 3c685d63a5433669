"""Generator sizes (SiT, JiT, MeanFlow) and their path-safe names (no torch import: the workflow reads these while parsing).

The model name selects the generator family: `SiT-*` is flow matching on latents (repabench.sit), `JiT-*` is
pixel-space x-prediction (repabench.jit), `MF-*` is MeanFlow's average velocity on latents (repabench.meanflow);
`model_family` says which."""

from __future__ import annotations

import re
from typing import Any

# name -> depth, hidden width, heads, patch.  "upstream": False marks sizes that no upstream code trains.
MODEL_CONFIGS: dict[str, dict[str, Any]] = {}
_SIZES = {
    "T": dict(depth=4, hidden_size=64, num_heads=2, upstream=False),  # tiny demo size for 1-thread CPU runs (not upstream)
    "S": dict(depth=12, hidden_size=384, num_heads=6, upstream=True),
    "B": dict(depth=12, hidden_size=768, num_heads=12, upstream=True),
    "L": dict(depth=24, hidden_size=1024, num_heads=16, upstream=True),
    "XL": dict(depth=28, hidden_size=1152, num_heads=16, upstream=True),
}
for _size, _cfg in _SIZES.items():
    for _patch in (1, 2, 4, 8) if _size == "T" else (2, 4, 8):
        MODEL_CONFIGS[f"SiT-{_size}/{_patch}"] = dict(_cfg, patch_size=_patch)

# JiT sizes (JiT `model_jit.py`, docs/upstream-facts.md §10); "upstream": False marks the tiny CPU sizes.
JIT_CONFIGS: dict[str, dict[str, Any]] = {}
_JIT_SIZES = {
    "B": dict(depth=12, hidden_size=768, num_heads=12, bottleneck_dim=128, in_context_len=32, in_context_start=4),
    "L": dict(depth=24, hidden_size=1024, num_heads=16, bottleneck_dim=128, in_context_len=32, in_context_start=8),
    "H": dict(depth=32, hidden_size=1280, num_heads=16, bottleneck_dim=256, in_context_len=32, in_context_start=10),
}
for _size, _cfg in _JIT_SIZES.items():
    for _patch in (16, 32):
        JIT_CONFIGS[f"JiT-{_size}/{_patch}"] = dict(_cfg, patch_size=_patch, upstream=True)
for _patch in (8, 16):  # tiny CPU sizes; at the demo's 128 px, JiT-T/16 has the 8x8 grid of SiT-T/2 on f8 latents
    JIT_CONFIGS[f"JiT-T/{_patch}"] = dict(depth=4, hidden_size=64, num_heads=2, bottleneck_dim=16, in_context_len=4,
                                          in_context_start=2, patch_size=_patch, upstream=False)

# MeanFlow (repabench.meanflow) trains the SiT sizes with a second time input: MF-B/2 is SiT-B/2's size
MEANFLOW_CONFIGS: dict[str, dict[str, Any]] = {name.replace("SiT-", "MF-"): cfg for name, cfg in MODEL_CONFIGS.items()}

FAMILIES = {"sit": MODEL_CONFIGS, "jit": JIT_CONFIGS, "meanflow": MEANFLOW_CONFIGS}
_PREFIX = {"sit": "SiT", "jit": "JiT", "mf": "MF"}
# families on SD-VAE latents (latent stages, VAE decode); the others train on pixels
LATENT_FAMILIES = ("sit", "meanflow")
_ALL = {name: cfg for table in FAMILIES.values() for name, cfg in table.items()}
_SLUGS = {name.lower().replace("/", "-") for name in _ALL}


def model_slug(name: str) -> str:
    """'SiT-B/2' -> 'sit-b-2', 'JiT-B/16' -> 'jit-b-16' (safe for paths and wildcards); a slug is returned as it is."""
    slug = str(name).strip().lower().replace("/", "-")
    if slug not in _SLUGS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(_ALL)}")
    return slug


def model_name(slug: str) -> str:
    """'sit-b-2' -> 'SiT-B/2', 'jit-b-16' -> 'JiT-B/16' (inverse of model_slug)."""
    match = re.fullmatch(r"(sit|jit|mf)-([a-z]+)-(\d+)", slug)
    name = f"{_PREFIX[match.group(1)]}-{match.group(2).upper()}/{match.group(3)}" if match else None
    if name not in _ALL:
        raise ValueError(f"{slug!r} is not a model slug; known: {', '.join(map(model_slug, _ALL))}")
    return name


def model_family(name: str) -> str:
    """'sit', 'jit' or 'meanflow' for a model name or slug."""
    name = name if name in _ALL else model_name(model_slug(name))
    return next(family for family, table in FAMILIES.items() if name in table)


def model_config(name: str) -> dict[str, Any]:
    """The size table entry (depth, patch_size, ...) of a model name of any family."""
    if name not in _ALL:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(_ALL)}")
    return _ALL[name]
