"""Optimisers the core offers, by name."""

from __future__ import annotations

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
    if config.lr < 0:
        raise ConfigError(f"{key}.lr={config.lr} must be >= 0")
    if len(config.betas) != 2:
        raise ConfigError(f"{key}.betas={list(config.betas)} must hold two numbers (β1, β2)")
    if config.grad_clip is not None and config.grad_clip <= 0:
        raise ConfigError(f"{key}.grad_clip={config.grad_clip} must be > 0 (or null for none)")


def build_optimizer(params: Iterable[nn.Parameter], config: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``config.name`` over `params`."""
    validate_optim_config(config)
    return OPTIMIZERS[config.name](params, config)
