"""Plot θ's trajectory of one or more ldro-points runs over the task points and the disc.

    python3 -m twcore run task=ldro-points model=linear eval_every=1 optim.lr=0.02 run_dir=runs/ew
    python3 plugins/tasks/synthetic/benchmarks/plot_ldro_points.py runs/ew --out ldro.png

Needs matplotlib (`pip install 'twcore-task-synthetic[plot]'`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import yaml
from twcore_task_synthetic.ldro_points import LdroPointsConfig, read_trajectory, task_points

from twcore.orchestration.report.plots import outside_legend, write_figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--out", type=Path, default=Path("ldro-points.png"))
    args = parser.parse_args()
    options = yaml.safe_load((args.runs[0] / "config.yaml").read_text())["task"]
    options.pop("name")
    config = LdroPointsConfig(**options)
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.add_patch(plt.Circle(config.disc_center, config.disc_radius, color="0.85"))
    points = task_points(config)
    axes.scatter(points[:-1, 0], points[:-1, 1], c="tab:blue", label="tasks")
    axes.scatter(points[-1:, 0], points[-1:, 1], c="tab:red", label="outlier")
    for run in args.runs:
        path = read_trajectory(run)
        label = yaml.safe_load((run / "config.yaml").read_text())["method"]["name"]
        axes.plot(path[:, 0], path[:, 1], ".-", markersize=2, label=f"{label} ({run.name})")
    axes.set_aspect("equal")
    outside_legend(axes, fontsize=8)
    write_figure(figure, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
