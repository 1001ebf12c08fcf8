"""Which tasks are the worst in the ``ldro-mnist`` reproduction, and how each method does on them.

    python3 -m twcore reproduce --only ldro-points ldro-mnist --out runs/reproduction
    python3 plugins/methods/ldro/benchmarks/worst_tasks.py runs/reproduction [--tasks 4]

Runs nothing: reads the test accuracy of every task from the runs' ``summary.json`` and prints
a markdown table of the tasks that are worst under ERM (mean over seeds), each method's mean
accuracy on them, and what the grid did to each task (label noise, a rare class).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

GRID = "ldro-mnist"
BASELINE = "erm"


def accuracies(runs: Path) -> dict[str, dict[str, list[float]]]:
    """Per label (``erm``, ``ldro``, ...), per task, the test accuracy of every seed."""
    found: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(runs.glob(f"{GRID}/sweep-*/*/summary.json")):
        summary = json.loads(path.read_text(encoding="utf-8"))
        if summary.get("status") != "completed":
            continue
        label = str(summary["config"]["label"]).removeprefix(f"{GRID}/")
        for key, value in summary["metrics"]["test"].items():
            if key.startswith("acc/") and value is not None:
                found[label][key.removeprefix("acc/")].append(float(value))
    return found


def treatment(config: dict, task: str) -> str:
    """What the grid's task options did to `task` (``task<k>``)."""
    index = int(task.removeprefix("task"))
    notes = []
    noise = config.get("label_noise") or []
    if noise and noise[index]:
        notes.append(f"{noise[index]:.0%} label noise")
    keep = config.get("rare_class_fraction") or []
    if keep and keep[index] < 1:
        notes.append(f"rare class kept at {keep[index]:.0%}")
    return ", ".join(notes) or "as is"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="the --out directory of the reproduction")
    parser.add_argument("--tasks", type=int, default=4, help="how many of the worst tasks")
    args = parser.parse_args()
    found = accuracies(args.runs)
    if BASELINE not in found:
        parser.error(f"no completed '{BASELINE}' run of {GRID} under {args.runs}")
    means = {
        label: {task: statistics.fmean(values) for task, values in tasks.items()}
        for label, tasks in found.items()
    }
    worst = sorted(means[BASELINE], key=means[BASELINE].__getitem__)[: args.tasks]
    some_run = next(args.runs.glob(f"{GRID}/sweep-*/*/summary.json"))
    config = json.loads(some_run.read_text(encoding="utf-8"))["config"]["task"]
    labels = sorted(means, key=lambda label: (label != BASELINE, label))
    print("| task | what the grid did to it | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for task in worst:
        cells = " | ".join(f"{means[label].get(task, float('nan')):.3f}" for label in labels)
        print(f"| {task} | {treatment(config, task)} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
