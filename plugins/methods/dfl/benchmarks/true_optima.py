"""What reading the stored true optima z*(y) saves a decision loss's step, side by side.

    python3 plugins/methods/dfl/benchmarks/true_optima.py [--tasks knapsack portfolio
        shortest-path] [--batch 32] [--repeats 5] [--steps 10] [--threads 1]
        [--out plugins/methods/dfl/docs/true_optima.md]

For each task (its default configuration, the first training batch) and each loss that needs
z*(y) — SPO+, the perturbed Fenchel–Young loss (M = 10, σ = 1, the method's defaults) and NCE
(a pool of the batch's own optima) — one loss and backward pass at predictions equal to the
true values plus standard normal noise, with the batch as the task stores it
(``context["true_decisions"]`` read) and with that field removed (z*(y) solved at every
call), in this one process and thread count, alternating, the fastest of ``--repeats`` runs of
``--steps`` calls each. The two give the same loss and gradient (``tests/test_decision_losses.py``);
the table is their time per call and the ratio.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from twcore_method_dfl.losses import noise_contrastive, perturbed_fenchel_young, spo_plus
from twcore_task_decision.knapsack import Knapsack, KnapsackConfig
from twcore_task_decision.portfolio import Portfolio, PortfolioConfig
from twcore_task_decision.shortest_path import ShortestPath, ShortestPathConfig

from twcore.contract.batch import Batch
from twcore.contract.decision import TRUE_DECISIONS, SolverDecisionLayer

TASKS = {
    "knapsack": lambda: Knapsack(KnapsackConfig()),
    "portfolio": lambda: Portfolio(PortfolioConfig()),
    "shortest-path": lambda: ShortestPath(ShortestPathConfig()),
}
Loss = Callable[[SolverDecisionLayer, Tensor, Batch], Tensor]


def losses(pool: Tensor) -> dict[str, Loss]:
    """SPO+, PFYL (M = 10, σ = 1, a fresh seeded generator a call) and NCE on `pool`."""

    def pfyl(layer: SolverDecisionLayer, predictions: Tensor, batch: Batch) -> Tensor:
        generator = torch.Generator().manual_seed(0)
        return perturbed_fenchel_young(
            layer, predictions, batch, sigma=1.0, samples=10, generator=generator
        )

    def nce(layer: SolverDecisionLayer, predictions: Tensor, batch: Batch) -> Tensor:
        return noise_contrastive(layer, predictions, batch, pool.to(predictions.dtype))

    return {"spo-plus": spo_plus, "pfyl": pfyl, "nce": nce}


def seconds_per_call(call: Callable[[], None], steps: int) -> float:
    started = time.perf_counter()
    for _ in range(steps):
        call()
    return (time.perf_counter() - started) / steps


def measure(task_name: str, options: argparse.Namespace) -> list[str]:
    """The table rows of one task."""
    task = TASKS[task_name]()
    layer = task.decision
    assert isinstance(layer, SolverDecisionLayer)
    stored = task.split("train").index(slice(0, options.batch))
    solving = stored.index(slice(None))
    del solving.context[TRUE_DECISIONS]
    values = layer.true_values(stored)
    generator = torch.Generator().manual_seed(1)
    noisy = values + torch.randn(values.shape, generator=generator, dtype=values.dtype)
    pool = stored.context[TRUE_DECISIONS].reshape(len(stored), -1)  # the batch's own optima
    rows = []
    for name, loss in losses(pool).items():

        def call(batch: Batch, loss: Loss = loss) -> None:
            predictions = noisy.clone().requires_grad_(True)
            loss(layer, predictions, batch).sum().backward()

        best = {"stored": float("inf"), "solved": float("inf")}
        call(stored), call(solving)
        for _ in range(options.repeats):
            for label, batch in (("stored", stored), ("solved", solving)):
                seconds = seconds_per_call(lambda batch=batch: call(batch), options.steps)
                best[label] = min(best[label], seconds)
        rows.append(
            f"| {task_name} | {name} | {1000 * best['solved']:.2f} | {1000 * best['stored']:.2f} "
            f"| {best['solved'] / best['stored']:.2f}× |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    options = parser.parse_args(argv)
    torch.set_num_threads(options.threads)
    lines = [
        f"Batch {options.batch}, {options.threads} thread(s), fastest of {options.repeats} × "
        f"{options.steps} calls of loss and backward (`python3 "
        "plugins/methods/dfl/benchmarks/true_optima.py`).",
        "",
        "| task | loss | z*(y) solved, ms | z*(y) stored, ms | speed-up |",
        "|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for task_name in options.tasks:
        rows = measure(task_name, options)
        print("\n".join(rows), flush=True)
        lines += rows
    if options.out is not None:
        options.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
