"""A rule's own learned numbers (uncertainty weighting's log-variances, GradNorm's weights,
IMTL's loss scales, FAMO's logits), with their own Adam optimiser, kept out of the model's
parameters so that a rule works in any training loop and its state is plain tensors."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class LearnedVector:
    """K numbers learned by Adam from gradients the rule computes.

    Args:
        initial: [K] the starting values (copied, float64).
        lr: Adam's learning rate (> 0).
        weight_decay: Adam's (coupled) L2 weight decay (≥ 0).
    """

    def __init__(self, initial: Tensor, lr: float, weight_decay: float = 0.0) -> None:
        if not lr > 0:
            raise ValueError(f"lr={lr} must be > 0")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay={weight_decay} must be >= 0")
        self.parameter = torch.nn.Parameter(initial.detach().to(torch.float64).clone())
        self.optimizer = torch.optim.Adam([self.parameter], lr=lr, weight_decay=weight_decay)

    @property
    def value(self) -> Tensor:
        """[K] the current values (a detached copy: the next step does not change it)."""
        return self.parameter.detach().clone()

    def step(self, gradient: Tensor) -> None:
        """One Adam step along −`gradient` [K]."""
        self.parameter.grad = gradient.detach().to(self.parameter).clone()
        self.optimizer.step()
        self.parameter.grad = None

    def assign(self, values: Tensor) -> None:
        """Overwrite the values (e.g. a renormalisation), keeping the optimiser's moments."""
        with torch.no_grad():
            self.parameter.copy_(values)

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.assign(state["value"])
        self.optimizer.load_state_dict(state["optimizer"])
