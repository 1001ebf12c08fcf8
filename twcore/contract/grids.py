"""Paper-reproduction grids: the type a plugin's ``twcore_reproduction_grids`` hook registers,
and a helper to spell a grid's settings as sweep arguments. ``twcore reproduce`` runs them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReproductionGrid:
    """One experiment of a paper, as sweeps.

    Attributes:
        name: a short directory-safe name (``gradcos-aux``).
        description: what the grid reproduces (the claim it tests).
        sweeps: the full experiment: each entry is one sweep's ``key=a,b`` arguments.
        quick: a small version of the same sweeps (a minute or so on 2 cores).
    """

    name: str
    description: str
    sweeps: tuple[tuple[str, ...], ...]
    quick: tuple[tuple[str, ...], ...]


def as_arguments(settings: dict[str, Any]) -> tuple[str, ...]:
    """``key=value`` sweep arguments from a dict (a string value with commas is swept; lists
    are written ``[a,b]``; booleans ``true``/``false``)."""
    arguments = []
    for key, value in settings.items():
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, list | tuple):
            text = "[" + ",".join(str(v) for v in value) + "]"
        else:
            text = str(value)
        arguments.append(f"{key}={text}")
    return tuple(arguments)
