"""Turning what methods and the engine log into flat ``{key: number | media}`` dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from twcore.contract.media import MEDIA_TYPES


def flatten_values(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to ``a/b`` keys and turn tensors into Python numbers.

    A 0-d tensor becomes a float; a 1-d tensor of n values becomes keys ``key/0 .. key/n-1``
    (use a dict with names instead where entries have names). All tensors are copied to the host
    in one transfer, so logging costs one device synchronisation.
    """
    flat: dict[str, Any] = {}
    tensors: dict[str, torch.Tensor] = {}
    _collect(values, prefix, flat, tensors)
    if tensors:
        sizes = [t.numel() for t in tensors.values()]
        numbers = torch.cat([t.detach().reshape(-1).double().cpu() for t in tensors.values()])
        numbers_list = numbers.tolist()
        offset = 0
        for (key, tensor), size in zip(tensors.items(), sizes, strict=True):
            chunk = numbers_list[offset : offset + size]
            offset += size
            if tensor.dim() == 0:
                flat[key] = chunk[0]
            else:
                flat.update({f"{key}/{i}": value for i, value in enumerate(chunk)})
    return flat


def _collect(
    values: Mapping[str, Any], prefix: str, flat: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
    for key, value in values.items():
        full_key = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _collect(value, f"{full_key}/", flat, tensors)
        elif isinstance(value, torch.Tensor):
            if value.dim() > 1:
                raise ValueError(f"cannot log '{full_key}': tensors of dim > 1 need an Image")
            tensors[full_key] = value
        elif isinstance(value, (*MEDIA_TYPES, bool, int, float)):
            flat[full_key] = value
        else:
            raise TypeError(
                f"cannot log '{full_key}' of type {type(value).__name__}: use a number, a tensor, "
                "a dict of those, twcore.contract.Image or twcore.contract.LinePlot"
            )
