"""Seeded train/validation/test splits shared by the scikit-learn tasks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from twcore.contract.options import option

SPLITS = ("train", "val", "test")


@dataclass
class SplitConfig:
    """Options every scikit-learn task has: split fractions and the data seed."""

    train_fraction: float = option(
        0.6, gt=0, lt=1, help="fraction of the dataset used for training"
    )
    val_fraction: float = option(
        0.2, gt=0, lt=1, help="fraction used for validation (the rest is test)"
    )
    data_seed: int = option(0, help="seed of the split (fixed splits for a seed)")

    def __post_init__(self) -> None:
        if self.train_fraction + self.val_fraction >= 1.0:
            raise ValueError(
                f"train_fraction + val_fraction = "
                f"{self.train_fraction + self.val_fraction:g} must be < 1 (the rest is test)"
            )


def split_indices(labels: Tensor, config: SplitConfig, *, stratify: bool) -> dict[str, Tensor]:
    """Disjoint index sets ``train``/``val``/``test`` covering ``range(len(labels))``.

    With `stratify`, every class is split in the configured fractions (so small splits keep
    the class balance); otherwise the examples are permuted as one group.
    """
    generator = torch.Generator().manual_seed(config.data_seed)
    groups = [labels == c for c in labels.unique()] if stratify else [labels == labels]
    parts: dict[str, list[Tensor]] = {name: [] for name in SPLITS}
    for member in groups:
        indices = member.nonzero().flatten()
        indices = indices[torch.randperm(len(indices), generator=generator)]
        n_train = round(config.train_fraction * len(indices))
        n_val = round(config.val_fraction * len(indices))
        parts["train"].append(indices[:n_train])
        parts["val"].append(indices[n_train : n_train + n_val])
        parts["test"].append(indices[n_train + n_val :])
    return {name: torch.cat(chunks).sort().values for name, chunks in parts.items()}
