"""Print the decision tasks' sanity table: ndq of true y, random and least-squares predictions.

    python3 plugins/tasks/decision/benchmarks/sanity_table.py [--data-seed 0] [--split test]

Expected: true y scores exactly 1 (it defines DQ_optimal), random predictions ≈ 0 (fresh draws,
not the ones that define DQ_random), and the closed-form least-squares line on cubic-topk ≈ −1
(its slope is negative, so it picks the worst item).
"""

from __future__ import annotations

import argparse
import time

from twcore_task_decision import BudgetAllocation, CubicTopK, Knapsack, Portfolio, ShortestPath
from twcore_task_decision.baselines import least_squares_fit, least_squares_predictions, random_ndq
from twcore_task_decision.decision_task import HEAD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--split", default="test", choices=("val", "test"))
    args = parser.parse_args()

    print(f"split={args.split} data_seed={args.data_seed} (default task options)\n")
    print(
        "| task | ndq true y | ndq random | ndq least squares | normalised regret least squares "
        "| mse least squares | build s |"
    )
    print("|---|---|---|---|---|---|---|")
    for task_class in (CubicTopK, Portfolio, BudgetAllocation, Knapsack, ShortestPath):
        task = task_class(task_class.Config(data_seed=args.data_seed))
        start = time.perf_counter()
        data = task.split(args.split)
        built = time.perf_counter() - start
        truth = task.score(data.targets[HEAD], args.split)["ndq"]
        random = random_ndq(task, args.split, seed=10_000 + args.data_seed)
        fitted = task.score(least_squares_predictions(task, args.split), args.split)
        print(
            f"| {task.name} | {truth:.4f} | {random:+.4f} | {fitted['ndq']:+.4f} | "
            f"{fitted['normalised_regret']:.4f} | {fitted['mse']:.4g} | {built:.1f} |"
        )
        if task_class is CubicTopK:
            slope, intercept = least_squares_fit(task).tolist()
            cubic_line = f"cubic-topk least-squares line: y ≈ {slope:+.4f}·x {intercept:+.4f}"
    print(f"\n{cubic_line} (closed form over U[−1, 1]: slope −0.5)")


if __name__ == "__main__":
    main()
