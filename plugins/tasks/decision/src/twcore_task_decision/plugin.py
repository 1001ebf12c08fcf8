"""Entry point of the decision-focused task plugins."""

from twcore.contract.hookspecs import hookimpl


@hookimpl
def twcore_register_tasks(register):
    register("cubic-topk", "twcore_task_decision.cubic_topk:CubicTopK")
    register("portfolio", "twcore_task_decision.portfolio:Portfolio")
    register("budget-allocation", "twcore_task_decision.budget_allocation:BudgetAllocation")
    register("knapsack", "twcore_task_decision.knapsack:Knapsack")
    register("shortest-path", "twcore_task_decision.shortest_path:ShortestPath")
