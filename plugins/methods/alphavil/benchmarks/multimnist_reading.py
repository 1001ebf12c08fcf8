"""What αVIL learns on MultiMNIST, where the claim that it beats main-only does not hold: the
task weights it ends with, and whether its α searches lower the main digit's validation loss.

    python3 plugins/methods/alphavil/benchmarks/multimnist_reading.py
        [--out runs/alphavil-multimnist] [--seeds 10] [--workers 2]
        [--table plugins/methods/alphavil/docs/multimnist_reading.md]

The ``alphavil-auxiliary`` grid's MultiMNIST arm (mlp, 1,000 steps, the left digit the main task
and the right one its auxiliary), as one sweep (completed runs under ``--out`` are
reused), seeds 0 to ``--seeds`` − 1. Prints, and writes to ``--table``, per seed: the test
accuracy on the main digit, each task's weight at the end and averaged over the run's steps
(``train/weight/*``), and how many of the epochs' α searches lowered the main digit's
validation loss (``method/target_val_loss_after`` below ``…_before``).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from twcore_method_alphavil.grids import BENCHMARKS, FULL

from twcore.orchestration.ablation import sweep_into
from twcore.orchestration.report.collect import RunRecord, read_runs

TASKS = ("left", "right")


def reading(record: RunRecord) -> list[float]:
    """main accuracy, each task's last and mean weight, searches that helped, searches."""
    log = record.log
    row = [float(record.summary["metrics"]["test"]["main_acc"])]
    for task in TASKS:
        weights = [line[f"train/weight/{task}"] for line in log if f"train/weight/{task}" in line]
        row += [weights[-1], statistics.fmean(weights)]
    searches = [
        (line["method/target_val_loss_before"], line["method/target_val_loss_after"])
        for line in log
        if "method/target_val_loss_after" in line
    ]
    return [*row, sum(after < before for before, after in searches), len(searches)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/alphavil-multimnist"))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--table", type=Path, default=None, help="also write the table here")
    options = parser.parse_args(argv)
    multimnist = next(b for b in BENCHMARKS if b["task"] == "multimnist")
    seeds = ",".join(str(s) for s in range(options.seeds))
    setting = {**multimnist, **FULL, "method": "alphavil", "seed": seeds}
    sweep_into(setting, options.out, workers=options.workers)
    rows = {record.seed: reading(record) for record in read_runs(options.out)}
    command = (
        f"python3 plugins/methods/alphavil/benchmarks/multimnist_reading.py --seeds {options.seeds}"
    )
    lines = [
        f"αVIL on MultiMNIST (`{command}`): the main (left) digit's test accuracy, each task's "
        "weight at the end and averaged over the run, and the epochs whose α search lowered the "
        "main digit's validation loss.",
        "",
        "| seed | main_acc | left weight, end | left, mean | right weight, end | right, mean "
        "| searches that helped |",
        "|---|---|---|---|---|---|---|",
    ]
    for seed, row in sorted(rows.items()):
        cells = " | ".join(f"{value:.3f}" for value in row[:5])
        lines.append(f"| {seed} | {cells} | {row[5]:.0f} of {row[6]:.0f} |")
    means = [statistics.fmean(row[i] for row in rows.values()) for i in range(7)]
    cells = " | ".join(f"{value:.3f}" for value in means[:5])
    lines.append(f"| mean | {cells} | {means[5]:.1f} of {means[6]:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if options.table is not None:
        options.table.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
