"""Equal weighting (``ew``): minimise the mean of the selected objectives' losses.

θ ← θ − η ∇θ (1/|S|) Σ_{k∈S} L_k(θ), with S all objectives by default. Restricting S to the main
objective (``method.objectives=[main]``) gives the *main-only* baseline of auxiliary-task papers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from twcore.batch import Batch
from twcore.config import option
from twcore.method import Method, MethodContext, StepResult


@dataclass
class EqualWeightingConfig:
    objectives: list[str] = option(
        default_factory=list,
        help="objectives to train on, equally weighted (default: all); 'main' names the main "
        "objective, so [main] is main-only training",
    )


class EqualWeighting(Method):
    """Mean of the selected objectives; the others get weight 0."""

    Config = EqualWeightingConfig

    def __init__(self, config: EqualWeightingConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.weights = selection_weights(config.objectives, ctx).to(ctx.device)

    def train_step(self, batch: Batch) -> StepResult:
        losses = self.ctx.objective_losses(batch)
        self.ctx.optimizer.zero_grad(set_to_none=True)
        (self.weights * losses).sum().backward()
        self.ctx.optimizer_step()
        return StepResult(losses=losses.detach(), weights=self.weights)


def selection_weights(selected: list[str], ctx: MethodContext) -> torch.Tensor:
    """Weights [K]: 1/|S| on the selected objectives (all if none selected), 0 elsewhere."""
    spec = ctx.spec
    names = list(spec.objective_names)
    main = spec.main_objective
    resolved = []
    for name in selected:
        if name == "main" and name not in names:
            if main is None:
                raise ValueError(
                    "method.objectives names 'main' but the task has no main objective"
                )
            name = main.name
        if name not in names:
            raise ValueError(
                f"method.objectives names '{name}', which is not an objective of the task; "
                f"objectives: {', '.join(names)}"
            )
        resolved.append(name)
    chosen = set(resolved) or set(names)
    mask = torch.tensor([float(n in chosen) for n in names])
    return mask / mask.sum()
