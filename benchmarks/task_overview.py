"""One table over tasks: split sizes, data preparation time (cold and cached), and the test
metrics of a short equal-weighting (`ew`) run for one seed.

    python3 benchmarks/task_overview.py                       # every installed task, model mlp
    python3 benchmarks/task_overview.py mnist-multitask digits --model cnn --steps 500

Cold preparation uses an empty cache directory; "cached" builds the task again from the cache
that the cold build filled (both in this process, after imports). Runs use `wandb.enabled=false`
and write under a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from twcore.contract.data_cache import CACHE_ENV
from twcore.contract.task import TensorTask
from twcore.orchestration import api
from twcore.orchestration.config.compose import compose
from twcore.orchestration.engine.components import build_task
from twcore.orchestration.registry import get_registry


def prepare(task_name: str, options: list[str]) -> tuple[float, dict[str, int]]:
    """Seconds to build the task and its splits, and the split sizes."""
    start = time.perf_counter()
    task = build_task(compose([f"task={task_name}", *options]))
    sizes: dict[str, int] = {}
    if isinstance(task, TensorTask):
        sizes = {name: len(split) for name, split in task.splits.items()}
    return time.perf_counter() - start, sizes


def overview_row(task: str, model: str, steps: int, options: list[str], root: Path) -> dict:
    """Sizes, preparation times and `ew` test metrics of one task."""
    os.environ[CACHE_ENV] = str(root / f"cache-{task}")
    cold, sizes = prepare(task, options)
    cached, _ = prepare(task, options)
    result = api.run(
        [
            f"task={task}",
            f"model={model}",
            "method=ew",
            f"steps={steps}",
            "eval_every=0",
            "wandb.enabled=false",
            "seed=0",
            f"runs_root={root / 'runs'}",
            *options,
        ]
    )
    summary: dict[str, Any] = result.summary
    metrics = summary["metrics"]["test"]
    shown = summary["task"]["summary_metrics"]
    return {
        "task": task,
        "sizes": "/".join(str(sizes.get(s, "-")) for s in ("train", "val", "test")),
        "cold_s": cold,
        "cached_s": cached,
        "train_s": summary["wall_time_s"],
        "metrics": ", ".join(f"{name} {metrics[name]:.3f}" for name in shown if name in metrics),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", help="task names (default: every installed task)")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (CI has 2 cores)")
    parser.add_argument("--set", nargs="*", default=[], help="extra key=value for every run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tasks = args.tasks or get_registry().names("task")
    print(f"model={args.model} method=ew steps={args.steps} seed=0 threads={args.threads}\n")
    print("| task | train/val/test | prepare cold (s) | prepare cached (s) | train (s) | test |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            row = overview_row(task, args.model, args.steps, args.set, Path(tmp))
            print(
                f"| `{row['task']}` | {row['sizes']} | {row['cold_s']:.2f} | "
                f"{row['cached_s']:.2f} | {row['train_s']:.1f} | {row['metrics']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
