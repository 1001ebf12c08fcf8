"""Predict-then-optimise tasks with a differentiable decision layer (the ``decision`` capability).

``cubic-topk``, ``portfolio``, ``budget-allocation``, ``knapsack`` and ``shortest-path``: a
model predicts y (per item, or per instance for knapsack and shortest-path), a batched solver
turns the predictions of a whole batch of instances into decisions z*(ŷ), and the tasks report
the decision metrics (``ndq``, ``regret``, ``normalised_regret``) of those decisions under the
true y.
"""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:
    from twcore_task_decision.budget_allocation import BudgetAllocation, BudgetAllocationConfig
    from twcore_task_decision.cubic_topk import CubicTopK, CubicTopKConfig
    from twcore_task_decision.decision_task import DecisionTask, PredictThenOptimise
    from twcore_task_decision.knapsack import Knapsack, KnapsackConfig
    from twcore_task_decision.portfolio import Portfolio, PortfolioConfig
    from twcore_task_decision.shortest_path import ShortestPath, ShortestPathConfig

__all__ = [
    "BudgetAllocation",
    "BudgetAllocationConfig",
    "CubicTopK",
    "CubicTopKConfig",
    "DecisionTask",
    "Knapsack",
    "KnapsackConfig",
    "Portfolio",
    "PortfolioConfig",
    "PredictThenOptimise",
    "ShortestPath",
    "ShortestPathConfig",
]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
