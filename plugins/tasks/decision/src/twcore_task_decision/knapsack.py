"""``knapsack``: choose items of known weights within a capacity to maximise their value, from
predicted values (PyEPO's knapsack, one capacity dimension).

maximise_z yᵀz  s.t. wᵀz ≤ C, z ∈ {0, 1}ⁿ

One instance is a feature vector x [p]; the model predicts all n item values from it (the
*per-instance* layout: inputs [B, p], head ``y`` [B, n]), the solver chooses the items, and the
choice is scored with the true values y. The weights w (shared by every instance, like PyEPO's)
are known, not predicted (``batch.context["weights"]``). Data follow PyEPO's generator
(:func:`twcore_task_decision.generators.knapsack_instances`): the values are a degree-``deg``
polynomial of the features with multiplicative noise, so a linear model is misspecified for
``deg`` > 1, where decision-focused losses are said to pay off. Evaluation decisions are the
exact optimum (dynamic programming); training decisions the entropy-regularised relaxation at
temperature τ (``temperature``), differentiated in closed form. The objective is linear in y
(``linear-decision``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.decision import PER_INSTANCE
from twcore.contract.options import option
from twcore_task_decision.decision_task import HEAD, DecisionTask, cut_splits, split_sizes
from twcore_task_decision.generators import knapsack_instances
from twcore_task_decision.solvers.knapsack import soft_knapsack, solve_knapsack

WEIGHTS = "weights"


@dataclass
class KnapsackConfig:
    num_items: int = option(32, ge=1, help="items per instance (PyEPO: 32)")
    num_features: int = option(5, ge=1, help="p, features per instance (PyEPO: 5)")
    degree: int = option(4, ge=1, help="polynomial degree of the values in the features")
    noise_width: float = option(0.5, ge=0, lt=1, help="ε̄, the values' multiplicative noise")
    capacity: float = option(20.0, gt=0, help="C, the capacity (PyEPO: 20)")
    temperature: float = option(0.5, gt=0, help="τ of the relaxed training decisions")
    train_size: int = option(1000, ge=1, help="training instances")
    val_size: int = option(250, ge=1, help="validation instances")
    test_size: int = option(1000, ge=1, help="test instances")
    data_seed: int = option(0, help="seed of the generated instances and the weights")


class Knapsack(DecisionTask):
    """0/1 knapsack with predicted item values (per-instance layout)."""

    Config = KnapsackConfig
    name = "knapsack"
    layout = PER_INSTANCE
    linear_objective = True  # yᵀz
    non_data_options = frozenset({"temperature"})
    solve_chunk = 256  # the DP keeps a [n, chunk, C·100] table of choices

    @property
    def num_features(self) -> int:
        return self.config.num_features

    @property
    def num_items(self) -> int:
        return self.config.num_items

    def generate_splits(self) -> dict[str, Batch]:
        c = self.config
        generator = torch.Generator().manual_seed(c.data_seed)
        sizes = split_sizes(c)
        total = sum(sizes.values())
        x, y, weights = knapsack_instances(
            total, c.num_items, c.num_features, c.degree, c.noise_width, generator
        )
        shared = weights.expand(total, -1).contiguous()  # one row per instance, all the same
        return cut_splits(sizes, Batch(inputs=x, targets={HEAD: y}, context={WEIGHTS: shared}))

    def _weights(self, batch: Batch) -> Tensor:
        return batch.context[WEIGHTS][0]

    def decide(self, predictions: Tensor, batch: Batch) -> Tensor:
        """Relaxed selections [B, n] in [0, 1] within the capacity (differentiable)."""
        c = self.config
        return soft_knapsack(predictions, self._weights(batch), c.capacity, c.temperature)

    def decide_for_evaluation(self, predictions: Tensor, batch: Batch) -> Tensor:
        """The optimal selections [B, n] (0/1, dynamic programming)."""
        return solve_knapsack(predictions, self._weights(batch), self.config.capacity)

    def decision_objective(self, decisions: Tensor, batch: Batch) -> Tensor:
        """yᵀz per instance [B]."""
        return (decisions * batch.targets[HEAD].to(decisions.dtype)).sum(dim=-1)
