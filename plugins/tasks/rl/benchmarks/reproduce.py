"""Auxiliary losses in RL: main-only, the plain sum and GradCos on ``gridworld-aux``.

    python3 plugins/tasks/rl/benchmarks/reproduce.py           # 5 seeds, about 2 minutes on 2 cores
    python3 plugins/tasks/rl/benchmarks/reproduce.py --seeds 1 --steps 500

Same model (mlp with one hidden layer of 16, small enough that the auxiliaries compete for it),
optimiser (Adam 1e-3), batch (64) and steps for every method; evaluated every 250 steps on 20
greedy validation episodes, and at the end on 20 test episodes. Writes ``results.md``,
``results.json`` and ``returns.png`` (validation return over training, mean ± std over seeds)
into the plugin's ``docs/``; needs matplotlib.
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
AUXILIARIES = {"harmful (random targets)": ["random"], "helpful (reward prediction)": ["reward"]}
METHODS = {
    "main-only": {"method": "ew", "method.objectives": ["main"]},
    "plain sum": {"method": "ew"},
    "GradCos weighted": {"method": "gradcos"},
    "GradCos unweighted": {"method": "gradcos", "method.variant": "unweighted"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="gridworld-reproduce-"))
    rows = []
    for auxiliary, names in AUXILIARIES.items():
        for label, method in METHODS.items():
            for seed in range(args.seeds):
                run_dir = root / f"run-{len(rows)}"
                result = api.run(
                    {
                        "task": "gridworld-aux",
                        "task.auxiliaries": names,
                        "model": "mlp",
                        "model.hidden": [16],
                        "steps": args.steps,
                        "eval_every": 250,
                        "wandb.enabled": False,
                        "seed": seed,
                        "run_dir": str(run_dir),
                        **method,
                    }
                )
                test = result.metrics["test"]
                rows.append(
                    {
                        "auxiliary": auxiliary,
                        "method": label,
                        "seed": seed,
                        "return": test["return"],
                        "success": test["success"],
                        "run_dir": str(run_dir),
                    }
                )
                print(f"{auxiliary:28} {label:18} seed {seed}: return {test['return']:+.3f}")
    DOCS.mkdir(exist_ok=True)
    (DOCS / "results.json").write_text(json.dumps(rows, indent=1))
    table = results_table(rows, args)
    (DOCS / "results.md").write_text(table)
    print("\n" + table)
    plot_returns(rows, DOCS / "returns.png")


def results_table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"gridworld-aux, mlp [16], {args.steps} steps, {args.seeds} seeds; test return of 20 "
        "greedy episodes (best 0.94: the shortest paths), mean ± std; success rate in brackets.\n",
        "| auxiliary | " + " | ".join(METHODS) + " |",
        "|---|" + "---|" * len(METHODS),
    ]
    for auxiliary in AUXILIARIES:
        cells = []
        for method in METHODS:
            group = [r for r in rows if r["auxiliary"] == auxiliary and r["method"] == method]
            returns = [r["return"] for r in group]
            success = statistics.mean(r["success"] for r in group)
            std = statistics.stdev(returns) if len(returns) > 1 else 0.0
            cells.append(f"{statistics.mean(returns):+.3f} ± {std:.3f} ({success:.2f})")
        lines.append(f"| {auxiliary} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_returns(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from twcore.orchestration.report.curves import sample_std
    from twcore.orchestration.report.plots import outside_legend, write_figure

    figure, axes = plt.subplots(1, len(AUXILIARIES), figsize=(11, 4), sharey=True)
    for axis, auxiliary in zip(axes, AUXILIARIES, strict=True):
        for method in METHODS:
            curves = []
            for row in rows:
                if row["auxiliary"] != auxiliary or row["method"] != method:
                    continue
                text = Path(row["run_dir"], "metrics.jsonl").read_text()
                records = [json.loads(line) for line in text.splitlines()]
                curves.append([(r["step"], r["val/return"]) for r in records if "val/return" in r])
            steps = [s for s, _ in curves[0]]
            values = np.array([[v for _, v in curve] for curve in curves])
            mean, std = values.mean(axis=0), sample_std(values)
            (line,) = axis.plot(
                steps, mean, marker="o", markersize=3, label=f"{method} (n={len(curves)})"
            )
            axis.fill_between(steps, mean - std, mean + std, alpha=0.15, color=line.get_color())
        axis.set_title(f"auxiliary: {auxiliary}")
        axis.set_xlabel("step")
    outside_legend(axes[-1], fontsize=8)
    axes[0].set_ylabel("validation return (mean ± 1 sample std)")
    figure.tight_layout()
    write_figure(figure, path)


if __name__ == "__main__":
    main()
