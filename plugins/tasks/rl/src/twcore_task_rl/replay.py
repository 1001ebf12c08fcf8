"""A replay buffer of transitions in preallocated tensors, saved and restored exactly."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

FIELDS = ("observation", "action", "reward", "next_observation", "terminated")


class ReplayBuffer:
    """A ring buffer of (s, a, r, s', terminated) with uniform sampling.

    Args:
        capacity: transitions kept; the oldest are overwritten.
        observation_shape: the shape of one observation (an int: a vector of that length).
        observation_dtype: how observations are stored (``torch.uint8`` keeps image frames at a
            quarter of the memory of floats).
    """

    def __init__(
        self,
        capacity: int,
        observation_shape: int | tuple[int, ...],
        observation_dtype: torch.dtype = torch.float32,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity {capacity} must be at least 1")
        self.capacity = capacity
        shape = (observation_shape,) if isinstance(observation_shape, int) else observation_shape
        self.data: dict[str, Tensor] = {
            "observation": torch.zeros(capacity, *shape, dtype=observation_dtype),
            "action": torch.zeros(capacity, dtype=torch.long),
            "reward": torch.zeros(capacity),
            "next_observation": torch.zeros(capacity, *shape, dtype=observation_dtype),
            "terminated": torch.zeros(capacity),
        }
        self.size = 0
        self.position = 0

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        observation: Tensor,
        action: int,
        reward: float,
        next_observation: Tensor,
        terminated: bool,
    ) -> None:
        """Store one transition (overwriting the oldest when full)."""
        row = self.position
        self.data["observation"][row] = observation
        self.data["action"][row] = int(action)
        self.data["reward"][row] = float(reward)
        self.data["next_observation"][row] = next_observation
        self.data["terminated"][row] = float(terminated)
        self.position = (self.position + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """`batch_size` transitions drawn uniformly with replacement."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        index = torch.randint(self.size, (batch_size,), generator=generator)
        return {name: values[index] for name, values in self.data.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "data": {k: v[: self.size].clone() for k, v in self.data.items()},
            "size": self.size,
            "position": self.position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.size = int(state["size"])
        self.position = int(state["position"])
        for name, values in state["data"].items():
            self.data[name][: self.size] = values
