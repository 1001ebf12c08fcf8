"""``cubic-topk``: pick the k items with the largest y = 10 (x³ − 0.65 x) from 50 per instance.

The LODL/TaskMet benchmark's first problem. x ~ U[−1, 1] is the only feature of an item. The best
least-squares line through y(x) has a negative slope (−0.5 in expectation), so a model trained for
MSE alone ranks the items backwards and picks the worst item: ndq ≈ −1, while a decision-aware
loss can reach ndq ≈ +0.9 with the same linear model. Training decisions are a soft top-k
(differentiable), evaluation decisions a hard top-k; the objective of decisions z is Σ_i y_i z_i.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.options import option
from twcore_task_decision.decision_task import HEAD, DecisionTask, cut_splits, split_sizes
from twcore_task_decision.generators import cubic_instances
from twcore_task_decision.solvers.topk import hard_topk, soft_topk


@dataclass
class CubicTopKConfig:
    num_items: int = option(50, ge=1, help="items per instance")
    budget: int = option(1, ge=1, help="k, the number of items chosen per instance")
    temperature: float = option(
        0.01, gt=0, help="temperature τ of the soft top-k training decision"
    )
    train_size: int = option(200, ge=1, help="training instances")
    val_size: int = option(200, ge=1, help="validation instances (train + val = the original 400)")
    test_size: int = option(400, ge=1, help="test instances")
    data_seed: int = option(0, help="seed of the generated instances")

    def __post_init__(self) -> None:
        if self.budget > self.num_items:
            raise ValueError(
                f"budget={self.budget} must be <= num_items={self.num_items} "
                "(the number of items chosen per instance)"
            )


class CubicTopK(DecisionTask):
    """Top-k selection with a cubic value function (one feature per item)."""

    Config = CubicTopKConfig
    name = "cubic-topk"
    linear_objective = True  # Σ_i y_i z_i
    non_data_options = frozenset({"temperature"})

    @property
    def num_features(self) -> int:
        return 1

    def generate_splits(self) -> dict[str, Batch]:
        c = self.config
        generator = torch.Generator().manual_seed(c.data_seed)
        sizes = split_sizes(c)
        x, y = cubic_instances(sum(sizes.values()), c.num_items, generator)
        return cut_splits(sizes, Batch(inputs=x, targets={HEAD: y}))

    def decide(self, predictions: Tensor, batch: Batch) -> Tensor:
        """Soft top-k [B, n] in [0, 1], rows summing to k (differentiable)."""
        return soft_topk(predictions, self.config.budget, self.config.temperature)

    def decide_for_evaluation(self, predictions: Tensor, batch: Batch) -> Tensor:
        """Hard top-k [B, n] (0/1, ties broken by index)."""
        return hard_topk(predictions, self.config.budget)

    def decision_objective(self, decisions: Tensor, batch: Batch) -> Tensor:
        """Σ_i y_i z_i per instance [B]."""
        return (decisions * batch.targets[HEAD]).sum(dim=-1)
