"""Synthetic tasks generated from a seed (no data files)."""

from twcore_task_synthetic.ldro_points import LdroPoints, LdroPointsConfig, read_trajectory
from twcore_task_synthetic.toy_multitask import ToyMultitask, ToyMultitaskConfig

__all__ = [
    "LdroPoints",
    "LdroPointsConfig",
    "ToyMultitask",
    "ToyMultitaskConfig",
    "read_trajectory",
]
