"""Optimisers the core offers, by name."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from twcore.config.schema import OptimConfig
from twcore.errors import ConfigError, did_you_mean, format_choices

OptimizerBuilder = Callable[[Iterable[nn.Parameter], OptimConfig], torch.optim.Optimizer]

OPTIMIZERS: dict[str, OptimizerBuilder] = {
    "sgd": lambda params, c: torch.optim.SGD(
        params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
    ),
    "adam": lambda params, c: torch.optim.Adam(
        params, lr=c.lr, betas=tuple(c.betas), weight_decay=c.weight_decay
    ),
    "adamw": lambda params, c: torch.optim.AdamW(
        params, lr=c.lr, betas=tuple(c.betas), weight_decay=c.weight_decay
    ),
    "rmsprop": lambda params, c: torch.optim.RMSprop(
        params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
    ),
}


def validate_optim_config(config: OptimConfig, key: str = "optim") -> None:
    """Raise ConfigError for an unknown optimiser or out-of-range hyperparameters."""
    if config.name not in OPTIMIZERS:
        suggestion = did_you_mean(config.name, OPTIMIZERS)
        raise ConfigError(
            f"{key}.name='{config.name}' is not an optimiser{suggestion}; "
            f"valid: {format_choices(OPTIMIZERS)}"
        )
    if not (math.isfinite(config.lr) and config.lr >= 0):
        raise ConfigError(f"{key}.lr={config.lr} must be a finite number >= 0")
    if not (math.isfinite(config.weight_decay) and config.weight_decay >= 0):
        raise ConfigError(f"{key}.weight_decay={config.weight_decay} must be a finite number >= 0")
    if not (math.isfinite(config.momentum) and 0 <= config.momentum < 1):
        raise ConfigError(f"{key}.momentum={config.momentum} must be in [0, 1)")
    if len(config.betas) != 2 or not all(
        math.isfinite(beta) and 0 <= beta < 1 for beta in config.betas
    ):
        raise ConfigError(
            f"{key}.betas={list(config.betas)} must be two numbers in [0, 1) (β1, β2), "
            "e.g. [0.9,0.999]"
        )
    if config.grad_clip is not None and not (
        math.isfinite(config.grad_clip) and config.grad_clip > 0
    ):
        raise ConfigError(
            f"{key}.grad_clip={config.grad_clip} must be a finite number > 0 (or null for none)"
        )


def build_optimizer(params: Iterable[nn.Parameter], config: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``config.name`` over `params`."""
    validate_optim_config(config)
    return OPTIMIZERS[config.name](params, config)
