"""Forward + backward time of the decision solvers for one batch, against the references.

    python3 plugins/tasks/decision/benchmarks/solver_speed.py [--batch 100] [--repeats 5]

In one process, on the task's own test instances (default options, data_seed 0):
- portfolio (50 assets): our batched active-set solver vs cvxpylayers, with its default solver
  settings and with the tight tolerances used by ``task.solver=cvxpylayers``;
- budget-allocation (5 channels × 10 targets): our batched solver (exact vertex decision, then
  the smoothed training decision) vs a Python loop over instances of the same solver;
- cubic-topk (50 items): soft top-k, batched.
The backward pass is that of the mean decision objective with respect to the predictions.
Reported: the median over `--repeats` runs (first run discarded as warm-up), and the speed-up.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from twcore_task_decision import BudgetAllocation, CubicTopK, Portfolio
from twcore_task_decision.decision_task import HEAD
from twcore_task_decision.solvers.budget import solve_budget
from twcore_task_decision.solvers.portfolio import solve_portfolio, solve_portfolio_cvxpylayers

from twcore.testing.decision import as_double


def _time(run: Callable[[], None], repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _forward_backward(solve: Callable, predictions: torch.Tensor, score: Callable) -> Callable:
    def run() -> None:
        leaf = predictions.detach().clone().requires_grad_()
        score(solve(leaf)).backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (CI has 2 cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []

    portfolio = Portfolio(Portfolio.Config())
    data = as_double(portfolio.split("test").index(slice(0, args.batch)))
    returns, sigma = data.targets[HEAD].double(), data.context["covariance"].double()

    def portfolio_score(x):
        return -portfolio.decision_objective(x, data).mean()

    ours = _time(
        _forward_backward(lambda p: solve_portfolio(p, sigma, 0.1), returns, portfolio_score),
        args.repeats,
    )
    for label, solve in [
        ("cvxpylayers, tight tolerances (task.solver=cvxpylayers)", solve_portfolio_cvxpylayers),
        ("cvxpylayers, default settings", _cvxpylayers_defaults),
    ]:
        reference = _time(
            _forward_backward(lambda p, s=solve: s(p, sigma, 0.1), returns, portfolio_score),
            args.repeats,
        )
        rows.append(("portfolio", "ours (batched active set)", ours, label, reference))

    budget = BudgetAllocation(BudgetAllocation.Config())
    data = as_double(budget.split("test").index(slice(0, args.batch)))
    reach = budget.reach(data.targets[HEAD]).double()
    weights = data.context["target_weights"].double()

    def budget_score(z):
        return -budget.decision_objective(z, data).mean()

    def batched(y):
        return solve_budget(y, weights, 2.0, smoothing=1.0)

    def looped(y):
        return torch.cat(
            [solve_budget(y[i : i + 1], weights[i], 2.0, smoothing=1.0) for i in range(len(y))]
        )

    ours = _time(_forward_backward(batched, reach, budget_score), args.repeats)
    loop = _time(_forward_backward(looped, reach, budget_score), max(1, args.repeats // 2))
    rows.append(("budget-allocation", "ours (batched)", ours, "same solver, loop", loop))

    cubic = CubicTopK(CubicTopK.Config())
    data = as_double(cubic.split("test").index(slice(0, args.batch)))

    def cubic_score(z):
        return -cubic.decision_objective(z, data).mean()

    soft = _time(
        _forward_backward(lambda s: cubic.decide(s, data), data.targets[HEAD], cubic_score),
        args.repeats,
    )
    rows.append(("cubic-topk", "soft top-k (batched)", soft, "", float("nan")))

    print(
        f"batch={args.batch}, forward + backward, median of {args.repeats}, "
        f"{args.threads} threads\n"
    )
    print("| task | ours | ours (s) | reference | reference (s) | speed-up |")
    print("|---|---|---|---|---|---|")
    for task, name, seconds, reference_name, reference_seconds in rows:
        speedup = reference_seconds / seconds
        reference_text = f"{reference_seconds:.3f}" if reference_name else "—"
        speedup_text = f"{speedup:.0f}×" if reference_name else "—"
        print(
            f"| {task} | {name} | {seconds:.4f} | {reference_name or '—'} | {reference_text} | "
            f"{speedup_text} |"
        )


def _cvxpylayers_defaults(returns, sigma, alpha):
    """cvxpylayers with the solver's default tolerances (what a user gets out of the box)."""
    from twcore_task_decision.solvers import portfolio as module

    tight, module.CVXPYLAYERS_ARGS = module.CVXPYLAYERS_ARGS, {}
    try:
        return solve_portfolio_cvxpylayers(returns, sigma, alpha)
    finally:
        module.CVXPYLAYERS_ARGS = tight


if __name__ == "__main__":
    main()
