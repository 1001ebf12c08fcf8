"""Declaring a plugin's options: dataclass fields with help text and the constraints they obey.

Constraints are declared next to the field and checked by the config composer, which names the
full key path in its one-line error (``method.step_size=-1 must be > 0``); a plugin writes no
``__post_init__`` for them. Checks between fields (an odd kernel size, a range whose ends must
be ordered) still go in ``__post_init__``, raising ``ValueError`` with the field's name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from twcore.contract.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class Constraint:
    """What a field's value must satisfy; for a list, every element (and `nonempty` the list).

    Bounds reject non-finite numbers (a NaN learning rate is never meant)."""

    choices: tuple[Any, ...] | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    nonempty: bool = False

    def violation(self, value: Any) -> str | None:
        """Why `value` breaks the constraint, in words (``must be > 0``), or None."""
        if value is None:
            return None  # an optional option left unset
        if isinstance(value, list | tuple):
            if self.nonempty and not value:
                return "must not be empty"
            for item in value:
                problem = self._scalar_violation(item)
                if problem is not None:
                    return f"holds {item!r}: each element {problem}"
            return None
        return self._scalar_violation(value)

    def _scalar_violation(self, value: Any) -> str | None:
        if self.choices is not None and value not in self.choices:
            listed = ", ".join(repr(c) if c == "" else str(c) for c in self.choices)
            suggestion = did_you_mean(str(value), [str(c) for c in self.choices])
            return f"must be one of {listed}{suggestion}"
        bounds = [(self.ge, ">=", float.__ge__), (self.gt, ">", float.__gt__)]
        bounds += [(self.le, "<=", float.__le__), (self.lt, "<", float.__lt__)]
        wanted = [(limit, word, test) for limit, word, test in bounds if limit is not None]
        if not wanted:
            return None
        described = " and ".join(f"{word} {_number(limit)}" for limit, word, _ in wanted)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number {described}"
        if not math.isfinite(value):
            return f"must be a finite number {described}"
        if not all(test(float(value), float(limit)) for limit, _, test in wanted):
            return f"must be {described}"
        return None


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    default_factory: Any = None,
    shown_type: str | None = None,
    choices: Collection[Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    nonempty: bool = False,
) -> Any:
    """A dataclass field with help text shown by ``twcore show`` and the constraints its value
    obeys (checked when a configuration is composed, see the module docstring).

    Use ``default_factory`` for mutable defaults (lists, dicts)::

        @dataclass
        class Config:
            step_size: float = option(0.01, gt=0, help="exponentiated-gradient step size η")
            variant: str = option("weighted", choices=("weighted", "unweighted"), help="...")
            hidden: list[int] = option(
                default_factory=lambda: [50, 50], ge=1, nonempty=True, help="hidden widths"
            )
    """
    metadata: dict[str, Any] = {"help": help}
    if shown_type is not None:
        metadata["shown_type"] = shown_type  # how ``twcore show`` names the type
    constraint = Constraint(
        choices=tuple(choices) if choices is not None else None,
        ge=ge,
        gt=gt,
        le=le,
        lt=lt,
        nonempty=nonempty,
    )
    if constraint != Constraint():
        metadata["constraint"] = constraint
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def constraint_of(field: dataclasses.Field[Any]) -> Constraint | None:
    """The constraint declared on a field with :func:`option`, if any."""
    return field.metadata.get("constraint")


def check_options(config: Any, prefix: str = "") -> None:
    """ConfigError naming the first field of `config` (a dataclass instance; nested ones are
    checked too, as ``prefix.field.sub``) whose value breaks its declared constraint."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    check_option_values(type(config), values, prefix)


def check_option_values(config_class: type, values: Mapping[str, Any], prefix: str = "") -> None:
    """:func:`check_options` on the plain values a config of `config_class` is about to be
    built from, so that its ``__post_init__`` (cross-field checks) never sees a value its own
    field refuses. Fields missing from `values` are not checked."""
    for key, value, problem in _violations(config_class, values, prefix):
        raise ConfigError(f"{key}={_shown(value)} {problem}")


def _violations(
    config_class: type, values: Mapping[str, Any], prefix: str
) -> Iterator[tuple[str, Any, str]]:
    for field in dataclasses.fields(config_class):
        if field.name not in values:
            continue
        value, key = values[field.name], f"{prefix}{field.name}"
        nested = _nested_class(field)
        if nested is not None:
            inner = value if isinstance(value, Mapping) else vars(value)
            yield from _violations(nested, inner, f"{key}.")
            continue
        constraint = constraint_of(field)
        problem = constraint.violation(value) if constraint is not None else None
        if problem is not None:
            yield key, value, problem


def _nested_class(field: dataclasses.Field[Any]) -> type | None:
    """The dataclass a field holds, judged from its default (annotations may be strings)."""
    if field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
        if dataclasses.is_dataclass(default):
            return type(default)
    return None


def _number(limit: float) -> str:
    return str(int(limit)) if float(limit).is_integer() else f"{limit:g}"


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


@dataclasses.dataclass
class NoConfig:
    """The config of a plugin that has no options."""
