"""Synthetic tasks generated from a seed (no data files)."""

from twcore_task_synthetic.toy_multitask import ToyMultitask, ToyMultitaskConfig

__all__ = ["ToyMultitask", "ToyMultitaskConfig"]
