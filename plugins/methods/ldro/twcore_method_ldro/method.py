"""Lookahead-DRO (Michel, Ruder, Yogatama): task weights that minimise the worst task loss
*after* the step, anticipating how the tasks' gradients interact.

Every step, on the batch's objective losses ℓ [K] (see :mod:`twcore_method_ldro.game`):

1. every ``interaction_every`` (k) steps, recompute the cosine matrix C_ij = cos(g_i, g_j) of the
   objectives' gradients on the parameters they share (one vectorised backward pass), or, with
   ``interaction=features``, of their gradients with respect to the shared representation (the
   trunk's output; backward passes through the heads only, as in MGDA-UB);
2. L = ℓ 1ᵀ − λ C, the first-order lookahead losses of every task after a step on every task;
3. ``mode=online`` (the paper's algorithm): the best-response row i* = argmax_i (L w)_i, the task
   that would be worst after a step on the current mixture, and the exponentiated update
   w_j ∝ w_j exp(−η L_{i*j}) — weight moves to the tasks whose steps help task i*;
   ``mode=exact``: w = the highest-entropy solution of min_w max_i (L w)_i (two cvxpy solves
   per step; for few tasks and for checking the online version);
4. θ ← θ − α ∇θ Σ_j w_j ℓ_j.

Limits that follow from the formula: orthogonal gradients (C = I) give DRO's update (weight to
the worst task); identical gradients (C = 11ᵀ) leave w unchanged (uniform); a task whose
gradient is zero (converged) has a constant row, so it draws no weight to itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from twcore.autodiff import cosine_matrix, per_objective_grads
from twcore.batch import Batch
from twcore.config import option
from twcore.method import Method, MethodContext, StepResult
from twcore.model import parameters_shared_by_objectives
from twcore.spec import Requirements
from twcore.task import stack_objective_losses
from twcore_method_ldro.game import lookahead_matrix, online_update, solve_game_exactly

MODES = ("online", "exact")
INTERACTIONS = ("auto", "parameters", "features")


@dataclass
class LookaheadDROConfig:
    step_size: float = option(1e-2, help="η, step size of the exponentiated update of w")
    lookahead: float = option(1e-1, help="λ, weight of the gradient interaction in L")
    interaction_every: int = option(100, help="k, steps between recomputations of the cosines")
    mode: str = option("online", help="online (the paper's update) or exact (solve the game)")
    interaction: str = option(
        "auto",
        help="gradients the cosines use: parameters (shared by several objectives), features "
        "(the trunk's output: heads-only backward passes, much cheaper), or auto (features if "
        "the model's trunk has parameters)",
    )

    def __post_init__(self) -> None:
        for key in ("step_size", "lookahead"):
            if not getattr(self, key) > 0:
                raise ValueError(f"method.{key}={getattr(self, key)} must be > 0")
        if self.interaction_every < 1:
            raise ValueError(f"method.interaction_every={self.interaction_every} must be >= 1")
        if self.mode not in MODES:
            raise ValueError(f"method.mode='{self.mode}' is not one of {', '.join(MODES)}")
        if self.interaction not in INTERACTIONS:
            raise ValueError(
                f"method.interaction='{self.interaction}' is not one of {', '.join(INTERACTIONS)}"
            )


def interaction_parameters(ctx: MethodContext) -> list[nn.Parameter]:
    """The parameters several objectives share (trunk, shared heads); ValueError if none."""
    parameters = parameters_shared_by_objectives(ctx.model, ctx.spec)
    if not parameters:
        raise ValueError(
            "L-DRO needs parameters shared by several objectives; this model and task share none"
        )
    return parameters


class LookaheadDRO(Method):
    """Weights on the simplex from the lookahead game of the objectives' losses."""

    Config = LookaheadDROConfig
    requirements = Requirements(min_objectives=2)

    def __init__(self, config: LookaheadDROConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        count = ctx.spec.num_objectives
        self.weights = torch.full((count,), 1.0 / count, device=ctx.device)
        self.cosines = torch.eye(count, device=ctx.device)
        self.interaction = config.interaction
        if self.interaction == "auto":
            has_trunk = bool(ctx.model.shared_parameters())
            self.interaction = "features" if has_trunk else "parameters"
        if self.interaction == "parameters":
            self.parameters = interaction_parameters(ctx)
        self.steps_taken = 0

    def train_step(self, batch: Batch) -> StepResult:
        ctx, config = self.ctx, self.config
        recompute = self.steps_taken % config.interaction_every == 0
        if self.interaction == "features":
            features = ctx.model.features(batch.inputs)
            outputs = ctx.model.predict_heads(features)
            losses = stack_objective_losses(ctx.task, outputs, batch)
            inputs = [features]
        else:
            losses, inputs = ctx.objective_losses(batch), self.parameters
        if recompute:
            gradients = per_objective_grads(losses, inputs)  # [K, P] or [K, B·F]
            self.cosines = cosine_matrix(gradients).detach()
        matrix = lookahead_matrix(losses.detach(), self.cosines, config.lookahead)
        lookahead_losses = matrix @ self.weights
        if config.mode == "online":
            self.weights, best_response = online_update(self.weights, matrix, config.step_size)
        else:
            best_response = int(lookahead_losses.argmax())
            self.weights = solve_game_exactly(matrix)
        ctx.optimizer.zero_grad(set_to_none=True)
        (self.weights * losses).sum().backward()
        ctx.optimizer_step()
        self.steps_taken += 1
        logs = {"lookahead_loss": lookahead_losses, "best_response": best_response}
        return StepResult(losses=losses.detach(), weights=self.weights.clone(), logs=logs)

    def state_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights.clone(),
            "cosines": self.cosines.clone(),
            "steps_taken": self.steps_taken,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = state["weights"].to(self.ctx.device)
        self.cosines = state["cosines"].to(self.ctx.device)
        self.steps_taken = int(state["steps_taken"])
