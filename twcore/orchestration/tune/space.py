"""A search space written as overrides: ``optim.lr=loguniform(1e-4,1e-1)``.

Each searched key is one :class:`Parameter`; every other ``key=value`` is a fixed override that
all trials share. The forms:

- ``uniform(LOW,HIGH)`` and ``loguniform(LOW,HIGH)``: a float, evenly or log-evenly;
- ``int(LOW,HIGH)``, ``int(LOW,HIGH,STEP)`` and ``logint(LOW,HIGH)``: an integer, both ends
  included;
- ``choice(A,B,...)``: one of the listed values, each an override value as you would type it
  (a number, a word, a plugin name).

The same forms are accepted as the values of a YAML mapping (``--space FILE``):
``{optim.lr: "loguniform(1e-4,1e-1)", method.eta: "choice(0.01,0.1)"}``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from twcore.contract.errors import ConfigError
from twcore.orchestration.config.overrides import Override, parse_override
from twcore.orchestration.config.yaml_text import load_yaml

KINDS = ("uniform", "loguniform", "int", "logint", "choice")
_EXPRESSION = re.compile(r"^\s*([a-z]+)\((.*)\)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Parameter:
    """One searched key and its distribution.

    Attributes:
        key: the dotted configuration key (``optim.lr``).
        kind: one of :data:`KINDS`.
        low, high: the bounds of a numeric kind (both included).
        step: the step of ``int`` (1 unless given).
        choices: the values of ``choice``, as override text.
    """

    key: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    step: int = 1
    choices: tuple[str, ...] = ()

    @property
    def log(self) -> bool:
        """Whether the parameter is searched on a log scale."""
        return self.kind in ("loguniform", "logint")

    @property
    def discrete_values(self) -> tuple[str, ...] | None:
        """Every value a grid search visits, as override text (None for a float range)."""
        if self.kind == "choice":
            return self.choices
        if self.kind == "int":
            return tuple(str(v) for v in range(int(self.low), int(self.high) + 1, self.step))
        if self.kind == "logint":
            return tuple(str(v) for v in range(int(self.low), int(self.high) + 1))
        return None

    def corners(self) -> tuple[str, ...]:
        """The values a check composes before the search starts: both bounds, or each choice."""
        if self.kind == "choice":
            return self.choices
        if self.kind in ("int", "logint"):
            return (str(int(self.low)), str(int(self.high)))
        return (repr(self.low), repr(self.high))

    def describe(self) -> str:
        """The expression as written, normalised (``loguniform(0.0001,0.1)``)."""
        if self.kind == "choice":
            return f"choice({','.join(self.choices)})"
        if self.kind in ("int", "logint"):
            step = f",{self.step}" if self.step != 1 else ""
            return f"{self.kind}({int(self.low)},{int(self.high)}{step})"
        return f"{self.kind}({self.low!r},{self.high!r})"


@dataclass(frozen=True)
class SearchSpace:
    """The searched parameters and the overrides every trial shares."""

    parameters: tuple[Parameter, ...]
    fixed: tuple[Override, ...]

    def describe(self) -> dict[str, str]:
        """``{key: expression}``: what a study records, and compares when it is resumed."""
        return {p.key: p.describe() for p in self.parameters}

    def overrides(self, values: Mapping[str, Any]) -> list[Override]:
        """The fixed overrides followed by `values` (``{key: value}``) as overrides."""
        return [*self.fixed, *(Override(key, as_text(value)) for key, value in values.items())]


def as_text(value: Any) -> str:
    """A sampled value as override text (floats in full precision)."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def parse_expression(key: str, text: str) -> Parameter | None:
    """The parameter `text` declares for `key`, or None if `text` is a plain value.

    Raises:
        ConfigError: an expression of an unknown kind, with missing or bad bounds.
    """
    match = _EXPRESSION.match(text)
    if match is None:
        return None
    kind, inside = match.group(1), match.group(2)
    if kind not in KINDS:
        raise ConfigError(f"{key}={text}: unknown distribution '{kind}'; use {', '.join(KINDS)}")
    arguments = [part.strip() for part in inside.split(",") if part.strip()]
    if kind == "choice":
        if not arguments:
            raise ConfigError(f"{key}={text}: choice(...) needs at least one value")
        if len(set(arguments)) != len(arguments):
            raise ConfigError(f"{key}={text}: a value is listed twice")
        return Parameter(key, kind, choices=tuple(arguments))
    expected = "LOW,HIGH" + (",STEP" if kind == "int" else "")
    if len(arguments) not in ((2, 3) if kind == "int" else (2,)):
        raise ConfigError(f"{key}={text}: {kind} takes {expected}")
    integer = kind in ("int", "logint")
    try:
        numbers = [int(a) if integer else float(a) for a in arguments]
    except ValueError as exc:
        wanted = "integers" if integer else "numbers"
        raise ConfigError(f"{key}={text}: {kind} takes {wanted} {expected}") from exc
    low, high = numbers[0], numbers[1]
    step = int(numbers[2]) if len(numbers) == 3 else 1
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ConfigError(f"{key}={text}: LOW must be below HIGH, both finite")
    if kind in ("loguniform", "logint") and low <= 0:
        raise ConfigError(f"{key}={text}: a log scale needs LOW > 0")
    if integer and (step < 1 or (high - low) % step):
        raise ConfigError(f"{key}={text}: STEP must be at least 1 and divide HIGH - LOW")
    return Parameter(key, kind, float(low), float(high), step)


def parse_space(arguments: Sequence[str], space_file: str | Path | None = None) -> SearchSpace:
    """The search space of a command line (and an optional YAML file of ``key: expression``).

    Raises:
        ConfigError: a bad expression, a key searched twice, a ``key=a,b`` list (a sweep's
            syntax: write ``choice(a,b)``), or no searched key at all.
    """
    entries: list[tuple[str, str]] = []
    if space_file is not None:
        entries.extend(_read_space_file(Path(space_file)))
    entries.extend((o.key, o.text) for o in (parse_override(a) for a in arguments))
    parameters: list[Parameter] = []
    fixed: list[Override] = []
    for key, text in entries:
        parameter = parse_expression(key, text)
        if parameter is None:
            if "," in text and not text.lstrip().startswith("["):
                raise ConfigError(
                    f"{key}={text}: `twcore tune` searches, it does not sweep; write "
                    f"{key}=choice({text}) to search these values"
                )
            fixed.append(Override(key, text))
            continue
        if any(p.key == key for p in parameters):
            raise ConfigError(f"{key} is searched twice; give one distribution per key")
        parameters.append(parameter)
    if not parameters:
        raise ConfigError(
            "nothing to search: give at least one key=DISTRIBUTION, e.g. "
            "optim.lr=loguniform(1e-4,1e-1) (forms: " + ", ".join(f"{k}(...)" for k in KINDS) + ")"
        )
    if any(o.key in {p.key for p in parameters} for o in fixed):
        clash = next(o for o in fixed if o.key in {p.key for p in parameters})
        raise ConfigError(f"{clash.key} is both searched and fixed ({clash}); give it once")
    return SearchSpace(tuple(parameters), tuple(fixed))


def _read_space_file(path: Path) -> Iterable[tuple[str, str]]:
    try:
        loaded = load_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--space {path}: cannot read it ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"--space {path}: not valid YAML ({exc})") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"--space {path}: expected a mapping of key: expression")
    return [(str(key), str(value)) for key, value in loaded.items()]
