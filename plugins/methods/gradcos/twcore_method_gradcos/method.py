"""GradCos: adapt auxiliary losses by the cosine of their gradients with the main task's.

On the parameters the objectives share (the trunk, and any head serving several objectives),
with G_main and G_aux,i the gradients of the main and auxiliary losses (paper, Alg. 1 and 2):

    weighted:    θ ← θ − α (G_main + Σ_i max(0, cos(G_main, G_aux,i)) · G_aux,i)
    unweighted:  θ ← θ − α (G_main + Σ_i 1[cos(G_main, G_aux,i) > 0] · G_aux,i)

Every other parameter (a task's own head) gets its own objective's gradient, unchanged. All K
gradients come from one vectorised backward pass (one row per objective); the cosines are dot
products over norms of those rows, and the combined gradient is written straight into ``.grad``
— no further backward pass. Converges to critical points of the main loss: at a fixed point
with a positive weight, G_main = −c·G_aux would have a negative cosine, a contradiction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from twcore.autodiff import assign_flat_grad, cosine_to, per_objective_grads
from twcore.batch import Batch
from twcore.config import option
from twcore.method import Method, MethodContext, StepResult
from twcore.model import parameters_shared_by_objectives
from twcore.spec import Requirements

VARIANTS = ("weighted", "unweighted")


@dataclass
class GradCosConfig:
    variant: str = option("weighted", help="weighted (max(0, cos) · G_aux) or unweighted (cos > 0)")

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"method.variant='{self.variant}' is not one of {', '.join(VARIANTS)}")


def combine_shared_gradients(
    gradients: Tensor, main_index: int, variant: str
) -> tuple[Tensor, Tensor, Tensor]:
    """The GradCos update direction on the shared parameters.

    Args:
        gradients: [K, P], one row per objective, on the shared parameters.
        main_index: the main objective's row.
        variant: ``weighted`` or ``unweighted``.

    Returns:
        (combined gradient [P], cosines [K] with the main row's, weights [K]; the main
        objective's cosine and weight are 1).
    """
    cosines = cosine_to(gradients[main_index], gradients)
    cosines[main_index] = 1.0
    weights = cosines.clamp_min(0) if variant == "weighted" else (cosines > 0).to(cosines.dtype)
    return weights @ gradients, cosines, weights


class GradCos(Method):
    """Auxiliary gradients on the shared parameters kept only as far as they agree with the main
    task's (see the module docstring)."""

    Config = GradCosConfig
    requirements = Requirements(main_auxiliary=True)

    def __init__(self, config: GradCosConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.shared = parameters_shared_by_objectives(ctx.model, ctx.spec)
        if not self.shared:
            raise ValueError("GradCos needs parameters shared by the main and auxiliary objectives")
        shared_ids = {id(p) for p in self.shared}
        self.own = [p for p in ctx.model.parameters() if id(p) not in shared_ids]
        self.main_index = ctx.spec.main_index

    def train_step(self, batch: Batch) -> StepResult:
        ctx = self.ctx
        losses = ctx.objective_losses(batch)
        rows = per_objective_grads(losses, [*self.shared, *self.own], retain_graph=False)
        shared_size = sum(p.numel() for p in self.shared)
        combined, cosines, weights = combine_shared_gradients(
            rows[:, :shared_size], self.main_index, self.config.variant
        )
        # Own parameters (task heads) belong to one objective each: the sum of the rows is
        # exactly each head's own gradient. Both vectors are fresh, so .grad can view them.
        assign_flat_grad(self.shared, combined)
        if self.own:
            assign_flat_grad(self.own, rows[:, shared_size:].sum(dim=0))
        ctx.optimizer_step()
        names = ctx.spec.objective_names
        logs = {
            "cosine": {n: cosines[i] for i, n in enumerate(names) if i != self.main_index},
            "shared_grad_norm": torch.linalg.vector_norm(combined),
        }
        return StepResult(losses=losses.detach(), weights=weights.detach(), logs=logs)
