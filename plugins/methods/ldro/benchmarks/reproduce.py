"""Reproduce L-DRO's experiments: the synthetic points and many-task MNIST, against ERM (`ew`)
and group DRO.

    python3 plugins/methods/ldro/benchmarks/reproduce.py         # both, 3 seeds, ~6 min on 2 cores
    python3 plugins/methods/ldro/benchmarks/reproduce.py --only points

Writes into --out (default: the plugin's docs/): ``points.md`` (final per-task losses of each
method), ``points.png`` (θ's trajectories over the points and the forbidden disc),
``mnist.md`` (average and worst-case test accuracy, mean ± std over seeds), ``mnist.png``
(average vs worst-case accuracy per run: the paper's Pareto view) and ``results.json``.
Needs matplotlib for the plots (``pip install 'twcore-method-ldro[plot]'``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from twcore_method_ldro import grids

from twcore.orchestration import api

# The points experiment's settings are the plugin's reproduction grid's (`twcore reproduce`).
POINTS = {**grids.POINTS, "eval_every": 1}
POINTS_METHODS = {
    "ERM (ew)": grids.VARIANTS["erm"],
    "group DRO": grids.VARIANTS["group-dro"],
    "L-DRO": grids.VARIANTS["ldro"],
}
MNIST = {"task": "mnist-multitask", "model": "cnn", "steps": 1500, "eval_every": 0}
MNIST_METHODS = {
    "ERM (ew)": {"method": "ew"},
    "group DRO η=0.01": {"method": "group-dro", "method.step_size": 0.01},
    "L-DRO η=0.01 λ=0.1 (paper grid)": {"method": "ldro"},
    "L-DRO η=0.01 λ=0.1, on parameters": {"method": "ldro", "method.interaction": "parameters"},
    "L-DRO η=0.1 λ=1": {"method": "ldro", "method.step_size": 0.1, "method.lookahead": 1.0},
}


def _run(options: dict, run_dir: Path) -> api.RunResult:
    return api.run({**options, "wandb.enabled": False, "run_dir": str(run_dir)})


def points(out: Path, runs_root: Path) -> dict:
    from twcore_task_synthetic.ldro_points import read_trajectory

    rows, trajectories = {}, {}
    for label, method in POINTS_METHODS.items():
        run_dir = runs_root / f"points-{method['method']}"
        result = _run({**POINTS, **method}, run_dir)
        rows[label] = result.metrics["test"]
        trajectories[label] = read_trajectory(run_dir)
    names = sorted(k for k in next(iter(rows.values())) if k.startswith("loss/"))
    lines = [
        "| method | θ | worst loss | average loss | outlier loss | mean loss of the others |",
        "|---|---|---|---|---|---|",
    ]
    for label, metrics in rows.items():
        others = [metrics[n] for n in names if n != "loss/outlier"]
        lines.append(
            f"| {label} | ({metrics['theta_x']:+.3f}, {metrics['theta_y']:+.3f}) | "
            f"{metrics['worst_loss']:.3f} | {metrics['avg_loss']:.3f} | "
            f"{metrics['loss/outlier']:.3f} | {statistics.fmean(others):.3f} |"
        )
    table = "\n".join(lines)
    (out / "points.md").write_text(table + "\n")
    _plot_points(trajectories, out / "points.png")
    print(table)
    return rows


def _plot_points(trajectories: dict[str, torch.Tensor], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from twcore_task_synthetic.ldro_points import LdroPointsConfig, task_points

    from twcore.orchestration.report.plots import outside_legend, write_figure

    config = LdroPointsConfig()
    figure, axes = plt.subplots(figsize=(5.5, 5.5))
    axes.add_patch(plt.Circle(config.disc_center, config.disc_radius, color="0.85"))
    spots = task_points(config)
    axes.scatter(spots[:-1, 0], spots[:-1, 1], c="tab:blue", s=12, label="tasks")
    axes.scatter(spots[-1:, 0], spots[-1:, 1], c="tab:red", s=20, label="outlier")
    for label, path_points in trajectories.items():
        axes.plot(path_points[:, 0], path_points[:, 1], ".-", markersize=2, label=label)
    axes.set_aspect("equal")
    axes.set_title("θ during training (forbidden disc in grey)")
    outside_legend(axes, fontsize=8)
    write_figure(figure, path)


def mnist(out: Path, runs_root: Path, seeds: int) -> list[dict]:
    rows = []
    for label, method in MNIST_METHODS.items():
        for seed in range(seeds):
            run_dir = runs_root / f"mnist-{label.split()[0]}-{len(rows)}"
            result = _run({**MNIST, **method, "seed": seed}, run_dir)
            test = result.metrics["test"]
            rows.append(
                {
                    "method": label,
                    "seed": seed,
                    "avg_acc": test["avg_acc"],
                    "worst_acc": test["worst_acc"],
                    "steps_per_s": result.summary["steps_per_s"],
                }
            )
            print(
                f"{label:34s} seed {seed}: avg {test['avg_acc']:.4f} worst {test['worst_acc']:.4f}"
            )
    lines = [
        "| method | test avg_acc | test worst_acc | seeds |",
        "|---|---|---|---|",
    ]
    for label in MNIST_METHODS:
        group = [r for r in rows if r["method"] == label]
        lines.append(
            f"| {label} | {_mean_std([r['avg_acc'] for r in group])} | "
            f"{_mean_std([r['worst_acc'] for r in group])} | {len(group)} |"
        )
    table = "\n".join(lines)
    (out / "mnist.md").write_text(table + "\n")
    _plot_pareto(rows, out / "mnist.png")
    print(table)
    return rows


def _plot_pareto(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    from twcore.orchestration.report.curves import sample_std
    from twcore.orchestration.report.plots import outside_legend, write_figure

    figure, axes = plt.subplots(figsize=(6, 4.5))
    for index, label in enumerate(MNIST_METHODS):
        group = [r for r in rows if r["method"] == label]
        values = np.array([[r["avg_acc"], r["worst_acc"]] for r in group])
        color = f"C{index}"
        axes.scatter(values[:, 0], values[:, 1], color=color, alpha=0.35, s=14)
        mean, std = values.mean(axis=0), sample_std(values)
        axes.errorbar(
            mean[0], mean[1], xerr=std[0], yerr=std[1], fmt="o", capsize=3, color=color,
            label=f"{label} (n={len(group)})",
        )  # fmt: skip
    axes.xaxis.set_major_locator(MaxNLocator(5))
    axes.ticklabel_format(useOffset=False)
    axes.set_xlabel("average test accuracy over the 20 tasks")
    axes.set_ylabel("worst-case test accuracy")
    axes.set_title("many-task MNIST: mean ± 1 sample std (faint: each seed)")
    outside_legend(axes, fontsize=8)
    write_figure(figure, path)


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {std:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", choices=("points", "mnist"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    parser.add_argument("--runs-root", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs_root = args.runs_root or Path(tempfile.mkdtemp(prefix="ldro-reproduce-"))
    args.out.mkdir(parents=True, exist_ok=True)
    previous = args.out / "results.json"
    results: dict = json.loads(previous.read_text()) if previous.exists() else {}
    if args.only in (None, "points"):
        results["points"] = points(args.out, runs_root)
    if args.only in (None, "mnist"):
        results["mnist"] = mnist(args.out, runs_root, args.seeds)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwritten to {args.out}; runs under {runs_root}")


if __name__ == "__main__":
    main()
