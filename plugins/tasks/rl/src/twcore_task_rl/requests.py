"""The checks every environment task applies to a stream request."""

from __future__ import annotations

import torch


def check_stream_request(task: str, split: str, model: torch.nn.Module | None) -> None:
    """Environment tasks stream only ``train`` batches, and they act with the model."""
    if split != "train":
        raise ValueError(f"{task} streams only its train split, not '{split}'")
    if model is None:
        raise ValueError(f"{task}'s stream acts with the model being trained: pass model=")
