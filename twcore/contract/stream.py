"""Batch streams: endless, resumable sources of training batches."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from twcore.contract.batch import Batch


@runtime_checkable
class BatchStream(Protocol):
    """An endless iterator of batches whose position can be saved and restored.

    ``completed_epochs`` counts passes over the data finished so far (streams without epochs,
    such as replay buffers, may keep it at 0). After ``load_state_dict(state_dict())`` the stream
    yields exactly the batches it would have yielded next.
    """

    completed_epochs: int

    def __iter__(self) -> BatchStream: ...

    def __next__(self) -> Batch: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class TensorBatchStream:
    """Shuffled mini-batches from an in-memory split, reshuffled every epoch.

    The order of epoch e is a function of (seed, e) alone, so the stream's state is just
    (epoch, position) and resuming reproduces the same batches. The data is moved to `device`
    once, and batches are gathered there. The last incomplete batch of an epoch is dropped, so
    every step sees `batch_size` examples (`batch_size` larger than the split uses the whole split).
    """

    def __init__(
        self,
        data: Batch,
        batch_size: int,
        *,
        seed: int,
        device: torch.device | str = "cpu",
        shuffle: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if len(data) == 0:
            raise ValueError("cannot stream batches from an empty split")
        self.data = data.to(device)
        self.batch_size = min(batch_size, len(data))
        self.seed = seed
        self.shuffle = shuffle
        self.batches_per_epoch = len(data) // self.batch_size
        self.completed_epochs = 0
        self.position = 0
        self._order: torch.Tensor | None = None

    def __iter__(self) -> TensorBatchStream:
        return self

    def __next__(self) -> Batch:
        if self._order is None:
            self._order = self._epoch_order(self.completed_epochs)
        start = self.position * self.batch_size
        batch = self.data.index(self._order[start : start + self.batch_size])
        self.position += 1
        if self.position == self.batches_per_epoch:
            self.completed_epochs += 1
            self.position = 0
            self._order = None
        return batch

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        n = len(self.data)
        if not self.shuffle:
            return torch.arange(n, device=self.data.inputs.device)
        generator = torch.Generator().manual_seed(_mix(self.seed, epoch))
        return torch.randperm(n, generator=generator).to(self.data.inputs.device)

    def state_dict(self) -> dict[str, Any]:
        """The stream position: completed epochs and batches drawn in the current epoch."""
        return {"completed_epochs": self.completed_epochs, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a position saved by :meth:`state_dict`."""
        self.completed_epochs = int(state["completed_epochs"])
        self.position = int(state["position"])
        self._order = None


def _mix(seed: int, epoch: int) -> int:
    """A 63-bit generator seed for (seed, epoch), distinct for distinct pairs in practice."""
    return (seed * 1_000_003 + epoch * 7_919 + 12_345) % (2**63 - 1)
