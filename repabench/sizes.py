"""SiT sizes and their path-safe names (no torch import: the workflow reads these while parsing)."""

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
_SLUGS = {name.lower().replace("/", "-") for name in MODEL_CONFIGS}


def model_slug(name: str) -> str:
    """'SiT-B/2' -> 'sit-b-2' (safe for paths and wildcards); a slug ('sit-b-2') is returned as it is."""
    slug = str(name).strip().lower().replace("/", "-")
    if slug not in _SLUGS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_CONFIGS)}")
    return slug


def model_name(slug: str) -> str:
    """'sit-b-2' -> 'SiT-B/2' (inverse of model_slug)."""
    match = re.fullmatch(r"sit-([a-z]+)-(\d+)", slug)
    name = f"SiT-{match.group(1).upper()}/{match.group(2)}" if match else None
    if name not in MODEL_CONFIGS:
        raise ValueError(f"{slug!r} is not a SiT model slug; known: {', '.join(map(model_slug, MODEL_CONFIGS))}")
    return name
