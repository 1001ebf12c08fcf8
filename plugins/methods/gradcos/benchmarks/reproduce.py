"""Reproduce the auxiliary-task comparison of GradCos and αVIL (both plugins share the runs).

    python3 plugins/methods/gradcos/benchmarks/reproduce.py            # 3 seeds, ~3 min on 2 cores
    python3 plugins/methods/gradcos/benchmarks/reproduce.py --seeds 1 --benchmarks harmful

Benchmarks: `mnist-aux` with only the harmful (random-label) auxiliary, only the helpful one
(digit mod 5), all three (helpful, unrelated, harmful), and `multimnist` (main: left digit,
auxiliary: right digit). Methods: main-only (`ew` with `method.objectives=[main]`), the plain
sum (`ew`), GradCos weighted and unweighted, αVIL. Same model (mlp), optimiser (Adam 1e-3),
batch (64) and steps for all.

Writes ``results.md`` (main-task test accuracy, mean ± std over seeds), ``results.json`` and
``weights.png`` (each auxiliary's weight over training, GradCos and αVIL, on the benchmark with
all three auxiliaries, seed 0) into both plugins' ``docs/`` folders; needs matplotlib.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from twcore.orchestration import api

PLUGINS = Path(__file__).resolve().parents[2]
BENCHMARKS = {
    "harmful": {"task": "mnist-aux", "task.auxiliaries": ["harmful"]},
    "helpful": {"task": "mnist-aux", "task.auxiliaries": ["helpful"]},
    "all three": {"task": "mnist-aux"},
    "multimnist": {"task": "multimnist", "task.main": "left"},
}
METHODS = {
    "main-only": {"method": "ew", "method.objectives": ["main"]},
    "plain sum (ew)": {"method": "ew"},
    "GradCos weighted": {"method": "gradcos"},
    "GradCos unweighted": {"method": "gradcos", "method.variant": "unweighted"},
    "αVIL": {"method": "alphavil"},
}
COMMON = {"model": "mlp", "steps": 1000, "eval_every": 0, "wandb.enabled": False}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--benchmarks", nargs="*", default=list(BENCHMARKS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs-root", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.runs_root or Path(tempfile.mkdtemp(prefix="aux-reproduce-"))
    rows = []
    for benchmark in args.benchmarks:
        for label, method in METHODS.items():
            for seed in range(args.seeds):
                run_dir = root / f"{benchmark.replace(' ', '-')}-{len(rows)}"
                options = {**COMMON, **BENCHMARKS[benchmark], **method, "seed": seed}
                result = api.run({**options, "run_dir": str(run_dir)})
                test = result.metrics["test"]
                rows.append(
                    {
                        "benchmark": benchmark,
                        "method": label,
                        "seed": seed,
                        "main_acc": test["main_acc"],
                        "wall_time_s": result.summary["wall_time_s"],
                        "run_dir": str(run_dir),
                    }
                )
                print(f"{benchmark:10s} {label:20s} seed {seed}: main_acc {test['main_acc']:.4f}")
    table = _table(rows, args.benchmarks)
    print("\n" + table)
    for plugin in ("gradcos", "alphavil"):
        docs = PLUGINS / plugin / "docs"
        docs.mkdir(exist_ok=True)
        (docs / "results.md").write_text(table + "\n")
        (docs / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    weights_of = [r for r in rows if r["benchmark"] == "all three" and r["seed"] == 0]
    if weights_of:
        for plugin in ("gradcos", "alphavil"):
            _plot_weights(weights_of, PLUGINS / plugin / "docs" / "weights.png")


def _table(rows: list[dict], benchmarks: list[str]) -> str:
    lines = ["| benchmark | " + " | ".join(METHODS) + " |", "|---" * (len(METHODS) + 1) + "|"]
    for benchmark in benchmarks:
        cells = []
        for label in METHODS:
            values = [
                r["main_acc"] for r in rows if (r["benchmark"], r["method"]) == (benchmark, label)
            ]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.fmean(values):.4f} ± {std:.4f}")
        lines.append(f"| {benchmark} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot_weights(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from twcore.orchestration.report.curves import moving_average
    from twcore.orchestration.report.plots import outside_legend, write_figure

    figure, axes = plt.subplots(1, 2, figsize=(12, 4))
    for axis, label, prefix in (
        (axes[0], "GradCos weighted", "train/weight/"),
        (axes[1], "αVIL", "method/task_weight/"),
    ):
        (run,) = [r for r in rows if r["method"] == label]
        records = [
            json.loads(x)
            for x in Path(run["run_dir"], "metrics.jsonl").read_text().split("\n")
            if x
        ]
        names = sorted({k[len(prefix) :] for r in records for k in r if k.startswith(prefix)})
        for index, name in enumerate(names):
            points = [(r["step"], r[prefix + name]) for r in records if prefix + name in r]
            steps, values = zip(*points, strict=True)
            color = f"C{index}"
            if label.startswith("GradCos") and len(values) > 50:  # noisy cosines: raw faint
                axis.plot(steps, values, color=color, alpha=0.25, lw=0.7)
                values = tuple(moving_average(np.array(values), 25))
            axis.plot(steps, values, color=color, label=name)
        smoothing = ", moving average over 25 steps" if label.startswith("GradCos") else ""
        axis.set_title(f"{label}: objective weights (mnist-aux, seed 0{smoothing})", fontsize=9)
        axis.set_xlabel("step")
    outside_legend(axes[1], fontsize=8, title="objective")
    figure.tight_layout()
    write_figure(figure, path)


if __name__ == "__main__":
    main()
