"""Entry point of the decision-focused task plugins."""

from twcore.contract.hookspecs import hookimpl
from twcore_task_decision.budget_allocation import BudgetAllocation
from twcore_task_decision.cubic_topk import CubicTopK
from twcore_task_decision.knapsack import Knapsack
from twcore_task_decision.portfolio import Portfolio
from twcore_task_decision.shortest_path import ShortestPath


@hookimpl
def twcore_register_tasks(register):
    register("cubic-topk", CubicTopK)
    register("portfolio", Portfolio)
    register("budget-allocation", BudgetAllocation)
    register("knapsack", Knapsack)
    register("shortest-path", ShortestPath)
