"""Typed config sections: one frozen dataclass per section of `workflow/schemas/config.schema.yaml`.

The schema is the only place that states a default. `config_section(path)` turns a class of annotated fields
into a frozen dataclass whose defaults are read from the schema at `path` (a field the schema gives no default
keeps the one its class states, which is what "absent" means for it, or stays required). `from_config` is
strict: a key that is not a field is an error naming it and the allowed keys, except the section's
`workflow_keys`, which the workflow reads (GPU counts, time budgets) and a stage ignores.

A path is a top-level key (`train`), or `methods.*` / `samplers.*` for the entries of a named mapping.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"

T = TypeVar("T")


class ConfigSectionError(ValueError):
    """A config section a stage cannot use; the message names the key and the fix."""


@functools.lru_cache(maxsize=1)
def schema() -> Mapping[str, Any]:
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text())


def section_properties(path: str) -> Mapping[str, Any]:
    """The schema's `properties` of a section path (`train`, `methods.*`)."""
    node: Mapping[str, Any] = schema()
    for part in path.split("."):
        node = node["additionalProperties"] if part == "*" else node["properties"][part]
    return node.get("properties", {})


def config_keys() -> list[str]:
    """The top-level keys of a config."""
    return list(schema()["properties"])


def top_level_default(key: str) -> Any:
    """The schema default of a top-level scalar key (`seed`, `device`)."""
    return schema()["properties"][key]["default"]


def _is_tuple_field(field: dataclasses.Field) -> bool:
    return str(field.type).startswith(("tuple", "Tuple"))


def _default_of(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, dict):
        return dataclasses.field(default_factory=functools.partial(dict, value))
    return value


def config_section(path: str, workflow_keys: tuple[str, ...] = (),
                   nested: Mapping[str, type] | None = None) -> Callable[[type[T]], type[T]]:
    """Class decorator: a frozen dataclass of the section at `path`, defaults from the schema, `from_config`.

    `nested` names the fields that are sections themselves (`data.demo`): their default is that section's."""

    def make(cls: type[T]) -> type[T]:
        properties = section_properties(path)
        for name in cls.__dict__.get("__annotations__", {}):
            if name in (nested or {}):
                setattr(cls, name, dataclasses.field(default_factory=nested[name]))
            elif name in properties and "default" in properties[name]:
                setattr(cls, name, _default_of(properties[name]["default"]))
        cls = dataclasses.dataclass(frozen=True)(cls)
        cls.SECTION = path
        cls.WORKFLOW_KEYS = tuple(workflow_keys)
        cls.NESTED = dict(nested or {})
        cls.from_config = classmethod(from_config)
        return cls

    return make


def from_config(cls: type[T], entry: Mapping[str, Any] | None, name: str | None = None) -> T:
    """The section object of a config mapping (as validated by the workflow, or partial: defaults fill it)."""
    where = name or cls.SECTION
    entry = {} if entry is None else entry
    if not isinstance(entry, Mapping):
        raise ConfigSectionError(f"{where}: expected a mapping of keys, got {type(entry).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(entry) - set(fields) - set(cls.WORKFLOW_KEYS))
    if unknown:
        raise ConfigSectionError(f"{where}: unknown keys {unknown}; allowed: {sorted(fields)}")
    missing = [k for k, f in fields.items() if k not in entry and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigSectionError(f"{where}: missing required keys {missing}")
    values = {k: tuple(v) if _is_tuple_field(fields[k]) and isinstance(v, list) else v
              for k, v in entry.items() if k in fields}
    for key, section in cls.NESTED.items():
        if key in values and not isinstance(values[key], section):
            values[key] = section.from_config(values[key], f"{where}.{key}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigSectionError(f"{where}: {exc}") from exc
