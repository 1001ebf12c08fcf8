"""Group DRO: online minimisation of the worst objective's loss (Sagawa et al. 2020, Alg. 1).

Every step, on the batch's objective losses ℓ [K]:

    q ← q ⊙ exp(η ℓ);  q ← q / Σ q          (exponentiated ascent on the simplex)
    θ ← θ − α ∇θ Σ_k q_k ℓ_k                (descent on the q-weighted loss)

so weight flows to whichever objective currently has the largest loss. q starts uniform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from twcore.batch import Batch
from twcore.config import option
from twcore.method import Method, MethodContext, StepResult
from twcore.spec import Requirements


@dataclass
class GroupDROConfig:
    step_size: float = option(0.01, help="η, step size of the exponentiated update of q")

    def __post_init__(self) -> None:
        if not self.step_size > 0:
            raise ValueError(f"method.step_size={self.step_size} must be > 0")


class GroupDRO(Method):
    """Weights q on the simplex, moved towards the objectives with the largest losses."""

    Config = GroupDROConfig
    requirements = Requirements(min_objectives=2)

    def __init__(self, config: GroupDROConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        count = ctx.spec.num_objectives
        self.weights = torch.full((count,), 1.0 / count, device=ctx.device)

    def train_step(self, batch: Batch) -> StepResult:
        losses = self.ctx.objective_losses(batch)
        # Sagawa et al. Alg. 1, line 5: q_g ← q_g exp(η ℓ_g), then normalise.
        logits = self.weights.log() + self.config.step_size * losses.detach()
        self.weights = torch.softmax(logits, dim=0)
        self.ctx.optimizer.zero_grad(set_to_none=True)
        (self.weights * losses).sum().backward()
        self.ctx.optimizer_step()
        return StepResult(losses=losses.detach(), weights=self.weights.clone())

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = state["weights"].to(self.ctx.device)
