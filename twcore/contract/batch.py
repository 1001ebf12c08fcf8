"""The unit of data that flows from a task through a model to a method."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Batch:
    """A batch of B examples.

    Attributes:
        inputs: model input, shape [B, *input_shape].
        targets: per-objective targets keyed by ``ObjectiveSpec.target``, each with leading dim B.
        context: other per-example tensors a task needs (decision-instance data, actions, ...),
            each with leading dim B.
    """

    inputs: Tensor
    targets: dict[str, Tensor] = field(default_factory=dict)
    context: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        """A copy with every tensor on `device` (tensors already there are not copied)."""
        return Batch(
            inputs=self.inputs.to(device),
            targets=_move(self.targets, device),
            context=_move(self.context, device),
        )

    def index(self, index: Tensor | slice) -> Batch:
        """The examples selected by `index` (an index tensor or a slice) along dim 0."""
        return Batch(
            inputs=self.inputs[index],
            targets={k: v[index] for k, v in self.targets.items()},
            context={k: v[index] for k, v in self.context.items()},
        )

    def validate(self) -> None:
        """Raise ValueError unless every tensor has the same leading dimension."""
        size = len(self)
        for group, tensors in (("targets", self.targets), ("context", self.context)):
            for key, value in tensors.items():
                if value.shape[0] != size:
                    raise ValueError(
                        f"batch {group}['{key}'] has {value.shape[0]} rows, inputs have {size}"
                    )


def _move(tensors: Mapping[str, Tensor], device: torch.device | str) -> dict[str, Tensor]:
    return {key: value.to(device) for key, value in tensors.items()}
