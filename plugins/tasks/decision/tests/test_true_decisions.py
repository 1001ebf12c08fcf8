"""Each decision task stores z*(y), the exact decisions for every instance's true values, with
its data: what its layer's solver gives for them, solved in chunks as evaluation solves, and
the optima its decision-quality reference DQ_optimal averages."""

from __future__ import annotations

import pytest
import torch
from twcore_task_decision.budget_allocation import BudgetAllocation, BudgetAllocationConfig
from twcore_task_decision.cubic_topk import CubicTopK, CubicTopKConfig
from twcore_task_decision.knapsack import Knapsack, KnapsackConfig
from twcore_task_decision.portfolio import Portfolio, PortfolioConfig
from twcore_task_decision.shortest_path import ShortestPath, ShortestPathConfig

from twcore.contract.decision import TRUE_DECISIONS, regret, true_decisions

SIZES = {"train_size": 24, "val_size": 8, "test_size": 16}
TASKS = {
    "knapsack": lambda: Knapsack(KnapsackConfig(num_items=10, capacity=15.0, **SIZES)),
    "portfolio": lambda: Portfolio(PortfolioConfig(num_assets=12, **SIZES)),
    "shortest-path": lambda: ShortestPath(ShortestPathConfig(grid=4, **SIZES)),
    "budget-allocation": lambda: BudgetAllocation(BudgetAllocationConfig(**SIZES)),
    "cubic-topk": lambda: CubicTopK(CubicTopKConfig(**SIZES)),
}


@pytest.fixture(autouse=True)
def _private_data_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TWCORE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("name", sorted(TASKS))
def test_the_stored_true_decisions_are_the_solvers_for_the_true_values(name, monkeypatch):
    task = TASKS[name]()
    monkeypatch.setattr(type(task), "solve_chunk", 5)  # several chunks a split
    layer = task.decision
    for split in ("train", "val", "test"):
        data = task.split(split)
        stored = data.context[TRUE_DECISIONS]
        assert len(stored) == len(data)
        solved = layer.solve(layer.true_values(data), data)
        assert stored.shape == solved.shape and stored.dtype == solved.dtype
        assert torch.equal(stored, solved)
        # A batch drawn from the split carries its rows, and the helper reads them.
        rows = torch.tensor([3, 0, 5])
        assert torch.equal(true_decisions(layer, data.index(rows)), solved[rows])
        # (float32 objectives of the whole split against the build's chunks: rounding apart)
        optimal = task.decision_objective(stored, data).double().mean()
        assert float(optimal) == pytest.approx(task.quality_reference(split).dq_optimal, rel=1e-5)


def test_the_stored_optima_do_not_depend_on_portfolios_solver_switch():
    """``solver`` is not part of the data's cache key, so the stored optima must not depend on
    it: they are the references' batched solver's whichever solver the run uses."""
    default = TASKS["portfolio"]().split("train").context[TRUE_DECISIONS]
    other = Portfolio(PortfolioConfig(num_assets=12, solver="cvxpylayers", **SIZES))
    assert torch.equal(other.split("train").context[TRUE_DECISIONS], default)


def test_the_regret_reads_the_stored_decisions_and_solves_without_them():
    task = TASKS["knapsack"]()
    layer, data = task.decision, task.split("test")
    predictions = torch.randn(len(data), 10, generator=torch.Generator().manual_seed(0))
    with_stored = regret(layer, predictions, data)
    without = data.index(slice(None))
    del without.context[TRUE_DECISIONS]
    torch.testing.assert_close(with_stored, regret(layer, predictions, without), rtol=0, atol=0)
    assert bool((with_stored >= -1e-9).all())
