"""Choosing the device from ``device=auto|cpu|cuda|cuda:N|mps``."""

from __future__ import annotations

import torch

from twcore.contract.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """The torch device for a ``device`` setting; ConfigError if it is not available here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={name} but CUDA is not available here; use device=auto or cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device={name} but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={name} but MPS is not available here; use device=auto or cpu")
    return device
