"""TaskMet's learned metric on CartPole with distractors, read from the ``taskmet-cartpole`` grid.

    python3 -m twcore reproduce --only taskmet-cartpole --out runs/reproduction \\
        --report-dir plugins/tasks/rl/docs/cartpole
    python3 plugins/tasks/rl/benchmarks/cartpole.py runs/reproduction \\
        --out plugins/tasks/rl/docs/cartpole/metric.png

Runs nothing: the returns, model errors and claims are the grid's report and ledger. This draws
what they do not show: the diagonal metric Λ that each TaskMet arm learned over its outer steps,
one panel per (arm, d > 0), with the weight of each of CartPole's 4 true state dimensions and
the mean weight of the d distractor dimensions, averaged over the seeds (read from each run's
``metrics.jsonl``, where TaskMet logs ``method/metric_diagonal/<i>``). It prints, as markdown,
the final weights per panel, and per TaskMet run (all d) the rank correlation between the task
loss the metric is learned from (the one-step Bellman error on real transitions) and the
agent's return, over the run's validations: whether that loss is a usable stand-in for what
the paper's claim measures.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import defaultdict
from pathlib import Path

GRID = "taskmet-cartpole"
STATE_NAMES = ("cart position", "cart velocity", "pole angle", "pole angular velocity")
DIAGONAL = "method/metric_diagonal/"

Curve = tuple[list[int], list[list[float]]]
"""Outer steps, and per step the 4 true dimensions' weights and the distractors' mean."""


GridRun = tuple[str, int, list[dict]]
"""A completed run of the grid: its arm label, its d and its ``metrics.jsonl`` records."""


def grid_runs(runs: Path) -> list[GridRun]:
    """Every completed run of the grid under `runs`, its log read once."""
    from twcore.orchestration.report.collect import read_runs

    found = []
    for sweep in sorted(runs.glob(f"{GRID}/sweep-*")):
        for record in read_runs(sweep):
            config = record.summary["config"]
            label = str(config["label"]).removeprefix(f"{GRID}/")
            found.append((label, int(config["task"]["distractors"]), record.log))
    return found


def diagonal_over_steps(records: list[dict]) -> Curve:
    """The curve of one run's log (empty for a run that logs no diagonal metric)."""
    steps: list[int] = []
    values: list[list[float]] = [[] for _ in range(len(STATE_NAMES) + 1)]
    for record in records:
        count = sum(key.startswith(DIAGONAL) for key in record)
        if not count:
            continue
        weights = [float(record[f"{DIAGONAL}{i}"]) for i in range(count)]
        steps.append(int(record["step"]))
        for k in range(len(STATE_NAMES)):
            values[k].append(weights[k])
        rest = weights[len(STATE_NAMES) :]
        values[-1].append(statistics.mean(rest) if rest else float("nan"))
    return steps, values


def learned_metrics(runs: list[GridRun]) -> dict[tuple[str, int], list[Curve]]:
    """Per (arm label, distractors d > 0), the curve of every completed seed that logged one."""
    found: dict[tuple[str, int], list[Curve]] = defaultdict(list)
    for label, distractors, records in runs:
        curve = diagonal_over_steps(records)
        if distractors > 0 and curve[0]:
            found[(label, distractors)].append(curve)
    return dict(sorted(found.items()))


TASK_LOSS, RETURN = "method/validation/task_loss", "method/validation/return"


def proxy_correlations(runs: list[GridRun]) -> dict[tuple[str, int], list[float]]:
    """Per (TaskMet arm, d), each seed's Spearman rank correlation between the task loss
    TaskMet learns its metric from (the one-step Bellman error on real transitions, at each of
    its validations) and the return of the agent at the same validations. Strongly negative:
    the loss tracks what the claim measures; near zero: lowering it says little about return."""
    from scipy.stats import spearmanr

    found: dict[tuple[str, int], list[float]] = defaultdict(list)
    for label, distractors, records in runs:
        # metrics.jsonl spells a non-finite value as a string ("nan"): float() reads it back
        pairs = [
            (float(r[TASK_LOSS]), float(r[RETURN]))
            for r in records
            if TASK_LOSS in r and RETURN in r and math.isfinite(float(r[TASK_LOSS]))
        ]
        if len(pairs) < 3:
            continue
        losses, returns = zip(*pairs, strict=True)
        if len(set(losses)) < 2 or len(set(returns)) < 2:
            continue
        found[(label, distractors)].append(float(spearmanr(losses, returns).statistic))
    return dict(sorted(found.items()))


def correlations_table(correlations: dict[tuple[str, int], list[float]]) -> str:
    """The correlations per arm and d, each seed's and their mean, as markdown."""
    lines = [
        "| arm | d | Spearman(task loss, return) per seed | mean |",
        "|---|---|---|---|",
    ]
    for (label, distractors), values in correlations.items():
        seeds = ", ".join(f"{v:+.2f}" for v in values)
        lines.append(f"| {label} | {distractors} | {seeds} | {statistics.mean(values):+.2f} |")
    return "\n".join(lines) + "\n"


def seed_mean(curves: list[Curve]) -> Curve:
    """The seeds' mean curve, over the steps every seed reached."""
    length = min(len(steps) for steps, _ in curves)
    steps = curves[0][0][:length]
    mean = [
        [statistics.mean(values[k][i] for _, values in curves) for i in range(length)]
        for k in range(len(STATE_NAMES) + 1)
    ]
    return steps, mean


def final_weights_table(panels: dict[tuple[str, int], list[Curve]]) -> str:
    """The last outer step's weights per panel (mean over seeds), as markdown."""
    lines = [
        "| arm | d | seeds | " + " | ".join(STATE_NAMES) + " | distractors (mean) |",
        "|---|---|---|" + "---|" * (len(STATE_NAMES) + 1),
    ]
    for (label, distractors), curves in panels.items():
        _, mean = seed_mean(curves)
        cells = " | ".join(f"{series[-1]:.4f}" for series in mean)
        lines.append(f"| {label} | {distractors} | {len(curves)} | {cells} |")
    return "\n".join(lines) + "\n"


def plot(panels: dict[tuple[str, int], list[Curve]], out: Path) -> None:
    """One panel per (arm, d): the true dimensions' weights and the distractors' mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from twcore.orchestration.report.plots import outside_legend, write_figure

    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for axis, ((label, distractors), curves) in zip(axes[0], panels.items(), strict=True):
        steps, mean = seed_mean(curves)
        for name, values in zip(STATE_NAMES, mean, strict=False):
            axis.plot(steps, values, label=name)
        axis.plot(steps, mean[-1], color="black", linestyle="--", label="distractors (mean)")
        axis.set_xlabel("TaskMet outer step")
        axis.set_ylabel("diagonal entry of Λ")
        axis.set_title(f"{label}, d = {distractors} (mean of {len(curves)} seeds)")
    outside_legend(axes[0][-1], fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_figure(figure, out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help=f"the --out of the reproduction ({GRID}/ inside)")
    parser.add_argument("--out", type=Path, default=Path("cartpole-metric.png"))
    args = parser.parse_args()
    runs = grid_runs(args.runs)
    panels = learned_metrics(runs)
    if not panels:
        parser.exit(
            2,
            f"cartpole.py: no completed {GRID} run with distractors and a diagonal metric "
            f"under {args.runs}; run the grid first (see this script's docstring)\n",
        )
    plot(panels, args.out)
    print("Final diagonal of Λ (mean over seeds):\n")
    print(final_weights_table(panels))
    print("Does the task loss TaskMet learns from track the return (its validations)?\n")
    print(correlations_table(proxy_correlations(runs)))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
