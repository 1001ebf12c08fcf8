"""Parsing ``key=value`` command-line overrides (and ``key=a,b,c`` sweeps)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from twcore.contract.errors import ConfigError
from twcore.orchestration.config.schema import PLUGIN_SECTIONS
from twcore.orchestration.config.yaml_text import load_yaml

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z_][A-Za-z0-9_\-]*)*$")


@dataclass(frozen=True)
class Override:
    """One ``key=value``: a dotted key and its value as text (or as a Python value)."""

    key: str
    text: str
    python_value: Any = None
    is_python: bool = False

    @classmethod
    def of(cls, key: str, value: Any) -> Override:
        """An override from a Python value, used as-is (no text parsing, never a sweep)."""
        return cls(key, repr(value), value, True)

    @property
    def value(self) -> Any:
        """The value: the Python value given, else the text parsed as YAML (numbers, booleans,
        null, lists, ...) or the raw text."""
        return self.python_value if self.is_python else parse_value(self.text)

    @property
    def plugin_section(self) -> str | None:
        """``method``/``task``/``model`` if this override picks that plugin (``method=NAME`` or
        ``method.name=NAME``), else None."""
        section = self.key.removesuffix(".name")
        return section if section in PLUGIN_SECTIONS else None

    def __str__(self) -> str:
        return f"{self.key}={self.text}"


def parse_override(argument: str) -> Override:
    """Split ``key=value``; ConfigError for anything else."""
    key, sep, text = argument.partition("=")
    key = key.strip()
    if not sep or not _KEY.match(key):
        raise ConfigError(
            f"'{argument}' is not an override: write key=value, e.g. method=ew or optim.lr=0.01"
        )
    return Override(key, text.strip())


def parse_value(text: str) -> Any:
    """YAML scalar/collection parsing with a plain-string fallback (``1e-3`` stays a number);
    only ``true``/``false`` are booleans (:mod:`~twcore.orchestration.config.yaml_text`)."""
    if text == "":
        return ""
    try:
        value = load_yaml(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value) if _looks_numeric(value) else value
        except ValueError:
            return value
    return value


def _looks_numeric(text: str) -> bool:
    return bool(re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text))


def split_sweep(text: str) -> list[str]:
    """Split ``a,b,[c,d]`` on top-level commas (not inside brackets, braces or quotes)."""
    parts: list[str] = []
    depth = 0
    quote = ""
    current = ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    parts.append(current.strip())
    return parts


def reject_unintended_sweep(override: Override) -> None:
    """ConfigError for ``key=a,b`` outside a sweep: it is almost always a forgotten ``-m``."""
    if not override.is_python and len(split_sweep(override.text)) > 1:
        raise ConfigError(
            f"{override} looks like a sweep over several values: add -m to run each value, "
            f"or write a list as {override.key}=[{override.text}]"
        )
