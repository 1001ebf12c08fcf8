"""Lookahead-DRO as a rule for any training loop: task weights that minimise the worst task loss
*after* the step, anticipating how the tasks' gradients interact (Michel, Ruder, Yogatama).

Every step, on the step's objective losses ℓ [K] (see :mod:`twcore_method_ldro.game`):

1. every ``interaction_every`` (k) steps, recompute the cosine matrix C_ij = cos(g_i, g_j) of the
   objectives' gradients on the tensors they share (one vectorised backward pass): shared
   parameters, or the shared representation (a trunk's output, as in MGDA-UB: backward passes
   through the heads only); on parameters, a Gram source (``gram=``, a
   :class:`~twcore.autodiff.layer_gram.GramRecorder` of the forward pass) gives C from the K×K
   Gram matrix without forming the K gradients;
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

    rule = LookaheadDRO(num_objectives=4, step_size=0.01, lookahead=0.1)
    optimizer.zero_grad()
    step = rule.backward(torch.stack(losses), shared=list(trunk.parameters()))
    optimizer.step()
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from twcore.autodiff import (
    cosine_matrix,
    cosines_from_gram,
    per_objective_grads,
    shared_leaves,
)
from twcore.contract.weighting import (
    GramSource,
    WeightedStep,
    Weighting,
    gram_weighted_backward,
    own_tensors,
    weighted_backward,
)
from twcore_method_ldro.game import lookahead_matrix, online_update, solve_game_exactly

MODES = ("online", "exact")


class LookaheadDRO(Weighting):
    """Weights on the simplex from the lookahead game of the objectives' losses.

    Args:
        num_objectives: K.
        step_size: η, the step size of the exponentiated update of w (> 0).
        lookahead: λ, the weight of the gradient interaction in L (> 0).
        interaction_every: k, steps between recomputations of the cosines (>= 1).
        mode: ``online`` (the paper's update) or ``exact`` (solve the game each step).
    """

    compares_gradients = True
    uses_gram = True

    def __init__(
        self,
        num_objectives: int,
        step_size: float = 1e-2,
        lookahead: float = 1e-1,
        interaction_every: int = 100,
        mode: str = "online",
    ) -> None:
        super().__init__(num_objectives)
        if not (step_size > 0 and lookahead > 0):
            raise ValueError(f"step_size={step_size} and lookahead={lookahead} must be > 0")
        if interaction_every < 1:
            raise ValueError(f"interaction_every={interaction_every} must be >= 1")
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not one of {', '.join(MODES)}")
        self.step_size, self.lookahead = step_size, lookahead
        self.interaction_every, self.mode = interaction_every, mode
        # float64, so that 1/K is as exact as the losses' dtype can hold it.
        self.weights = torch.full((num_objectives,), 1.0 / num_objectives, dtype=torch.float64)
        self.cosines = torch.eye(num_objectives)
        self.steps_taken = 0

    def backward(
        self,
        losses: Tensor,
        shared: Sequence[Tensor] = (),
        *,
        params: Iterable[Tensor] | None = None,
        gram: GramSource | None = None,
    ) -> WeightedStep:
        """The step; with `gram` (the Gram matrix of the gradients on `shared`) the cosines
        come from it instead of the K gradient rows."""
        self.check_losses(losses)
        # The step's gradient from what the Gram matrix left, on a step that computed it.
        source = gram if self.compares_this_step() and shared else None
        if self.compares_this_step():
            if gram is not None:
                self.cosines = cosines_from_gram(gram.gram(losses)).detach()
            else:
                shared = list(shared) or shared_leaves(losses)
                if not shared:
                    raise ValueError("L-DRO needs tensors the objectives share; these share none")
                gradients = per_objective_grads(losses, shared)  # [K, P] or [K, B·F]
                self.cosines = cosine_matrix(gradients).detach()
        self.weights = self.weights.to(losses.detach())
        matrix = lookahead_matrix(losses.detach(), self.cosines.to(losses.detach()), self.lookahead)
        lookahead_losses = matrix @ self.weights
        if self.mode == "online":
            self.weights, best_response = online_update(self.weights, matrix, self.step_size)
        else:
            best_response = int(lookahead_losses.argmax())
            self.weights = solve_game_exactly(matrix)
        if source is not None:
            # Σ_j w_j ∇ℓ_j on the shared parameters from the source; the heads' w_k ∇ℓ_k (as
            # from the whole backward) from its pass through them, or their own backward pass.
            compared = list(shared)
            own = own_tensors(losses, compared, params, source)
            gram_weighted_backward(
                losses, self.weights, compared, own, source, own_weights=self.weights
            )
        else:
            weighted_backward(losses, self.weights)
        self.steps_taken += 1
        logs = {"lookahead_loss": lookahead_losses, "best_response": best_response}
        return WeightedStep(self.weights.clone(), logs)

    def compares_this_step(self) -> bool:
        """Every ``interaction_every`` steps."""
        return self.steps_taken % self.interaction_every == 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights.clone(),
            "cosines": self.cosines.clone(),
            "steps_taken": self.steps_taken,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = state["weights"].clone()
        self.cosines = state["cosines"].clone()
        self.steps_taken = int(state["steps_taken"])
