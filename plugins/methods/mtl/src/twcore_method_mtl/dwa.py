"""Dynamic Weight Average (Liu, Johns, Davison, CVPR 2019, "End-to-End Multi-Task Learning with
Attention", eq. 7): weight each objective by how slowly its loss has been falling.

With L̄_k(n) the mean loss of objective k over period n (the paper's periods are epochs):

    r_k(n−1) = L̄_k(n−1) / L̄_k(n−2),    w_k(n) = K exp(r_k(n−1)/T) / Σ_j exp(r_j(n−1)/T)

and w = 1 for the first two periods. T = 2 is the paper's temperature. An objective whose loss
fell least (ratio near or above 1) gets more weight. Weights sum to K. A period is ``period``
steps here (the engine has no epochs of its own; set it to your steps per epoch).

    rule = DynamicWeightAverage(num_objectives=3, period=100)
    optimizer.zero_grad()
    step = rule.backward(torch.stack(losses))
    optimizer.step()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from twcore.contract.weighting import LossWeighting


class DynamicWeightAverage(LossWeighting):
    """Weights from the ratio of the last two periods' mean losses (see the module docstring).

    Args:
        num_objectives: K.
        temperature: T (> 0).
        period: steps per period (an epoch, in the paper; ≥ 1).
    """

    def __init__(self, num_objectives: int, temperature: float = 2.0, period: int = 100) -> None:
        super().__init__(num_objectives)
        if not temperature > 0:
            raise ValueError(f"temperature={temperature} must be > 0")
        if period < 1:
            raise ValueError(f"period={period} must be >= 1")
        self.temperature, self.period = temperature, period
        self.history = torch.zeros(0, num_objectives, dtype=torch.float64)  # ≤ 2 period means
        self.running = torch.zeros(num_objectives, dtype=torch.float64)
        self.steps_in_period = 0
        self.weights = torch.ones(num_objectives, dtype=torch.float64)

    def loss_weights(self, losses: Tensor) -> tuple[Tensor, dict[str, Any]]:
        weights = self.weights.clone()
        self.running += losses.to(self.running)
        self.steps_in_period += 1
        if self.steps_in_period == self.period:
            mean = (self.running / self.period).unsqueeze(0)
            self.history = torch.cat([self.history, mean])[-2:]
            self.running.zero_()
            self.steps_in_period = 0
            if self.history.shape[0] == 2:
                ratios = self.history[1] / self.history[0].clamp_min(1e-300)
                self.weights = self.num_objectives * torch.softmax(ratios / self.temperature, 0)
        return weights, {}

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": self.history.clone(),
            "running": self.running.clone(),
            "steps_in_period": self.steps_in_period,
            "weights": self.weights.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = state["history"].clone()
        self.running = state["running"].clone()
        self.steps_in_period = int(state["steps_in_period"])
        self.weights = state["weights"].clone()
