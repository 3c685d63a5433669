"""The report's data model (sections of paragraphs, tables, figures and preformatted blocks; the inputs; the
correlated setting) and the formatting of numbers in its cells."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from repabench.sizes import model_name, model_slug


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Figure:
    name: str  # file stem in the figures directory
    title: str
    caption: str
    figure: Any  # matplotlib Figure, closed after rendering
    png: bytes = b""

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class Section:
    anchor: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what is missing and why
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    blocks: list[tuple[str, str]] = field(default_factory=list)  # (title, preformatted text)


@dataclass
class Inputs:
    params: dict[str, Any]
    table: pd.DataFrame
    stats: dict[str, Any]
    curves: pd.DataFrame
    train_logs: list[dict[str, Any]]
    benchmarks: pd.DataFrame
    weights: list[dict[str, Any]]
    eval_provenance: list[dict[str, Any]]
    input_paths: list[str]
    published_numbers: dict[str, Any] = field(default_factory=dict)  # the authors' files (published source)
    features: dict[str, str] = field(default_factory=dict)  # encoder -> held-out feature store (spnorm figure)


@dataclass
class Setting:
    """The (model, method, step, sampler) whose FIDs are correlated, as the correlate stage resolved it."""

    model: str
    method: str
    step: int | None
    sampler: str

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any]) -> "Setting":
        declared = stats.get("setting")
        if not isinstance(declared, Mapping) or not {"model", "method", "step"} <= set(declared):
            raise SystemExit("--stats: no `setting` block with model, method and step; rerun the correlate stage")
        step = declared["step"]
        return cls(model=str(declared["model"]), method=str(declared["method"]),
                   step=int(step) if step is not None else None, sampler=str(declared.get("sampler") or "?"))

    @property
    def model_key(self) -> str:
        return model_slug(self.model)

    def describe(self) -> str:
        step = f"{self.step:,} steps" if self.step is not None else "last step"
        return f"{display_model(self.model)}, {self.method}, {step}, sampler {self.sampler}"


PREDICTOR_DIGITS = {"LP": 1, "LDS": 3, "CDS": 4, "SRSS": 3, "RMSC": 3}  # decimals a predictor's value is shown with


def as_interval(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(is_finite(v) for v in value):
        return float(value[0]), float(value[1])
    return None


def is_finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def fmt_value(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    interval = as_interval(value)
    if interval:
        low, high = (round(v, digits) + 0.0 for v in interval)  # + 0.0 turns -0.0 into 0.0
        return f"[{low:+.{digits}f}, {high:+.{digits}f}]"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if is_finite(value):
        number = float(value)
        if number != 0 and (abs(number) < 10 ** -digits or abs(number) >= 1e5):
            return f"{number:.{digits}g}"
        return f"{number:.{digits}f}"
    if isinstance(value, float):
        return "–"
    return str(value)


def fixed(value: Any, digits: int) -> str:
    return f"{float(value):.{digits}f}" if is_finite(value) else "–"


def method_label(params: Mapping[str, Any], method: str) -> str:
    entry = (params.get("methods") or {}).get(method) or {}
    return str(entry.get("label") or method)


def display_model(name: Any) -> str:
    """sit-b-2 or SiT-B/2 -> SiT-B/2 for titles."""
    return model_name(model_slug(name))
