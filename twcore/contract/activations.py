"""Activation functions by name, and the ``activation``/``dropout`` options model plugins share."""

from __future__ import annotations

from typing import Any

from torch import nn

from twcore.contract.options import option

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
}


def activation_option(default: str = "relu") -> Any:
    """A config field choosing one of :data:`ACTIVATIONS` by name."""
    return option(default, choices=tuple(ACTIVATIONS), help=f"activation: {', '.join(ACTIVATIONS)}")


def dropout_option(default: float = 0.0, *, where: str = "after each hidden layer") -> Any:
    """A config field for a dropout probability in [0, 1)."""
    return option(default, ge=0, lt=1, help=f"dropout probability {where}")


def make_activation(name: str) -> nn.Module:
    """A new activation module of the kind `name` names (a key of :data:`ACTIVATIONS`)."""
    return ACTIVATIONS[name]()
