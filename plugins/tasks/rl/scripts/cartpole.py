"""CartPole with distractors: MLE, TaskMet (full and diagonal metric) and DFL (OMD-style).

    python3 plugins/tasks/rl/scripts/cartpole.py                    # 3 seeds, d = 0 and 32
    python3 plugins/tasks/rl/scripts/cartpole.py --env-steps 5000 --seeds 1 --workers 2
    python3 plugins/tasks/rl/scripts/cartpole.py --env-steps 200000 --distractors 32 \
        --methods MLE "TaskMet diagonal" --tag 200k          # the paper's budget

Every run takes the same number of real environment steps (one per model batch, so TaskMet's
outer steps are converted: 500 inner steps first, 100 after). The trials run as one sweep on the
local backend (`--workers` processes, one torch thread each). Writes ``cartpole.md``,
``cartpole.json`` and ``cartpole_metric.png`` (TaskMet's learned metric, full and diagonal:
mean diagonal weight on the true and on the distractor dimensions, d = 32) into the plugin's
``docs/`` (``cartpole_<tag>.*`` with ``--tag``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from twcore.backends import SweepOptions
from twcore.sweep import SweepSpec, run_sweeps

DOCS = Path(__file__).resolve().parents[1] / "docs"
FIRST, LATER = 500, 100  # TaskMet's inner steps at the first / every later outer step


def methods(env_steps: int) -> dict[str, list[str]]:
    outer = 1 + (env_steps - FIRST) // LATER
    evaluations = 12
    return {
        "MLE": ["method=ew", f"steps={env_steps}", f"eval_every={env_steps // evaluations}"],
        "TaskMet": [
            "method=taskmet",
            f"steps={outer}",
            f"eval_every={max(1, outer // evaluations)}",
            f"method.inner_steps_first={FIRST}",
            f"method.inner_steps={LATER}",
            "method.validate_every=10",
        ],
        "TaskMet diagonal": [
            "method=taskmet",
            "method.metric=diagonal",
            f"steps={outer}",
            f"eval_every={max(1, outer // evaluations)}",
            f"method.inner_steps_first={FIRST}",
            f"method.inner_steps={LATER}",
            "method.validate_every=10",
        ],
        "DFL (OMD-style)": [
            "method=dfl",
            f"steps={env_steps}",
            f"eval_every={env_steps // evaluations}",
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--env-steps", type=int, default=30_000)
    parser.add_argument("--distractors", default="0,32")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument(
        "--methods", nargs="*", default=None, help="a subset of: " + ", ".join(methods(1000))
    )
    parser.add_argument("--tag", default="", help="suffix of the output files' names")
    args = parser.parse_args()
    chosen = methods(args.env_steps)
    unknown = sorted(set(args.methods or ()) - set(chosen))
    if unknown:
        parser.error(f"unknown --methods {unknown}; valid: {', '.join(chosen)}")
    root = args.root or Path(tempfile.mkdtemp(prefix="cartpole-"))
    seeds = ",".join(str(s) for s in range(args.seeds))
    specs = []
    for label, arguments in chosen.items():
        if args.methods is not None and label not in args.methods:
            continue
        specs.append(
            SweepSpec(
                [
                    "task=cartpole-distractors",
                    f"task.distractors={args.distractors}",
                    f"seed={seeds}",
                    f"label={label}",
                    "wandb.enabled=false",
                    "checkpoint_every=0",
                    *arguments,
                    f"run_dir={root / label.split()[0]}-{len(specs)}",
                ],
                label.split()[0],
            )
        )
    results = run_sweeps(
        specs, options=SweepOptions(backend="local", workers=args.workers, threads=1)
    )
    rows = []
    for result in results:
        for trial in result.trials:
            if trial.summary is None:
                continue
            config = trial.summary["config"]
            test = trial.summary["metrics"]["test"]
            rows.append(
                {
                    "method": config["label"],
                    "distractors": config["task"]["distractors"],
                    "seed": config["seed"],
                    "return": test["return"],
                    "model_mse": test["model_mse"],
                    "bellman_error": test["bellman_error"],
                    "wall_time_s": trial.summary["wall_time_s"],
                    "run_dir": trial.summary["run_dir"],
                }
            )
    DOCS.mkdir(exist_ok=True)
    stem = f"cartpole_{args.tag}" if args.tag else "cartpole"
    (DOCS / f"{stem}.json").write_text(json.dumps(rows, indent=1))
    table = results_table(rows, args)
    (DOCS / f"{stem}.md").write_text(table)
    print(table)
    plot_metric(rows, DOCS / f"{stem}_metric.png")


def results_table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"CartPole-v1 + d distractors, {args.env_steps} real environment steps, {args.seeds} "
        "seeds; test: mean return of 10 greedy episodes (max 500), model MSE on the 4 true "
        "dimensions; mean ± std.\n",
        "| d | method | return | model MSE (true dims) | real Bellman error | minutes per run |",
        "|---|---|---|---|---|---|",
    ]
    for distractors in sorted({r["distractors"] for r in rows}):
        for method in methods(args.env_steps):
            group = [r for r in rows if r["distractors"] == distractors and r["method"] == method]
            if not group:
                continue
            lines.append(
                f"| {distractors} | {method} | {_mean_std(group, 'return', 1)} | "
                f"{_mean_std(group, 'model_mse', 5)} | {_mean_std(group, 'bellman_error', 3)} | "
                f"{statistics.mean(r['wall_time_s'] for r in group) / 60:.1f} |"
            )
    return "\n".join(lines) + "\n"


def _mean_std(group: list[dict], key: str, digits: int) -> str:
    values = [r[key] for r in group]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {std:.{digits}f}"


def plot_metric(rows: list[dict], path: Path) -> None:
    """TaskMet's diagonal metric entries on true vs distractor dimensions over outer steps,
    one panel per metric kind (full, diagonal), one pair of lines per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [m for m in ("TaskMet", "TaskMet diagonal") if any(r["method"] == m for r in rows)]
    runs = {k: [r for r in rows if r["method"] == k and r["distractors"] > 0] for k in kinds}
    if not any(runs.values()):
        return
    figure, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4), squeeze=False)
    for axis, kind in zip(axes[0], kinds, strict=True):
        for run in runs[kind]:
            steps, true, noise = _diagonal_over_steps(Path(run["run_dir"]))
            axis.plot(steps, true, color="tab:blue", alpha=0.8)
            axis.plot(steps, noise, color="tab:red", alpha=0.8)
        axis.plot([], [], color="tab:blue", label="true state dimensions (mean)")
        axis.plot([], [], color="tab:red", label="distractor dimensions (mean)")
        axis.set_xlabel("TaskMet outer step")
        axis.set_ylabel("diagonal entry of Λ")
        distractors = runs[kind][0]["distractors"] if runs[kind] else "?"
        metric = "full" if kind == "TaskMet" else "diagonal"
        axis.set_title(f"{metric} metric, d = {distractors} (one pair of lines per seed)")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _diagonal_over_steps(run_dir: Path) -> tuple[list[int], list[float], list[float]]:
    steps, true, noise = [], [], []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        keys = [k for k in record if k.startswith("method/metric_diagonal/")]
        if not keys:
            continue
        values = [record[f"method/metric_diagonal/{i}"] for i in range(len(keys))]
        steps.append(record["step"])
        true.append(statistics.mean(values[:4]))
        noise.append(statistics.mean(values[4:]))
    return steps, true, noise


if __name__ == "__main__":
    main()
