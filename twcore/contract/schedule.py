"""Learning-rate schedules in closed form: the rate of training step t is a function of t alone,
so a resumed run continues the schedule exactly and any loop can use it.

The engine sets, before every training step t (0-based: the number of steps completed), each
parameter group's rate to its base rate × :func:`lr_factor`. In your own loop::

    for step in range(steps):
        apply_schedule(optimizer, config, step, steps)
        ...
"""

from __future__ import annotations

import math

import torch

from twcore.contract.optim import OptimConfig

SCHEDULES = ("constant", "cosine", "linear", "step")
BASE_LR = "initial_lr"
"""The key under which each parameter group keeps its base rate (saved with the optimiser)."""


def lr_factor(config: OptimConfig, step: int, total_steps: int) -> float:
    """The fraction of the base rate at training step `step` of `total_steps`.

    Warm-up: ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps. After it, with
    d = step − warmup_steps over D = total_steps − warmup_steps steps and m = ``min_lr_ratio``:
    constant 1; cosine m + (1 − m)·(1 + cos(π·d/D))/2; linear m + (1 − m)·(1 − d/D);
    step ``gamma`` ** ⌊d / step_size⌋.
    """
    warmup = config.warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    done, span = step - warmup, max(1, total_steps - warmup)
    progress = min(1.0, done / span)
    low = config.min_lr_ratio
    if config.schedule == "cosine":
        return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if config.schedule == "linear":
        return low + (1.0 - low) * (1.0 - progress)
    if config.schedule == "step":
        return float(config.gamma ** (done // config.step_size))
    return 1.0


def apply_schedule(
    optimizer: torch.optim.Optimizer, config: OptimConfig, step: int, total_steps: int
) -> float:
    """Set every parameter group's rate for training step `step` (its base rate, recorded the
    first time, × :func:`lr_factor`); the factor."""
    factor = lr_factor(config, step, total_steps)
    for group in optimizer.param_groups:
        group.setdefault(BASE_LR, group["lr"])
        group["lr"] = group[BASE_LR] * factor
    return factor
