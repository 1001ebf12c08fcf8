"""CartPole with distractors: MLE, TaskMet (full, diagonal, floored diagonal) and DFL (OMD-style).

    python3 plugins/tasks/rl/benchmarks/cartpole.py                    # 3 seeds, d = 0 and 32
    python3 plugins/tasks/rl/benchmarks/cartpole.py --env-steps 5000 --seeds 1 --workers 2
    python3 plugins/tasks/rl/benchmarks/cartpole.py --env-steps 200000 --distractors 0,32,128 \
        --methods MLE "TaskMet diagonal" "TaskMet diagonal floor 0.1" --tag 200k  # the paper's

Every run takes the same number of real environment steps (one per model batch, so TaskMet's
outer steps are converted: 500 inner steps first, 100 after). The trials run as one sweep on the
local backend (`--workers` processes, one torch thread each). Writes ``cartpole.md``,
``cartpole.json`` and ``cartpole_metric.png`` (each TaskMet variant's learned metric at each
d > 0: the weight of every true state dimension and the distractors' mean, averaged over seeds)
into the plugin's ``docs/`` (``cartpole_<tag>.*`` with ``--tag``; ``--append`` adds a run's
trials to that tag's earlier results). Each TaskMet run's metric curve (thinned to at most
500 outer steps, 4 decimals) goes into ``cartpole[_<tag>]_curves.json``, so ``--replot``
redraws the table and figure from the committed files without the runs' folders.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from twcore.orchestration.backends import SweepOptions
from twcore.orchestration.sweep import SweepSpec, run_sweeps

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
        "TaskMet diagonal floor 0.1": [
            "method=taskmet",
            "method.metric=diagonal",
            "method.metric_floor=0.1",
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
    parser.add_argument(
        "--append",
        action="store_true",
        help="add these runs to the tag's existing results (same method, d and seed: replaced)",
    )
    parser.add_argument(
        "--replot",
        action="store_true",
        help="run nothing: redraw the tag's table and figure from its committed JSON",
    )
    args = parser.parse_args()
    chosen = methods(args.env_steps)
    stem = f"cartpole_{args.tag}" if args.tag else "cartpole"
    if args.replot:
        rows = _read_rows(stem)
        (DOCS / f"{stem}.md").write_text(results_table(rows, args))
        plot_metric(rows, DOCS / f"{stem}_metric.png")
        return
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
                    "metric_curve": thin(_diagonal_over_steps(Path(trial.summary["run_dir"]))),
                }
            )
    DOCS.mkdir(exist_ok=True)
    if args.append and (DOCS / f"{stem}.json").exists():
        new = {(r["method"], r["distractors"], r["seed"]) for r in rows}
        kept = _read_rows(stem)
        rows = [r for r in kept if (r["method"], r["distractors"], r["seed"]) not in new] + rows
    _write_rows(stem, rows)
    table = results_table(rows, args)
    (DOCS / f"{stem}.md").write_text(table)
    print(table)
    plot_metric(rows, DOCS / f"{stem}_metric.png")


def _key(row: dict) -> str:
    return f"{row['method']}|{row['distractors']}|{row['seed']}"


def _write_rows(stem: str, rows: list[dict]) -> None:
    """The rows (``<stem>.json``, readable) and their metric curves (``<stem>_curves.json``,
    compact)."""
    curves = {_key(r): r["metric_curve"] for r in rows if r.get("metric_curve")}
    plain = [{k: v for k, v in r.items() if k != "metric_curve"} for r in rows]
    (DOCS / f"{stem}.json").write_text(json.dumps(plain, indent=1))
    (DOCS / f"{stem}_curves.json").write_text(json.dumps(curves, separators=(",", ":")))


def _read_rows(stem: str) -> list[dict]:
    rows = json.loads((DOCS / f"{stem}.json").read_text())
    path = DOCS / f"{stem}_curves.json"
    curves = json.loads(path.read_text()) if path.exists() else {}
    for row in rows:
        curve = row.get("metric_curve") or curves.get(_key(row))
        if curve:
            row["metric_curve"] = curve
    return rows


def thin(curve: tuple[list[int], list[list[float]]], points: int = 500) -> list:
    """Every k-th point of a metric curve (at most `points`, the last kept), 4 decimals."""
    steps, values = curve
    if not steps:
        return [[], []]
    every = max(1, -(-len(steps) // points))
    keep = sorted({*range(0, len(steps), every), len(steps) - 1})
    return [
        [steps[i] for i in keep],
        [[round(series[i], 4) for i in keep] for series in values],
    ]


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


STATE_NAMES = ("cart position", "cart velocity", "pole angle", "pole angular velocity")


def plot_metric(rows: list[dict], path: Path) -> None:
    """TaskMet's diagonal metric over outer steps: one panel per (TaskMet variant, d > 0), the
    weight of each true state dimension and the mean weight of the distractors, averaged over
    seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from twcore.orchestration.report.plots import outside_legend, write_figure

    present = {
        (r["method"], r["distractors"])
        for r in rows
        if r["distractors"] > 0 and r.get("metric_curve")
    }
    panels = [
        (kind, d)
        for kind in methods(1000)
        if kind.startswith("TaskMet")
        for d in sorted({d for m, d in present if m == kind})
    ]
    if not panels:
        return
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for axis, (kind, distractors) in zip(axes[0], panels, strict=True):
        runs = [
            r
            for r in rows
            if r["method"] == kind and r["distractors"] == distractors and r.get("metric_curve")
        ]
        curves = [run["metric_curve"] for run in runs]
        length = min(len(steps) for steps, _ in curves)
        steps = curves[0][0][:length]
        mean = [
            [statistics.mean(values[k][i] for _, values in curves) for i in range(length)]
            for k in range(5)
        ]
        for name, values in zip(STATE_NAMES, mean, strict=False):
            axis.plot(steps, values, label=name)
        axis.plot(steps, mean[4], color="black", linestyle="--", label="distractors (mean)")
        axis.set_xlabel("TaskMet outer step")
        axis.set_ylabel("diagonal entry of Λ")
        axis.set_title(f"{kind}, d = {distractors} (mean of {len(runs)} seeds)")
    outside_legend(axes[0][-1], fontsize=8)
    figure.tight_layout()
    write_figure(figure, path)


def _diagonal_over_steps(run_dir: Path) -> tuple[list[int], list[list[float]]]:
    """Outer steps, and per step: the 4 true dimensions' weights and the distractors' mean
    (empty for a run that logs no diagonal metric). Kept in the JSON rows, so the figure can be
    redrawn after the runs' folders are gone."""
    steps, values = [], [[] for _ in range(5)]
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        keys = [k for k in record if k.startswith("method/metric_diagonal/")]
        if not keys:
            continue
        weights = [record[f"method/metric_diagonal/{i}"] for i in range(len(keys))]
        steps.append(record["step"])
        for k in range(4):
            values[k].append(weights[k])
        values[4].append(statistics.mean(weights[4:]) if len(weights) > 4 else float("nan"))
    return steps, values


if __name__ == "__main__":
    main()
