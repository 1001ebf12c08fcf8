"""Helpers for declaring plugin configs as dataclasses with help text."""

from __future__ import annotations

import dataclasses
from typing import Any


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    default_factory: Any = None,
    shown_type: str | None = None,
) -> Any:
    """A dataclass field with help text shown by ``twcore show``.

    Use ``default_factory`` for mutable defaults (lists, dicts)::

        @dataclass
        class Config:
            step_size: float = option(0.01, help="exponentiated-gradient step size η")
            tasks: list[str] = option(default_factory=list, help="objectives to weight")
    """
    metadata = {"help": help}
    if shown_type is not None:
        metadata["shown_type"] = shown_type  # how ``twcore show`` names the type
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class NoConfig:
    """The config of a plugin that has no options."""
