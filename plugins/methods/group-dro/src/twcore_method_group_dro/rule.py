"""Group DRO as a rule for any training loop: online minimisation of the worst objective's loss
(Sagawa et al. 2020, Alg. 1).

Every step, on the step's objective losses ℓ [K]:

    q ← q ⊙ exp(η ℓ);  q ← q / Σ q          (exponentiated ascent on the simplex)
    θ ← θ − α ∇θ Σ_k q_k ℓ_k                (descent on the q-weighted loss)

so weight flows to whichever objective currently has the largest loss. q starts uniform.

    rule = GroupDRO(num_objectives=3, step_size=0.01)
    optimizer.zero_grad()
    step = rule.backward(torch.stack(losses))
    optimizer.step()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from twcore.contract.weighting import LossWeighting


class GroupDRO(LossWeighting):
    """Weights q on the simplex, moved towards the objectives with the largest losses.

    Args:
        num_objectives: K.
        step_size: η, the step size of the exponentiated update of q (> 0).
    """

    def __init__(self, num_objectives: int, step_size: float = 0.01) -> None:
        super().__init__(num_objectives)
        if not step_size > 0:
            raise ValueError(f"step_size={step_size} must be > 0")
        self.step_size = step_size
        # float64, so that 1/K is as exact as the losses' dtype can hold it.
        self.weights = torch.full((num_objectives,), 1.0 / num_objectives, dtype=torch.float64)

    def loss_weights(self, losses: Tensor) -> tuple[Tensor, dict[str, Any]]:
        # Sagawa et al. Alg. 1, line 5: q_g ← q_g exp(η ℓ_g), then normalise.
        logits = self.weights.to(losses).log() + self.step_size * losses
        self.weights = torch.softmax(logits, dim=0)
        return self.weights, {}

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = state["weights"].clone()
