"""Listing the keys of a config dataclass with their type, default and help (``twcore show``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KeyDescription:
    """One configurable key."""

    key: str
    type: str
    default: Any
    help: str


def describe_config(config_class: type, prefix: str = "") -> list[KeyDescription]:
    """Every leaf key of a config dataclass (nested dataclasses are expanded as ``a.b``)."""
    described: list[KeyDescription] = []
    for field in dataclasses.fields(config_class):
        key = f"{prefix}{field.name}"
        default = _default(field)
        nested = _nested_dataclass(field, default)
        if nested is not None:
            described.extend(describe_config(nested, prefix=f"{key}."))
            continue
        type_name = field.metadata.get("shown_type") or (
            field.type
            if isinstance(field.type, str)
            else getattr(field.type, "__name__", str(field.type))
        )
        described.append(KeyDescription(key, type_name, default, field.metadata.get("help", "")))
    return described


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return "(required)"


def _nested_dataclass(field: dataclasses.Field, default: Any) -> type | None:
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return type(default)
    return None


def format_keys(keys: list[KeyDescription]) -> str:
    """An aligned text table: key, type, default, help."""
    rows = [("key", "type", "default", "help")] + [
        (k.key, k.type, _show(k.default), k.help) for k in keys
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for row in rows:
        lines.append(
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3]
        )
    return "\n".join(line.rstrip() for line in lines)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value if value else "''"
    return str(value)
