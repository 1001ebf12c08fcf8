"""Optimisers the core offers, by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twcore.contract.errors import ConfigError, did_you_mean, format_choices
from twcore.contract.options import check_options, option

if TYPE_CHECKING:  # imported when an optimiser is built, so reading the options needs no torch
    import torch
    from torch import nn


@dataclass
class OptimConfig:
    """The optimiser of the model's parameters (methods may build more from it)."""

    name: str = option(
        "adam",
        choices=("sgd", "adam", "adamw", "rmsprop"),
        help="optimiser: sgd, adam, adamw or rmsprop",
    )
    lr: float = option(1e-3, ge=0, help="learning rate")
    weight_decay: float = option(0.0, ge=0, help="L2 weight decay (decoupled for adamw)")
    momentum: float = option(0.9, ge=0, lt=1, help="momentum (sgd, rmsprop)")
    betas: list[float] = option(
        default_factory=lambda: [0.9, 0.999], ge=0, lt=1, help="Adam betas (β1, β2)"
    )
    grad_clip: float | None = option(
        None, gt=0, help="clip the global gradient norm to this value (null: no clipping)"
    )
    schedule: str = option(
        "constant",
        choices=("constant", "cosine", "linear", "step"),
        help="learning-rate schedule over the run's steps, after the warm-up: constant, cosine, "
        "linear (both down to lr·min_lr_ratio) or step (× gamma every step_size steps)",
    )
    warmup_steps: int = option(0, ge=0, help="steps of linear warm-up from lr/warmup_steps to lr")
    min_lr_ratio: float = option(
        0.0, ge=0, le=1, help="cosine and linear: the last step's rate as a fraction of lr"
    )
    step_size: int = option(1000, ge=1, help="step schedule: steps between decays")
    gamma: float = option(0.1, gt=0, help="step schedule: the factor of each decay")


OptimizerBuilder = Callable[["Iterable[nn.Parameter]", OptimConfig], "torch.optim.Optimizer"]


def _torch_optimizer(name: str) -> Any:
    """The optimiser class ``torch.optim.<name>`` (torch is imported on the first build)."""
    return getattr(importlib.import_module("torch.optim"), name)


OPTIMIZERS: dict[str, OptimizerBuilder] = {
    "sgd": lambda params, c: _torch_optimizer("SGD")(
        params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
    ),
    "adam": lambda params, c: _torch_optimizer("Adam")(
        params, lr=c.lr, betas=(c.betas[0], c.betas[1]), weight_decay=c.weight_decay
    ),
    "adamw": lambda params, c: _torch_optimizer("AdamW")(
        params, lr=c.lr, betas=(c.betas[0], c.betas[1]), weight_decay=c.weight_decay
    ),
    "rmsprop": lambda params, c: _torch_optimizer("RMSprop")(
        params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
    ),
}


def validate_optim_config(config: OptimConfig, key: str = "optim") -> None:
    """ConfigError for an unknown optimiser or an out-of-range hyperparameter (the constraints
    declared on :class:`OptimConfig`), naming ``key.field``."""
    check_options(config, f"{key}.")
    if len(config.betas) != 2:
        raise ConfigError(f"{key}.betas={list(config.betas)} must be two numbers (β1, β2)")
    if config.name not in OPTIMIZERS:  # a table, not choices: a plugin may add to it
        raise ConfigError(
            f"{key}.name={config.name} is not an optimiser{did_you_mean(config.name, OPTIMIZERS)}"
            f"; valid: {format_choices(OPTIMIZERS)}"
        )


def build_optimizer(params: Iterable[nn.Parameter], config: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``config.name`` over `params`."""
    validate_optim_config(config)
    return OPTIMIZERS[config.name](params, config)
