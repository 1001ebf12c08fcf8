"""Numeric precision of a run's forward passes (``precision=32|bf16|16-mixed``)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from twcore.contract.loss_scale import DynamicLossScale

HALF_PRECISIONS = {"bf16": torch.bfloat16, "16-mixed": torch.float16}
"""The autocast dtype of each reduced precision."""


def autocast(precision: str, device: torch.device) -> AbstractContextManager[Any]:
    """The context a run's training steps and evaluations run in: bfloat16 autocast for
    ``bf16``, float16 autocast for ``16-mixed`` (CPU and CUDA alike; parameters, gradients and
    optimiser state stay float32, and float64 computations are left alone), nothing for ``32``.

    Autocast's weight cache is off: a method's step may update the model many times inside one
    context (TaskMet's inner training, αVIL's task copies), and cached half-precision copies of
    the parameters would go stale after the first update."""
    dtype = HALF_PRECISIONS.get(precision)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=False)


def loss_scale(precision: str) -> DynamicLossScale | None:
    """The dynamic loss scale of a ``16-mixed`` run (float16 gradients underflow without one;
    bfloat16 has float32's range and needs none), None otherwise."""
    return DynamicLossScale() if precision == "16-mixed" else None
