"""What the smoothing γ of budget-allocation's training decisions costs and buys.

    python3 plugins/tasks/decision/benchmarks/budget_smoothing.py [--instances 400]

For each γ, on the test instances at the true reach (default options, data_seed 0): the share of
instances whose smoothed allocation has at least two fractional channels (so that it moves with
the predictions and has a non-zero gradient), the mean objective of the smoothed allocation
relative to the exact optimum, and the norm of the gradient of the mean objective with respect
to the reach.
"""

from __future__ import annotations

import argparse

from twcore_task_decision import BudgetAllocation
from twcore_task_decision.decision_task import HEAD
from twcore_task_decision.solvers.budget import budget_objective, solve_budget, solve_budget_exact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--smoothing", type=float, nargs="*", default=[0, 0.1, 0.3, 1, 2, 5])
    args = parser.parse_args()
    task = BudgetAllocation(BudgetAllocation.Config())
    data = task.split("test").index(slice(0, args.instances))
    reach = task.reach(data.targets[HEAD]).double()
    weights = data.context["target_weights"].double()
    budget = task.config.budget
    optimum = budget_objective(solve_budget_exact(reach, weights, budget), reach, weights)
    print(f"{len(data)} test instances, budget {budget}\n")
    print("| γ | interior (≥ 2 fractional channels) | objective / optimum | ‖∇ mean objective‖ |")
    print("|---|---|---|---|")
    for smoothing in args.smoothing:
        leaf = reach.clone().requires_grad_()
        z = solve_budget(leaf, weights, budget, smoothing=smoothing)
        objective = budget_objective(z, reach, weights)
        objective.mean().backward()
        fractional = ((z > 1e-7) & (z < 1 - 1e-7)).sum(dim=-1)
        print(
            f"| {smoothing:g} | {(fractional >= 2).double().mean():.0%} | "
            f"{(objective / optimum).mean():.4f} | {leaf.grad.norm():.3g} |"
        )


if __name__ == "__main__":
    main()
