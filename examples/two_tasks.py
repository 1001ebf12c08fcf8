"""The examples' two-task problem: scikit-learn's 8×8 digits, the digit as the main task and its
parity as an auxiliary one; a shared trunk with one head per task. Plain PyTorch, no twcore."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import Tensor, nn


def digits(seed: int = 0) -> dict[str, tuple[Tensor, Tensor]]:
    """(inputs [N, 64], labels [N]) of a train, val and test split, standardised on train."""
    inputs, labels = load_digits(return_X_y=True)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    x = torch.as_tensor(inputs, dtype=torch.float32)[order]
    y = torch.as_tensor(labels)[order]
    mean, std = x[:1000].mean(0), x[:1000].std(0).clamp_min(1e-6)
    x = (x - mean) / std
    return {
        "train": (x[:1000], y[:1000]),
        "val": (x[1000:1300], y[1000:1300]),
        "test": (x[1300:], y[1300:]),
    }


class TwoHeads(nn.Module):
    """A shared trunk (64 → 64) and two heads: the digit (10 logits) and its parity (2)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(64, 64), nn.ReLU())
        self.main, self.aux = nn.Linear(64, 10), nn.Linear(64, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.trunk(x)
        return self.main(features), self.aux(features)


def losses(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """[2]: the main task's and the auxiliary task's cross-entropy."""
    main, aux = model(x)
    return torch.stack([F.cross_entropy(main, y), F.cross_entropy(aux, y % 2)])


def batches(x: Tensor, y: Tensor, size: int = 64, seed: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
    """Shuffled mini-batches, endlessly, reshuffled every epoch."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y) - size + 1, size):
            yield x[order[start : start + size]], y[order[start : start + size]]


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """The main task's accuracy (of the first head, or of the only output)."""
    outputs = model(x)
    logits = outputs[0] if isinstance(outputs, tuple) else outputs
    return float((logits.argmax(dim=1) == y).float().mean())
