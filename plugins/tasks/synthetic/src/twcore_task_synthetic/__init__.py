"""Synthetic tasks generated from a seed (no data files)."""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:
    from twcore_task_synthetic.ldro_points import LdroPoints, LdroPointsConfig, read_trajectory
    from twcore_task_synthetic.toy_multitask import ToyMultitask, ToyMultitaskConfig

__all__ = [
    "LdroPoints",
    "LdroPointsConfig",
    "ToyMultitask",
    "ToyMultitaskConfig",
    "read_trajectory",
]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
