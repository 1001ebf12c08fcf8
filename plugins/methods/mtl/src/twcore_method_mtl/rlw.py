"""Random loss weighting (Lin et al., TMLR 2022, "Reasonable Effectiveness of Random Weighting:
A Litmus Test for Multi-Task Learning"): fresh random weights every step.

    λ ~ N(0, I_K),   w = softmax(λ),   θ ← θ − η ∇θ Σ_k w_k L_k

(the paper's normal distribution; its other choices change little). In expectation every
objective gets 1/K, as with equal weighting; the noise is what the paper argues helps escape
sharp minima. The draws come from the rule's own generator (``seed``), saved with its state.

    rule = RandomLossWeighting(num_objectives=3, seed=0)
    optimizer.zero_grad()
    step = rule.backward(torch.stack(losses))
    optimizer.step()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from twcore.contract.weighting import LossWeighting


class RandomLossWeighting(LossWeighting):
    """Softmax of standard normal draws, every step (see the module docstring).

    Args:
        num_objectives: K.
        seed: seed of the rule's generator.
    """

    def __init__(self, num_objectives: int, seed: int = 0) -> None:
        super().__init__(num_objectives)
        self.generator = torch.Generator().manual_seed(seed)

    def loss_weights(self, losses: Tensor) -> tuple[Tensor, dict[str, Any]]:
        draws = torch.randn(self.num_objectives, generator=self.generator, dtype=torch.float64)
        return torch.softmax(draws, dim=0), {}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
