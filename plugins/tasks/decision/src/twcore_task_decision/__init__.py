"""Predict-then-optimise tasks with a differentiable decision layer (the ``decision`` capability).

``cubic-topk``, ``portfolio`` and ``budget-allocation``: a per-item model predicts y, a batched
solver turns the predictions of a whole batch of instances into decisions z*(ŷ), and the tasks
report the normalised decision quality ``ndq`` of those decisions under the true y.
"""

from twcore_task_decision.budget_allocation import BudgetAllocation, BudgetAllocationConfig
from twcore_task_decision.cubic_topk import CubicTopK, CubicTopKConfig
from twcore_task_decision.decision_task import DecisionTask, PredictThenOptimise
from twcore_task_decision.portfolio import Portfolio, PortfolioConfig
from twcore_task_decision.quality import QualityReference, normalised_decision_quality

__all__ = [
    "BudgetAllocation",
    "BudgetAllocationConfig",
    "CubicTopK",
    "CubicTopKConfig",
    "DecisionTask",
    "Portfolio",
    "PortfolioConfig",
    "PredictThenOptimise",
    "QualityReference",
    "normalised_decision_quality",
]
