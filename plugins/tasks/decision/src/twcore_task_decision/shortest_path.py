"""``shortest-path``: the cheapest monotone path across a k × k grid from predicted edge costs
(PyEPO's shortest-path problem).

minimise_z cᵀz over the edge indicators z of the paths from the top-left to the bottom-right
node moving east or south (k = 5: 40 edges, paths of 8 edges)

One instance is a feature vector x [p]; the model predicts every edge's cost from it (the
*per-instance* layout: inputs [B, p], head ``y`` [B, E]), the solver picks the path, and the
path is scored with the true costs: the objective (higher is better) is −cᵀz, so regret is the
extra cost and the normalised regret PyEPO's Σ extra cost ÷ Σ optimal cost. As a
:class:`~twcore.contract.decision.SolverDecisionLayer` the layer's values are the negated costs,
so obj = valuesᵀz and the losses built on a linear objective apply. Data follow PyEPO's
generator (:func:`twcore_task_decision.generators.shortest_path_instances`); evaluation decisions
are exact (dynamic programming on the grid's DAG), training decisions the Gibbs distribution's
edge marginals at temperature τ (:mod:`twcore_task_decision.solvers.grid_path`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.decision import PER_INSTANCE
from twcore.contract.options import option
from twcore_task_decision.decision_task import HEAD, DecisionTask, cut_splits, split_sizes
from twcore_task_decision.generators import shortest_path_instances
from twcore_task_decision.solvers.grid_path import num_edges, shortest_paths, soft_paths


@dataclass
class ShortestPathConfig:
    grid: int = option(5, ge=2, help="k, nodes per side of the grid (PyEPO: 5)")
    num_features: int = option(5, ge=1, help="p, features per instance (PyEPO: 5)")
    degree: int = option(4, ge=1, help="polynomial degree of the costs in the features")
    noise_width: float = option(0.5, ge=0, lt=1, help="ε̄, the costs' multiplicative noise")
    temperature: float = option(0.1, gt=0, help="τ of the relaxed training decisions")
    train_size: int = option(1000, ge=1, help="training instances")
    val_size: int = option(250, ge=1, help="validation instances")
    test_size: int = option(1000, ge=1, help="test instances")
    data_seed: int = option(0, help="seed of the generated instances")


class ShortestPath(DecisionTask):
    """Shortest path on a grid with predicted edge costs (per-instance layout)."""

    Config = ShortestPathConfig
    name = "shortest-path"
    layout = PER_INSTANCE
    linear_objective = True  # −cᵀz: linear in the values −c
    minimise = True
    non_data_options = frozenset({"temperature"})

    @property
    def num_features(self) -> int:
        return self.config.num_features

    @property
    def num_items(self) -> int:
        return num_edges(self.config.grid)

    def generate_splits(self) -> dict[str, Batch]:
        c = self.config
        generator = torch.Generator().manual_seed(c.data_seed)
        sizes = split_sizes(c)
        x, costs = shortest_path_instances(
            sum(sizes.values()), self.num_items, c.num_features, c.degree, c.noise_width, generator
        )
        return cut_splits(sizes, Batch(inputs=x, targets={HEAD: costs}))

    def decide(self, predictions: Tensor, batch: Batch) -> Tensor:
        """Edge marginals [B, E] of the Gibbs distribution over paths (differentiable)."""
        return soft_paths(predictions, self.config.grid, self.config.temperature)

    def decide_for_evaluation(self, predictions: Tensor, batch: Batch) -> Tensor:
        """A cheapest path's edge indicators [B, E] under the predicted costs."""
        return shortest_paths(predictions, self.config.grid)

    def decision_objective(self, decisions: Tensor, batch: Batch) -> Tensor:
        """−cᵀz per instance [B] (the path's true cost, negated: higher is better)."""
        return -(decisions * batch.targets[HEAD].to(decisions.dtype)).sum(dim=-1)
