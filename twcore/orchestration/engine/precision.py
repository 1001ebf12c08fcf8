"""Numeric precision of a run's forward passes (``precision=32|bf16``)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch


def autocast(precision: str, device: torch.device) -> AbstractContextManager[Any]:
    """The context a run's training steps and evaluations run in: bfloat16 autocast for
    ``bf16`` (CPU and CUDA alike; parameters, gradients and optimiser state stay float32, and
    float64 computations are left alone), nothing for ``32``.

    Autocast's weight cache is off: a method's step may update the model many times inside one
    context (TaskMet's inner training, αVIL's task copies), and cached bfloat16 copies of the
    parameters would go stale after the first update."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=False)
    return nullcontext()
