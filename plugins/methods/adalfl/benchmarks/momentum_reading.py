"""Why AdaLFL fails under SGD with momentum: the evidence, read from the reproduction's runs.

    python3 -m twcore reproduce --only adalfl-base-loss --out runs/reproduction
    python3 plugins/methods/adalfl/benchmarks/momentum_reading.py runs/reproduction

Runs nothing: for every AdaLFL run of the ``adalfl-base-loss`` grid on a classification task it
reads ``metrics.jsonl`` and prints one markdown row per (task, optimiser): how steep the learned
loss is at the first and the last logged step (the least-squares slope of the true class's loss
against its probability, over cross-entropy's: 1 is as steep as cross-entropy), the lowest
meta-loss and the step it was reached, the highest meta-loss after it, and the test accuracy —
each as the median over seeds, with the range.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

CURVE = "method/loss_curve/"
"""The prefix of the logged learned-loss curves (one per objective; these tasks have one)."""
META = "method/meta_loss"


def steepness(curve: dict[str, Any]) -> float:
    """How many times steeper than cross-entropy the logged learned loss is: the least-squares
    slope of its true-class series over that of the cross-entropy series logged beside it."""
    return slope(curve["x"], curve["y"]) / slope(curve["x"], curve["cross-entropy"])


def slope(x: list[float], y: list[float]) -> float:
    """The least-squares slope of y against x."""
    mean_x, mean_y = statistics.fmean(x), statistics.fmean(y)
    covariance = sum((a - mean_x) * (b - mean_y) for a, b in zip(x, y, strict=True))
    return covariance / sum((a - mean_x) ** 2 for a in x)


def reading(run_dir: Path) -> dict[str, float]:
    """One run's steepness at the first and last logged curve, lowest meta-loss (and step),
    highest after it (and step)."""
    curves: list[tuple[int, float]] = []
    meta: list[tuple[int, float]] = []
    with (run_dir / "metrics.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            curve = next((v for k, v in record.items() if k.startswith(CURVE)), None)
            if curve is not None:
                curves.append((record["step"], steepness(curve)))
            if META in record and record[META] is not None:
                meta.append((record["step"], float(record[META])))
    if not meta or not curves:
        raise ValueError(f"{run_dir} logged no meta-loss or no loss curve (plot_every=0?)")
    low_step, low = min(meta, key=lambda item: item[1])
    high_step, high = max((item for item in meta if item[0] >= low_step), key=lambda i: i[1])
    return {
        "first_steepness": curves[0][1],
        "last_steepness": curves[-1][1],
        "lowest_meta_loss": low,
        "lowest_at": low_step,
        "highest_after": high,
        "highest_at": high_step,
    }


def spread(values: list[float], digits: int = 3) -> str:
    """``median [min, max]``."""
    low, middle, high = min(values), statistics.median(values), max(values)
    return f"{middle:.{digits}g} [{low:.{digits}g}, {high:.{digits}g}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="the --out directory of the grid's reproduction")
    args = parser.parse_args()
    rows: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for summary_path in sorted(args.runs.glob("adalfl-base-loss/sweep-*/*/summary.json")):
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        config = summary["config"]
        label = str(config.get("label", ""))
        accuracy = summary["metrics"].get("test", {}).get("acc")
        if summary.get("status") not in ("completed", "early_stopped"):
            continue
        if config["method"]["name"] != "adalfl" or accuracy is None:
            continue  # the base loss, or a regression task (no accuracy, no probability curve)
        optimiser = label.rsplit("adalfl-", 1)[-1]
        found = reading(summary_path.parent)
        found["acc"] = float(accuracy)
        rows[(config["task"]["name"], optimiser)].append(found)
    if not rows:
        parser.error(f"no AdaLFL runs of a classification task under {args.runs}")
    print(
        "| task | optimiser | seeds | steepness at the first logged step | at the end "
        "| lowest meta-loss "
        "| at step | highest meta-loss after it | at step | test acc |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (task, optimiser), found in sorted(rows.items()):
        column = {key: [f[key] for f in found] for key in found[0]}
        print(
            f"| {task} | {optimiser} | {len(found)} | {spread(column['first_steepness'])} | "
            f"{spread(column['last_steepness'])} | "
            f"{spread(column['lowest_meta_loss'])} | {spread(column['lowest_at'], 4)} | "
            f"{spread(column['highest_after'])} | {spread(column['highest_at'], 4)} | "
            f"{spread(column['acc'])} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
