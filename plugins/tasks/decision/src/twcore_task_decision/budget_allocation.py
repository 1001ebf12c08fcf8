"""``budget-allocation``: spread a budget over channels to reach as many weighted targets as
possible.

maximise_z Σ_j w_j (1 − Π_i (1 − z_i Y_ij))  s.t. 0 ≤ z ≤ 1, Σ_i z_i = budget,

with m channels i, n targets j, Y_ij the probability that channel i reaches target j and w_j the
weight of target j. The model predicts Y from per-(channel, target) features (one item per pair,
m·n items per instance in channel-major order); the weights are known (``batch.context``).
Predicted reach is clamped to [0, 1] by the solver. The objective is smooth and DR-submodular
but not concave in z (for two channels it is a z1 + b z2 − ab z1 z2): it is convex along every
exchange of budget between two channels, so an optimal allocation is a vertex of the feasible set
(whole channels). Evaluation decisions are that exact optimum (all vertices enumerated, batched);
training decisions solve a smoothed problem, max f(z) − (γ/2)‖z‖² with γ = ``smoothing``, whose
solution moves continuously with the predictions and is differentiated exactly through its KKT
conditions (see :mod:`twcore_task_decision.solvers.budget`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.options import option
from twcore_task_decision.decision_task import HEAD, DecisionTask, cut_splits, split_sizes
from twcore_task_decision.generators import budget_instances
from twcore_task_decision.solvers.budget import (
    budget_objective,
    solve_budget,
    solve_budget_exact,
)

WEIGHTS = "target_weights"
"""Context key of the target weights w [B, n]."""


@dataclass
class BudgetAllocationConfig:
    num_channels: int = option(5, ge=1, help="m, channels the budget is spread over")
    num_targets: int = option(10, ge=1, help="n, targets to reach")
    budget: float = option(2.0, gt=0, help="total budget Σ z (0 < budget ≤ num_channels)")
    smoothing: float = option(
        1.0,
        ge=0,
        help="γ of the training decision max f(z) − (γ/2)‖z‖² (0: exact, zero gradient)",
    )
    num_features: int = option(8, ge=1, help="features per (channel, target) item")
    latent_dim: int = option(
        4, ge=1, help="latent dimension of an item (reach and features depend on it)"
    )
    feature_noise: float = option(0.1, ge=0, help="noise σ added to the features")
    extra_dims: int = option(
        0,
        ge=0,
        help="LODL's random extra features: latent dimensions per item mixed into its features "
        "but not into its reach (0: none)",
    )
    train_size: int = option(200, ge=1, help="training instances")
    val_size: int = option(200, ge=1, help="validation instances")
    test_size: int = option(400, ge=1, help="test instances")
    data_seed: int = option(0, help="seed of the generated instances")

    def __post_init__(self) -> None:
        if self.budget > self.num_channels:
            raise ValueError(
                f"budget={self.budget} must be <= num_channels={self.num_channels} "
                "(each channel takes at most 1)"
            )


class BudgetAllocation(DecisionTask):
    """Budget allocation over channels with predicted reach probabilities."""

    Config = BudgetAllocationConfig
    name = "budget-allocation"
    non_data_options = frozenset({"smoothing"})

    @property
    def num_features(self) -> int:
        return self.config.num_features

    def generate_splits(self) -> dict[str, Batch]:
        c = self.config
        generator = torch.Generator().manual_seed(c.data_seed)
        sizes = split_sizes(c)
        features, reach, weights = budget_instances(
            sum(sizes.values()),
            c.num_channels,
            c.num_targets,
            c.num_features,
            c.latent_dim,
            c.feature_noise,
            generator,
            extra_dims=c.extra_dims,
        )
        instances = Batch(inputs=features, targets={HEAD: reach}, context={WEIGHTS: weights})
        return cut_splits(sizes, instances)

    def reach(self, items: Tensor) -> Tensor:
        """Per-item values [B, m·n] as a reach matrix [B, m, n]."""
        return items.reshape(items.shape[0], self.config.num_channels, self.config.num_targets)

    def decide(self, predictions: Tensor, batch: Batch) -> Tensor:
        """Training decisions: allocations z [B, m] of the smoothed problem for the predicted
        reach, differentiable (see :mod:`twcore_task_decision.solvers.budget`)."""
        c = self.config
        return solve_budget(
            self.reach(predictions), batch.context[WEIGHTS], c.budget, smoothing=c.smoothing
        )

    def decide_for_evaluation(self, predictions: Tensor, batch: Batch) -> Tensor:
        """Evaluation decisions: the exact optimal allocations (best vertex) [B, m]."""
        reach = self.reach(predictions)
        return solve_budget_exact(reach, batch.context[WEIGHTS], self.config.budget)

    def decision_objective(self, decisions: Tensor, batch: Batch) -> Tensor:
        """Σ_j w_j (1 − Π_i (1 − z_i Y_ij)) under the true reach, per instance [B]."""
        return budget_objective(decisions, self.reach(batch.targets[HEAD]), batch.context[WEIGHTS])
